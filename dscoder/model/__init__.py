"""The network and what describes it: `ModelConfig`, the published presets, the Transformer
(V1 dense and V2 MLA/MoE), its contiguous KV caches, weight-only quantization and the facts
(sizes, memory) a user asks about.

Imports only `dscoder.kernels` and `dscoder.errors`; file formats, tokenizers and the server
build on it.
"""
