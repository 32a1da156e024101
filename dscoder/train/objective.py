"""The pretraining objective: next-token cross-entropy over a packed row.

The row's last position has no next token. Rather than slicing the logits to the first T-1
positions (`logits[:, :-1]` is not contiguous, so flattening it copies the whole (B, T, vocab)
tensor: a tenth of a small model's step), the labels are shifted instead and the last one set to
`IGNORE`, so the logits are read in place. The mean is over the B x (T-1) real targets, exactly
as transformers' `labels=` loss computes it.

FIM documents need nothing here: `data build` already wrote them in PSM order, so predicting
the next token of such a row is learning to infill.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

IGNORE = -100


def shifted_labels(tokens: torch.Tensor) -> torch.Tensor:
    """(B, T) -> (B, T): tokens[:, 1:] followed by IGNORE."""
    labels = torch.empty_like(tokens)
    labels[:, :-1] = tokens[:, 1:]
    labels[:, -1] = IGNORE
    return labels


def next_token_loss(logits: torch.Tensor, tokens: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Cross-entropy of each position's logits against the next token, in fp32.

    `reduction="none"` gives the per-target losses, (B, T-1)."""
    flat = logits.flatten(0, 1)
    if flat.dtype != torch.float32:
        flat = flat.float()
    losses = F.cross_entropy(flat, shifted_labels(tokens).flatten(), ignore_index=IGNORE, reduction=reduction)
    if reduction == "none":
        return losses.view(tokens.shape)[:, :-1]
    return losses
