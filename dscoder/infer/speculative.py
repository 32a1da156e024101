"""Greedy speculative decoding: a small draft model proposes, the target model verifies.

The draft guesses k tokens one at a time; the target scores all of them in one forward
pass (k+1 positions), keeps the longest prefix it agrees with, and adds its own next token.
Every kept token is the target's own greedy choice, so the output is exactly the target's
greedy output, produced in fewer target passes when the draft guesses well.  Caches are
position-indexed, so rejecting guesses is just not advancing past them: later writes
overwrite the stale entries.

Prompt lookup (Saxena's "prompt lookup decoding", transformers' `prompt_lookup_num_tokens`)
needs no second model: the proposal is whatever followed the most recent earlier occurrence
of the sequence's last few tokens.  Code is where that pays: edits, refactors and completions
repeat identifiers, signatures and whole lines of their input, so the output copies spans of
the prompt and the target accepts them several tokens per pass.  Where nothing matches, a
round is an ordinary one-token step, so it never costs more target passes than plain greedy.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from dscoder.kernels import native
from dscoder.model.cache import LayerCache
from dscoder.infer.generate import GenerationError
from dscoder.model.transformer import Transformer


@dataclass
class SpeculativeStats:
    target_passes: int = 0
    proposed: int = 0
    accepted: int = 0

    @property
    def acceptance(self) -> float:
        return self.accepted / self.proposed if self.proposed else 0.0


def _start(target: Transformer, prompt: Sequence[int], max_new_tokens: int, k: int,
           others: Sequence[tuple[str, Transformer]] = ()) -> tuple[list[LayerCache], int]:
    """Check the request, then prefill a target cache with all of the prompt but its last token."""
    if k < 1 or max_new_tokens < 1:
        raise GenerationError(f"k and max_new_tokens must be at least 1, got k={k}, max_new_tokens={max_new_tokens}")
    if k + 1 > native.MAX_ROWS:  # beyond it verification leaves the decode kernels' arithmetic: no longer exact
        raise GenerationError(f"k={k} proposed tokens is too many: at most {native.MAX_ROWS - 1}, so that one "
                              "verification pass computes exactly what plain decoding computes")
    if not prompt:
        raise GenerationError("the prompt is empty (no tokens)")
    capacity = len(prompt) + max_new_tokens + k + 1
    for name, model in (("target", target), *others):
        if capacity > model.config.max_position_embeddings:
            raise GenerationError(f"prompt of {len(prompt)} tokens + max_new_tokens={max_new_tokens} + k={k} exceeds "
                                  f"the {name} model's context of {model.config.max_position_embeddings} tokens")
    cache = target.new_cache(1, capacity)
    if len(prompt) > 1:  # each round re-feeds the last accepted token, so the cache stops short of it
        device = target.embed_tokens.weight.device
        target(torch.tensor([list(prompt[:-1])], device=device), 0, cache, logits_to_keep=1)
    return cache, capacity


def _verify(target: Transformer, cache: list[LayerCache], seq: list[int], proposal: list[int], end: int,
            stops: set[int], stats: SpeculativeStats) -> tuple[int, bool]:
    """One target pass over [last token, *proposal]: append the agreeing prefix and the target's own
    next token to `seq` (never past length `end`, never a stop token).  Returns (accepted, stopped)."""
    tokens = torch.tensor([[seq[-1], *proposal]], device=target.embed_tokens.weight.device)
    choices = target(tokens, len(seq) - 1, cache)[0][0].argmax(-1).tolist()
    accepted = 0
    while accepted < len(proposal) and proposal[accepted] == choices[accepted]:
        accepted += 1
    stats.target_passes += 1
    stats.proposed += len(proposal)
    stats.accepted += accepted
    for token in proposal[:accepted] + [choices[accepted]]:
        if token in stops:
            return accepted, True
        seq.append(token)
        if len(seq) == end:
            break
    return accepted, False


@torch.no_grad()
def speculative_generate(target: Transformer, draft: Transformer, prompt: Sequence[int], max_new_tokens: int,
                         k: int = 4, stop_token_ids: Sequence[int] = ()) -> tuple[list[int], SpeculativeStats]:
    """The target's greedy continuation of `prompt` (stop token excluded), and how it was reached."""
    if target.config.vocab_size != draft.config.vocab_size:
        raise GenerationError(f"draft vocabulary ({draft.config.vocab_size}) differs from the target's "
                              f"({target.config.vocab_size}); speculation needs the same tokenizer")
    t_cache, capacity = _start(target, prompt, max_new_tokens, k, [("draft", draft)])
    device = target.embed_tokens.weight.device
    d_cache = draft.new_cache(1, capacity)
    stats, stops, seq, end = SpeculativeStats(), set(stop_token_ids), list(prompt), len(prompt) + max_new_tokens
    draft_valid = 0  # positions of `seq` the draft cache holds
    while len(seq) < end:
        proposal = []
        logits, _ = draft(torch.tensor([seq[draft_valid:]], device=device), draft_valid, d_cache)
        for i in range(k):
            proposal.append(int(logits[0, -1].argmax()))
            if i < k - 1:
                logits, _ = draft(torch.tensor([[proposal[-1]]], device=device), len(seq) + i, d_cache)
        before = len(seq)
        accepted, stopped = _verify(target, t_cache, seq, proposal, end, stops, stats)
        if stopped:
            break
        draft_valid = before + min(accepted, k - 1)
    return seq[len(prompt):], stats


