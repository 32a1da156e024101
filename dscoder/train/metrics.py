"""What a training step reports: FLOPs and MFU, memory, MoE load, and where the numbers go.

Every logged step becomes one JSON line of `RUN/metrics.jsonl` and the same scalars in
TensorBoard event files under `RUN/tensorboard/` (`tensorboard --logdir RUN`). On resume,
lines past the resumed checkpoint are dropped (a killed run may have logged steps the
checkpoint does not hold), so the file always describes one consistent run.
"""

from __future__ import annotations

import json
import os
import resource
import time
from pathlib import Path

import torch

from dscoder.model.config import ModelConfig
from dscoder.train import distributed

# Dense bf16 tensor-core peaks (FLOP/s) of the accelerators a run is likely to meet, from the
# vendors' data sheets (SXM parts, without sparsity). A device not listed gets a measured peak.
PEAK_BF16 = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "L40S": 362e12, "A10": 125e12, "L4": 121e12,
             "RTX 4090": 165e12, "RTX 3090": 71e12, "V100": 125e12}


def flops_per_token(cfg: ModelConfig, seq_len: int) -> float:
    """Training FLOPs per token: 6 x (active matmul parameters) plus causal attention, as PaLM
    (arXiv 2204.02311, appendix B) counts it. The embedding lookup is not a matmul and is left
    out; the output head is one."""
    _, active = cfg.param_counts()
    matmul = active - cfg.vocab_size * cfg.hidden_size * (0 if cfg.tie_word_embeddings else 1)
    if cfg.is_mla:
        qk, v = cfg.qk_head_dim, cfg.v_head_dim
    else:
        qk = v = cfg.attn_head_dim
    # Scores and weighted sum: 2*(qk+v) FLOPs per head per (query, key) pair; a causal query sees
    # seq_len/2 keys on average; x3 for forward + backward.
    attention = 3 * 2 * cfg.num_hidden_layers * cfg.num_attention_heads * (qk + v) * seq_len / 2
    return 6 * matmul + attention


_MEASURED: dict[str, float] = {}


def matmul_peak(device: torch.device | str, dtype: torch.dtype, n: int, repeats: int) -> float:
    """FLOP/s of the fastest of `repeats` products of two n x n matrices (after one untimed)."""
    device = torch.device(device)
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        a @ b
        if device.type == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t0)
    return 2 * n ** 3 / best


def peak_flops(device: torch.device, dtype: torch.dtype) -> float:
    """Peak FLOP/s for MFU: the data sheet's for known GPUs (`PEAK_BF16`, halved outside bf16), else
    measured once with a large matmul in `dtype` (so on a CPU, MFU is against what this CPU reaches)."""
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        for key, peak in PEAK_BF16.items():
            if key in name:
                return peak if dtype == torch.bfloat16 else peak / 2
    key = f"{device}/{dtype}"
    if key not in _MEASURED:
        _MEASURED[key] = matmul_peak(device, dtype, 1024 if device.type == "cpu" else 8192, repeats=3)
    return _MEASURED[key]


def memory_gib(device: torch.device) -> float:
    """Peak memory so far: CUDA's allocator peak, or the process's peak resident set on a CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2 ** 30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20  # KiB on Linux


class MoeLoad:
    """Counts the routed slots each expert received, per MoE layer, through forward hooks on the routers.

    `take()` returns per layer the busiest expert's load over the mean load (1.0: perfectly
    balanced; n_experts / k: every token sent to the same k experts) and resets the counts."""

    def __init__(self, model: torch.nn.Module) -> None:
        from dscoder.model.transformer import Gate

        self.counts: dict[str, torch.Tensor] = {}
        self.handles = []
        for name, module in model.named_modules():
            if isinstance(module, Gate):
                self.handles.append(module.register_forward_hook(self._hook(name, module.n_experts)))

    def _hook(self, name: str, n_experts: int):
        def hook(module, inputs, output) -> None:
            if not module.training:
                return
            ids = output[1].detach().flatten()
            counts = torch.bincount(ids, minlength=n_experts)  # stays on the device: no sync per layer
            self.counts[name] = self.counts.get(name, 0) + counts
        return hook

    def take(self) -> dict[str, float]:
        """Every rank calls this each step: the counts are summed over ranks first, so the load
        is that of the global batch, the same at any number of processes."""
        if self.counts:
            names = sorted(self.counts)
            total = distributed.all_reduce_sum(torch.stack([self.counts[n] for n in names])).cpu()
            self.counts = dict(zip(names, total))
        out = {}
        for name, counts in self.counts.items():
            layer = name.split(".")[1] if name.startswith("layers.") else name
            c = counts.double()
            out[layer] = round(float(c.max() / c.mean()), 4) if c.sum() else 0.0
        self.counts = {}
        return out


class MetricsLog:
    """metrics.jsonl + TensorBoard, written by the main process only."""

    def __init__(self, run_dir: Path, enabled: bool, resume_step: int | None) -> None:
        self.enabled = enabled
        self.path = run_dir / "metrics.jsonl"
        self.tb = None
        if not enabled:
            return
        if resume_step is not None and self.path.exists():
            kept = [line for line in self.path.read_text().splitlines()
                    if line.strip() and json.loads(line).get("step", 0) <= resume_step]
            self.path.write_text("".join(line + "\n" for line in kept))
        elif resume_step is None:
            self.path.unlink(missing_ok=True)
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # tensorboard is a dependency; a broken install still trains
            SummaryWriter = None
        if SummaryWriter is not None:
            self.tb = SummaryWriter(str(run_dir / "tensorboard"), purge_step=(resume_step + 1) if resume_step else None)
        self.file = open(self.path, "a", encoding="utf-8")

    def write(self, record: dict) -> None:
        if not self.enabled:
            return
        self.file.write(json.dumps(record) + "\n")
        self.file.flush()
        os.fsync(self.file.fileno())
        if self.tb is not None:
            step = record["step"]
            for key, value in record.items():
                if key != "step" and isinstance(value, (int, float)) and not isinstance(value, bool):
                    self.tb.add_scalar(key.replace(".", "/"), value, step)
                elif isinstance(value, dict):
                    for sub, v in value.items():
                        if isinstance(v, (int, float)):
                            self.tb.add_scalar(f"{key}/{sub}", v, step)

    def close(self) -> None:
        if self.enabled and not self.file.closed:
            self.file.close()
            if self.tb is not None:
                self.tb.close()
