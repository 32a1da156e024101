"""Prefill and decode speed on a device, ours beside transformers on the same weights.

Written for a GPU (`benchmarks/gpu_check.sh` runs it with `--device cuda --dtype bf16`), and
runnable on the CPU to check it (`--device cpu`, `--layers 2` to shrink the big model). Two models:

* the embedded SmolLM2-135M-Instruct (Q4_1 GGUF, dequantized to the dtype): real weights;
* DeepSeek-Coder-1.3B's shape (24 layers, hidden 2048, 32,256 tokens) with random weights
  (`Transformer.init_weights`): what a 1.3B model costs, with no download.

Both sides hold the same tensors (transformers' model is built from our config and takes our
state dict), batch 1: prefill = one forward of a `--prompt`-token prompt (tok/s = prompt tokens /
seconds); decode = `--new` greedy tokens one at a time with a KV cache (tok/s = tokens / seconds,
the prefill excluded). Runs alternate ours / transformers, `--repeat` times after one untimed
warm-up each; the table gives the median and the range, and how many of the greedy tokens the two
sides agree on (bf16 rounds differently in each, so a long run may part).

    python benchmarks/device_speed.py --device cuda --dtype bf16            # appends to RESULTS.md
    python benchmarks/device_speed.py --device cpu --layers 2 --no-save     # a check on the CPU
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from datetime import date
from pathlib import Path

import torch

RESULTS = Path(__file__).with_name("RESULTS.md")
MODELS = ("embedded", "deepseek-coder-1.3b")


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def ours_model(name: str, device: torch.device, dtype: torch.dtype, layers: int | None):
    from dscoder.hub import load_model
    from dscoder.model.presets import get_preset
    from dscoder.model.transformer import Transformer

    if name == "embedded":
        return load_model(None, dtype=dtype, device=device)
    cfg = get_preset("deepseek-coder-1.3b-base").config
    if layers:
        cfg = cfg.replace(num_hidden_layers=layers)
    torch.manual_seed(0)
    with torch.device(device):
        net = Transformer(cfg).to(dtype).init_weights()
    return net.eval()


def transformers_model(ours, device: torch.device, dtype: torch.dtype):
    """transformers' own model of `ours`'s config, holding `ours`'s tensors."""
    from transformers import AutoConfig, AutoModelForCausalLM

    from dscoder.formats.hf import hf_key

    hf = ours.config.to_hf()
    config = AutoConfig.for_model(**{k: v for k, v in hf.items() if k != "architectures"})
    with torch.device(device):
        ref = AutoModelForCausalLM.from_config(config, dtype=dtype)
    state = {hf_key(k): v for k, v in ours.state_dict().items()}
    missing, unexpected = ref.load_state_dict(state, strict=False)
    assert not unexpected and set(missing) <= {"lm_head.weight"}, (missing, unexpected)
    if config.tie_word_embeddings:
        ref.tie_weights()
    return ref.eval()


@torch.no_grad()
def run_ours(net, prompt: torch.Tensor, new: int, device: torch.device) -> tuple[float, float, list[int]]:
    """(prefill seconds, decode seconds, greedy tokens)."""
    cache = net.new_cache(1, prompt.shape[1] + new + 1)
    sync(device)
    start = time.perf_counter()
    logits, _ = net(prompt, 0, cache, logits_to_keep=1)
    token = int(logits[0, -1].argmax())
    sync(device)
    prefill = time.perf_counter() - start
    tokens, pos = [token], prompt.shape[1]
    start = time.perf_counter()
    for _ in range(new - 1):
        logits, _ = net(torch.tensor([[tokens[-1]]], device=device), pos, cache)
        tokens.append(int(logits[0, -1].argmax()))  # .item() syncs: each step waits for the last, as in serving
        pos += 1
    sync(device)
    return prefill, time.perf_counter() - start, tokens


