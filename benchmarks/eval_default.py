"""Evaluate the embedded default model (SmolLM2-135M-Instruct) with `dscoder eval`, in fp32,
int8 and int4, and append one table with the quantization deltas to benchmarks/RESULTS.md.

    python benchmarks/eval_default.py                 # HumanEval base+instruct x fp32/int8/int4, MBPP base+instruct fp32
    python benchmarks/eval_default.py --runs 5        # only the first five of those
    python benchmarks/eval_default.py --report        # no new runs: the table of those already finished
    python benchmarks/eval_default.py --only humaneval
    python benchmarks/eval_default.py --paths         # wall clock: one sample at a time vs the batched engine
    python benchmarks/eval_default.py --paths --limit 20 --max-tokens 64 --repeat 3

Each run is an ordinary `dscoder eval` command (printed, so any row can be reproduced
alone); its folder under eval-results/ holds every sample, the report and the chart, and
an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

MAX_TOKENS = 256  # per sample; the instruct answers' code fits well within it
# The chat form first, then the base form, MBPP's long 3-shot chat prompts last.
RUNS = [("humaneval", "instruct", quant) for quant in (None, "int8", "int4")] + \
       [("humaneval", "base", quant) for quant in (None, "int8", "int4")] + \
       [("mbpp", "base", None), ("mbpp", "instruct", None)]


def command(bench: str, form: str, quant: str | None) -> list[str]:
    out = Path("eval-results") / f"default-{bench}-{form}-{quant or 'fp32'}"
    argv = ["dscoder", "eval", bench, "--form", form, "--max-tokens", str(MAX_TOKENS), "--out", str(out)]
    return argv + (["--quant", quant] if quant else [])


def paths(limit: int, max_tokens: int, repeat: int) -> str:
    """HumanEval (base, greedy) on the embedded model through `dscoder.eval.run`: one sample at a time
    (`batch=1`, `infer.generate.stream`) against the serving engine (the default batch), the same
    problems and settings; wall seconds of generation + sandboxed execution (model load excluded)."""
    import torch

    from dscoder import eval as evaluation

    walls: dict[int, list[float]] = {}
    samples: dict[int, dict] = {}
    for _ in range(repeat):
        for batch in (1, evaluation.EvalConfig.batch):
            with tempfile.TemporaryDirectory() as out:
                summary = evaluation.run(evaluation.EvalConfig("humaneval", limit=limit, max_new_tokens=max_tokens,
                                                               batch=batch, out=Path(out), progress=False))
                rows = [json.loads(line) for line in (Path(out) / "samples.jsonl").read_text().splitlines()]
            walls.setdefault(batch, []).append(summary.wall_seconds)
            samples[batch] = {(r["task_id"], r["sample"]): (r["completion"], r["status"]) for r in rows}
            print(f"batch {batch}: {summary.wall_seconds:.1f} s, pass@1 {summary['pass@1']:.4f}, "
                  f"{summary['generation']['tokens']} tokens", flush=True)
    one, many = sorted(walls)
    same = "yes" if samples[one] == samples[many] else "NO"

    def cell(values: list[float]) -> str:
        spread = f" ({min(values):.1f}-{max(values):.1f})" if len(values) > 1 else ""
        return f"{statistics.median(values):.1f}{spread}"

    return "\n".join([
        f"\n### eval_default.py --paths — {datetime.date.today()} — {platform.machine()}, "
        f"{torch.get_num_threads()} threads, torch {torch.__version__}\n",
        f"HumanEval (python, base form, greedy), first {limit} problems, at most {max_tokens} new tokens, embedded "
        f"SmolLM2-135M-Instruct (Q4_1 GGUF): wall seconds of `dscoder.eval.run` (generation and sandboxed "
        f"execution, model load excluded), median{' (range)' if repeat > 1 else ''} of {repeat}.\n",
        "| path | wall s | speed-up | samples identical |", "|---|---:|---:|---|",
        f"| one sample at a time (`batch=1`, infer.generate.stream) | {cell(walls[one])} | 1.00× | |",
        f"| serving engine, {many} at once (`dscoder eval` now) | {cell(walls[many])} | "
        f"{statistics.median(walls[one]) / statistics.median(walls[many]):.2f}× | {same} |",
        "", "Command:", "", f"    python benchmarks/eval_default.py --paths --limit {limit} --max-tokens {max_tokens}"
        f" --repeat {repeat}", ""])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--only", choices=["humaneval", "mbpp"])
    parser.add_argument("--runs", type=int, default=len(RUNS), help="Only the first N runs of the list.")
    parser.add_argument("--report", action="store_true", help="Run nothing; tabulate the runs already finished.")
    parser.add_argument("--paths", action="store_true", help="Only time the per-sample path against the batched one.")
    parser.add_argument("--limit", type=int, default=20, help="--paths: the first N HumanEval problems.")
    parser.add_argument("--max-tokens", type=int, default=MAX_TOKENS, help="--paths: most new tokens per sample.")
    parser.add_argument("--repeat", type=int, default=1, help="--paths: runs of each path (median and range).")
    args = parser.parse_args()
    if args.paths:
        text = paths(args.limit, args.max_tokens, args.repeat)
        print(text)
        with open(Path(__file__).with_name("RESULTS.md"), "a") as f:
            f.write(text)
        return
    rows = []
    for bench, form, quant in RUNS[:args.runs]:
        if args.only and bench != args.only:
            continue
        argv = command(bench, form, quant)
        summary_file = Path(argv[argv.index("--out") + 1]) / "summary.json"
        if not args.report:
            print("$", " ".join(argv), flush=True)
            subprocess.run(argv, check=True)
        elif not summary_file.exists():
            continue
        rows.append((bench, form, quant or "fp32", json.loads(summary_file.read_text()), " ".join(argv)))
    base = {(b, f): s["pass@1"] for b, f, q, s, _ in rows if q == "fp32"}
    lines = [f"\n## Evaluation of the embedded model (SmolLM2-135M-Instruct), {datetime.date.today()}\n",
             f"`python benchmarks/eval_default.py`: greedy, n=1, at most {MAX_TOKENS} new tokens, 2 threads.\n",
             "| benchmark | form | weights | pass@1 | vs fp32 | passed / problems | failed | timeout | error | gen tok/s |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for bench, form, quant, s, _ in rows:
        ref = base.get((bench, form))
        delta = "" if quant == "fp32" or ref is None else f"{100 * (s['pass@1'] - ref):+.2f} pt"
        st = s["statuses"]
        lines.append(f"| {bench} | {form} | {quant} | {100 * s['pass@1']:.2f}% | {delta} | {st['passed']} / "
                     f"{s['problems']} | {st['failed']} | {st['timeout']} | {st['error']} | "
                     f"{s['generation']['tokens_per_second']} |")
    lines += ["", "Commands:", ""] + [f"    {cmd}" for *_, cmd in rows]
    text = "\n".join(lines) + "\n"
    print(text)
    with open(Path(__file__).with_name("RESULTS.md"), "a") as f:
        f.write(text)


if __name__ == "__main__":
    sys.exit(main())
