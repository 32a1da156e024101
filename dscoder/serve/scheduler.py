"""Continuous batching: which sequences run in the next model step, and on which tokens.

Every step the scheduler looks again at everything: running sequences that are decoding
contribute one token each, sequences still reading their prompt contribute their next
chunk, and waiting requests are admitted whenever a running slot and KV blocks allow, so
a new request joins the batch at the next step instead of waiting for the batch to end.

- Chunked prefill: a prompt is read in chunks that start at multiples of `prefill_chunk`
  (the same chunks whatever else runs, which keeps results independent of the load), and
  at most `prefill_budget` prompt tokens are read per step, so a long prompt delays the
  running decodes by a chunk per step, not by its whole length.
- Preemption by recomputation: when a decoding sequence needs a block and none is free,
  the most recently admitted sequence gives all of its blocks back and returns to the head
  of the queue; when readmitted it recomputes its prompt and what it had generated
  (mostly from the prefix cache) and carries on where it was.
"""

from __future__ import annotations

import itertools
import time
from collections import Counter, deque
from dataclasses import dataclass, field

import torch

from dscoder.infer.generate import SamplingParams, TextReleaser
from dscoder.serve.blocks import Allocation, BlockManager

_ids = itertools.count()


@dataclass(eq=False)
class Sequence:
    tokens: list[int]  # prompt, then everything generated
    prompt_len: int
    params: SamplingParams
    releaser: TextReleaser
    generator: torch.Generator | None = None
    top_logprobs: int = 0
    prompt_logprobs: bool = False
    deadline: float | None = None  # time.monotonic() after which it ends with "length"
    id: int = field(default_factory=lambda: next(_ids))
    alloc: Allocation = field(default_factory=Allocation)
    computed: int = 0  # leading tokens whose keys/values are in the cache
    arrived_at: float = field(default_factory=time.monotonic)
    first_token_at: float | None = None
    last_token_at: float | None = None
    preemptions: int = 0
    finish_reason: str | None = None
    admitted: bool = False  # ever admitted (a preempted sequence waits again, but was not queued anew)
    seen_newline: bool = False
    output_counts: Counter = field(default_factory=Counter)  # generated tokens, for the penalties
    on_output: object = None  # set by the engine: receives this sequence's outputs

    @property
    def generated(self) -> int:
        return len(self.tokens) - self.prompt_len


@dataclass
class Work:
    """One sequence's share of a step: tokens[start:start+count]; `last` when its logits are sampled."""

    seq: Sequence
    start: int
    count: int

    @property
    def samples(self) -> bool:
        return self.start + self.count == len(self.seq.tokens)


@dataclass
class Plan:
    decode: list[Work]
    prefill: list[Work]
    preempted: list[Sequence]


class Scheduler:
    def __init__(self, blocks: BlockManager, max_running: int, prefill_chunk: int, prefill_budget: int):
        self.blocks = blocks
        self.max_running, self.prefill_chunk, self.prefill_budget = max_running, prefill_chunk, prefill_budget
        self.waiting: deque[Sequence] = deque()
        self.running: list[Sequence] = []  # in admission order
        self.preemptions = 0

    def add(self, seq: Sequence) -> None:
        self.waiting.append(seq)

    def has_work(self) -> bool:
        return bool(self.waiting or self.running)

    def remove(self, seq: Sequence) -> None:
        """Drop a sequence (finished or cancelled) and give its blocks back."""
        if seq in self.running:
            self.running.remove(seq)
            self.blocks.release(seq.alloc)
        elif seq in self.waiting:
            self.waiting.remove(seq)

    def _preempt(self, seq: Sequence) -> None:
        self.running.remove(seq)
        self.blocks.release(seq.alloc)
        seq.computed = 0
        seq.preemptions += 1
        self.preemptions += 1
        self.waiting.appendleft(seq)

    def _chunk(self, seq: Sequence) -> int:
        end = min(len(seq.tokens), (seq.computed // self.prefill_chunk + 1) * self.prefill_chunk)
        return end - seq.computed

    def schedule(self) -> Plan:
        decode, prefill, preempted = [], [], []
        budget = self.prefill_budget
        # Running sequences first, oldest first; a decode that needs a block takes it from the newest.
        for seq in list(self.running):
            if seq not in self.running:  # preempted earlier in this loop
                continue
            if seq.computed == len(seq.tokens) - 1:
                while not self.blocks.grow(seq.alloc, len(seq.tokens)):
                    victim = self.running[-1]
                    self._preempt(victim)
                    preempted.append(victim)
                    if victim is seq:
                        break
                if seq in self.running:
                    decode.append(Work(seq, seq.computed, 1))
            elif budget > 0:
                count = self._chunk(seq)
                prefill.append(Work(seq, seq.computed, count))
                budget -= count
        # Then admit waiting requests while there is a running slot, prompt budget and room.
        while self.waiting and budget > 0 and len(self.running) < self.max_running and not preempted:
            seq = self.waiting[0]
            reuse = not seq.prompt_logprobs
            if not self.blocks.can_allocate(seq.tokens, reuse):
                break
            self.waiting.popleft()
            seq.alloc = self.blocks.allocate(seq.tokens, reuse)
            seq.computed = seq.alloc.cached_tokens
            self.running.append(seq)
            count = self._chunk(seq)
            prefill.append(Work(seq, seq.computed, count))
            budget -= count
        return Plan(decode, prefill, preempted)
