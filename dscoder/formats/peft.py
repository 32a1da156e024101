"""LoRA adapters in peft's on-disk format: `adapter_config.json` + `adapter_model.safetensors`.

peft's format is what adapters are shared in (the Hub, trl, axolotl...), so ours are written
in it, and an adapter peft trained loads here. Written by hand: peft is a dev-only peer (the
tests check `peft.PeftModel.from_pretrained` reads what we write and gives our logits), and
reading two small files needs none of it.

The tensors are named as peft names them on a transformers model: `base_model.model.` + the
module's HF name + `.lora_A.weight` / `.lora_B.weight` (A is [r, in], B is [out, r]), e.g.
`base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight`; the config carries
LoraConfig's fields. Only plain LoRA is read: a config asking for anything that changes what
the adapter computes and that `LoRALinear` does not do (DoRA, rsLoRA scaling, per-layer ranks,
trained biases, full copies of other modules...) is refused with the field named, rather
than loaded to compute something else.

Beside peft's two files an adapter directory may hold `token_rows.safetensors`: embedding (and
untied output head) rows trained with the adapter, for tokens a fine-tuning added to the
vocabulary (`finetune --add-fim-tokens`). peft has no plain-LoRA place for them (its
`trainable_token_indices` stores deltas against rows of the base it was made on), and without
them the added tokens would have their untrained mean rows; `load_adapter` puts them in.

Loading is all-or-nothing: the config, every tensor name and every shape are checked against
the network (and the tensors read) before the network is touched, so an adapter for another
base (`AdapterMismatchError`, naming the adapter's base and both shapes) or a damaged file
leaves the network as it was. Each file is written whole or not at all (`dscoder.files`),
the weights first and the config last, so a reader that finds the config finds the weights.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open
from torch import nn

from dscoder.errors import CheckpointError
from dscoder.files import replacing, write_atomic
from dscoder.formats.hf import _save_safetensors, hf_key, our_key
from dscoder.model.lora import (FACTORS, LoRATargetError, adapter_targets, apply_lora, lora_modules, lora_plan,
                                matching_layers)

CONFIG_FILE = "adapter_config.json"
WEIGHTS_FILE = "adapter_model.safetensors"
TOKEN_ROWS_FILE = "token_rows.safetensors"
PREFIX = "base_model.model."

# LoraConfig fields that change what an adapter computes, with the values under which it is
# plain LoRA (what we compute). Any other value is refused; fields not listed here (init
# schemes, bookkeeping, fields of later peft versions) do not change a loaded adapter's output.
PLAIN = {
    "fan_in_fan_out": (False, None),
    "bias": ("none", None),
    "use_rslora": (False, None),
    "use_dora": (False, None),
    "lora_bias": (False, None),
    "use_qalora": (False, None),
    "modules_to_save": (None, []),
    "layers_to_transform": (None, []),
    "rank_pattern": ({}, None),
    "alpha_pattern": ({}, None),
    "exclude_modules": (None, []),
    "target_parameters": (None, []),
    "layer_replication": (None, []),
    "trainable_token_indices": (None, [], {}),
    "alora_invocation_tokens": (None, []),
    "megatron_config": (None, {}),
}


class AdapterError(CheckpointError):
    """An adapter directory cannot be read, or asks for something we do not compute."""


class AdapterMismatchError(AdapterError):
    """The adapter does not fit this network: it was made for another base model."""


@dataclass(frozen=True)
class AdapterConfig:
    """The LoraConfig fields we compute with."""

    rank: int
    alpha: float
    dropout: float
    targets: tuple[str, ...]
    base_model_name_or_path: str | None = None

    def to_peft(self) -> dict:
        """adapter_config.json as peft writes it for a plain LoRA on a causal LM."""
        alpha = int(self.alpha) if float(self.alpha).is_integer() else self.alpha
        return {"peft_type": "LORA", "task_type": "CAUSAL_LM", "base_model_name_or_path": self.base_model_name_or_path,
                "revision": None, "inference_mode": True, "r": self.rank, "lora_alpha": alpha,
                "lora_dropout": self.dropout, "target_modules": list(self.targets), "exclude_modules": None,
                "fan_in_fan_out": False, "bias": "none", "use_rslora": False, "use_dora": False, "lora_bias": False,
                "modules_to_save": None, "init_lora_weights": True, "layers_to_transform": None,
                "layers_pattern": None, "rank_pattern": {}, "alpha_pattern": {}, "target_parameters": None,
                "auto_mapping": None}

    @classmethod
    def from_peft(cls, hf: object, source: Path) -> "AdapterConfig":
        """Check a parsed adapter_config.json; `source` names it in errors. peft's defaults fill absent fields."""
        if not isinstance(hf, dict):
            raise AdapterError(f"{source} is not a peft adapter config: it holds a JSON {type(hf).__name__}, "
                               "not an object")
        kind = hf.get("peft_type")
        if kind != "LORA":
            raise AdapterError(f"{source}: peft_type is {kind!r}; only LoRA adapters (\"LORA\") are supported")
        for name, plain in PLAIN.items():
            if name in hf and hf[name] not in plain:
                raise AdapterError(f"{source}: {name}={hf[name]!r} is not supported (only plain LoRA is computed "
                                   f"here: {name} must be {plain[0]!r})")
        rank, alpha, dropout = hf.get("r", 8), hf.get("lora_alpha", 8), hf.get("lora_dropout", 0.0)
        if not isinstance(rank, int) or isinstance(rank, bool) or rank < 1:
            raise AdapterError(f"{source}: r must be a positive integer, got {rank!r}")
        if not _is_number(alpha):
            raise AdapterError(f"{source}: lora_alpha must be a number, got {alpha!r}")
        if not _is_number(dropout) or not 0.0 <= dropout < 1.0:
            raise AdapterError(f"{source}: lora_dropout must be a number in [0, 1), got {dropout!r}")
        targets = hf.get("target_modules")
        if isinstance(targets, str):
            raise AdapterError(f"{source}: target_modules is the pattern {targets!r}; only a list of layer names "
                               "(e.g. [\"q_proj\", \"v_proj\"]) is supported")
        if not isinstance(targets, list) or not targets or not all(isinstance(t, str) and t for t in targets):
            raise AdapterError(f"{source}: target_modules must be a non-empty list of layer names, got {targets!r}")
        base = hf.get("base_model_name_or_path")
        return cls(rank, float(alpha), float(dropout), tuple(targets), base if isinstance(base, str) else None)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def peft_key(module: str, factor: str) -> str:
    """peft's tensor name for one factor ('lora_A' or 'lora_B') of our module `module`."""
    return f"{PREFIX}{hf_key(module)}.{factor}.weight"


