"""Where one decode step of the embedded model spends its time: kernels, Python, memory traffic.

For one stream at a ~600-token context: the whole step with the fused layer loop
(model/fused.py) and layer by layer (DSCODER_FUSED=0), then every native kernel the step
calls, timed alone in a loop on the model's own weights and shapes (hot in cache, so these
are lower bounds), summed per kind.  The step minus the kernels is what Python, PyTorch's
dispatcher and the calls cost, plus, for a model larger than the caches (fp32), the wait
for memory that a kernel timed alone on its own hot matrix does not see.  Bytes: what the step reads (weights once, the KV cache of
every layer), and the rate that makes at the measured step time.  Each step time is the
median of --steps steps; the report gives the load average.  Writes a markdown table
(stdout; appended to docs-ready form with --save to RESULTS.md).

    python benchmarks/profile_decode.py --quant int4
    python benchmarks/profile_decode.py --quant none --save
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from datetime import date
from pathlib import Path

import torch
from decode import decode_bytes_ours, gguf_path  # benchmarks/decode.py: the same bytes, the same file

RESULTS = Path(__file__).with_name("RESULTS.md")
CONTEXT = 600


def median_time(fn, repeat: int) -> float:
    for _ in range(max(3, repeat // 10)):
        fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


@torch.inference_mode()
def step_time(net, fused: bool, steps: int) -> float:
    os.environ["DSCODER_FUSED"] = "1" if fused else "0"
    cache = net.new_cache(1, CONTEXT + steps + 64)
    net(torch.arange(100, 100 + CONTEXT)[None], 0, cache, logits_to_keep=1)
    position = [CONTEXT]

    def one():
        net(torch.tensor([[5]]), position[0], cache)
        position[0] += 1

    return median_time(one, steps)


@torch.inference_mode()
def kernel_times(net, repeat: int) -> dict[str, tuple[int, float]]:
    """(calls per step, seconds per step) per kind of kernel, each called alone through ctypes
    (no Python wrapper) on the model's own weights and shapes; q/k/v and gate/up one call each, as
    the layer-by-layer path makes them (the fused step groups them, a little cheaper)."""
    from dscoder.kernels import native
    from dscoder.model.quant import QuantLinear

    lib = native.kernels()
    cfg = net.config
    out: dict[str, tuple[int, float]] = {}

    def add(kind, seconds, calls=1):
        have = out.get(kind, (0, 0.0))
        out[kind] = (have[0] + calls, have[1] + seconds * calls)

    for name, module in net.named_modules():
        head = " (head)" if name == "lm_head" else ""
        if isinstance(module, QuantLinear):
            x, y = torch.randn(module.in_features), torch.empty(module.out_features)
            module(x[None])
            call = module.__dict__["_bound"][1]
            add(f"matmul {module.scheme}{head}", median_time(lambda: call(x.data_ptr(), 1, y.data_ptr()), repeat))
        elif isinstance(module, torch.nn.Linear):
            w = module.weight.detach()
            x, y = torch.randn(w.shape[1]), torch.empty(w.shape[0])
            add(f"matmul fp32{head}", median_time(lambda: lib.dscoder_f32_matmul(
                x.data_ptr(), 1, w.shape[1], w.data_ptr(), w.shape[0], None, y.data_ptr()), repeat))
    h, d, kv, layers = cfg.num_attention_heads, cfg.attn_head_dim, cfg.num_key_value_heads, cfg.num_hidden_layers
    k, q, o = torch.randn(1, CONTEXT, kv, d), torch.randn((h + kv) * d), torch.empty((h + kv) * d)
    add("attention (fp32 cache)", median_time(lambda: lib.dscoder_attend(
        q.data_ptr(), 1, 1, h, d, k.data_ptr(), k.data_ptr(), kv, k.stride(0), k.stride(1), k.stride(2),
        CONTEXT - 1, d ** -0.5, o.data_ptr()), repeat), layers)
    x, w, y = torch.randn(cfg.hidden_size), torch.ones(cfg.hidden_size), torch.empty(cfg.hidden_size)
    add("rms_norm", median_time(lambda: lib.dscoder_rms_norm(x.data_ptr(), 1, x.numel(), w.data_ptr(), 1e-5,
                                                             y.data_ptr()), repeat), 2 * layers + 1)
    cos = torch.randn(d)
    add("rope (q and k)", median_time(lambda: lib.dscoder_rope(q.data_ptr(), 1, 1, h + kv, d, cos.data_ptr(),
                                                               cos.data_ptr(), 0, o.data_ptr()), repeat), layers)
    g = torch.randn(cfg.intermediate_size)
    add("silu*up", median_time(lambda: lib.dscoder_silu_mul(g.data_ptr(), g.data_ptr(), g.numel(), g.data_ptr()),
                               repeat), layers)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quant", default="int4", choices=["int4", "int8", "none"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--save", action="store_true", help="append the table to RESULTS.md")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from dscoder.hub import load_model

    net = load_model(gguf_path(), quant=None if args.quant == "none" else args.quant)
    load_before = os.getloadavg()
    fused = step_time(net, True, args.steps)
    unfused = step_time(net, False, args.steps)
    kernels = kernel_times(net, 200)
    load_after = os.getloadavg()
    total_kernels = sum(seconds for _, seconds in kernels.values())
    cfg = net.config
    kv_bytes = 2 * cfg.num_hidden_layers * CONTEXT * cfg.num_key_value_heads * cfg.attn_head_dim * 4
    weights = decode_bytes_ours(net)
    lines = [f"### profile_decode.py — {date.today()} — {platform.machine()}, {args.threads} threads, "
             f"{'fp32' if args.quant == 'none' else args.quant}", "",
             f"One decode step of SmolLM2-135M at a {CONTEXT}-token context; step times are medians of "
             f"{args.steps} steps. Load average before: {'/'.join(f'{x:.2f}' for x in load_before)}, after: "
             f"{'/'.join(f'{x:.2f}' for x in load_after)}. Kernels timed alone, hot in cache (lower bounds).", "",
             "| part | calls/step | ms/step | share of the fused step |", "|---|---:|---:|---:|"]
    for kind, (calls, seconds) in sorted(kernels.items(), key=lambda kv: -kv[1][1]):
        lines.append(f"| {kind} | {calls} | {seconds * 1e3:.3f} | {seconds / fused:.0%} |")
    lines += [f"| all kernels | | {total_kernels * 1e3:.3f} | {total_kernels / fused:.0%} |",
              f"| rest: memory traffic beyond the cache, Python, calls (fused step − kernels hot) | | {(fused - total_kernels) * 1e3:.3f} | "
              f"{(fused - total_kernels) / fused:.0%} |",
              f"| **fused step** (model/fused.py) | 1 native call | **{fused * 1e3:.3f}** | 100% |",
              f"| layer-by-layer step (DSCODER_FUSED=0) | | {unfused * 1e3:.3f} | {unfused / fused:.0%} |", "",
              f"Bytes read per step: weights {weights / 1e6:.1f} MB + KV cache {kv_bytes / 1e6:.1f} MB; at the fused "
              f"step's time that is {(weights + kv_bytes) / fused / 1e9:.1f} GB/s.", "",
              "Command:", "", f"    python benchmarks/profile_decode.py --quant {args.quant}", ""]
    table = "\n".join(lines)
    print(table)
    if args.save:
        with RESULTS.open("a") as f:
            f.write("\n" + table)


if __name__ == "__main__":
    main()
