"""llama.cpp GGUF files: their metadata, their vocabulary, and the Hugging Face checkpoint a
model GGUF was converted from.

Three readers, one per need, and every one of them starts from the same header walk:

* `read_header` walks the key/value section and the tensor directory once with `struct` over
  an mmap; no tensor data is touched.  gguf's own `GGUFReader` builds numpy views for every
  string of every array, which takes seconds on a 100k vocabulary (6-8 s for the
  embedded SmolLM2 file's config on this project's 2-core machine); the walk takes a small
  fraction of that.  It needs only the standard library, so the tokenizer and the CLI's
  start-up import this module without paying for gguf, numpy or torch: those are imported
  inside the functions that handle tensors or GGUF key names.
* `read_vocabulary` is the tokenizer as llama.cpp's `tokenizer.ggml.*` keys hold it;
  `dscoder.tokenizer` turns it into a BPE tokenizer.
* `read_gguf` / `read_gguf_config` give a model file as a Hugging Face checkpoint.  The
  config comes from the header walk, and so do the tensors' places: `read_gguf` slices
  each tensor's bytes out of one memory map of the file (data section start + the
  tensor's offset) and `gguf.quants` dequantizes them, so the library still does every
  quantization's arithmetic and `gguf.GGUFReader` (seconds of metadata parsing) is never
  built.

Many users only have a quantized GGUF of a model, not its Hugging Face directory.  Rather
than teach the model and the checkpoint checks a second format, we undo llama.cpp's
conversion here and hand back exactly what `config.json` + safetensors would have held,
so GGUF files go through the same validation and loading path as HF directories.

What llama.cpp's converter (`convert_hf_to_gguf.py`) changed, and so what is undone:

* Weights are quantized; `gguf.quants` dequantizes them, one tensor at a time so that
  peak memory stays near the size of the result.
* For `llama`, the rows of q and k are permuted from HF's rotate-half RoPE layout to the
  interleaved pairs ggml rotates.  `deepseek2` needs no such permute: ggml applies its
  RoPE interleaved, as DeepSeek-V2's own weights expect.
* For `deepseek2`, the per-expert FFN weights are stacked into one 3-D tensor each, and
  newer files split `kv_b_proj` per head into `attn_k_b` (transposed, for MLA weight
  absorption) and `attn_v_b`; the split also made llama.cpp record MLA as MQA
  (`head_count_kv` = 1, `key_length` = kv_lora_rank + rope dims) and move the real head
  sizes to `key_length_mla` / `value_length_mla`.
* Hyper-parameters are renamed GGUF keys and floats are stored as float32.  They are
  rounded back to the 7 significant digits float32 carries, which recovers the short
  decimals written in `config.json` (1e-05, not 9.999999747378752e-06).
"""

from __future__ import annotations

import functools
import math
import mmap
import os
import re
import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterator

from dscoder.errors import CheckpointError

if TYPE_CHECKING:
    import gguf
    import numpy as np
    import torch

SUPPORTED_ARCHITECTURES = ("llama", "deepseek2")


class GGUFError(CheckpointError):
    """A file cannot be read as GGUF, or its metadata contradicts itself; the message names the file.

    A `CheckpointError`, so model loading passes it on as it is; the tokenizer re-raises it
    as its own `TokenizerError` with the same message.
    """


# ------------------------------------------------------------------------------ header
@dataclass(frozen=True)
class TensorInfo:
    """One entry of the tensor directory: where the data is, not the data."""

    name: str
    shape: tuple[int, ...]  # slowest dimension first, as torch and HF list them (GGUF stores the reverse)
    type: int  # a ggml type number (gguf.GGMLQuantizationType)
    offset: int  # bytes from the start of the data section


@dataclass(frozen=True)
class GGUFHeader:
    path: str
    version: int
    metadata: dict[str, Any]  # key -> value: str, int, float, bool, or a list of those
    tensors: dict[str, TensorInfo]
    data_offset: int  # where the data section starts in the file
    file_size: int


_SCALARS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
_STRING, _ARRAY = 8, 9
_DEFAULT_ALIGNMENT = 32


