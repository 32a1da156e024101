"""Decode speed as a user meets it: `dscoder complete` in a fresh process, no warm-up, vs llama-cpp-python.

Each contestant is started as a new process for a short and a long generation of the same
prompt (greedy); per-token time is the slope between the two wall-clock times, so start-up,
loading and the prompt cancel out and what is left is the decode of tokens 9..136 exactly
as a user's first run sees it (first-call costs included, nothing warmed up).  Runs
alternate (ours short, peer short, ours long, peer long, ...) for `--rounds` rounds; the
table gives the median and range of the per-round slopes and the load average.

    python benchmarks/cli_decode.py                  # int4 vs llama.cpp Q4_1, appends to RESULTS.md
    python benchmarks/cli_decode.py --quant int8 --rounds 7 --no-save
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

from decode import gguf_path  # benchmarks/decode.py's: the embedded GGUF

RESULTS = Path(__file__).with_name("RESULTS.md")
PROMPT = '''def parse_config(path):
    """Read a key = value file into a dict, skipping comments and blank lines."""
'''
SHORT, LONG = 8, 136

LLAMA = """
import sys
from llama_cpp import Llama
path, prompt, n, threads = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
llm = Llama(path, n_threads=threads, n_threads_batch=threads, n_ctx=512, verbose=False)
eos = llm.token_eos()
out = llm(prompt, max_tokens=n, temperature=0.0, logit_bias={eos: -100.0})
print("TOKENS", out["usage"]["completion_tokens"])
"""


def run(cmd: list[str], env: dict) -> tuple[float, int]:
    """Wall-clock seconds of a whole process and the tokens it says it generated."""
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - start
    if done.returncode:
        raise SystemExit(f"{' '.join(cmd[:4])}... failed:\n{done.stderr[-2000:]}")
    found = re.search(r"TOKENS (\d+)", done.stdout) or re.search(r"(\d+) tokens in", done.stderr)
    if not found:
        raise SystemExit(f"no token count in the output of {' '.join(cmd[:4])}...:\n{done.stderr[-2000:]}")
    return seconds, int(found.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quant", default="int4", choices=["int4", "int8", "none"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--no-save", action="store_true")
    args = parser.parse_args()
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    ours = [sys.executable, "-m", "dscoder.cli", "complete", "--temperature", "0"]  # threads: OMP_NUM_THREADS
    if args.quant != "none":
        ours += ["--quant", args.quant]
    peer = [sys.executable, "-c", LLAMA, str(gguf_path()), PROMPT]
    slopes: dict[str, list[float]] = {"dscoder complete": [], "llama-cpp-python": []}
    firsts: dict[str, list[float]] = {name: [] for name in slopes}
    load_before = os.getloadavg()
    for round_ in range(args.rounds):
        times: dict[str, dict[int, tuple[float, int]]] = {name: {} for name in slopes}
        for n in (SHORT, LONG):
            order = [("dscoder complete", ours + ["-n", str(n), PROMPT]),
                     ("llama-cpp-python", peer + [str(n), str(args.threads)])]
            for name, cmd in order if round_ % 2 == 0 else reversed(order):
                times[name][n] = run(cmd, env)
        for name in slopes:
            (t_short, n_short), (t_long, n_long) = times[name][SHORT], times[name][LONG]
            slopes[name].append((n_long - n_short) / (t_long - t_short))
            firsts[name].append(t_short)
        print(f"round {round_ + 1}: " + ", ".join(f"{k} {v[-1]:.1f} tok/s" for k, v in slopes.items()), file=sys.stderr)
    load_after = os.getloadavg()
    ratio = [a / b for a, b in zip(slopes["dscoder complete"], slopes["llama-cpp-python"])]

    def spread(values, digits=1):
        return f"{statistics.median(values):.{digits}f} ({min(values):.{digits}f}–{max(values):.{digits}f})"

    quant = {"int4": "int4 (--quant int4) vs Q4_1", "int8": "int8 (--quant int8) vs Q4_1 file",
             "none": "fp32 vs Q4_1 file"}[args.quant]
    from dscoder.kernels.native import cpu_isa

    lines = [f"### cli_decode.py — {date.today()} — {platform.machine()}, {args.threads} threads, "
             f"{args.rounds} alternating rounds, our kernels' variant: {cpu_isa()}", "",
             f"Embedded SmolLM2-135M-Instruct, {quant}. Fresh processes, no warm-up: decode tok/s is the slope "
             f"between a {SHORT}- and a {LONG}-token greedy generation of the same prompt (start-up, load and "
             "prompt cancel). Median (min–max) over the rounds; the ratio is per round. Load average before: "
             f"{'/'.join(f'{x:.2f}' for x in load_before)}, after: {'/'.join(f'{x:.2f}' for x in load_after)}.", "",
             f"| contestant | decode tok/s (slope) | whole {SHORT}-token process s | vs llama-cpp-python |",
             "|---|---:|---:|---:|"]
    for name in slopes:
        vs = spread(ratio, 2) + "×" if name == "dscoder complete" else "1.00×"
        lines.append(f"| {name} | {spread(slopes[name])} | {spread(firsts[name], 2)} | {vs} |")
    command = "python benchmarks/cli_decode.py" + ("" if args.quant == "int4" else f" --quant {args.quant}")
    command += "" if args.rounds == 5 else f" --rounds {args.rounds}"
    lines += ["", "Command:", "", "    " + command, ""]
    table = "\n".join(lines)
    print(table)
    if not args.no_save:
        with RESULTS.open("a") as f:
            f.write("\n" + table)


if __name__ == "__main__":
    main()