class _NgramIndex:
    """For each n-gram length, where the latest n-gram with a token after it starts; kept up to date
    incrementally, so a lookup costs the same however long the prompt is."""

    def __init__(self, ngram_min: int, ngram_max: int):
        self.sizes = range(ngram_max, ngram_min - 1, -1)  # longest first: the most specific context
        self.latest: dict[tuple[int, ...], int] = {}
        self.indexed = 0  # n-grams followed by seq[:indexed] are in

    def propose(self, seq: list[int], k: int) -> list[int]:
        for i in range(self.indexed, len(seq)):  # index the n-grams that now have a follower
            for n in self.sizes:
                if i >= n:
                    self.latest[tuple(seq[i - n:i])] = i - n
        self.indexed = len(seq)
        for n in self.sizes:
            start = self.latest.get(tuple(seq[-n:])) if n <= len(seq) else None
            if start is not None:
                follow = seq[start + n:start + n + k]  # if short, it runs into the tail: repeat its period
                return (follow * (k // len(follow) + 1))[:k]
        return []


@torch.no_grad()
def prompt_lookup_generate(target: Transformer, prompt: Sequence[int], max_new_tokens: int, k: int = 8,
                           ngram_max: int = 3, ngram_min: int = 1,
                           stop_token_ids: Sequence[int] = ()) -> tuple[list[int], SpeculativeStats]:
    """The target's greedy continuation of `prompt`, with proposals copied from earlier in the sequence."""
    if not 1 <= ngram_min <= ngram_max:
        raise GenerationError(f"need 1 <= ngram_min <= ngram_max, got ngram_min={ngram_min}, ngram_max={ngram_max}")
    cache, _ = _start(target, prompt, max_new_tokens, k)
    stats, stops, seq, end = SpeculativeStats(), set(stop_token_ids), list(prompt), len(prompt) + max_new_tokens
    index = _NgramIndex(ngram_min, ngram_max)
    while len(seq) < end:
        # a round yields at most len(proposal) + 1 tokens: propose no more than are still wanted
        wanted = min(k, end - len(seq) - 1)
        proposal = index.propose(seq, wanted) if wanted else []
        if _verify(target, cache, seq, proposal, end, stops, stats)[1]:
            break
    return seq[len(prompt):], stats
