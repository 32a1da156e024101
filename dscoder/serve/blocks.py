"""Which KV blocks each sequence owns, and which full blocks hold a prefix worth reusing.

A full block is named by a hash chained over every token up to its end (so equal hashes
mean equal prefixes, not just equal blocks).  A block whose last owner finished keeps its
contents and its name and waits in a least-recently-freed queue: a later request with the
same prefix (an editor resending the file with one line changed, `n` samples of one
prompt, a chat that grows by one turn) takes it back instead of recomputing it, and only
when free blocks run out is the oldest one overwritten.  Names are given only to blocks
whose keys/values have been computed, so no one can reuse a block another request is
still filling.  In the spirit of nano-vllm's BlockManager.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field


@dataclass
class Block:
    id: int
    ref_count: int = 0
    hash: int | None = None
    tokens: tuple[int, ...] = ()  # kept with the hash, so a hash collision can never serve wrong keys


@dataclass
class Allocation:
    """A sequence's blocks: its table, how many of its first tokens were found cached, and how many
    of its blocks carry a prefix name already."""

    table: list[int] = field(default_factory=list)
    cached_tokens: int = 0
    named_blocks: int = 0


def chain_hash(previous: int | None, tokens: tuple[int, ...]) -> int:
    return hash((previous, tokens))


class BlockManager:
    def __init__(self, num_blocks: int, block_size: int, prefix_caching: bool = True):
        if num_blocks < 1 or block_size < 1:
            raise ValueError(f"need at least one block of at least one token (got {num_blocks} x {block_size})")
        self.block_size, self.prefix_caching = block_size, prefix_caching
        self.blocks = [Block(i) for i in range(num_blocks)]
        self.free: OrderedDict[int, None] = OrderedDict((i, None) for i in range(num_blocks))  # oldest first
        self.by_hash: dict[int, int] = {}
        self.hit_tokens = 0  # prompt tokens found cached / asked for, over the manager's life
        self.query_tokens = 0

    @property
    def num_blocks(self) -> int:
        return len(self.blocks)

    @property
    def num_free(self) -> int:
        return len(self.free)

    @property
    def num_used(self) -> int:
        return len(self.blocks) - len(self.free)

    def blocks_for(self, tokens: int) -> int:
        return -(-tokens // self.block_size)

    def _take_free(self, block_id: int | None = None) -> int:
        if block_id is None:
            block_id, _ = self.free.popitem(last=False)  # the least recently freed
            block = self.blocks[block_id]
            if block.hash is not None and self.by_hash.get(block.hash) == block_id:
                del self.by_hash[block.hash]  # overwritten: its prefix is gone
            block.hash, block.tokens = None, ()
        else:
            del self.free[block_id]
        self.blocks[block_id].ref_count = 1
        return block_id

    def _cached_prefix(self, tokens: list[int]) -> list[int]:
        """Blocks already holding tokens' leading full blocks (never the block of the last token,
        which must be computed for its logits)."""
        found, previous = [], None
        if not self.prefix_caching:
            return found
        for i in range((len(tokens) - 1) // self.block_size):
            chunk = tuple(tokens[i * self.block_size:(i + 1) * self.block_size])
            previous = chain_hash(previous, chunk)
            block_id = self.by_hash.get(previous)
            if block_id is None or self.blocks[block_id].tokens != chunk:
                break
            found.append(block_id)
        return found

    def can_allocate(self, tokens: list[int], reuse: bool = True) -> bool:
        cached = self._cached_prefix(tokens) if reuse else []
        reclaimed = sum(1 for b in cached if b in self.free)  # cached but idle blocks are counted as free
        return self.blocks_for(len(tokens)) - len(cached) <= self.num_free - reclaimed

    def allocate(self, tokens: list[int], reuse: bool = True) -> Allocation:
        """Blocks for all of `tokens`, reusing cached prefix blocks unless told not to (a request that
        wants its prompt's logprobs must compute every position); the caller checked can_allocate."""
        cached = self._cached_prefix(tokens) if reuse else []
        table = []
        for block_id in cached:
            block = self.blocks[block_id]
            if block.ref_count == 0:
                self._take_free(block_id)
            else:
                block.ref_count += 1
            table.append(block_id)
        table += [self._take_free() for _ in range(self.blocks_for(len(tokens)) - len(cached))]
        self.query_tokens += len(tokens)
        self.hit_tokens += len(cached) * self.block_size
        return Allocation(table, len(cached) * self.block_size, len(cached))

    def grow(self, alloc: Allocation, tokens: int) -> bool:
        """Make room for `tokens` positions in total; False (nothing changed) when blocks ran out."""
        need = self.blocks_for(tokens) - len(alloc.table)
        if need > self.num_free:
            return False
        alloc.table += [self._take_free() for _ in range(need)]
        return True

    def name_computed(self, alloc: Allocation, tokens: list[int], computed: int) -> None:
        """Give prefix names to the blocks that `computed` positions of `tokens` now fill."""
        if not self.prefix_caching:
            return
        full = computed // self.block_size
        previous = self.blocks[alloc.table[alloc.named_blocks - 1]].hash if alloc.named_blocks else None
        for i in range(alloc.named_blocks, full):
            chunk = tuple(tokens[i * self.block_size:(i + 1) * self.block_size])
            previous = chain_hash(previous, chunk)
            block = self.blocks[alloc.table[i]]
            block.hash, block.tokens = previous, chunk
            self.by_hash.setdefault(previous, block.id)  # a twin computed elsewhere keeps the first name
        alloc.named_blocks = max(alloc.named_blocks, full)

    def release(self, alloc: Allocation) -> None:
        """Give back a sequence's blocks; named ones stay reusable until overwritten."""
        for block_id in reversed(alloc.table):  # the prefix's tail is reclaimed before its head
            block = self.blocks[block_id]
            block.ref_count -= 1
            if block.ref_count == 0:
                self.free[block_id] = None
        alloc.table, alloc.named_blocks = [], 0

    def forget_prefixes(self) -> int:
        """Drop every prefix name (the weights changed, so cached keys/values are stale); the blocks
        stay allocated to whoever holds them. Returns how many names were dropped. Only while no
        sequence is running: a running one's later blocks would chain from a dropped name."""
        if any(block.ref_count for block in self.blocks):
            raise RuntimeError("forget_prefixes needs an idle engine: some blocks are still in use")
        dropped = len(self.by_hash)
        for block in self.blocks:
            block.hash, block.tokens = None, ()
        self.by_hash.clear()
        return dropped

    def hit_rate(self) -> float:
        return self.hit_tokens / self.query_tokens if self.query_tokens else 0.0