def read_header(path: str | os.PathLike) -> GGUFHeader:
    """The key/value section and the tensor directory of a GGUF file; tensor data is never touched."""
    path = os.fspath(path)
    try:
        with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
            return _parse_header(buf, path)
    except (OSError, ValueError) as exc:  # unreadable, empty (mmap refuses it)
        if isinstance(exc, GGUFError):
            raise
        raise GGUFError(f"{path} cannot be read as GGUF; is it truncated or not a GGUF file? ({exc})") from exc


def _parse_header(buf: mmap.mmap, path: str) -> GGUFHeader:
    if buf[:4] != b"GGUF":
        raise GGUFError(f"{path} is not a GGUF file (it does not start with b'GGUF')")
    try:
        (version,) = struct.unpack_from("<I", buf, 4)
        order = "<"
        if version & 0xFFFF == 0:  # written on a big-endian machine
            order = ">"
            (version,) = struct.unpack_from(">I", buf, 4)
        if version < 2:
            raise GGUFError(f"{path}: GGUF version {version} is not supported (2 or later)")
        n_tensors, n_kv = struct.unpack_from(order + "QQ", buf, 8)
        metadata, off = _parse_metadata(buf, 24, n_kv, order)
        tensors, off = _parse_tensor_directory(buf, off, n_tensors, order, path)
    except (struct.error, ValueError) as exc:  # UnicodeDecodeError is a ValueError
        if isinstance(exc, GGUFError):
            raise
        raise GGUFError(f"{path}: GGUF metadata is truncated or corrupt ({exc})") from exc
    alignment = metadata.get("general.alignment", _DEFAULT_ALIGNMENT)
    if not isinstance(alignment, int) or alignment <= 0 or alignment & (alignment - 1):
        raise GGUFError(f"{path}: 'general.alignment' = {alignment!r} is not a power of two")
    return GGUFHeader(path, version, metadata, tensors, -(-off // alignment) * alignment, len(buf))


def _parse_metadata(buf: mmap.mmap, off: int, n_kv: int, order: str) -> tuple[dict[str, Any], int]:
    """Walks n_kv key/value pairs from `off`; struct.error or ValueError where the bytes run out or make no sense."""
    u64 = struct.Struct(order + "Q")
    u32 = struct.Struct(order + "I")

    def string(off: int) -> tuple[str, int]:
        (n,) = u64.unpack_from(buf, off)
        off += 8
        if off + n > len(buf):
            raise ValueError("string runs past the end of the file")
        return str(buf[off:off + n], "utf-8"), off + n

    def value(kind: int, off: int) -> tuple[Any, int]:
        if kind == _STRING:
            return string(off)
        if kind in _SCALARS:
            item = struct.Struct(order + _SCALARS[kind])
            return item.unpack_from(buf, off)[0], off + item.size
        if kind != _ARRAY:
            raise ValueError(f"unknown value type {kind}")
        (item_kind,) = u32.unpack_from(buf, off)
        (n,) = u64.unpack_from(buf, off + 4)
        off += 12
        if item_kind in _SCALARS:
            item = struct.Struct(f"{order}{n}{_SCALARS[item_kind]}")
            return list(item.unpack_from(buf, off)), off + item.size
        items = []
        append = items.append
        if item_kind == _STRING:  # the vocabulary and merges: keep this loop tight
            unpack, size = u64.unpack_from, len(buf)
            for _ in range(n):
                (length,) = unpack(buf, off)
                off += 8
                if off + length > size:
                    raise ValueError("string runs past the end of the file")
                append(str(buf[off:off + length], "utf-8"))
                off += length
            return items, off
        for _ in range(n):
            item_value, off = value(item_kind, off)
            append(item_value)
        return items, off

    metadata: dict[str, Any] = {}
    for _ in range(n_kv):
        key, off = string(off)
        (kind,) = u32.unpack_from(buf, off)
        metadata[key], off = value(kind, off + 4)
    return metadata, off


def _parse_tensor_directory(buf: mmap.mmap, off: int, n_tensors: int, order: str,
                            path: str) -> tuple[dict[str, TensorInfo], int]:
    u64 = struct.Struct(order + "Q")
    u32 = struct.Struct(order + "I")
    tensors: dict[str, TensorInfo] = {}
    for _ in range(n_tensors):
        (n,) = u64.unpack_from(buf, off)
        if off + 8 + n > len(buf):
            raise ValueError("tensor name runs past the end of the file")
        name = str(buf[off + 8:off + 8 + n], "utf-8")
        off += 8 + n
        (n_dims,) = u32.unpack_from(buf, off)
        dims = struct.unpack_from(f"{order}{n_dims}Q", buf, off + 4)
        off += 4 + 8 * n_dims
        kind, offset = struct.unpack_from(order + "IQ", buf, off)
        off += 12
        if name in tensors:
            raise GGUFError(f"{path}: tensor {name!r} appears more than once in the tensor directory")
        tensors[name] = TensorInfo(name, tuple(reversed(dims)), kind, offset)
    return tensors, off


# ------------------------------------------------------------------------------ vocabulary
@dataclass(frozen=True)
class GGUFVocabulary:
    """A tokenizer as llama.cpp's `tokenizer.ggml.*` keys describe it, checked for consistency.

    Which tokenizer models can be rebuilt from it is the tokenizer's business, not the file's.
    """

    model: str | None  # "gpt2" (byte-level BPE), "llama" (SentencePiece), ...
    pre: str  # the pre-tokenizer's name; "default" when the file names none, as in llama.cpp
    tokens: list[str]
    token_types: list[int]  # one per token (see CONTROL, USER_DEFINED); all normal when the file has none
    merges: list[str]  # "a b" pairs, highest priority first; empty when the file has none
    bos_id: int | None
    eos_id: int | None
    pad_id: int | None
    add_bos: bool
    chat_template: str | None
    context_length: int | None  # `{arch}.context_length`, the model's maximum sequence length


# llama.cpp's token types (1 normal, 2 unknown, 5 unused, 6 byte).
NORMAL, CONTROL, USER_DEFINED = 1, 3, 4


def read_vocabulary(path: str | os.PathLike) -> GGUFVocabulary:
    """The vocabulary of a GGUF file (vocab-only or a whole model); GGUFError if it has none or contradicts itself."""
    header = read_header(path)
    meta, path = header.metadata, header.path
    tokens = meta.get("tokenizer.ggml.tokens")
    if not tokens:
        raise GGUFError(f"{path} has no vocabulary (no 'tokenizer.ggml.tokens' in its metadata)")
    types = meta.get("tokenizer.ggml.token_type") or [NORMAL] * len(tokens)
    if len(types) != len(tokens):
        raise GGUFError(f"{path}: 'tokenizer.ggml.token_type' has {len(types)} entries for {len(tokens)} tokens")

    def special(key: str) -> int | None:
        token_id = meta.get(f"tokenizer.ggml.{key}")
        if token_id is not None and not 0 <= token_id < len(tokens):
            raise GGUFError(f"{path}: 'tokenizer.ggml.{key}' = {token_id} is outside the vocabulary of "
                            f"{len(tokens)} tokens")
        return token_id

    return GGUFVocabulary(
        model=meta.get("tokenizer.ggml.model"), pre=meta.get("tokenizer.ggml.pre", "default"), tokens=tokens,
        token_types=types, merges=meta.get("tokenizer.ggml.merges") or [],
        bos_id=special("bos_token_id"), eos_id=special("eos_token_id"), pad_id=special("padding_token_id"),
        add_bos=bool(meta.get("tokenizer.ggml.add_bos_token", False)),
        chat_template=meta.get("tokenizer.chat_template"),
        context_length=meta.get(f"{meta.get('general.architecture')}.context_length"))


# ------------------------------------------------------------------------------ model files
# GGUF tensor name (after "blk.N.") -> HF name (after "model.layers.N."), for tensors that
# only need renaming.
_LAYER_NAMES = {
    "attn_norm.weight": "input_layernorm.weight",
    "ffn_norm.weight": "post_attention_layernorm.weight",
    "attn_output.weight": "self_attn.o_proj.weight",
    "ffn_gate.weight": "mlp.gate_proj.weight",
    "ffn_up.weight": "mlp.up_proj.weight",
    "ffn_down.weight": "mlp.down_proj.weight",
}
_LLAMA_LAYER_NAMES = {**_LAYER_NAMES, "attn_v.weight": "self_attn.v_proj.weight"}
_DEEPSEEK2_LAYER_NAMES = {
    **_LAYER_NAMES,
    "attn_q.weight": "self_attn.q_proj.weight",
    "attn_q_a.weight": "self_attn.q_a_proj.weight",
    "attn_q_a_norm.weight": "self_attn.q_a_layernorm.weight",
    "attn_q_b.weight": "self_attn.q_b_proj.weight",
    "attn_kv_a_mqa.weight": "self_attn.kv_a_proj_with_mqa.weight",
    "attn_kv_a_norm.weight": "self_attn.kv_a_layernorm.weight",
    "attn_kv_b.weight": "self_attn.kv_b_proj.weight",
    "ffn_gate_inp.weight": "mlp.gate.weight",
    "ffn_gate_shexp.weight": "mlp.shared_experts.gate_proj.weight",
    "ffn_up_shexp.weight": "mlp.shared_experts.up_proj.weight",
    "ffn_down_shexp.weight": "mlp.shared_experts.down_proj.weight",
}
_GLOBAL_NAMES = {
    "token_embd.weight": "model.embed_tokens.weight",
    "output_norm.weight": "model.norm.weight",
    "output.weight": "lm_head.weight",
}
_LAYER_TENSOR = re.compile(r"blk\.(\d+)\.(.+)")
_STACKED_EXPERTS = re.compile(r"ffn_(gate|up|down)_exps\.weight")


def read_gguf(path: str | os.PathLike, dtype: torch.dtype | None = None) -> tuple[dict, dict[str, torch.Tensor]]:
    """Returns (hf_config_dict, state_dict) exactly as a Hugging Face model directory would hold them.

    Tensors come out in `dtype` (float32 when None).
    """
    import gguf
    import torch

    dtype = torch.float32 if dtype is None else dtype
    header = read_header(path)
    config = _config(header)
    path, tensors = header.path, header.tensors
    if config["model_type"] == "llama":
        plan = {name: _llama_conversion(name, config) for name in tensors}
    else:
        plan = {name: _deepseek2_conversion(name, tensors, path) for name in tensors}
    # Check everything that needs no tensor data before dequantizing gigabytes.
    unknown = [name for name, convert in plan.items() if convert is None]
    if unknown:
        raise CheckpointError(f"{path}: tensor {unknown[0]!r} has no counterpart in a Hugging Face "
                              f"{config['architectures'][0]} checkpoint")
    _check_tensor_types(header)
    data = _map_tensor_data(header)

    def load(name: str) -> torch.Tensor:
        values = gguf.quants.dequantize(data[name], gguf.GGMLQuantizationType(tensors[name].type))
        if values.flags.writeable:  # dequantize's own new array: torch takes it over without a copy
            return torch.from_numpy(values).to(dtype)
        # F32 comes back as a view of the read-only mapping: copy, so nothing returned points into the file.
        return torch.tensor(values, dtype=dtype)

    state_dict: dict[str, torch.Tensor] = {}
    for name, convert in plan.items():
        try:
            state_dict.update(convert(load))
        except RuntimeError as exc:  # a reshape or concatenation that the tensor's shape does not allow
            raise CheckpointError(f"{path}: tensor {name!r} {list(tensors[name].shape)} does not fit the "
                                  f"{config['architectures'][0]} metadata ({exc})") from exc
    return config, state_dict


def read_gguf_config(path: str | os.PathLike) -> dict:
    """Only the HF config dict, from the header walk: no tensor data is read."""
    return _config(read_header(path))


def _map_tensor_data(header: GGUFHeader) -> dict[str, np.ndarray]:
    """Each tensor's bytes in the memory-mapped file, shaped as `gguf.quants.dequantize` takes them.

    The header walk already knows where every tensor lies, so this only slices one mapping:
    `gguf.GGUFReader` would re-parse the whole key/value section into numpy views first
    (6-8 s for the embedded SmolLM2 file).  The slices are plain ndarrays rather than
    `np.memmap` views, whose per-slice bookkeeping makes gguf's blockwise dequantization
    several times slower.  Every tensor gets its bytes as uint8 rows, the layout gguf gives
    the quantized types; for F32/F16 `dequantize` reinterprets them, so the values are the
    same bits GGUFReader's typed views hold.  Nothing is read until a tensor is dequantized.
    """
    import gguf
    import numpy as np

    with open(header.path, "rb") as f:
        # The mapping stays open while any slice of it is alive, and closes with the last one.
        file = np.frombuffer(mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ), dtype=np.uint8)
    data = {}
    for tensor in header.tensors.values():
        qtype = gguf.GGMLQuantizationType(tensor.type)
        try:
            shape = gguf.quants.quant_shape_to_byte_shape(tensor.shape, qtype)
        except ValueError:
            raise GGUFError(f"{header.path}: tensor {tensor.name!r} {list(tensor.shape)} has rows that are not "
                            f"whole {qtype.name} blocks of {gguf.GGML_QUANT_SIZES[qtype][0]} values") from None
        start = header.data_offset + tensor.offset
        end = start + math.prod(shape)
        if end > len(file):  # _check_tensor_data ran on this header; the file may have changed since
            raise GGUFError(f"{header.path}: tensor {tensor.name!r} runs past the end of the file "
                            f"({end} > {len(file)} bytes); is it truncated?")
        data[tensor.name] = file[start:end].reshape(shape)
    return data


# ------------------------------------------------------------------------------ checks
def _check_tensor_data(header: GGUFHeader) -> None:
    """Every tensor's bytes lie inside the file: a truncated download fails here, not halfway through loading."""
    import gguf

    for tensor in header.tensors.values():
        try:
            qtype = gguf.GGMLQuantizationType(tensor.type)
        except ValueError:
            raise GGUFError(f"{header.path}: tensor {tensor.name!r} has unknown type {tensor.type}") from None
        block_size, type_size = gguf.GGML_QUANT_SIZES[qtype]
        end = header.data_offset + tensor.offset + math.prod(tensor.shape) // block_size * type_size
        if end > header.file_size:
            raise GGUFError(f"{header.path}: tensor {tensor.name!r} runs past the end of the file "
                            f"({end} > {header.file_size} bytes); is it truncated?")


def _check_tensor_types(header: GGUFHeader) -> None:
    """Fail before dequantizing anything rather than after minutes of work."""
    import gguf

    for tensor in header.tensors.values():
        qtype = gguf.GGMLQuantizationType(tensor.type)  # known: _check_tensor_data ran first
        if not _can_dequantize(qtype):
            raise CheckpointError(f"{header.path}: tensor {tensor.name!r} has type {qtype.name}, "
                                  "which gguf cannot dequantize")


@functools.cache
def _can_dequantize(qtype: gguf.GGMLQuantizationType) -> bool:
    import gguf
    import numpy as np

    # gguf has no public list of the types it dequantizes, so try one all-zero block.
    block_bytes = gguf.GGML_QUANT_SIZES[qtype][1]
    try:
        gguf.quants.dequantize(np.zeros((1, block_bytes), dtype=np.uint8), qtype)
    except NotImplementedError:
        return False
    return True


# ------------------------------------------------------------------------------ config
class _Metadata:
    """Typed access to a GGUF file's key/value section, with errors naming the file."""

    def __init__(self, header: GGUFHeader) -> None:
        import gguf

        self.values, self.path = header.metadata, header.path
        self.arch = ""  # general.architecture itself has no "{arch}." prefix
        self.arch = self.require(gguf.Keys.General.ARCHITECTURE)
        if self.arch not in SUPPORTED_ARCHITECTURES:
            raise CheckpointError(f"{self.path}: GGUF architecture {self.arch!r} is not supported "
                                  f"(supported: {', '.join(SUPPORTED_ARCHITECTURES)})")
        if self.get(gguf.Keys.Split.LLM_KV_SPLIT_COUNT, 1) > 1:
            raise CheckpointError(f"{self.path} is one part of a split GGUF; merge the parts first "
                                  "(llama-gguf-split --merge)")

    def get(self, key: str, default: Any = None) -> Any:
        value = self.values.get(key.format(arch=self.arch))
        if value is None:
            return default
        return _decimal(value) if isinstance(value, float) else value

    def require(self, key: str) -> Any:
        value = self.get(key)
        if value is None:
            raise CheckpointError(f"{self.path}: GGUF metadata key {key.format(arch=self.arch)!r} is missing")
        return value


def _decimal(value: float) -> float:
    """The short decimal a float32 was written from (float32 holds ~7 significant digits)."""
    return float(f"{value:.7g}")


def _config(header: GGUFHeader) -> dict[str, Any]:
    meta = _Metadata(header)
    _check_tensor_data(header)
    if meta.arch == "llama":
        return _llama_config(meta, header.tensors)
    return _deepseek2_config(meta, header.tensors)


def _common_config(meta: _Metadata, tensors: dict[str, TensorInfo]) -> dict[str, Any]:
    import gguf

    K, A, R = gguf.Keys.LLM, gguf.Keys.Attention, gguf.Keys.Rope
    n_head = meta.require(A.HEAD_COUNT)
    config = {
        "vocab_size": meta.get(K.VOCAB_SIZE) or _rows(tensors, "token_embd.weight", meta.path),
        "hidden_size": meta.require(K.EMBEDDING_LENGTH),
        "intermediate_size": meta.require(K.FEED_FORWARD_LENGTH),
        "num_hidden_layers": meta.require(K.BLOCK_COUNT),
        "num_attention_heads": n_head,
        "num_key_value_heads": meta.get(A.HEAD_COUNT_KV, n_head),
        "rms_norm_eps": meta.require(A.LAYERNORM_RMS_EPS),
        "max_position_embeddings": meta.require(K.CONTEXT_LENGTH),
        "rope_theta": meta.get(R.FREQ_BASE, 10000.0),
        "rope_scaling": _rope_scaling(meta),
        "tie_word_embeddings": "output.weight" not in tensors,
    }
    for key, name in ((gguf.Keys.Tokenizer.BOS_ID, "bos_token_id"), (gguf.Keys.Tokenizer.EOS_ID, "eos_token_id")):
        if (token_id := meta.get(key)) is not None:
            config[name] = token_id
    return config


def _rows(tensors: dict[str, TensorInfo], name: str, path: str) -> int:
    if name not in tensors:
        raise CheckpointError(f"{path}: tensor {name!r} is missing")
    return tensors[name].shape[0]


def _rope_scaling(meta: _Metadata) -> dict[str, Any] | None:
    import gguf

    R = gguf.Keys.Rope
    kind = meta.get(R.SCALING_TYPE, "none")
    supported = {"llama": ("none", "linear"), "deepseek2": ("none", "yarn")}[meta.arch]
    if kind not in supported:
        raise CheckpointError(f"{meta.path}: RoPE scaling {kind!r} is not supported for {meta.arch} "
                              f"(supported: {', '.join(supported)})")
    if kind == "none":
        return None
    scaling = {"type": kind, "factor": meta.require(R.SCALING_FACTOR)}
    if kind == "yarn":
        # llama.cpp stores 0.1 * mscale_all_dim as the log multiplier; DeepSeek-V2 sets mscale to the same value.
        mscale = _decimal(meta.get(R.SCALING_YARN_LOG_MUL, 0.0) / 0.1)
        scaling.update({
            "original_max_position_embeddings": meta.require(R.SCALING_ORIG_CTX_LEN),
            "beta_fast": meta.get(R.SCALING_YARN_BETA_FAST, 32),
            "beta_slow": meta.get(R.SCALING_YARN_BETA_SLOW, 1),
            "mscale": mscale,
            "mscale_all_dim": mscale,
        })
    return scaling


def _llama_config(meta: _Metadata, tensors: dict[str, TensorInfo]) -> dict[str, Any]:
    import gguf

    config = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", **_common_config(meta, tensors)}
    default_head_dim = config["hidden_size"] // config["num_attention_heads"]
    head_dim = meta.get(gguf.Keys.Attention.KEY_LENGTH) or meta.get(gguf.Keys.Rope.DIMENSION_COUNT, default_head_dim)
    if head_dim != default_head_dim:
        config["head_dim"] = head_dim
    return config


def _deepseek2_config(meta: _Metadata, tensors: dict[str, TensorInfo]) -> dict[str, Any]:
    import gguf

    K, A = gguf.Keys.LLM, gguf.Keys.Attention
    gating = meta.get(K.EXPERT_GATING_FUNC, gguf.ExpertGatingFuncType.SOFTMAX)
    if gating != gguf.ExpertGatingFuncType.SOFTMAX:
        raise CheckpointError(f"{meta.path}: expert gating function {gating} is not DeepSeek-V2's softmax "
                              f"({gguf.ExpertGatingFuncType.SOFTMAX.value}); is this a DeepSeek-V3-style model?")
    config = {"architectures": ["DeepseekV2ForCausalLM"], "model_type": "deepseek_v2",
              **_common_config(meta, tensors)}
    # MLA decompresses the latent KV into one key and value per query head.
    config["num_key_value_heads"] = config["num_attention_heads"]
    qk_rope = meta.require(gguf.Keys.Rope.DIMENSION_COUNT)
    qk_head = meta.get(A.KEY_LENGTH_MLA) or meta.require(A.KEY_LENGTH)
    n_group = meta.get(K.EXPERT_GROUP_COUNT)
    config.update({
        "moe_intermediate_size": meta.require(K.EXPERT_FEED_FORWARD_LENGTH),
        "n_routed_experts": meta.require(K.EXPERT_COUNT),
        "n_shared_experts": meta.get(K.EXPERT_SHARED_COUNT, 0),
        "num_experts_per_tok": meta.require(K.EXPERT_USED_COUNT),
        "first_k_dense_replace": meta.get(K.LEADING_DENSE_BLOCK_COUNT, 0),
        "moe_layer_freq": 1,
        "q_lora_rank": meta.get(A.Q_LORA_RANK),
        "kv_lora_rank": meta.require(A.KV_LORA_RANK),
        "qk_nope_head_dim": qk_head - qk_rope,
        "qk_rope_head_dim": qk_rope,
        "v_head_dim": meta.get(A.VALUE_LENGTH_MLA) or meta.require(A.VALUE_LENGTH),
        "routed_scaling_factor": meta.get(K.EXPERT_WEIGHTS_SCALE, 1.0),
        "norm_topk_prob": meta.get(K.EXPERT_WEIGHTS_NORM, False),
        "scoring_func": "softmax",
        "topk_method": "group_limited_greedy" if n_group is not None and n_group > 1 else "greedy",
        "n_group": n_group,
        "topk_group": meta.get(K.EXPERT_GROUP_USED_COUNT),
    })
    return config


# ------------------------------------------------------------------------------ tensors
# A conversion turns GGUF tensors, fetched through a loader (name -> dequantized tensor in
# numpy layout, i.e. GGUF's dims reversed), into (HF name, tensor) pairs.
Loader = Callable[[str], "torch.Tensor"]
Conversion = Callable[[Loader], Iterator[tuple[str, "torch.Tensor"]]]


def _renamed(name: str, hf_name: str, transform: Callable[[torch.Tensor], torch.Tensor] | None = None) -> Conversion:
    def convert(load: Loader) -> Iterator[tuple[str, torch.Tensor]]:
        tensor = load(name)
        yield hf_name, tensor if transform is None else transform(tensor)
    return convert


def _nothing(_load: Loader) -> Iterator[tuple[str, torch.Tensor]]:
    return iter(())


def _llama_conversion(name: str, config: dict[str, Any]) -> Conversion | None:
    if name in _GLOBAL_NAMES:
        return _renamed(name, _GLOBAL_NAMES[name])
    match = _LAYER_TENSOR.fullmatch(name)
    if match is None:
        return None
    layer, suffix = f"model.layers.{match.group(1)}.", match.group(2)
    if suffix == "attn_q.weight":
        n_head = config["num_attention_heads"]
        return _renamed(name, layer + "self_attn.q_proj.weight", lambda w: _unpermute_rope_rows(w, n_head))
    if suffix == "attn_k.weight":
        n_head_kv = config["num_key_value_heads"]
        return _renamed(name, layer + "self_attn.k_proj.weight", lambda w: _unpermute_rope_rows(w, n_head_kv))
    if suffix in _LLAMA_LAYER_NAMES:
        return _renamed(name, layer + _LLAMA_LAYER_NAMES[suffix])
    return None


def _unpermute_rope_rows(weight: torch.Tensor, n_head: int) -> torch.Tensor:
    """Inverse of llama.cpp's `LlamaModel.permute`.

    Within each head, llama.cpp reorders the rows from HF's rotate-half layout (dims i and
    i + d/2 rotate together) to ggml's interleaved one (dims 2i and 2i + 1).
    """
    half = weight.shape[0] // n_head // 2
    return weight.reshape(n_head, half, 2, *weight.shape[1:]).transpose(1, 2).reshape(weight.shape)


def _deepseek2_conversion(name: str, tensors: dict[str, TensorInfo], path: str) -> Conversion | None:
    if name in _GLOBAL_NAMES:
        return _renamed(name, _GLOBAL_NAMES[name])
    match = _LAYER_TENSOR.fullmatch(name)
    if match is None:
        return None
    block, suffix = match.groups()
    layer = f"model.layers.{block}."
    if suffix in _DEEPSEEK2_LAYER_NAMES:
        return _renamed(name, layer + _DEEPSEEK2_LAYER_NAMES[suffix])
    if experts := _STACKED_EXPERTS.fullmatch(suffix):
        return functools.partial(_split_experts, name, layer, experts.group(1))
    if suffix not in ("attn_k_b.weight", "attn_v_b.weight"):
        return None
    if f"blk.{block}.attn_kv_b.weight" in tensors:
        return _nothing  # some converters also write the split, which then duplicates attn_kv_b
    k_b, v_b = f"blk.{block}.attn_k_b.weight", f"blk.{block}.attn_v_b.weight"
    if k_b not in tensors or v_b not in tensors:
        raise CheckpointError(f"{path}: {name!r} needs both {k_b!r} and {v_b!r} to rebuild kv_b_proj")
    if suffix == "attn_v_b.weight":
        return _nothing  # consumed together with attn_k_b
    return functools.partial(_join_kv_b, k_b, v_b, layer + "self_attn.kv_b_proj.weight")


def _split_experts(name: str, layer: str, proj: str, load: Loader) -> Iterator[tuple[str, torch.Tensor]]:
    """llama.cpp stacks the experts' weights into one [experts, out, in] tensor per projection."""
    for expert, weight in enumerate(load(name).unbind(0)):
        # clone: separate storage, so that the state dict can be saved with safetensors.
        yield f"{layer}mlp.experts.{expert}.{proj}_proj.weight", weight.clone()


def _join_kv_b(k_b: str, v_b: str, hf_name: str, load: Loader) -> Iterator[tuple[str, torch.Tensor]]:
    """Rebuild HF's kv_b_proj [heads * (nope + v), kv_lora_rank] from llama.cpp's MLA split.

    attn_k_b is [heads, kv_lora_rank, nope] (each head's key rows transposed) and attn_v_b
    is [heads, v, kv_lora_rank]; kv_b_proj holds, per head, the nope key rows then the v rows.
    """
    import torch

    v = load(v_b)
    yield hf_name, torch.cat([load(k_b).transpose(1, 2), v], dim=1).reshape(-1, v.shape[2])
