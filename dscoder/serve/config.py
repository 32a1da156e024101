"""The engine's settings, in a module of their own so that `dscoder serve --help` (which generates
its options from them) does not import torch; `dscoder.serve.engine` re-exports `EngineConfig`."""

from __future__ import annotations

from dataclasses import dataclass

from dscoder.settings import setting


@dataclass(frozen=True)
class EngineConfig:
    """How the engine batches and caches; `dscoder serve` offers the fields its options show."""

    block_size: int = setting(16, "Tokens per KV block.")
    kv_cache_bytes: int = setting(1 << 30, "Bytes of the paged KV pool; num_blocks overrides it.", cli=False)
    num_blocks: int | None = setting(None, "Blocks in the paged KV pool (default: as many as kv_cache_bytes hold).",
                                     cli=False)
    max_running: int = setting(64, "Sequences decoding together.")
    max_waiting: int = setting(256, "Requests queued beyond the running batch; more are refused (429).")
    prefill_chunk: int = setting(128, "Prompt tokens read per step beside the running decodes (chunked prefill): "
                                      "larger reads prompts faster, smaller stalls streams less.")
    prefill_budget: int = setting(128, "Prompt tokens read per step over all prompts, beside the decodes "
                                       "(each is a stall for them).", cli=False)
    max_model_len: int | None = setting(None, "Longest prompt + completion (default: the model's context).")
    prefix_caching: bool = setting(True, "Do not reuse KV blocks across requests.", "--no-prefix-cache")