def _module_of(key: str) -> tuple[str, str] | None:
    """(our module name, factor) of a peft tensor name, or None if it is not a LoRA factor."""
    if not key.startswith(PREFIX):
        return None
    for factor in FACTORS:
        suffix = f".{factor}.weight"
        if key.endswith(suffix):
            return our_key(key[len(PREFIX):-len(suffix)]), factor
    return None


# ---------------------------------------------------------------------------- writing
def save_adapter(net: nn.Module, directory: str | os.PathLike, base_model_name_or_path: str | None = None,
                 rank: int | None = None, alpha: float | None = None, dropout: float | None = None,
                 targets: list[str] | tuple[str, ...] | None = None) -> Path:
    """Write `net`'s LoRA adapters (see `dscoder.model.lora`) as a peft adapter directory.

    rank, alpha, dropout and targets default to what the adapters hold; given, they must agree
    with it (one rank and one alpha for all: peft's per-layer patterns are not written).
    `base_model_name_or_path` is recorded for whoever loads the adapter (peft loads that base).
    """
    modules = lora_modules(net)
    if not modules:
        raise AdapterError("the network has no LoRA adapters to save (apply_lora first)")
    held = {"rank": {m.rank for m in modules.values()}, "alpha": {m.alpha for m in modules.values()},
            "dropout": {m.dropout_p for m in modules.values()}}
    asked = {"rank": rank, "alpha": None if alpha is None else float(alpha),
             "dropout": None if dropout is None else float(dropout)}
    for what, values in held.items():
        if len(values) > 1:
            raise AdapterError(f"the network's adapters differ in {what} ({sorted(values)}); peft's format "
                               "as written here holds one")
        if asked[what] is not None and asked[what] != next(iter(values)):
            raise AdapterError(f"save_adapter was told {what}={asked[what]!r}, but the network's adapters "
                               f"have {what}={next(iter(values))!r}")
    if targets is None:
        targets = adapter_targets(net)
    elif isinstance(targets, str) or matching_layers(net, targets) != list(modules):
        raise AdapterError(f"save_adapter was told targets={targets!r}, which do not pick out exactly the "
                           f"network's adapted layers (targets that do: {adapter_targets(net)})")
    else:  # only names this network has (DEFAULT_TARGETS lists MLA's for a V1 model too): loading checks each
        targets = [t for t in targets if matching_layers(net, [t])]
    config = AdapterConfig(held["rank"].pop(), held["alpha"].pop(), held["dropout"].pop(), tuple(targets),
                           None if base_model_name_or_path is None else str(base_model_name_or_path))
    tensors = {peft_key(name, factor): getattr(m, factor).weight.detach().to("cpu").contiguous()
               for name, m in modules.items() for factor in FACTORS}
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    with replacing(directory / WEIGHTS_FILE) as tmp:
        _save_safetensors(tensors, tmp, directory / WEIGHTS_FILE)
    write_atomic(directory / CONFIG_FILE, json.dumps(config.to_peft(), indent=2) + "\n")
    return directory


