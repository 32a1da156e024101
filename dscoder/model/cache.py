"""Per-layer KV caches, preallocated and written in place (as in gpt-fast).

V1 keeps K and V for the kv heads only, so GQA/MQA save memory in the cache too. V2
keeps what MLA was designed to cache: the normalised latent c_KV and the shared RoPE key,
(kv_lora_rank + qk_rope_head_dim) values per token per layer, instead of full per-head K/V.
`update` writes new positions at `start_pos` and returns the valid prefix, so prefill can
run in chunks from any position and decode can append several tokens at once.
"""

from __future__ import annotations

import torch


class _Cache:
    def __init__(self, *buffers: torch.Tensor):
        self.buffers = buffers
        self.max_len = buffers[0].shape[1]

    def update(self, start_pos: int, *new: torch.Tensor) -> tuple[torch.Tensor, ...]:
        end = start_pos + new[0].shape[1]
        if end > self.max_len:
            raise ValueError(f"cache holds {self.max_len} positions; writing {start_pos}..{end} does not fit")
        for buf, val in zip(self.buffers, new):
            buf[:, start_pos:end] = val
        return tuple(buf[:, :end] for buf in self.buffers)

    @property
    def nbytes_per_token(self) -> int:
        return sum(b[0, 0].numel() * b.element_size() for b in self.buffers)


class DenseCache(_Cache):
    def __init__(self, batch: int, max_len: int, n_kv_heads: int, head_dim: int, dtype, device):
        shape = (batch, max_len, n_kv_heads, head_dim)
        super().__init__(torch.zeros(shape, dtype=dtype, device=device), torch.zeros(shape, dtype=dtype, device=device))


class LatentCache(_Cache):
    def __init__(self, batch: int, max_len: int, kv_lora_rank: int, rope_dim: int, dtype, device):
        super().__init__(torch.zeros(batch, max_len, kv_lora_rank, dtype=dtype, device=device),
                         torch.zeros(batch, max_len, rope_dim, dtype=dtype, device=device))


LayerCache = DenseCache | LatentCache


class RowCache:
    """A cache whose rows belong to several sequences at once (the serving engine's paged view).

    The model cannot attend over such a cache with one mask, so it hands the attention to
    the cache: `attend` for dense layers, `attend_latent` for MLA (which calls back the
    layer's public `attend_absorbed`/`attend_expanded`). The paged implementation lives in
    `dscoder.serve.paged`; this base class only lets the model recognise it without
    importing the server.
    """

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float) -> torch.Tensor:
        raise NotImplementedError

    def attend_latent(self, mla, q_nope, q_pe, latent, k_pe) -> torch.Tensor:
        raise NotImplementedError

    def paged_pools(self):
        """(every layer's K pools, V pools, the rows) when the fused decode step can run over this
        cache (model/fused.py), else None: the layers then run one by one through `attend`."""
        return None
