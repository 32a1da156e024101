"""A tiny Llama as a GGUF file, written with the `gguf` package the way llama.cpp lays it out
(2-D weights in Q4_1 like the embedded SmolLM2 file, norms in F32, the head tied to the
embedding): a real file for the loaders and the weights cache, in milliseconds."""

from __future__ import annotations

from pathlib import Path

import gguf
import numpy as np

Q = gguf.GGMLQuantizationType
HIDDEN, INTERMEDIATE, LAYERS, HEADS, KV_HEADS, VOCAB = 64, 128, 2, 4, 2, 96


def add_tokenizer(writer: gguf.GGUFWriter, vocab_size: int) -> None:
    """A small gpt2-style vocabulary: enough for transformers' GGUF loader and ours."""
    writer.add_tokenizer_model("gpt2")
    writer.add_token_list([f"t{i}" for i in range(vocab_size)])
    writer.add_token_types([gguf.TokenType.NORMAL] * vocab_size)
    writer.add_token_merges([])
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)


def write_tiny_gguf(path: Path, seed: int = 0, qtype: Q = Q.Q4_1, hidden: int = HIDDEN) -> Path:
    """A random tiny Llama (`seed` picks the weights, `hidden` the width) with a gpt2-style vocabulary."""
    rng = np.random.default_rng(seed)
    writer = gguf.GGUFWriter(path, "llama")
    writer.add_name(f"tiny llama {seed}")
    writer.add_block_count(LAYERS)
    writer.add_context_length(256)
    writer.add_embedding_length(hidden)
    writer.add_feed_forward_length(INTERMEDIATE)
    writer.add_head_count(HEADS)
    writer.add_head_count_kv(KV_HEADS)
    writer.add_rope_freq_base(10000.0)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_vocab_size(VOCAB)
    writer.add_rope_dimension_count(hidden // HEADS)
    add_tokenizer(writer, VOCAB)
    head_dim = hidden // HEADS
    shapes = {"token_embd.weight": (VOCAB, hidden), "output_norm.weight": (hidden,)}
    for i in range(LAYERS):
        shapes.update({
            f"blk.{i}.attn_norm.weight": (hidden,), f"blk.{i}.ffn_norm.weight": (hidden,),
            f"blk.{i}.attn_q.weight": (hidden, hidden), f"blk.{i}.attn_k.weight": (KV_HEADS * head_dim, hidden),
            f"blk.{i}.attn_v.weight": (KV_HEADS * head_dim, hidden), f"blk.{i}.attn_output.weight": (hidden, hidden),
            f"blk.{i}.ffn_gate.weight": (INTERMEDIATE, hidden), f"blk.{i}.ffn_up.weight": (INTERMEDIATE, hidden),
            f"blk.{i}.ffn_down.weight": (hidden, INTERMEDIATE),
        })
    for name, shape in shapes.items():
        if len(shape) == 1:
            writer.add_tensor(name, (1.0 + 0.1 * rng.standard_normal(shape)).astype(np.float32), raw_dtype=Q.F32)
        else:
            values = (0.2 * rng.standard_normal(shape)).astype(np.float32)
            writer.add_tensor(name, gguf.quants.quantize(values, qtype), raw_dtype=qtype)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
