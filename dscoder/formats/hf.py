"""Hugging Face model directories in and out, and the checks that keep bad weights out.

A checkpoint is always an HF directory (config.json + safetensors, single or sharded),
so transformers, vLLM and llama.cpp's converter read what we write.  Loading builds the
model on the `meta` device, checks every key and shape against the config *before* reading
any tensor data, then memory-maps the tensors and assigns them; a mismatch raises
`CheckpointError` naming the file, key and shapes, and no half-loaded model escapes.
GGUF files enter through the same checks (`load_gguf`).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch.overrides import TorchFunctionMode

from dscoder.model.config import ModelConfig
from dscoder.errors import CheckpointError, ConfigError
from dscoder.files import replacing, write_atomic
from dscoder.model.transformer import Transformer

# Tensors some published checkpoints carry that are derived, not learned.
_IGNORED = re.compile(r"rotary_emb\.inv_freq$")
DEFAULT_SHARD_BYTES = 5 * 1024**3


def hf_key(ours: str) -> str:
    return ours if ours.startswith("lm_head.") else "model." + ours


def our_key(hf: str) -> str:
    return hf.removeprefix("model.")


@dataclass
class TensorRef:
    """A tensor known by shape before it is read: checking all shapes first costs no I/O."""

    shape: tuple[int, ...]
    load: Callable[[], torch.Tensor]
    origin: str  # file it comes from, for error messages


# ---------------------------------------------------------------------------- reading
def read_config(directory: Path) -> ModelConfig:
    path = directory / "config.json"
    if not path.is_file():
        raise CheckpointError(f"{directory} is not a model directory: it has no config.json")
    try:
        hf = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path} is not valid JSON: {e}") from None
    try:
        return ModelConfig.from_hf(hf)
    except ConfigError as e:
        raise CheckpointError(f"{path}: {e}") from None


def _weight_files(directory: Path) -> list[Path]:
    for index_name in ("model.safetensors.index.json", "pytorch_model.bin.index.json"):
        index = directory / index_name
        if index.is_file():
            try:
                weight_map = json.loads(index.read_text())["weight_map"]
            except (json.JSONDecodeError, KeyError) as e:
                raise CheckpointError(f"{index} is not a valid shard index: {e}") from None
            files = [directory / name for name in sorted(set(weight_map.values()))]
            missing = [str(f) for f in files if not f.is_file()]
            if missing:
                raise CheckpointError(f"{index} lists shards that do not exist: {', '.join(missing)}")
            return files
    files = sorted(directory.glob("*.safetensors")) or sorted(directory.glob("pytorch_model*.bin"))
    if not files:
        raise CheckpointError(f"{directory} holds no weights (no *.safetensors or pytorch_model*.bin)")
    return files


def _safetensors_refs(path: Path) -> dict[str, TensorRef]:
    try:
        handle = safe_open(str(path), framework="pt")
        keys = list(handle.keys())
        shapes = {k: tuple(handle.get_slice(k).get_shape()) for k in keys}
    except Exception as e:  # safetensors raises its own error type for bad headers / short files
        raise CheckpointError(f"{path} is not a readable safetensors file (truncated or corrupt?): {e}") from None
    size = path.stat().st_size

    def loader(key: str) -> Callable[[], torch.Tensor]:
        def load() -> torch.Tensor:
            try:
                return handle.get_tensor(key)
            except Exception as e:
                raise CheckpointError(f"{path} ({size} bytes): cannot read tensor {key}: {e}") from None
        return load

    return {k: TensorRef(shapes[k], loader(k), str(path)) for k in keys}


def _torch_bin_refs(path: Path) -> dict[str, TensorRef]:
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True, mmap=True)
    except Exception as e:
        raise CheckpointError(f"{path} is not a readable PyTorch checkpoint (truncated or corrupt?): {e}") from None
    return {k: TensorRef(tuple(v.shape), (lambda v=v: v), str(path)) for k, v in state.items()}


def directory_tensors(directory: Path) -> dict[str, TensorRef]:
    refs: dict[str, TensorRef] = {}
    for file in _weight_files(directory):
        part = _safetensors_refs(file) if file.suffix == ".safetensors" else _torch_bin_refs(file)
        clash = refs.keys() & part.keys()
        if clash:
            raise CheckpointError(f"{file} repeats tensors already in another shard: {sorted(clash)[:5]}")
        refs.update(part)
    return refs


_INITIALISERS = {"normal_", "uniform_", "kaiming_uniform_", "kaiming_normal_", "trunc_normal_", "xavier_uniform_",
                 "xavier_normal_", "zeros_", "ones_", "constant_", "fill_", "zero_"}


class _SkipInitOnMeta(TorchFunctionMode):
    """Initialisers called on a meta tensor return it untouched: on meta they compute nothing, but
    `nn.Embedding`'s `normal_` imports torch._dynamo there (1.1-1.3 s, most of a warm start)."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if getattr(func, "__name__", "") in _INITIALISERS:
            target = args[0] if args else kwargs.get("tensor")
            if isinstance(target, torch.Tensor) and target.is_meta:
                return target
        return func(*args, **kwargs)


