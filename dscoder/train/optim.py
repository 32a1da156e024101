"""AdamW as the DeepSeek-Coder papers set it (β1 0.9, β2 0.95, weight decay 0.1), with two groups.

Decayed: every matrix (attention and MLP projections, experts, the MoE router) and the token
embedding and output head. Exempt: one-dimensional parameters, that is the RMSNorm gains (and
biases where a config has them). A norm gain is a per-channel scale that the next matrix can
absorb; pulling it toward 0 only shrinks the signal the normalisation just restored, and a
bias carries no interaction between inputs to regularise. This is the convention of Megatron-LM
and GPT-NeoX, which DeepSeek's HAI-LLM trainer follows.
"""

from __future__ import annotations

import torch
from torch import nn

from dscoder.train.config import TrainConfig


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    decay, exempt = [], []
    for _, p in model.named_parameters():
        if not p.requires_grad:
            continue
        # rows of the embedding trained beside LoRA (train/adapt.py): decay would move the frozen rows too
        (exempt if p.ndim < 2 or hasattr(p, "trained_rows") else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay, "name": "decay"},
            {"params": exempt, "weight_decay": 0.0, "name": "no_decay"}]


def build_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.AdamW:
    # foreach: one kernel per group instead of one per tensor; fused only on CUDA (CPU fused
    # AdamW exists too, but foreach is what we test for bit-identical resume).
    device = next(model.parameters()).device
    return torch.optim.AdamW(parameter_groups(model, cfg.weight_decay), lr=float(cfg.lr or 0.0),
                             betas=(cfg.beta1, cfg.beta2), eps=cfg.eps,
                             fused=device.type == "cuda" or None, foreach=None if device.type == "cuda" else True)


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr
