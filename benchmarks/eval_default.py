"""Evaluate the embedded default model (SmolLM2-135M-Instruct) with `dscoder eval`, in fp32,
int8 and int4, and append one table with the quantization deltas to benchmarks/RESULTS.md.

    python benchmarks/eval_default.py                 # HumanEval base+instruct x fp32/int8/int4, MBPP base+instruct fp32
    python benchmarks/eval_default.py --runs 5        # only the first five of those
    python benchmarks/eval_default.py --report        # no new runs: the table of those already finished
    python benchmarks/eval_default.py --only humaneval

Each run is an ordinary `dscoder eval` command (printed, so any row can be reproduced
alone); its folder under eval-results/ holds every sample, the report and the chart, and
an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import argparse
import datetime
import json
import subprocess
import sys
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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--only", choices=["humaneval", "mbpp"])
    parser.add_argument("--runs", type=int, default=len(RUNS), help="Only the first N runs of the list.")
    parser.add_argument("--report", action="store_true", help="Run nothing; tabulate the runs already finished.")
    args = parser.parse_args()
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