def meta_model(cfg: ModelConfig) -> Transformer:
    """The network `cfg` describes on the meta device (shapes and dtypes, no memory), its initialisers skipped."""
    with torch.device("meta"), _SkipInitOnMeta():
        return Transformer(cfg)


def build_model(cfg: ModelConfig, refs: dict[str, TensorRef], source: str,
                dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu",
                quant: "QuantConfig | None" = None) -> Transformer:
    """Check `refs` (HF key names) against the model `cfg` describes, then load them into it.

    With `quant`, each planned linear weight is quantized as soon as it is read, so peak
    memory is the quantized model plus one full-precision tensor.  A checkpoint saved
    quantized (config.json has `quantization_config`) loads its packed tensors as they are.
    """
    from dscoder.model.quant import QuantConfig, install, quant_plan, quantize_weight

    saved = cfg.extra.get("quantization_config")
    saved = QuantConfig.from_hf(saved) if saved else None
    if saved and quant:
        raise CheckpointError(f"{source} is already quantized ({saved.scheme}); load it without --quant")
    model = meta_model(cfg)
    plan = quant_plan(model, saved or quant) if (saved or quant) else {}
    if saved:
        install(model, plan, saved)
    expected = {hf_key(k): tuple(v.shape) for k, v in model.state_dict().items()}
    head_is_embedding = cfg.tie_word_embeddings and isinstance(model.lm_head, torch.nn.Linear)
    if head_is_embedding:
        expected.pop("lm_head.weight")
    available = {k for k in refs if not _IGNORED.search(k)}
    if head_is_embedding:
        available.discard("lm_head.weight")  # some tied checkpoints store the head too; it is the embedding
    hint = ("; config.json (num_hidden_layers, experts, tie_word_embeddings...) does not match the weights")
    missing = sorted(expected.keys() - available, key=_natural)
    if missing:
        raise CheckpointError(f"{source}: {len(missing)} tensor(s) missing, e.g. {missing[:5]}{hint}")
    unexpected = sorted(available - expected.keys(), key=_natural)
    if unexpected:
        raise CheckpointError(f"{source}: {len(unexpected)} unexpected tensor(s), e.g. {unexpected[:5]}{hint}")
    for key in sorted(expected, key=_natural):
        if refs[key].shape != expected[key]:
            raise CheckpointError(f"{refs[key].origin}: tensor {key} has shape {list(refs[key].shape)}, "
                                  f"expected {list(expected[key])} from the config; the config contradicts the weights")
    state = {}
    for key in expected:
        tensor = refs[key].load()
        if tuple(tensor.shape) != expected[key]:  # a lying header / index
            raise CheckpointError(f"{refs[key].origin}: tensor {key} read with shape {list(tensor.shape)}, "
                                  f"expected {list(expected[key])}")
        name, module = our_key(key), our_key(key).rpartition(".")[0]
        if module in plan and not tensor.is_floating_point() or name.endswith((".scales", ".mins")):
            state[name] = tensor.to(device=device)  # packed tensors keep their own dtype
        elif quant and module in plan and name.endswith(".weight"):
            state.update({f"{module}.{k}": v.to(device) for k, v in
                          quantize_weight(tensor, plan[module], quant.group_size).items()})
        else:
            state[name] = tensor.to(device=device, dtype=dtype)
    if quant:
        if cfg.tie_word_embeddings and "lm_head" in plan:
            state.update({f"lm_head.{k}": v for k, v in quantize_weight(
                state["embed_tokens.weight"], plan["lm_head"], quant.group_size).items()})
        install(model, plan, quant)
    if isinstance(model.lm_head, torch.nn.Linear) and cfg.tie_word_embeddings:
        state["lm_head.weight"] = state["embed_tokens.weight"]
    model.load_state_dict(state, assign=True, strict=True)
    if isinstance(model.lm_head, torch.nn.Linear) and cfg.tie_word_embeddings:
        model.lm_head.weight = model.embed_tokens.weight
    return model.eval()


def load_hf_dir(directory: str | os.PathLike, dtype: torch.dtype = torch.float32,
                device: torch.device | str = "cpu", quant: "QuantConfig | None" = None) -> Transformer:
    directory = Path(directory)
    cfg = read_config(directory)
    return build_model(cfg, directory_tensors(directory), str(directory), dtype, device, quant)


