"""Perplexity of a text under a model: the accuracy yardstick for quantization and training.

Long texts are scored in non-overlapping windows of `window` tokens (each from a fresh
context), so the cost is one forward per window and the number is comparable between
runs with the same window.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from dscoder.model.transformer import Transformer
from dscoder.errors import UserError


@torch.no_grad()
def perplexity(model: Transformer, ids: Sequence[int], window: int = 512, step: int | None = None) -> float:
    """exp(mean negative log-likelihood) of every token after the first of each window.

    `step` feeds each window through a KV cache that many tokens at a time, as generation
    does, instead of in one forward: the same number, computed with decode's arithmetic
    (which differs for quantized layers, see quant.py).
    """
    if len(ids) < 2:
        raise UserError(f"perplexity needs at least 2 tokens, got {len(ids)}")
    window = min(window, model.config.max_position_embeddings)
    device = model.embed_tokens.weight.device
    total, count = 0.0, 0
    for start in range(0, len(ids) - 1, window):
        chunk = torch.tensor([ids[start:start + window]], device=device)
        if chunk.shape[1] < 2:
            break
        if step is None:
            logits, _ = model(chunk)
        else:
            cache = model.new_cache(1, chunk.shape[1])
            logits = torch.cat([model(chunk[:, i:i + step], i, cache)[0] for i in range(0, chunk.shape[1], step)], dim=1)
        total += float(F.cross_entropy(logits[0, :-1].float(), chunk[0, 1:], reduction="sum"))
        count += chunk.shape[1] - 1
    return math.exp(total / count)