# ---------------------------------------------------------------------------- reading
def read_adapter(directory: str | os.PathLike) -> tuple[AdapterConfig, dict[str, torch.Tensor]]:
    """An adapter directory's checked config and all its tensors (adapters are small: read whole)."""
    directory = Path(directory)
    if not directory.is_dir():
        raise AdapterError(f"LoRA adapter {directory} is not a directory (it should hold {CONFIG_FILE} "
                           f"and {WEIGHTS_FILE})")
    config_path = directory / CONFIG_FILE
    if not config_path.is_file():
        raise AdapterError(f"{directory} is not a peft adapter: it has no {CONFIG_FILE}")
    try:
        parsed = json.loads(config_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise AdapterError(f"{config_path} is not valid JSON: {e}") from None
    config = AdapterConfig.from_peft(parsed, config_path)
    weights = directory / WEIGHTS_FILE
    if not weights.is_file():
        legacy = " (it has adapter_model.bin, a pickle, which is not read: save it again with peft's default " \
                 "safe_serialization)" if (directory / "adapter_model.bin").exists() else ""
        raise AdapterError(f"{directory} has no {WEIGHTS_FILE}{legacy}")
    try:
        with safe_open(str(weights), framework="pt") as handle:
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}
    except Exception as e:  # safetensors raises its own error types for bad headers and short files
        raise AdapterError(f"{weights} is not a readable safetensors file (truncated or corrupt?): {e}") from None
    for key, tensor in tensors.items():
        if _module_of(key) is None:
            raise AdapterError(f"{weights}: tensor {key} is not a LoRA factor (peft's "
                               f"{PREFIX}<module>.lora_A/lora_B.weight); only plain LoRA adapters are supported")
        if not tensor.is_floating_point() or tensor.dim() != 2:
            raise AdapterError(f"{weights}: tensor {key} is {tensor.dtype} of shape {list(tensor.shape)}, "
                               "not a floating-point matrix")
        if not torch.isfinite(tensor).all():
            raise AdapterError(f"{weights}: tensor {key} holds NaN or infinite values")
    return config, tensors


def load_adapter(net: nn.Module, directory: str | os.PathLike, model_name: str | None = None) -> list[str]:
    """Wrap `net`'s layers as the adapter in `directory` says and load its factors; returns the wrapped names.

    Everything is checked before `net` changes: an error (`AdapterError`, `AdapterMismatchError`)
    leaves it as it was. `model_name` (where `net` came from) only makes the errors clearer.
    """
    directory = Path(directory)
    config, tensors = read_adapter(directory)
    base = config.base_model_name_or_path or "(unnamed: no base_model_name_or_path)"
    this = f"this model{f' ({model_name})' if model_name else ''}"
    try:
        names = lora_plan(net, config.targets)
    except LoRATargetError as e:
        raise AdapterMismatchError(f"LoRA adapter {directory} (made for base {base}) does not fit {this}: "
                                   f"its target_modules {list(config.targets)}: {e}") from None
    modules = dict(net.named_modules())
    expected: dict[str, tuple[int, int]] = {}
    for name in names:
        layer = modules[name]
        expected[peft_key(name, "lora_A")] = (config.rank, layer.in_features)
        expected[peft_key(name, "lora_B")] = (layer.out_features, config.rank)
    for key in sorted(tensors.keys() - expected.keys()):
        module, _ = _module_of(key)
        why = "is not one of its target_modules" if module in modules else "has no such layer"
        raise AdapterMismatchError(f"LoRA adapter {directory} (made for base {base}) has tensor {key}, but in {this} "
                                   f"{module} {why}; the adapter was made for another model")
    for key in sorted(expected.keys() - tensors.keys()):
        raise AdapterMismatchError(f"LoRA adapter {directory} (made for base {base}) has no tensor {key}: {this} has "
                                   f"layer {_module_of(key)[0]}, which its target_modules {list(config.targets)} "
                                   "name; the adapter was made for another model")
    for key, shape in expected.items():
        found = tuple(tensors[key].shape)
        if found == shape:
            continue
        module, factor = _module_of(key)
        layer = modules[module]
        rank = found[0] if factor == "lora_A" else found[1]
        if rank != config.rank:
            raise AdapterError(f"LoRA adapter {directory} contradicts itself: {CONFIG_FILE} says r={config.rank}, but "
                               f"its tensor {key} has shape {list(found)} (rank {rank}; r={config.rank} needs "
                               f"{list(shape)})")
        raise AdapterMismatchError(
            f"LoRA adapter {directory} was made for base {base}: its tensor {key} has shape {list(found)}, but "
            f"{module} of {this} maps {layer.in_features} -> {layer.out_features} features, so with "
            f"r={config.rank} it needs {list(shape)}")
    rows = read_token_rows(net, directory, f"LoRA adapter {directory} (made for base {base})", this)
    apply_lora(net, config.rank, config.alpha, config.dropout, config.targets)
    with torch.no_grad():
        for name, layer in lora_modules(net).items():
            for factor in FACTORS:
                weight = getattr(layer, factor).weight
                weight.copy_(tensors[peft_key(name, factor)].to(device=weight.device, dtype=weight.dtype))
    if rows is not None:
        set_token_rows(net, rows)
    return names