@torch.no_grad()
def run_transformers(ref, prompt: torch.Tensor, new: int, device: torch.device) -> tuple[float, float, list[int]]:
    from transformers import DynamicCache

    cache = DynamicCache()
    sync(device)
    start = time.perf_counter()
    out = ref(prompt, past_key_values=cache, use_cache=True, logits_to_keep=1)
    token = int(out.logits[0, -1].argmax())
    sync(device)
    prefill = time.perf_counter() - start
    tokens = [token]
    start = time.perf_counter()
    for _ in range(new - 1):
        out = ref(torch.tensor([[tokens[-1]]], device=device), past_key_values=out.past_key_values, use_cache=True)
        tokens.append(int(out.logits[0, -1].argmax()))
    sync(device)
    return prefill, time.perf_counter() - start, tokens


def span(values: list[float], fmt: str = ".0f") -> str:
    return f"{statistics.median(values):{fmt}} ({min(values):{fmt}}-{max(values):{fmt}})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--dtype", default="auto", choices=("auto", "bf16", "fp16", "fp32"))
    parser.add_argument("--models", nargs="*", choices=MODELS, default=list(MODELS))
    parser.add_argument("--prompt", type=int, default=512, help="prompt tokens")
    parser.add_argument("--new", type=int, default=128, help="greedy tokens decoded")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per side (after one untimed warm-up)")
    parser.add_argument("--layers", type=int, help="layers of the 1.3B shape (default: its 24; fewer for a CPU check)")
    parser.add_argument("--no-save", action="store_true", help="print the table without appending to RESULTS.md")
    args = parser.parse_args()

    import transformers

    from dscoder.hub import place

    device, dtype = place(args.device, args.dtype)
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    rows = []
    for name in args.models:
        ours = ours_model(name, device, dtype, args.layers)
        ref = transformers_model(ours, device, dtype)
        vocab = ours.config.vocab_size
        prompt = torch.randint(100, vocab, (1, args.prompt), generator=torch.Generator().manual_seed(1)).to(device)
        runs: dict[str, list[tuple[float, float, list[int]]]] = {"ours": [], "transformers": []}
        for side, fn, model in (("ours", run_ours, ours), ("transformers", run_transformers, ref)):
            fn(model, prompt, min(args.new, 8), device)  # warm-up: kernels, allocator
        for _ in range(args.repeat):
            runs["ours"].append(run_ours(ours, prompt, args.new, device))
            runs["transformers"].append(run_transformers(ref, prompt, args.new, device))
        a, b = runs["ours"][-1][2], runs["transformers"][-1][2]
        agree = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), len(a))
        label = "SmolLM2-135M-Instruct (embedded GGUF)" if name == "embedded" else \
            f"DeepSeek-Coder-1.3B shape, random ({ours.config.num_hidden_layers} layers)"
        for side in ("ours", "transformers"):
            prefill = [args.prompt / r[0] for r in runs[side]]
            decode = [(args.new - 1) / r[1] for r in runs[side]]
            rows.append(f"| {label} | {side} | {span(prefill)} | {span(decode, '.1f')} | "
                        f"{agree}/{len(a)} |")
            print(rows[-1], flush=True)
        del ours, ref
        if device.type == "cuda":
            torch.cuda.empty_cache()
    lines = [f"### device_speed.py — {date.today()} — {where}, torch {torch.__version__}, transformers "
             f"{transformers.__version__}", "",
             f"{str(dtype).removeprefix('torch.')} on {device}, batch 1, prompt {args.prompt} tokens, {args.new} greedy "
             f"tokens; {args.repeat} alternating runs per side after a warm-up; median (min-max). Same weights both "
             f"sides; 'greedy agree' = leading tokens the two sides' last runs share. {platform.machine()}.", "",
             "| model | side | prefill tok/s | decode tok/s | greedy agree |", "|---|---|---:|---:|---:|", *rows, "",
             "Command:", "", "    python benchmarks/device_speed.py " + " ".join(
                 f"--{k.replace('_', '-')} {v}" for k, v in (("device", args.device), ("dtype", args.dtype),
                                                            ("prompt", args.prompt), ("new", args.new),
                                                            ("repeat", args.repeat), ("layers", args.layers))
                 if v is not None), ""]
    text = "\n".join(lines)
    print(text)
    if not args.no_save:
        with RESULTS.open("a", encoding="utf-8") as f:
            f.write("\n" + text)


if __name__ == "__main__":
    main()
