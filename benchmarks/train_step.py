"""Training throughput and memory: ours vs transformers, one AdamW step at a time.

One training step is forward + cross-entropy loss + backward + AdamW step (zero_grad(set_to_none)
before each) on a batch of random tokens:
  - ours: `dscoder.model.transformer.Transformer`, loss = the trainer's own
    `dscoder.train.objective.next_token_loss` + the MoE balance loss the forward returns (zero for V1);
  - the peer: transformers' `LlamaForCausalLM` / `DeepseekV2ForCausalLM` (its default sdpa
    attention and grouped_mm experts) on the same weights, `model(input_ids, labels=input_ids,
    use_cache=False).loss` (transformers' DeepseekV2 adds no balance loss).
Both start from one checkpoint written once per row by `save_hf_dir` (ours: `load_hf_dir`,
the peer: `from_pretrained`), so they route every token to the same experts.

Rows: dense V1 (Llama) tiny and ~130M, MoE V2 (MLA, 64 routed experts, 6 active, 2 shared)
tiny and ~130M, all with DeepSeek-Coder's 32,256-token vocabulary; each in fp32 and under
`torch.autocast(dtype=bfloat16)` (fp32 master weights, both contestants alike).

Each contestant runs in its own process (kept alive for its row, so it is built and warmed
once): an untimed warm-up step, then `--repeat` timed runs of `--steps` steps, ours and the
peer in turn (who goes first alternates), so drift on a shared machine hits both alike; the
table gives the median tokens/s and its range, and the ratio ours/peer pair by pair.  Peak
memory is the process's own: on CPU its peak RSS (ru_maxrss) minus its RSS before the model
was loaded (so weights, gradients, AdamW state and activations; not the imports), on CUDA
`torch.cuda.max_memory_allocated`.  MFU = FLOPs per token (6 x active matmul parameters
plus causal attention, `dscoder.train.metrics.flops_per_token`) x tokens/s / the peak FLOP/s
of one large matmul measured here in the row's precision (fp32, or bf16 for the autocast rows).

    python benchmarks/train_step.py                    # all rows, fp32 + bf16, appends to RESULTS.md
    python benchmarks/train_step.py --rows v2-tiny --precision bf16 --repeat 5 --no-save
    python benchmarks/train_step.py --device cuda --batch 8 --seq 1024

Defaults: batch 4 x 512 tokens, 5 timed runs of 2 steps for the tiny rows and 3 runs of 1 step
for the ~130M rows (`--repeat`/`--steps` set both), about 10 minutes on a quiet 2-core CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import torch
from benchlib import WorkerProcess, cpu_name, peak_rss_mib, rss_mib, span  # benchmarks/ is the script's directory

RESULTS = Path(__file__).with_name("RESULTS.md")
CONTESTANTS = ("ours", "transformers")
SEED = 0


def row_configs() -> dict:
    from dscoder.model.presets import get_preset

    v1 = get_preset("deepseek-coder-1.3b-base").config  # vocab 32256, linear RoPE x4
    v2 = get_preset("deepseek-coder-v2-lite-base").config  # MLA, 64 experts, top-6, 2 shared, YaRN
    v2 = v2.replace(vocab_size=32256, bos_token_id=32013, eos_token_id=32014)
    return {
        "v1-tiny": v1.replace(hidden_size=256, intermediate_size=688, num_hidden_layers=4, num_attention_heads=4,
                              num_key_value_heads=4),
        "v1-100m": v1.replace(hidden_size=768, intermediate_size=2048, num_hidden_layers=12,
                              num_attention_heads=12, num_key_value_heads=12),
        "v2-tiny": v2.replace(hidden_size=256, intermediate_size=688, num_hidden_layers=4, num_attention_heads=4,
                              num_key_value_heads=4, kv_lora_rank=64, qk_nope_head_dim=32, qk_rope_head_dim=16,
                              v_head_dim=32, n_routed_experts=16, num_experts_per_tok=4, moe_intermediate_size=64),
        "v2-100m": v2.replace(hidden_size=512, intermediate_size=1408, num_hidden_layers=6, num_attention_heads=8,
                              num_key_value_heads=8, kv_lora_rank=128, qk_nope_head_dim=64, qk_rope_head_dim=32,
                              v_head_dim=64, moe_intermediate_size=192),
    }


ROWS = ("v1-tiny", "v1-100m", "v2-tiny", "v2-100m")
BIG = {"v1-100m", "v2-100m"}


# ---------------------------------------------------------------------------- memory, FLOP/s
def peak_flops(device: str, dtype: torch.dtype) -> float:
    """Best of 5 products of two 2048 x 2048 matrices (8192 on CUDA), FLOP/s."""
    from dscoder.train.metrics import matmul_peak

    return matmul_peak(device, dtype, 2048 if device == "cpu" else 8192, repeats=5)


# ---------------------------------------------------------------------------- one contestant
def worker(args) -> None:
    """Load, warm up, then run `step N` commands from stdin; every reply is one JSON line on stdout."""

    torch.set_num_threads(args.threads)
    torch.manual_seed(SEED)
    device = torch.device(args.device)
    if args.worker == "ours":
        from dscoder.formats.hf import load_hf_dir
        from dscoder.train.objective import next_token_loss
    else:
        from transformers import AutoModelForCausalLM
    base = rss_mib()  # after the imports: what is counted is the training's own memory
    if args.worker == "ours":
        model = load_hf_dir(args.checkpoint).to(device).train()

        def loss_of(tokens):
            logits, aux = model(tokens)
            return next_token_loss(logits, tokens) + aux
    else:
        model = AutoModelForCausalLM.from_pretrained(args.checkpoint, dtype=torch.float32).to(device).train()

        def loss_of(tokens):
            return model(input_ids=tokens, labels=tokens, use_cache=False).loss
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.1)
    vocab = model.config.vocab_size
    batches = torch.randint(0, vocab, (4, args.batch, args.seq), generator=torch.Generator().manual_seed(SEED))
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.precision == "bf16")
    done = 0

    def step() -> float:
        nonlocal done
        tokens = batches[done % len(batches)].to(device)
        done += 1
        optimizer.zero_grad(set_to_none=True)
        with autocast:
            loss = loss_of(tokens)
        loss.backward()
        optimizer.step()
        return loss.item()

    loss = step()  # warm-up: allocator pools, AdamW state, first-call costs
    print(json.dumps({"ready": True, "loss": loss}), flush=True)
    for line in sys.stdin:
        command = line.split()
        if command[0] == "step":
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            for _ in range(int(command[1])):
                loss = step()  # .item() waits for the step on CUDA
            print(json.dumps({"seconds": time.perf_counter() - start, "loss": loss}), flush=True)
        else:
            peak = (torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda"
                    else peak_rss_mib() - base)
            print(json.dumps({"peak_mib": peak}), flush=True)
            return


class Contestant(WorkerProcess):
    """A worker process, driven one command at a time."""

    def __init__(self, name: str, checkpoint: str, precision: str, args, log: Path):
        command = [sys.executable, __file__, "--worker", name, "--checkpoint", checkpoint, "--precision", precision,
                   "--device", args.device, "--batch", str(args.batch), "--seq", str(args.seq),
                   "--threads", str(args.threads)]
        super().__init__(name, command, log)


def measure(row: str, cfg, precision: str, checkpoint: str, args, steps: int, repeat: int, scratch: Path) -> dict:
    """Both contestants on one row and precision: tokens/s per run, peak memory, final losses."""
    workers = {}
    try:
        for name in CONTESTANTS:  # built and warmed one after the other, not side by side
            print(f"  {row} {precision}: starting {name}...", file=sys.stderr, flush=True)
            workers[name] = Contestant(name, checkpoint, precision, args, scratch / f"{row}-{precision}-{name}.log")
        runs = {name: [] for name in CONTESTANTS}
        for r in range(repeat):
            for name in (CONTESTANTS if r % 2 == 0 else CONTESTANTS[::-1]):
                out = workers[name].ask(f"step {steps}")
                runs[name].append(args.batch * args.seq * steps / out["seconds"])
                print(f"  {row} {precision} run {r + 1}/{repeat} {name}: {runs[name][-1]:.0f} tok/s "
                      f"(loss {out['loss']:.3f})", file=sys.stderr, flush=True)
        warm_loss = {name: w.ready["loss"] for name, w in workers.items()}
        peaks = {name: workers.pop(name).finish() for name in CONTESTANTS}
    finally:
        for w in workers.values():
            w.proc.kill()
    return {"runs": runs, "peak": peaks, "warm_loss": warm_loss}


# ---------------------------------------------------------------------------- main
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", nargs="*", choices=ROWS, default=list(ROWS))
    parser.add_argument("--precision", nargs="*", choices=("fp32", "bf16"), default=["fp32", "bf16"])
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--seq", type=int, default=512)
    parser.add_argument("--repeat", type=int, help="timed runs per contestant (default 5; 3 for the ~130M rows)")
    parser.add_argument("--steps", type=int, help="training steps per timed run (default 2; 1 for the ~130M rows)")
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--no-save", action="store_true", help="print the table without appending to RESULTS.md")
    parser.add_argument("--worker", choices=CONTESTANTS, help=argparse.SUPPRESS)
    parser.add_argument("--checkpoint", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        args.precision = args.precision[0] if isinstance(args.precision, list) else args.precision
        return worker(args)
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: CUDA is not available")

    from dscoder.formats.hf import save_hf_dir
    from dscoder.model.transformer import Transformer
    from dscoder.train.metrics import flops_per_token

    torch.set_num_threads(args.threads)
    load = os.getloadavg()
    start = time.perf_counter()
    dtypes = {"fp32": torch.float32, "bf16": torch.bfloat16}
    peaks = {p: peak_flops(args.device, dtypes[p]) for p in args.precision}
    configs = row_configs()
    results = []
    with tempfile.TemporaryDirectory(prefix="train-step-") as tmp:
        scratch = Path(tmp)
        for row in args.rows:
            cfg = configs[row]
            checkpoint = scratch / row
            torch.manual_seed(SEED)
            save_hf_dir(Transformer(cfg).init_weights(generator=torch.Generator().manual_seed(SEED)), checkpoint)
            big = row in BIG
            steps = args.steps or (1 if big else 2)
            repeat = args.repeat or (3 if big else 5)
            for precision in args.precision:
                r = measure(row, cfg, precision, str(checkpoint), args, steps, repeat, scratch)
                results.append(dict(r, row=row, cfg=cfg, precision=precision, steps=steps, repeat=repeat,
                                    flops=flops_per_token(cfg, args.seq)))
    elapsed = time.perf_counter() - start
    table = render(results, args, peaks, load, elapsed)
    print(table)
    if not args.no_save:
        with RESULTS.open("a") as f:
            f.write("\n" + table)


def render(results: list[dict], args, peaks: dict, load: tuple, elapsed: float) -> str:
    import transformers

    device = (torch.cuda.get_device_name() if args.device == "cuda"
              else f"{cpu_name()} ({platform.machine()}), {args.threads} threads")
    memory = ("CUDA max_memory_allocated" if args.device == "cuda" else
              "peak RSS minus RSS before loading (weights, gradients, AdamW state, activations)")
    flops = ", ".join(f"{p} {v / 1e9:.0f} GFLOP/s" for p, v in peaks.items())
    after = os.getloadavg()
    command = "python benchmarks/train_step.py" + (" --device cuda" if args.device == "cuda" else "")
    lines = [f"### train_step.py — {date.today()} — {device}, torch {torch.__version__}, "
             f"transformers {transformers.__version__}",
             "",
             f"`{command} --batch {args.batch} --seq {args.seq}`: one training step = forward + cross-entropy + "
             f"backward + AdamW on {args.batch} x {args.seq} random tokens, ours vs transformers from the same "
             "weights, each in its own process. "
             "tok/s: median (min-max) of the timed runs (runs x steps each), the two in turn; ours/peer: median "
             f"(min-max) of the run-by-run ratios. Peak MiB: {memory}. MFU: (6 x active matmul parameters + causal "
             f"attention) FLOPs per token x tok/s, over the peak of one 2048² matmul measured here ({flops}). "
             "First loss: the untimed warm-up step's, same batch (ours adds the MoE balance loss, which "
             f"transformers' DeepseekV2 does not compute). Load average {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} "
             f"before, {after[0]:.1f} / {after[1]:.1f} / {after[2]:.1f} after; the run took {elapsed / 60:.1f} min.",
             "",
             "| row | params (active) | precision | runs x steps | ours tok/s | transformers tok/s | ours/peer | "
             "ours peak MiB | peer peak MiB | MFU ours | MFU peer | first loss ours / peer |",
             "|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in results:
        ours, peer = r["runs"]["ours"], r["runs"]["transformers"]
        ratios = [a / b for a, b in zip(ours, peer)]
        total, active = r["cfg"].param_counts()
        peak = peaks[r["precision"]]
        precision = "bf16 autocast" if r["precision"] == "bf16" else "fp32"
        lines.append(f"| {r['row']} | {total / 1e6:.0f}M ({active / 1e6:.0f}M) | {precision} | "
                     f"{r['repeat']} x {r['steps']} | {span(ours, '.0f')} | {span(peer, '.0f')} | "
                     f"{statistics.median(ratios):.2f}× ({min(ratios):.2f}-{max(ratios):.2f}) | "
                     f"{r['peak']['ours']:.0f} | {r['peak']['transformers']:.0f} | "
                     f"{r['flops'] * statistics.median(ours) / peak:.1%} | "
                     f"{r['flops'] * statistics.median(peer) / peak:.1%} | "
                     f"{r['warm_loss']['ours']:.4f} / {r['warm_loss']['transformers']:.4f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
