"""The serving engine's paged KV cache: block pools shared by all sequences, and per-forward views.

Moved out of the model's cache module so that the model knows only contiguous caches and
the `RowCache` interface; continuous batching is the server's business.
"""

from __future__ import annotations

import functools
import math

import torch

from dscoder.kernels import native
from dscoder.model.cache import RowCache
from dscoder.model.transformer import attend, causal_mask


class PagedKV:
    """The serving engine's cache: per layer, pools of fixed-size blocks that all sequences share.

    A sequence owns a list of blocks (its block table) instead of a contiguous region, so
    memory is committed a block at a time as it grows, freed blocks serve any other
    sequence, and sequences with the same prefix can share the blocks holding it.  Dense
    models pool K and V of the kv heads (num_blocks, block_size, kv_heads, head_dim); MLA
    models pool the latent c_KV and the RoPE key, as their contiguous caches do.
    """

    def __init__(self, cfg, num_blocks: int, block_size: int, dtype: torch.dtype, device="cpu"):
        self.num_blocks, self.block_size, self.is_mla = num_blocks, block_size, cfg.is_mla
        self.layers = [tuple(torch.zeros(num_blocks, block_size, *shape, dtype=dtype, device=device)
                             for shape in self.row_shapes(cfg)) for _ in range(cfg.num_hidden_layers)]
        # Every layer's pools in two lists, kept for the life of the cache: the fused decode step
        # (model/fused.py) remembers their addresses by these lists' identity.
        self.k_pools, self.v_pools = [pools[0] for pools in self.layers], [pools[1] for pools in self.layers]

    @staticmethod
    def row_shapes(cfg) -> tuple[tuple[int, ...], tuple[int, ...]]:
        if cfg.is_mla:
            return (cfg.kv_lora_rank,), (cfg.qk_rope_head_dim,)
        return (cfg.num_key_value_heads, cfg.attn_head_dim), (cfg.num_key_value_heads, cfg.attn_head_dim)

    @classmethod
    def bytes_per_block(cls, cfg, block_size: int, dtype: torch.dtype) -> int:
        values = sum(math.prod(shape) for shape in cls.row_shapes(cfg))
        return values * block_size * cfg.num_hidden_layers * torch.empty((), dtype=dtype).element_size()

    def views(self, rows: "PagedRows") -> list["PagedLayer"]:
        return [PagedLayer(rows, *pools, kv=self) for pools in self.layers]


class PagedRows:
    """Which sequence and position each row of one batched forward belongs to.

    `spans` lists, per sequence, (block table, first position, row count); a sequence's rows
    are consecutive in the batch and in position (a prefill chunk, or one decode token).
    """

    def __init__(self, spans: list[tuple[list[int], int, int]], block_size: int, device="cpu"):
        self.spans, self.block_size = spans, block_size
        width = max(len(table) for table, _, _ in spans)
        self.tables = torch.tensor([table + [0] * (width - len(table)) for table, _, _ in spans], dtype=torch.int32,
                                   device=device)
        seq, pos = [], []
        for b, (_, start, count) in enumerate(spans):
            seq += [b] * count
            pos += range(start, start + count)
        self.seq = torch.tensor(seq, dtype=torch.int64, device=device)
        self.pos = torch.tensor(pos, dtype=torch.int64, device=device)
        self.slots = (self.tables.long()[self.seq, self.pos // block_size] * block_size + self.pos % block_size)
        self.few_rows_each = all(count <= native.MAX_ROWS for _, _, count in spans)
        self.max_pos = int(self.pos.max()) + 1 if len(pos) else 0

    @functools.cached_property
    def sequences(self) -> list[tuple[slice, int, int, torch.Tensor]]:
        """(rows slice, first position, row count, pool slots of positions 0..last) per sequence,
        built once per forward for all layers (the paths that gather a sequence's keys use it)."""
        out, r = [], 0
        offsets = torch.arange(self.block_size, device=self.tables.device)
        for b, (_, start, count) in enumerate(self.spans):
            length = start + count
            blocks = self.tables[b, : -(-length // self.block_size)].long()
            slots = (blocks[:, None] * self.block_size + offsets).flatten()[:length]
            out.append((slice(r, r + count), start, count, slots))
            r += count
        return out


class PagedLayer(RowCache):
    """One layer's view of the pools for one batched forward: writes the new rows, then attends."""

    def __init__(self, rows: PagedRows, first: torch.Tensor, second: torch.Tensor, kv: PagedKV | None = None):
        self.rows, self.first, self.second, self.kv = rows, first, second, kv

    def paged_pools(self) -> tuple[list[torch.Tensor], list[torch.Tensor], PagedRows] | None:
        """(every layer's K pools, V pools, these rows) for the fused decode step, or None where it
        cannot take them: MLA pools, or a sequence with more rows than the native kernels take."""
        if self.kv is None or self.kv.is_mla or not self.rows.few_rows_each or self.rows.tables.device.type != "cpu":
            return None
        return self.kv.k_pools, self.kv.v_pools, self.rows

    def _write(self, first: torch.Tensor, second: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        a, b = self.first.flatten(0, 1), self.second.flatten(0, 1)
        a.index_copy_(0, self.rows.slots, first[0].to(a.dtype))
        b.index_copy_(0, self.rows.slots, second[0].to(b.dtype))
        return a, b

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float) -> torch.Tensor:
        """Dense attention for rows q/k/v (1, N, heads, D); returns (1, N, H, D)."""
        k_flat, v_flat = self._write(k, v)
        if self.rows.few_rows_each:
            out = native.paged_attend(q[0], self.first, self.second, self.rows.seq, self.rows.pos, self.rows.tables,
                                      scale)
            if out is not None:
                return out[None]
        outs = []
        for rows, start, count, slots in self.rows.sequences:  # a prompt chunk: gather its keys, then SDPA
            mask = causal_mask(start, count, start + count, q.device)
            outs.append(attend(q[:, rows], k_flat[slots][None], v_flat[slots][None], mask, scale))
        return torch.cat(outs, dim=1)

    def attend_latent(self, mla, q_nope, q_pe, latent, k_pe) -> torch.Tensor:
        """MLA over each sequence's own pooled latents, in the form the contiguous cache would pick."""
        lat_flat, pe_flat = self._write(latent, k_pe)
        outs = []
        for rows, start, count, slots in self.rows.sequences:
            mask = causal_mask(start, count, start + count, q_nope.device)
            absorb = mla.absorb if mla.absorb is not None else start > 0
            fn = mla.attend_absorbed if absorb else mla.attend_expanded
            outs.append(fn(q_nope[:, rows], q_pe[:, rows], lat_flat[slots][None].to(q_nope.dtype),
                           pe_flat[slots][None].to(q_nope.dtype), mask))
        return torch.cat(outs, dim=1)
