"""Ours vs transformers on the same weights, same machine, same run: load, prefill, decode, memory.

Two models: the embedded SmolLM2-135M-Instruct GGUF (V1 code path, real weights) and a
random mid-sized DeepSeek-V2-shaped MoE (V2 code path).  Each side runs in its own
subprocess so peak RSS is its own.  The decode loop is the plainest one both sides share
(fp32, batch 1, greedy, one token per step with a KV cache); the inference engine issue
makes ours fast, this records where the foundation stands.

    python benchmarks/bench_model.py            # prints the table, appends it to benchmarks/RESULTS.md
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import torch

PROMPT_LEN, DECODE_STEPS, REPEATS = 256, 64, 3
RESULTS = Path(__file__).with_name("RESULTS.md")


def mid_v2_config():
    from dscoder.model.presets import get_preset

    return get_preset("deepseek-coder-v2-lite").config.replace(
        hidden_size=512, intermediate_size=1536, num_hidden_layers=4, num_attention_heads=8, num_key_value_heads=8,
        kv_lora_rank=128, qk_nope_head_dim=64, qk_rope_head_dim=32, v_head_dim=64, moe_intermediate_size=256,
        vocab_size=32000)


def prepare(workdir: Path) -> dict[str, tuple[str, dict]]:
    """Model name -> (path, transformers from_pretrained kwargs)."""
    from dscoder.formats.hf import save_hf_dir
    from dscoder.hub import default_model_path
    from dscoder.model.transformer import Transformer

    smol = default_model_path()
    torch.manual_seed(0)
    v2 = Transformer(mid_v2_config()).init_weights()
    save_hf_dir(v2, workdir / "mid-v2")
    return {"SmolLM2-135M (Q4_1 GGUF, fp32)": (str(smol.parent), {"gguf_file": smol.name}),
            "mid DeepSeek-V2 MoE (64 experts, random)": (str(workdir / "mid-v2"), {})}


def timed(fn, repeats: int = REPEATS) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


@torch.no_grad()
def run_side(side: str, path: str, kwargs: dict) -> dict:
    torch.set_num_threads(max(1, torch.get_num_threads()))
    start = time.perf_counter()
    if side == "ours":
        from dscoder.hub import load_model

        model = load_model(Path(path) / kwargs["gguf_file"] if "gguf_file" in kwargs else path)
    else:
        from transformers import AutoModelForCausalLM

        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, **kwargs).eval()
    load_s = time.perf_counter() - start
    vocab = model.config.vocab_size
    prompt = torch.randint(0, vocab, (1, PROMPT_LEN), generator=torch.Generator().manual_seed(0))

    def forward(ids, pos, cache):
        if side == "ours":
            return model(ids, pos, cache)[0], cache
        out = model(ids, past_key_values=cache, use_cache=True)
        return out.logits, out.past_key_values

    def new_cache():
        if side == "ours":
            return model.new_cache(1, PROMPT_LEN + DECODE_STEPS)
        from transformers import DynamicCache
        return DynamicCache(config=model.config)

    prefill_s = timed(lambda: forward(prompt, 0, new_cache()))

    def decode():
        logits, cache = forward(prompt, 0, new_cache())
        tokens = []
        begin = time.perf_counter()
        for i in range(DECODE_STEPS):
            nxt = logits[:, -1].argmax(-1, keepdim=True)
            tokens.append(int(nxt))
            logits, cache = forward(nxt, PROMPT_LEN + i, cache)
        decode.seconds = time.perf_counter() - begin
        decode.tokens = tokens

    best = float("inf")
    for _ in range(REPEATS):
        decode()
        best = min(best, decode.seconds)
    return {"load_s": load_s, "prefill_tok_s": PROMPT_LEN / prefill_s, "decode_tok_s": DECODE_STEPS / best,
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "tokens": decode.tokens}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--side", choices=["ours", "transformers"])
    parser.add_argument("--path")
    parser.add_argument("--kwargs", default="{}")
    args = parser.parse_args()
    if args.side:  # child process: one side, one model
        print(json.dumps(run_side(args.side, args.path, json.loads(args.kwargs))))
        return
    import transformers

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, (path, kwargs) in prepare(Path(tmp)).items():
            result = {}
            for side in ("ours", "transformers"):
                out = subprocess.run([sys.executable, __file__, "--side", side, "--path", path,
                                      "--kwargs", json.dumps(kwargs)], capture_output=True, text=True, check=True)
                result[side] = json.loads(out.stdout.strip().splitlines()[-1])
            same = result["ours"].pop("tokens") == result["transformers"].pop("tokens")
            rows.append((name, result, same))
    header = (f"### bench_model.py — {date.today()} — {platform.machine()}, {torch.get_num_threads()} threads, "
              f"torch {torch.__version__}, transformers {transformers.__version__}\n\n"
              f"fp32, batch 1, prompt {PROMPT_LEN} tokens, {DECODE_STEPS} greedy decode steps, best of {REPEATS}.\n\n"
              "| model | metric | ours | transformers | ours / transformers |\n|---|---|---:|---:|---:|\n")
    lines = []
    for name, result, same in rows:
        for metric, label, fmt in (("load_s", "load (s)", "{:.2f}"), ("prefill_tok_s", "prefill tok/s", "{:.0f}"),
                                   ("decode_tok_s", "decode tok/s", "{:.1f}"),
                                   ("peak_rss_mib", "peak RSS (MiB)", "{:.0f}")):
            ours, theirs = result["ours"][metric], result["transformers"][metric]
            lines.append(f"| {name} | {label} | {fmt.format(ours)} | {fmt.format(theirs)} | {ours / theirs:.2f} |")
        lines.append(f"| {name} | same greedy tokens | {'yes' if same else 'NO'} | | |")
    table = header + "\n".join(lines) + "\n"
    print(table)
    with RESULTS.open("a") as f:
        f.write(("" if RESULTS.exists() and RESULTS.stat().st_size else "# Benchmark results\n\n") + table + "\n")


if __name__ == "__main__":
    main()
