"""The real DeepSeek-Coder-V2-Lite shape (15.7B parameters, 2.4B active per token) on a CPU box.

The point: in fp32 this model needs about 63 GB and in bf16 about 31 GB, so on a 24 GiB,
2-core machine it runs only quantized (int4: about 10 GiB; int8: about 16 GiB), and it
is the MLA latent cache (c_KV 512 + one shared RoPE key of 64 values per token per layer)
that keeps long context cheap: at 16K tokens it is a few hundred MiB where per-head K/V
would be several GiB.  The weights are random (no 30 GB download), which is fine for
memory and speed: decode cost is the bytes of weights read per token, not their values.

What it measures, in one process:
  - build: the model is made on the meta device, its linear layers swapped for empty
    QuantLinear modules (`dscoder.model.quant.install`), then materialised in place with random
    *packed* values (int4 nibbles + fp16 scale/min per group of 32, or int8 + fp32 row
    scale), so no 15.7B-float tensor ever exists; one layer is checked against
    `dequantize_weight` (weight statistics, native matvec vs F.linear).  Everything not
    quantized (embedding, norms, MoE router, MLA's kv_b_proj) is fp32, the model's dtype;
  - weights in memory (`weight_bytes`), peak RSS after building and after the run;
  - prefill tok/s of a short random prompt and greedy decode tok/s at batch 1
    (torch.no_grad, 2 threads, argmax of the last logits, KV cache in fp32);
  - active parameters per token and the weight bytes one decode step reads, hence the
    achieved GB/s;
  - the bf16 cache at 4,096 and 16,384 tokens: the latent cache as actually allocated by
    `model.new_cache` vs the expanded per-head K/V it replaces (computed).

    python benchmarks/v2lite.py                    # int4 (group 32, head int8)
    python benchmarks/v2lite.py --quant int8 --tokens 32 --prompt 16
    python benchmarks/v2lite.py --no-save          # print only, do not append to RESULTS.md
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import resource
import time
from datetime import date
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from dscoder.model.transformer import Gate, MoE, RMSNorm, Transformer
from dscoder.kernels.native import kernels
from dscoder.model.presets import get_preset
from dscoder.model.quant import QuantConfig, QuantLinear, dequantize_weight, install, quant_plan, weight_bytes

PRESET = "deepseek-coder-v2-lite-base"
RESULTS = Path(__file__).with_name("RESULTS.md")
STD = 0.02  # standard deviation of every random weight matrix
CACHE_LENGTHS = (4096, 16384)
GIB = 1024**3


# ---------------------------------------------------------------------------- memory
def peak_rss() -> int:
    """Peak resident set size of this process so far, bytes (ru_maxrss is KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def current_rss() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


# ---------------------------------------------------------------------------- random weights
@torch.no_grad()
def fill_packed(layer: QuantLinear, g: torch.Generator) -> None:
    """Random packed weights whose dequantized values have mean ~0 and std ~STD.

    int4: nibbles uniform in 0..15, so w = q*scale + min is uniform over [min, min+15*scale];
    a uniform on [-a, a] has std a/sqrt(3), so a = sqrt(3)*STD, scale = 2a/15, min = -a
    (jittered per group by +-25%, so groups differ as in a real checkpoint).
    int8: q uniform in -127..127 (the symmetric range quantize_weight produces), one fp32
    scale per row with 127*scale/sqrt(3) = STD.
    Generating bytes directly is ~40x cheaper than drawing and quantizing 15.7B floats.
    """
    a = math.sqrt(3) * STD
    layer.qweight.view(torch.uint8).random_(generator=g)  # uint8 view: every byte uniform in 0..255
    if layer.scheme == "int8":
        layer.qweight.clamp_(min=-127)  # -128 never comes out of quantize_weight
        layer.scales.uniform_(0.75, 1.25, generator=g).mul_(a / 127)
    else:
        layer.scales.uniform_(0.75, 1.25, generator=g).mul_(2 * a / 15)
        torch.mul(layer.scales, -7.5, out=layer.mins)
    if layer.bias is not None:
        layer.bias.zero_()


@torch.no_grad()
def build(cfg, qcfg: QuantConfig, seed: int) -> Transformer:
    """Meta model -> QuantLinear swapped in -> uninitialised CPU storage -> filled in place.

    Peak memory is the quantized model itself: `to_empty` allocates each tensor once and
    every fill writes into it.
    """
    with torch.device("meta"):
        model = Transformer(cfg)  # inv_freq is a plain CPU attribute, computed for real here
    install(model, quant_plan(model, qcfg), qcfg)
    model.to_empty(device="cpu")
    g = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if isinstance(module, QuantLinear):
            fill_packed(module, g)
        elif isinstance(module, nn.Linear):  # kv_b_proj: stays fp32 (the absorbed decode reads it as a matrix)
            module.weight.normal_(0.0, STD, generator=g)
            if module.bias is not None:
                module.bias.zero_()
        elif isinstance(module, nn.Embedding):
            module.weight.normal_(0.0, STD, generator=g)
        elif isinstance(module, RMSNorm):
            module.weight.fill_(1.0)
        elif isinstance(module, Gate):
            module.weight.normal_(0.0, STD, generator=g)
        else:
            own = list(module.parameters(recurse=False)) + list(module.buffers(recurse=False))
            if own:
                raise TypeError(f"{type(module).__name__} has tensors this benchmark does not know how to fill")
    return model.eval()


@torch.no_grad()
def check_layer(layer: QuantLinear) -> dict[str, float]:
    """Is the random packed layer a valid one? Dequantize it and compare the native matvec."""
    w = dequantize_weight(layer.packed(), layer.scheme, layer.group_size)
    x = torch.randn(1, layer.in_features, generator=torch.Generator().manual_seed(1))
    ref = F.linear(x, w, None if layer.bias is None else layer.bias.float())
    got = layer(x)
    facts = {"mean": w.mean().item(), "std": w.std().item(), "finite": bool(torch.isfinite(w).all()),
             "matvec_rel_err": ((got - ref).norm() / ref.norm()).item()}
    # int4 meets 8-bit activations (llama.cpp's Q8_1 grid: ~0.5% relative error on random data), int8 16-bit ones
    tolerance = 2e-2 if layer.scheme == "int4" else 1e-4
    if not facts["finite"] or abs(facts["std"] / STD - 1) > 0.3 or facts["matvec_rel_err"] > tolerance:
        raise RuntimeError(f"random packed weights of {layer} are not a valid layer: {facts}")
    return facts


# ---------------------------------------------------------------------------- bytes per token
def decode_bytes_per_token(model: Transformer) -> int:
    """Bytes of weights one batch-1 decode step reads.

    Every layer's attention is read whole (q_proj, kv_a_proj_with_mqa, o_proj quantized;
    kv_b_proj in fp32, which the absorbed decode path reads entirely to fold W_UK into the
    query and apply W_UV), and its two norms.  The first (dense) layer reads its whole MLP;
    each MoE layer reads its router, its shared experts and num_experts_per_tok routed
    experts (all experts have the same size, so top-k x one expert).  Then the final norm,
    the output head (int8) and one row of the embedding.  The KV cache read (576 values x
    layers x context) is left out: at under 100 positions it is ~0.1% of this.
    """
    cfg, total = model.config, 0
    for layer in model.layers:
        total += weight_bytes(layer.self_attn) + weight_bytes(layer.input_layernorm)
        total += weight_bytes(layer.post_attention_layernorm)
        if isinstance(layer.mlp, MoE):
            shared = weight_bytes(layer.mlp.shared_experts) if layer.mlp.shared_experts is not None else 0
            routed = cfg.num_experts_per_tok * weight_bytes(layer.mlp.experts[0])
            total += weight_bytes(layer.mlp.gate) + shared + routed
        else:
            total += weight_bytes(layer.mlp)
    emb = model.embed_tokens.weight
    return total + weight_bytes(model.norm) + weight_bytes(model.lm_head) + emb.shape[1] * emb.element_size()


# ---------------------------------------------------------------------------- caches
def cache_memory(model: Transformer, lengths=CACHE_LENGTHS) -> list[dict]:
    """bf16 latent cache as allocated vs the expanded per-head K/V (computed), per context length."""
    cfg, bf16 = model.config, torch.tensor([], dtype=torch.bfloat16).element_size()
    # Expanded MLA cache: every head's key (nope 128 + rope 64) and value (128), every layer.
    full_per_token = cfg.num_hidden_layers * cfg.num_attention_heads * (cfg.qk_head_dim + cfg.v_head_dim) * bf16
    assert full_per_token == cfg.kv_values_per_token(latent=False) * bf16
    rows = []
    for length in lengths:
        caches = model.new_cache(1, length, torch.bfloat16)
        latent = sum(b.numel() * b.element_size() for c in caches for b in c.buffers)
        per_token = sum(c.nbytes_per_token for c in caches)
        del caches
        assert latent == per_token * length
        rows.append({"tokens": length, "latent": latent, "latent_per_token": per_token,
                     "full": full_per_token * length, "full_per_token": full_per_token})
    return rows


# ---------------------------------------------------------------------------- the run
@torch.no_grad()
def run(model: Transformer, prompt_len: int, new_tokens: int, seed: int) -> dict:
    vocab = model.config.vocab_size
    prompt = torch.randint(0, vocab, (1, prompt_len), generator=torch.Generator().manual_seed(seed))
    # Warm-up (untimed): the native kernels' first call, allocator growth, both attention paths.
    scratch = model.new_cache(1, 4)
    model(prompt[:, :2], 0, scratch)
    model(prompt[:, 2:3], 2, scratch)
    del scratch

    cache = model.new_cache(1, prompt_len + new_tokens)
    start = time.perf_counter()
    logits, _ = model(prompt, 0, cache)
    prefill_s = time.perf_counter() - start
    tokens, steps = [], []
    for i in range(new_tokens):
        nxt = logits[:, -1].argmax(-1, keepdim=True)
        tokens.append(int(nxt))
        begin = time.perf_counter()
        logits, _ = model(nxt, prompt_len + i, cache)
        steps.append(time.perf_counter() - begin)
    if not torch.isfinite(logits).all():
        raise RuntimeError("non-finite logits after decoding: the random model diverged")
    decode_s = sum(steps)
    return {"prefill_s": prefill_s, "prefill_tok_s": prompt_len / prefill_s, "decode_s": decode_s,
            "decode_tok_s": new_tokens / decode_s, "step_ms_median": 1000 * sorted(steps)[len(steps) // 2],
            "step_ms_min": 1000 * min(steps), "step_ms_max": 1000 * max(steps),
            "distinct_tokens": len(set(tokens))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quant", default="int4", help="int4 (group 32) or int8; head int8")
    parser.add_argument("--tokens", type=int, default=32, help="greedy decode steps (default 32)")
    parser.add_argument("--prompt", type=int, default=16, help="prompt length in tokens (default 16)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-save", action="store_true", help=f"do not append to {RESULTS.name}")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    qcfg = QuantConfig.parse(args.quant)
    cfg = get_preset(PRESET).config
    total_params, active_params = cfg.param_counts()
    native = kernels() is not None  # compile (or load) the kernels before the clock starts

    start = time.perf_counter()
    model = build(cfg, qcfg, args.seed)
    build_s = time.perf_counter() - start
    rss_built, peak_built = current_rss(), peak_rss()
    probe_name = "layers.1.mlp.experts.0.gate_proj"
    probe = check_layer(model.get_submodule(probe_name))

    wbytes = weight_bytes(model)
    step_bytes = decode_bytes_per_token(model)
    load_before = os.getloadavg()[0]
    result = run(model, args.prompt, args.tokens, args.seed)
    load_after = os.getloadavg()[0]
    caches = cache_memory(model)
    rss_end, peak_end = current_rss(), peak_rss()

    scheme = (f"int4 g{qcfg.group_size}" if qcfg.scheme == "int4" else "int8") + f", head {qcfg.head}"
    rows = [
        ("parameters total / active per token (embedding counted)",
         f"{total_params / 1e9:.2f}B / {active_params / 1e9:.2f}B"),
        ("weights in memory (GiB)", f"{wbytes / GIB:.2f}"),
        ("build time (s)", f"{build_s:.1f}"),
        ("RSS after build, current / peak (GiB)", f"{rss_built / GIB:.2f} / {peak_built / GIB:.2f}"),
        ("RSS after run, current / peak (GiB)", f"{rss_end / GIB:.2f} / {peak_end / GIB:.2f}"),
        (f"prefill tok/s ({args.prompt} tokens)", f"{result['prefill_tok_s']:.1f}"),
        (f"decode tok/s ({args.tokens} tokens)", f"{result['decode_tok_s']:.2f}"),
        ("decode step, min / median / max (ms)",
         f"{result['step_ms_min']:.0f} / {result['step_ms_median']:.0f} / {result['step_ms_max']:.0f}"),
        ("1-min load average before / after the timed run", f"{load_before:.2f} / {load_after:.2f}"),
        ("weights read per decode step (GiB)", f"{step_bytes / GIB:.2f}"),
        ("achieved weight bandwidth (GB/s)", f"{step_bytes * result['decode_tok_s'] / 1e9:.1f}"),
    ]
    for c in caches:
        rows.append((f"bf16 cache @ {c['tokens']:,} tokens: latent / full K/V (MiB)",
                     f"{c['latent'] / 2**20:,.0f} / {c['full'] / 2**20:,.0f} ({c['full'] / c['latent']:.1f}x)"))
    c = caches[0]
    rows.append(("bf16 cache per token: latent / full K/V (KiB)",
                 f"{c['latent_per_token'] / 1024:.1f} / {c['full_per_token'] / 1024:.1f}"))

    title = (f"DeepSeek-Coder-V2-Lite shape ({PRESET}), random weights, {scheme}; other tensors fp32; "
             f"batch 1, prompt {args.prompt} tokens, {args.tokens} greedy decode steps, fp32 activations and "
             f"decode cache; native kernels {'on' if native else 'OFF'}.")
    width = max(len(name) for name, _ in rows)
    print(title)
    print(f"probe {probe_name}: dequantized mean {probe['mean']:+.5f}, std {probe['std']:.5f} "
          f"(target {STD}), native matvec vs F.linear rel. err {probe['matvec_rel_err']:.1e}; "
          f"{result['distinct_tokens']} distinct tokens decoded")
    for name, value in rows:
        print(f"  {name.ljust(width)}  {value}")

    if not args.no_save:
        section = (f"### v2lite.py — {date.today()} — {platform.machine()}, {args.threads} threads, "
                   f"torch {torch.__version__}\n\n{title}\n\n| metric | value |\n|---|---:|\n"
                   + "\n".join(f"| {name} | {value} |" for name, value in rows) + "\n")
        with RESULTS.open("a") as f:
            f.write(("" if RESULTS.exists() and RESULTS.stat().st_size else "# Benchmark results\n\n")
                    + section + "\n")


if __name__ == "__main__":
    main()
