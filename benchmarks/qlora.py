"""QLoRA on a CPU box: LoRA training steps on the real DeepSeek-Coder 6.7B shape over a frozen int8 base.

The point: a full fine-tune of 6.7B parameters with AdamW in fp32 needs 16 bytes a parameter
(weights, gradients, two moments: ~100 GiB before any activation); frozen bf16 weights with
LoRA still need ~12.6 GiB of weights; an int8 base (1 byte a weight + one fp32 scale a row)
with LoRA adapters in fp32 fits a 24 GiB machine with room to spare, because
`QuantLinear`'s differentiable path (`dscoder.model.quant._DequantLinear`) dequantizes each
weight in forward and again in backward instead of keeping a float copy for backward.

What it measures, in one process:
  - build: deepseek-coder-6.7b-base's config (32 layers, hidden 4096, intermediate 11008,
    32 heads, vocab 32256) made on the meta device, every linear layer (head included, int8
    as `--quant int8` plans it) swapped for an empty QuantLinear (`quant.install`), the
    storage allocated once (`to_empty`) and filled in place with random *packed* values
    (`v2lite.fill_packed`: int8 uniform in -127..127, one fp32 scale a row, dequantized std
    0.02), so no fp32 copy of the 6.7B weights ever exists.  The token embedding and the
    RMSNorm gains stay fp32 (the model's dtype; 0.5 GiB, frozen);
  - LoRA (`dscoder.model.lora.apply_lora`) r=16, alpha=32, no dropout, on q,k,v,o,gate,up,down
    of every layer, factors in fp32; everything else frozen;
  - activation checkpointing per block (the training loop's own `_checkpointed`: only each
    block's input is kept; the block is recomputed in backward);
  - AdamW (torch defaults but lr 1e-4, foreach) on the LoRA parameters only;
  - `--steps` steps (default 3) of forward + next-token loss + backward + AdamW on one fixed
    batch of random tokens (default 1 x 256) under CPU bf16 autocast (the matmuls in bf16:
    the int8 weights cast exactly to bf16 with the row scale applied to the product, LoRA
    products in bf16; fp32 LoRA master weights, gradients, AdamW state, norms and loss), or
    `--precision fp32` for everything in fp32.  bf16 is the default because this CPU's bf16
    matmul is ~2.4x its fp32 one (418 vs 173 GFLOP/s, benchmarks/train_step.py): a step in
    fp32 costs ~1.8x as long (`--layers 2`, back to back: 19 s vs 10-12 s a step);
  - weight bytes (`weight_bytes`: all parameters and buffers), trainable parameters, peak RSS
    (ru_maxrss) after building and after the steps, seconds per step and tokens/s, beside the
    computed weight + training-state bytes of the alternatives (fp32 full fine-tune: 16 B a
    parameter; bf16 frozen weights + the same LoRA; int4 + LoRA).

    python benchmarks/qlora.py                          # 3 steps of 1 x 256, bf16, appends to RESULTS.md
    python benchmarks/qlora.py --seq 128 --steps 2
    python benchmarks/qlora.py --layers 2 --no-save     # a quick dry run on 2 of the 32 blocks
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from datetime import date
from pathlib import Path

import torch
from torch import nn

from dscoder.kernels.native import kernels
from dscoder.model.lora import apply_lora
from dscoder.model.presets import get_preset
from dscoder.model.quant import QuantConfig, QuantLinear, install, quant_plan, weight_bytes
from dscoder.model.transformer import RMSNorm, Transformer
from dscoder.train.loop import _checkpointed
from dscoder.train.objective import next_token_loss
from v2lite import STD, current_rss, fill_packed, peak_rss

PRESET = "deepseek-coder-6.7b-base"
RESULTS = Path(__file__).with_name("RESULTS.md")
TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
ADAMW_BYTES = 16  # fp32 weight + gradient + two moments, per trained parameter
GIB = 1024**3


# ---------------------------------------------------------------------------- the model
@torch.no_grad()
def build(cfg, qcfg: QuantConfig, seed: int) -> Transformer:
    """Meta model -> QuantLinear swapped in -> uninitialised CPU storage -> filled in place."""
    with torch.device("meta"):
        model = Transformer(cfg)
    install(model, quant_plan(model, qcfg), qcfg)
    model.to_empty(device="cpu")
    g = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if isinstance(module, QuantLinear):
            fill_packed(module, g)
        elif isinstance(module, nn.Embedding):
            module.weight.normal_(0.0, STD, generator=g)
        elif isinstance(module, RMSNorm):
            module.weight.fill_(1.0)
        elif list(module.parameters(recurse=False)) + list(module.buffers(recurse=False)):
            raise TypeError(f"{type(module).__name__} has tensors this benchmark does not know how to fill")
    return model


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.machine())
    ram = next(int(line.split()[1]) * 1024 for line in Path("/proc/meminfo").read_text().splitlines()
               if line.startswith("MemTotal:"))
    return f"{cpu}, {os.cpu_count()} cores, {ram / GIB:.1f} GiB RAM"


# ---------------------------------------------------------------------------- memory of the alternatives
def alternatives(cfg, model: Transformer, lora_params: int) -> list[tuple[str, float]]:
    """Weight + training-state bytes (no activations) of each way to fine-tune this shape.

    fp32 full fine-tune: every parameter trained by AdamW, 16 B each.  bf16 + LoRA: every base
    parameter at 2 B, the LoRA factors at 16 B.  int8 + LoRA: this model's own weight bytes
    plus 16 B per LoRA parameter.  int4 + LoRA: the same with the block projections at int4
    g32 (0.5 B a weight + two fp16 per 32), the head int8, as `--quant int4` plans it.
    """
    total, _ = cfg.param_counts()
    base = weight_bytes(model) - 4 * lora_params
    int4 = base
    for name, layer in model.named_modules():
        if isinstance(layer, QuantLinear) and not name.startswith("lm_head"):
            n, k = layer.out_features, layer.in_features
            int4 += n * k // 2 + 2 * 2 * n * k // 32 - (n * k + 4 * n)
    return [("fp32 full fine-tune, AdamW (16 B/param)", ADAMW_BYTES * total),
            ("bf16 frozen weights + LoRA", 2 * total + ADAMW_BYTES * lora_params),
            ("int8 frozen weights + LoRA (this run)", base + ADAMW_BYTES * lora_params),
            ("int4 g32 frozen weights + LoRA", int4 + ADAMW_BYTES * lora_params)]


# ---------------------------------------------------------------------------- the run
def train(model: Transformer, batch: int, seq: int, steps: int, lr: float, precision: str, seed: int) -> dict:
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr, foreach=True)
    tokens = torch.randint(0, model.config.vocab_size, (batch, seq), generator=torch.Generator().manual_seed(seed))
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16")
    model.train()
    times, losses = [], []
    for step in range(steps):
        start = time.perf_counter()
        with autocast:
            logits, _ = model(tokens)
        loss = next_token_loss(logits, tokens)
        del logits
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        times.append(time.perf_counter() - start)
        losses.append(loss.item())
        print(f"  step {step + 1}/{steps}: loss {losses[-1]:.4f}, {times[-1]:.1f} s, "
              f"peak RSS {peak_rss() / GIB:.2f} GiB", flush=True)
    if not all(map(torch.isfinite, torch.tensor(losses))):
        raise RuntimeError(f"non-finite loss: {losses}")
    return {"times": times, "losses": losses}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--seq", type=int, default=256)
    parser.add_argument("--steps", type=int, default=3, help="training steps on the same batch (default 3)")
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument("--alpha", type=float, default=32.0)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--precision", choices=("bf16", "fp32"), default="bf16",
                        help="the matmuls under bf16 autocast (default), or everything in fp32")
    parser.add_argument("--layers", type=int, default=None, help="fewer blocks than 32, for a dry run")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-save", action="store_true", help=f"do not append to {RESULTS.name}")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    qcfg = QuantConfig.parse("int8")  # head int8 too: it is frozen like the rest
    cfg = get_preset(PRESET).config
    if args.layers:
        cfg = cfg.replace(num_hidden_layers=args.layers)
    native = kernels() is not None  # compile (or load) the kernels before the clock starts
    rss_start = current_rss()

    start = time.perf_counter()
    model = build(cfg, qcfg, args.seed)
    wrapped = apply_lora(model, args.rank, args.alpha, 0.0, TARGETS, generator=torch.Generator().manual_seed(args.seed))
    for block in model.layers:
        block.forward = _checkpointed(block)
    build_s = time.perf_counter() - start
    rss_built, peak_built = current_rss(), peak_rss()
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total, _ = cfg.param_counts()
    wbytes = weight_bytes(model)

    load_before = os.getloadavg()
    print(f"built in {build_s:.0f} s: {len(wrapped)} LoRA layers, {trainable / 1e6:.1f}M trainable, "
          f"weights {wbytes / GIB:.2f} GiB, RSS {rss_built / GIB:.2f} GiB; training...", flush=True)
    result = train(model, args.batch, args.seq, args.steps, args.lr, args.precision, args.seed)
    load_after = os.getloadavg()
    rss_end, peak_end = current_rss(), peak_rss()
    frozen_grads = [n for n, p in model.named_parameters() if not p.requires_grad and p.grad is not None]
    if frozen_grads:
        raise RuntimeError(f"frozen parameters got gradients: {frozen_grads[:3]}")

    times = result["times"]
    later = times[1:] or times
    per_step = sum(later) / len(later)
    tokens = args.batch * args.seq
    rows = [
        ("parameters (embedding counted)", f"{total / 1e9:.2f}B"),
        ("weights in memory: int8 blocks + head, fp32 embedding/norms, fp32 LoRA (GiB)", f"{wbytes / GIB:.2f}"),
        (f"trainable (LoRA r={args.rank} on {len(TARGETS)} projections x {cfg.num_hidden_layers} layers)",
         f"{trainable / 1e6:.1f}M ({100 * trainable / total:.2f}%)"),
        ("build time (s)", f"{build_s:.0f}"),
        ("RSS before build / after build, current / peak (GiB)",
         f"{rss_start / GIB:.2f} / {rss_built / GIB:.2f} / {peak_built / GIB:.2f}"),
        ("RSS after the steps, current / peak (GiB)", f"{rss_end / GIB:.2f} / {peak_end / GIB:.2f}"),
        ("seconds per step: first / mean of the rest" if len(times) > 1 else "seconds per step",
         f"{times[0]:.1f} / {per_step:.1f}" if len(times) > 1 else f"{per_step:.1f}"),
        (f"tokens/s ({args.batch} x {args.seq} tokens a step)", f"{tokens / per_step:.1f}"),
        ("loss by step (fixed batch)", " -> ".join(f"{x:.4f}" for x in result["losses"])),
        ("load average (1/5/15 min) before / after the steps",
         f"{'/'.join(f'{x:.1f}' for x in load_before)} / {'/'.join(f'{x:.1f}' for x in load_after)}"),
    ]
    for name, value in alternatives(cfg, model, trainable):
        rows.append((f"computed weights + training state: {name} (GiB)", f"{value / GIB:.1f}"))

    shape = f"{PRESET}" + (f" cut to {cfg.num_hidden_layers} of 32 blocks (dry run)" if args.layers else "")
    title = (f"DeepSeek-Coder 6.7B shape ({shape}), random int8 weights (head int8 too; embedding and norms fp32), "
             f"LoRA r={args.rank} alpha={args.alpha:g} on {','.join(TARGETS)}, activation checkpointing per block, "
             f"AdamW (lr {args.lr:g}) on the LoRA parameters only; {args.steps} steps of {args.batch} x {args.seq} "
             f"random tokens, {'fp32' if args.precision == 'fp32' else 'bf16 autocast'} compute; native kernels "
             f"{'on' if native else 'OFF'}. Machine: {machine()}. The computed rows count weights, gradients and "
             f"AdamW state only (no activations, no transients); the measured peak RSS adds those and the "
             f"interpreter (~{rss_start / GIB:.1f} GiB before building).")
    others = max(load_before[0], load_after[0]) - args.threads  # the load average counts this run's own threads
    if others >= 1:
        title += (f" The 1-minute load average came to about {others:.0f} runnable jobs besides this run's "
                  f"{args.threads} threads on {os.cpu_count()} cores: the seconds per step are pessimistic.")
    width = max(len(name) for name, _ in rows)
    print(title)
    for name, value in rows:
        print(f"  {name.ljust(width)}  {value}")

    if not args.no_save:
        command = "python benchmarks/qlora.py " + " ".join(sys.argv[1:])
        section = (f"### qlora.py — {date.today()} — {platform.machine()}, {args.threads} threads, "
                   f"torch {torch.__version__}\n\n`{command.strip()}`\n\n{title}\n\n| metric | value |\n|---|---:|\n"
                   + "\n".join(f"| {name} | {value} |" for name, value in rows) + "\n")
        text = RESULTS.read_text() if RESULTS.exists() else ""
        # one blank line before the heading, whatever the last writer left (a table right above would swallow it)
        lead = "# Benchmark results\n\n" if not text else "\n" * max(0, 2 - (len(text) - len(text.rstrip("\n"))))
        with RESULTS.open("a") as f:
            f.write(lead + section + "\n")


if __name__ == "__main__":
    main()
