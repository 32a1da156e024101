"""The training objective: next-token cross-entropy over a packed row, with an optional loss mask.

The row's last position has no next token. Rather than slicing the logits to the first T-1
positions (`logits[:, :-1]` is not contiguous, so flattening it copies the whole (B, T, vocab)
tensor: a tenth of a small model's step), the labels are shifted instead and the last one set to
`IGNORE`, so the logits are read in place. The mean is over the B x (T-1) real targets, exactly
as transformers' `labels=` loss computes it.

FIM documents need nothing here: `data build` already wrote them in PSM order, so predicting
the next token of such a row is learning to infill.

Fine-tuning is the same objective with a mask: a `Batch` carries `labels` (unshifted, as
transformers' `labels=`) that are `IGNORE` wherever nothing is learned (prompts, padding, the
first token of each packed sample), and `segments` that confine attention to each sample.
Pretraining rows are a `Batch` whose labels are the tokens themselves.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

IGNORE = -100


@dataclass
class Batch:
    """Rows of one step: tokens (B, T), labels (B, T, unshifted; IGNORE where nothing is learned) and
    segments (B, T: which packed sample a token belongs to, 0 for padding) or None for plain rows."""

    tokens: torch.Tensor
    labels: torch.Tensor
    segments: torch.Tensor | None = None

    @classmethod
    def of_rows(cls, rows: torch.Tensor) -> "Batch":
        return cls(rows, rows, None)

    def split(self, micro: int) -> list["Batch"]:
        parts = zip(self.tokens.split(micro), self.labels.split(micro),
                    self.segments.split(micro) if self.segments is not None else [None] * len(self.tokens))
        return [Batch(t, lab, seg) for t, lab, seg in parts]

    def targets(self) -> int:
        """How many positions are scored: labels after the shift that are not IGNORE."""
        return int((self.labels[:, 1:] != IGNORE).sum())

    def real_tokens(self) -> int:
        """Tokens that are not padding (all of them for plain rows)."""
        return self.tokens.numel() if self.segments is None else int((self.segments != 0).sum())


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
