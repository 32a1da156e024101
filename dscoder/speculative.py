"""Greedy speculative decoding: a small draft model proposes, the target model verifies.

The draft guesses k tokens one at a time; the target scores all of them in one forward
pass (k+1 positions), keeps the longest prefix it agrees with, and adds its own next token.
Every kept token is the target's own greedy choice, so the output is exactly the target's
greedy output, produced in fewer target passes when the draft guesses well.  Caches are
position-indexed, so rejecting guesses is just not advancing past them: later writes
overwrite the stale entries.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from .generate import GenerationError
from .model import Transformer


@dataclass
class SpeculativeStats:
    target_passes: int = 0
    proposed: int = 0
    accepted: int = 0

    @property
    def acceptance(self) -> float:
        return self.accepted / self.proposed if self.proposed else 0.0


@torch.no_grad()
def speculative_generate(target: Transformer, draft: Transformer, prompt: Sequence[int], max_new_tokens: int,
                         k: int = 4, stop_token_ids: Sequence[int] = ()) -> tuple[list[int], SpeculativeStats]:
    """The target's greedy continuation of `prompt` (stop token excluded), and how it was reached."""
    if target.config.vocab_size != draft.config.vocab_size:
        raise GenerationError(f"draft vocabulary ({draft.config.vocab_size}) differs from the target's "
                              f"({target.config.vocab_size}); speculation needs the same tokenizer")
    if k < 1 or max_new_tokens < 1:
        raise GenerationError(f"k and max_new_tokens must be at least 1, got k={k}, max_new_tokens={max_new_tokens}")
    if not prompt:
        raise GenerationError("the prompt is empty (no tokens)")
    capacity = len(prompt) + max_new_tokens + k + 1
    for name, model in (("target", target), ("draft", draft)):
        if capacity > model.config.max_position_embeddings:
            raise GenerationError(f"prompt of {len(prompt)} tokens + max_new_tokens={max_new_tokens} + k={k} exceeds "
                                  f"the {name} model's context of {model.config.max_position_embeddings} tokens")
    device = target.embed_tokens.weight.device
    t_cache, d_cache = target.new_cache(1, capacity), draft.new_cache(1, capacity)
    stats, stops = SpeculativeStats(), set(stop_token_ids)
    seq = list(prompt)
    if len(seq) > 1:  # the target cache holds everything but the last token, which each round re-feeds
        target(torch.tensor([seq[:-1]], device=device), 0, t_cache)
    draft_valid = 0  # positions of `seq` the draft cache holds
    while len(seq) - len(prompt) < max_new_tokens:
        # 1. the draft proposes k tokens
        proposal = []
        logits, _ = draft(torch.tensor([seq[draft_valid:]], device=device), draft_valid, d_cache)
        for i in range(k):
            proposal.append(int(logits[0, -1].argmax()))
            if i < k - 1:
                logits, _ = draft(torch.tensor([[proposal[-1]]], device=device), len(seq) + i, d_cache)
        # 2. the target scores the last accepted token and all proposals at once
        logits, _ = target(torch.tensor([[seq[-1], *proposal]], device=device), len(seq) - 1, t_cache)
        choices = logits[0].argmax(-1).tolist()
        accepted = 0
        while accepted < k and proposal[accepted] == choices[accepted]:
            accepted += 1
        stats.target_passes += 1
        stats.proposed += k
        stats.accepted += accepted
        draft_valid = len(seq) + min(accepted, k - 1)
        new = proposal[:accepted] + [choices[accepted]]
        for token in new:
            if token in stops:
                return seq[len(prompt):], stats
            seq.append(token)
            if len(seq) - len(prompt) == max_new_tokens:
                break
    return seq[len(prompt):], stats