# ---------------------------------------------------------------------------- trained token rows
def row_parameters(net: nn.Module) -> list[nn.Parameter]:
    """The embedding, and the output head when it is a separate matrix (not tied, not quantized)."""
    params = [net.embed_tokens.weight]
    head = getattr(net.lm_head, "weight", None)
    if head is not None and head is not net.embed_tokens.weight:
        params.append(head)
    return params


def save_token_rows(net: nn.Module, directory: str | os.PathLike, ids: list[int] | tuple[int, ...]) -> None:
    index = torch.tensor(list(ids), dtype=torch.int64)
    params = row_parameters(net)
    tensors = {"ids": index, "embed_tokens": params[0].detach()[index].to("cpu").contiguous()}
    if len(params) > 1:
        tensors["lm_head"] = params[1].detach()[index].to("cpu").contiguous()
    target = Path(directory) / TOKEN_ROWS_FILE
    with replacing(target) as tmp:
        _save_safetensors(tensors, tmp, target)


def read_token_rows(net: nn.Module, directory: str | os.PathLike, what: str, this: str) -> dict | None:
    """The checked rows of `directory`'s token_rows.safetensors (None when it has none)."""
    path = Path(directory) / TOKEN_ROWS_FILE
    if not path.is_file():
        return None
    try:
        with safe_open(str(path), framework="pt") as handle:
            rows = {key: handle.get_tensor(key) for key in handle.keys()}
    except Exception as e:
        raise AdapterError(f"{path} is not a readable safetensors file (truncated or corrupt?): {e}") from None
    ids = rows.get("ids")
    params = row_parameters(net)
    vocab, width = params[0].shape
    if ids is None or ids.dim() != 1 or ids.dtype != torch.int64 or "embed_tokens" not in rows:
        raise AdapterError(f"{path} must hold int64 `ids` and the `embed_tokens` rows they name")
    if ids.numel() and not (0 <= int(ids.min()) and int(ids.max()) < vocab):
        raise AdapterMismatchError(f"{what} trained rows for token ids up to {int(ids.max())}, but {this} has "
                                   f"{vocab} embedding rows; it was made on a grown vocabulary")
    for key in ("embed_tokens", "lm_head"):
        if key in rows and (tuple(rows[key].shape) != (ids.numel(), width) or not torch.isfinite(rows[key]).all()):
            raise AdapterMismatchError(f"{what}: {TOKEN_ROWS_FILE} {key} has shape {list(rows[key].shape)}, {this} "
                                       f"needs {[ids.numel(), width]} (finite values)")
    return rows


@torch.no_grad()
def set_token_rows(net: nn.Module, rows: dict) -> None:
    ids = rows["ids"].tolist()
    params = row_parameters(net)
    params[0][ids] = rows["embed_tokens"].to(params[0].dtype)
    if "lm_head" in rows and len(params) > 1:
        params[1][ids] = rows["lm_head"].to(params[1].dtype)
