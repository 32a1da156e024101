"""How long it takes to load the embedded model from its GGUF file.

Every `dscoder complete`, every server start and many tests load the default model, the
embedded SmolLM2-135M-Instruct Q4_1 GGUF (272 tensors, 135M parameters). Measured here:

* `read_gguf`: the HF config and the dequantized state dict (float32);
* `load_gguf`: that plus building the `Transformer` through the checkpoint checks, what
  `dscoder.hub.load_model()` does for the default model.

torch, numpy and gguf are imported before the clock starts (every caller has them loaded
already). Each case runs several times in this process (the file is in the page cache after
the first run, as it is on any second start); the table gives the median and the range.

    python benchmarks/model_load.py                                   # appends the table to RESULTS.md
    PYTHONPATH=/tmp/before python benchmarks/model_load.py --no-save --label before
"""

from __future__ import annotations

import argparse
import os
import platform
from datetime import date
from pathlib import Path

from tokenizer_load import record, row, smollm2_path, timed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--label", default="", help="Names the code measured in the heading (e.g. before, after).")
    parser.add_argument("--note", default="", help="A sentence added under the heading (e.g. how busy the machine was).")
    parser.add_argument("--no-save", action="store_true", help="Print the table without appending it to RESULTS.md.")
    args = parser.parse_args()

    import gguf  # noqa: F401  (imported up front: see the docstring)
    import numpy  # noqa: F401
    import torch  # noqa: F401

    import dscoder
    from dscoder.formats.gguf import read_gguf
    from dscoder.formats.hf import load_gguf

    path = smollm2_path()
    source = Path(dscoder.__file__).resolve().parents[1]
    label = f" — {args.label}" if args.label else ""
    lines = [f"### model_load.py{label} — {date.today()} — {platform.machine()}, {os.cpu_count()} cores, "
             f"Python {platform.python_version()}", "",
             f"dscoder from `{source}`; {path.name}; {args.runs} runs each, the first included (warm page cache "
             f"from the second on).{' ' + args.note if args.note else ''}", "",
             "| what | runs | median ms | min-max ms | notes |", "|---|---:|---:|---:|---|"]
    for name, fn in (("`read_gguf` (config + float32 state dict)", lambda: read_gguf(path)),
                     ("`load_gguf` (the Transformer, float32)", lambda: load_gguf(path))):
        lines.append(row(name, timed(fn, args.runs)))
        print(lines[-1], flush=True)
    record(lines, "model_load.py", args.runs, {"label": args.label, "note": args.note}, args.no_save)


if __name__ == "__main__":
    main()
