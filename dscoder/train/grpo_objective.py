"""GRPO's objective, as DeepSeekMath defines it and DeepSeek-Coder-V2 uses it.

DeepSeekMath (Shao et al., arXiv 2402.03300), section 4.1, equation (3), for a question q and a
group of G outputs o_1..o_G sampled from the old policy:

    J(θ) = E[ 1/G Σ_i 1/|o_i| Σ_t { min(ρ_it Â_it, clip(ρ_it, 1-ε, 1+ε) Â_it) - β D_KL[π_θ || π_ref] } ]
    ρ_it = π_θ(o_it | q, o_i,<t) / π_θold(o_it | q, o_i,<t)

equation (4), the KL estimate per token (Schulman's unbiased "k3", always >= 0):

    D_KL[π_θ || π_ref] = π_ref / π_θ - log(π_ref / π_θ) - 1

and section 4.1.2, outcome supervision: every token of output i gets the group-normalised
reward  Â_it = (r_i - mean(r)) / std(r).

Choices where the paper leaves room, stated:
- std is the sample standard deviation (n - 1), as TRL's GRPOTrainer computes it, plus 1e-4
  so a group whose rewards are all equal gets advantages of exactly 0 (no signal), not 0/0.
- The loss is token-level by default (`norm="token"`): the sum over every completion token of
  the batch divided by their number, as DAPO (arXiv 2503.14476) and TRL's default do, so long
  answers are not discounted; `norm="sequence"` is equation (3)'s 1/|o_i| then 1/G.
- π_θold is the policy that sampled: its per-token log-probabilities come from the engine
  (equal to a recomputation to fp32 rounding, which a test checks), so the first update of
  each exploration stage has ρ = 1 and the clip acts from the second update on.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

STD_EPS = 1e-4


def group_advantages(rewards: torch.Tensor, group_size: int) -> torch.Tensor:
    """(N,) rewards in groups of `group_size` consecutive samples -> (N,) advantages (r - mean) / (std + eps)."""
    if rewards.ndim != 1 or rewards.numel() % group_size:
        raise ValueError(f"{rewards.numel()} rewards do not split into groups of {group_size}")
    groups = rewards.double().view(-1, group_size)
    mean = groups.mean(dim=1, keepdim=True)
    std = groups.std(dim=1, keepdim=True)  # unbiased (n - 1)
    return ((groups - mean) / (std + STD_EPS)).view(-1).to(rewards.dtype)


def k3_kl(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """Equation (4) per token: π_ref/π_θ - log(π_ref/π_θ) - 1, from log-probabilities."""
    delta = ref_logp - logp
    return torch.exp(delta) - delta - 1


@dataclass
class PolicyLoss:
    loss: torch.Tensor  # to minimise: minus equation (3)'s objective, normalised as asked
    kl: torch.Tensor  # summed over tokens (detached)
    clipped: torch.Tensor  # tokens where the clip took effect (detached)
    ratio_max: torch.Tensor


def policy_loss(logp: torch.Tensor, old_logp: torch.Tensor, ref_logp: torch.Tensor | None, advantages: torch.Tensor,
                mask: torch.Tensor, clip_eps: float, kl_coef: float, norm: str, total_tokens: float,
                total_samples: int) -> PolicyLoss:
    """The loss of a micro-batch of samples, scaled so that summing the micro-batches of one step gives
    the step's loss. logp, old_logp, ref_logp, mask: (B, T) over completion tokens (mask 1 where a
    token is real); advantages (B,). `total_tokens`, `total_samples`: of the whole step's batch."""
    ratio = torch.exp(logp - old_logp)
    adv = advantages[:, None].to(logp.dtype)
    unclipped = ratio * adv
    clipped = torch.clamp(ratio, 1 - clip_eps, 1 + clip_eps) * adv
    per_token = -torch.minimum(unclipped, clipped)
    kl = torch.zeros_like(logp)
    if ref_logp is not None and kl_coef:
        kl = k3_kl(logp, ref_logp)
        per_token = per_token + kl_coef * kl
    real = mask > 0
    per_token = torch.where(real, per_token, 0.0)  # padding never reaches the sum, even as inf * 0
    if norm == "token":
        loss = per_token.sum() / total_tokens
    elif norm == "sequence":
        loss = (per_token.sum(dim=1) / real.sum(dim=1).clamp(min=1)).sum() / total_samples
    else:
        raise ValueError(f"norm must be token or sequence, got {norm!r}")
    took = (clipped < unclipped) & real  # the min picked the clipped term, strictly
    return PolicyLoss(loss, torch.where(real, kl, 0.0).sum().detach(), took.sum().detach(),
                      torch.where(real, ratio, 0.0).max().detach() if real.any() else ratio.new_ones(()))


def token_logprobs(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """log π(target) per position: logits (B, T, V) predicting targets (B, T), in fp32."""
    return torch.log_softmax(logits.float(), dim=-1).gather(-1, targets[..., None])[..., 0]


def token_entropy(logits: torch.Tensor) -> torch.Tensor:
    """The policy's entropy per position (nats), (B, T)."""
    logp = torch.log_softmax(logits.float(), dim=-1)
    return -(logp.exp() * logp).sum(-1)