def load_gguf(path: str | os.PathLike, dtype: torch.dtype = torch.float32,
              device: torch.device | str = "cpu", quant: "QuantConfig | None" = None) -> Transformer:
    """A GGUF file (dequantized on load) through the same key/shape checks as an HF directory."""
    from dscoder.formats.gguf import read_gguf

    hf_config, tensors = read_gguf(path, dtype=dtype)
    try:
        cfg = ModelConfig.from_hf(hf_config)
    except ConfigError as e:
        raise CheckpointError(f"{path}: {e}") from None
    refs = {k: TensorRef(tuple(t.shape), (lambda t=t: t), str(path)) for k, t in tensors.items()}
    return build_model(cfg, refs, str(path), dtype, device, quant)


def _natural(key: str) -> list:
    return [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", key)]


# ---------------------------------------------------------------------------- writing
_DTYPE_NAMES = {torch.float32: "float32", torch.bfloat16: "bfloat16", torch.float16: "float16"}


def _is_float_weight(key: str, tensor: torch.Tensor) -> bool:
    """Weights that take the save dtype; quantized scales/minima keep theirs, as the kernels read them."""
    return tensor.is_floating_point() and not key.endswith((".scales", ".mins"))


def _save_safetensors(tensors: dict[str, torch.Tensor], tmp: Path, final: Path) -> None:
    """safetensors' writer reports a failed write (a full disk) as its own SafetensorError; turn it
    back into the OSError it is, with the errno, so callers handle it as any other failed write."""
    try:
        save_file(tensors, str(tmp), metadata={"format": "pt"})
    except SafetensorError as e:
        found = re.search(r"os error (\d+)", str(e))
        if found is None:
            raise
        code = int(found.group(1))
        raise OSError(code, os.strerror(code), str(final)) from None


def save_hf_dir(model: Transformer, directory: str | os.PathLike, dtype: torch.dtype | None = None,
                max_shard_bytes: int = DEFAULT_SHARD_BYTES, rope_format: str = "legacy") -> Path:
    """Write config.json, generation_config.json and (sharded) safetensors that transformers loads.

    Each file is written whole or not at all (`dscoder.files`: temporary name, fsync, rename),
    weights first and config.json last. The directory as a whole is not: saving over an older
    model that a kill interrupts can leave new shards beside the old config. Whoever needs the
    whole directory to be old or new (convert, a trainer's checkpoint) saves into
    `dscoder.files.atomic_directory`.
    """
    return save_hf_state(model.config, model.state_dict(), directory, dtype or model.embed_tokens.weight.dtype,
                         max_shard_bytes, rope_format, getattr(model, "quant_config", None))


def save_hf_state(cfg: ModelConfig, state: dict[str, torch.Tensor], directory: str | os.PathLike,
                  dtype: torch.dtype, max_shard_bytes: int = DEFAULT_SHARD_BYTES, rope_format: str = "legacy",
                  quant=None) -> Path:
    """`save_hf_dir` from a config and a state dict in our key names: what a trainer holds when the
    model itself is sharded over processes and only the gathered full state dict is whole."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {hf_key(k): v for k, v in state.items()}
    if cfg.tie_word_embeddings:
        state.pop("lm_head.weight", None)  # absent when the head is quantized: then it is stored on its own
    state = {k: (v.to(dtype=dtype) if _is_float_weight(k, v) else v).detach().to("cpu").contiguous()
             for k, v in sorted(state.items(), key=lambda kv: _natural(kv[0]))}
    shards: list[dict[str, torch.Tensor]] = [{}]
    size = 0
    for key, tensor in state.items():
        nbytes = tensor.numel() * tensor.element_size()
        if shards[-1] and size + nbytes > max_shard_bytes:
            shards.append({})
            size = 0
        shards[-1][key] = tensor
        size += nbytes
    names = ["model.safetensors"] if len(shards) == 1 else \
        [f"model-{i:05d}-of-{len(shards):05d}.safetensors" for i in range(1, len(shards) + 1)]
    if len(shards) == 1:  # an index left by an earlier sharded save would be read first: it goes before anything
        (directory / "model.safetensors.index.json").unlink(missing_ok=True)
    for name, shard in zip(names, shards):
        with replacing(directory / name) as tmp:
            _save_safetensors(shard, tmp, directory / name)
    if len(shards) > 1:
        weight_map = {key: name for name, shard in zip(names, shards) for key in shard}
        total = sum(t.numel() * t.element_size() for t in state.values())
        write_atomic(directory / "model.safetensors.index.json",
                     json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2))
    for stale in directory.glob("model*.safetensors"):
        if stale.name not in names:
            stale.unlink()
    hf = cfg.to_hf(rope_format=rope_format)
    if quant is not None:
        hf["quantization_config"] = quant.to_hf()
    hf["torch_dtype"] = _DTYPE_NAMES.get(dtype, str(dtype).removeprefix("torch."))
    write_atomic(directory / "config.json", json.dumps(hf, indent=2, sort_keys=True) + "\n")
    generation = {"bos_token_id": cfg.bos_token_id, "eos_token_id": cfg.eos_token_id}
    write_atomic(directory / "generation_config.json", json.dumps(generation, indent=2) + "\n")
    return directory
