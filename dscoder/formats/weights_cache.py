"""The converted weights of a GGUF file, kept as memory-mapped safetensors so the next start maps them.

Loading a GGUF file dequantizes every tensor (and with `--quant`, quantizes it again): about
1.5 s for the embedded 135M model, most of a cold `dscoder complete`. The result depends only
on the file, the element type, the quantization settings and the code that converts, so it is
written once under `cache_dir("weights")` and later starts map it (safetensors' `safe_open`
with torch: the tensors are views of a private mapping of the file, no copy, no conversion).

The key, and why each part is in it:
- the GGUF file's SHA-256: the file, not its name (a model replaced at the same path is another
  model). Hashing costs ~0.7 ms/MB, so the digest is remembered per file in
  `weights/sources/` with the file's (device, inode, size, mtime_ns, ctime_ns), and computed
  again when any of them changes. ctime cannot be set by a user: an edit in place that restores
  the size and the mtime still changes it.
- the dtype and the quantization settings (`QuantConfig.to_hf()`): what the load was asked for;
- `FORMAT` and a hash of the converting code (formats/gguf.py, formats/hf.py, model/quant.py and
  this file) plus torch's version: a fix to the conversion must not be hidden by old entries.
The entry's name is the SHA-256 of the key; the key itself is also inside the entry.

An entry is used only if every check passes, else it is said in one log line, removed and
rebuilt (never a crash, never wrong weights):
- it is a regular file, not a symlink (a link planted in the cache is never followed);
- safetensors reads its header (a truncated file or a header that does not parse fails here;
  safetensors also checks that the tensors' byte ranges cover the data exactly);
- its metadata carries the expected key, and a SHA-256 over the key, the model's config and
  the table of tensors (name, dtype, shape, CRC-32) that matches: a flipped byte anywhere in the
  metadata is caught;
- the tensor names, dtypes and shapes of the header are those of the table and of the model the
  config builds (on the meta device, so no memory is touched);
- each tensor's bytes have the CRC-32 of the table: a flipped bit in the data is caught. This
  reads every page once, which the first forward pass does anyway (every weight is used for the
  first token), in two threads (zlib releases the GIL); ~30 ms for the int4 model.
What is not defended: someone who can write to the cache directory can also write a
consistent entry for weights of their choosing; the cache is as trusted as the user's home.

Writing goes through `dscoder.files.replacing` (temporary name, fsync, rename): a killed writer
leaves no entry or a whole one, and a reader that mapped the old file keeps its inode. A new entry
replaces those of the same file, dtype and quantization written by other code (after an update),
which nothing would read again; entries of other files stay until the cache is cleared.
`DSCODER_WEIGHTS_CACHE=0` turns the cache off; `rm -rf "$(dscoder's cache)/weights"` clears it
(~/.cache/dscoder/weights, or $DSCODER_CACHE/weights).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import stat
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from dscoder.cache import cache_dir, sha256_file
from dscoder.files import remove_stale, replacing, write_atomic

if TYPE_CHECKING:
    import torch

    from dscoder.model.quant import QuantConfig
    from dscoder.model.transformer import Transformer

log = logging.getLogger(__name__)

FORMAT = 1  # bump when the layout of an entry changes
ENV_SWITCH = "DSCODER_WEIGHTS_CACHE"
_OFF = {"0", "false", "no", "off"}
_CODE = ("formats/gguf.py", "formats/hf.py", "model/quant.py", "formats/weights_cache.py")
_PACKAGE = Path(__file__).resolve().parents[1]


class Unusable(Exception):
    """Why a cache entry cannot be used (said in the log line)."""


def enabled() -> bool:
    """False when DSCODER_WEIGHTS_CACHE is 0/false/no/off (read at each call)."""
    return os.environ.get(ENV_SWITCH, "1").strip().lower() not in _OFF


def directory() -> Path:
    return cache_dir("weights")


# ---------------------------------------------------------------------------- the key
def _identity(st: os.stat_result) -> dict:
    return {"dev": st.st_dev, "ino": st.st_ino, "size": st.st_size, "mtime_ns": st.st_mtime_ns,
            "ctime_ns": st.st_ctime_ns}


def source_sha256(path: str | os.PathLike) -> str:
    """The file's SHA-256, remembered under weights/sources/ by its identity (see the module docstring)."""
    real = os.path.realpath(path)
    identity = _identity(os.stat(real))
    memo = directory() / "sources" / (hashlib.sha256(real.encode()).hexdigest()[:32] + ".json")
    try:
        known = json.loads(memo.read_text())
        if known.get("path") == real and known.get("identity") == identity and _is_hex(known.get("sha256"), 64):
            return known["sha256"]
    except (OSError, ValueError, AttributeError):
        pass  # no memo, or an unreadable one: hash again
    digest = sha256_file(real)
    if _identity(os.stat(real)) == identity:  # not remembered if the file changed while it was read
        try:
            memo.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(memo, json.dumps({"path": real, "identity": identity, "sha256": digest}))
        except OSError as e:
            log.warning("dscoder: could not remember the hash of %s in %s: %s", real, memo, e)
    return digest


def _is_hex(value, length: int) -> bool:
    return isinstance(value, str) and len(value) == length and all(c in "0123456789abcdef" for c in value)


def _code_sha256() -> str:
    digest = hashlib.sha256()
    for name in _CODE:
        digest.update(name.encode() + b"\0" + (_PACKAGE / name).read_bytes() + b"\0")
    return digest.hexdigest()


def cache_key(path: str | os.PathLike, dtype: torch.dtype, quant: QuantConfig | None) -> dict:
    """What a converted model depends on (see the module docstring)."""
    import torch

    return {"format": FORMAT, "source_sha256": source_sha256(path), "dtype": str(dtype).removeprefix("torch."),
            "quant": quant.to_hf() if quant is not None else None, "code_sha256": _code_sha256(),
            "torch": torch.__version__}


def entry_path(key: dict) -> Path:
    return directory() / (hashlib.sha256(_canonical(key).encode()).hexdigest()[:40] + ".safetensors")


def _canonical(value) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


# ---------------------------------------------------------------------------- the model's expected tensors
def _skeleton(config: dict, quant: QuantConfig | None):
    """The model `config` describes, on the meta device, with QuantLinear layers where `quant` puts them."""
    from dscoder.formats.hf import meta_model
    from dscoder.model.config import ModelConfig
    from dscoder.model.quant import install, quant_plan

    model = meta_model(ModelConfig.from_hf(config))
    if quant is not None:
        install(model, quant_plan(model, quant), quant)
    return model


def _tied_head(model) -> bool:
    import torch

    return model.config.tie_word_embeddings and isinstance(model.lm_head, torch.nn.Linear)


def _expected(model, dtype: torch.dtype) -> dict[str, tuple[str, list[int]]]:
    """name -> (dtype, shape) of every stored tensor: floating weights in `dtype`, packed ones in their own."""
    out = {}
    for name, t in model.state_dict().items():
        if name == "lm_head.weight" and _tied_head(model):
            continue  # the embedding itself
        keeps_own = not t.is_floating_point() or name.endswith((".scales", ".mins"))
        out[name] = (str(t.dtype if keeps_own else dtype).removeprefix("torch."), list(t.shape))
    return out


def _crc32(t: torch.Tensor) -> int:
    import torch

    return zlib.crc32(t.contiguous().view(-1).view(torch.uint8).numpy())


def _crcs(tensors: dict[str, torch.Tensor]) -> dict[str, int]:
    from concurrent.futures import ThreadPoolExecutor

    names = list(tensors)
    with ThreadPoolExecutor(2) as pool:  # zlib releases the GIL: two cores read the mapping at once
        return dict(zip(names, pool.map(lambda n: _crc32(tensors[n]), names)))


def _digest(key: dict, config: dict, table: dict) -> str:
    return hashlib.sha256(_canonical([key, config, table]).encode()).hexdigest()


# ---------------------------------------------------------------------------- reading
_SAFETENSORS_DTYPES = {"F32": "float32", "F16": "float16", "BF16": "bfloat16", "U8": "uint8", "I8": "int8",
                       "I32": "int32", "I64": "int64", "F64": "float64", "BOOL": "bool", "I16": "int16"}


def _read(entry: Path, key: dict, dtype: torch.dtype, device, quant: QuantConfig | None):
    """The model in `entry`, every check of the module docstring passed; raises Unusable."""
    import torch
    from safetensors import safe_open

    st = os.lstat(entry)
    if stat.S_ISLNK(st.st_mode):
        raise Unusable(f"it is a symlink to {os.readlink(entry)!r}, which the cache never follows")
    if not stat.S_ISREG(st.st_mode):
        raise Unusable("it is not a regular file")
    try:
        handle = safe_open(str(entry), framework="pt")
        meta = handle.metadata() or {}
        names = list(handle.keys())
        header = {n: (_SAFETENSORS_DTYPES.get(s.get_dtype(), s.get_dtype()), list(s.get_shape()))
                  for n in names for s in (handle.get_slice(n),)}
    except Exception as e:  # safetensors' own error types: a short file, a header that does not parse
        raise Unusable(f"safetensors cannot read it ({type(e).__name__}: {e})") from None
    try:
        stored_key, config, table = (json.loads(meta[k]) for k in ("dscoder.key", "dscoder.config",
                                                                     "dscoder.tensors"))
        stored_digest = meta["dscoder.digest"]
    except (KeyError, ValueError) as e:
        raise Unusable(f"its metadata is incomplete or not JSON ({type(e).__name__}: {e})") from None
    if stored_key != key:
        raise Unusable("it was written for another key (another file, dtype, quantization or code version)")
    if _digest(stored_key, config, table) != stored_digest:
        raise Unusable("its metadata does not match its checksum")
    try:
        skeleton = _skeleton(config, quant)
    except Exception as e:
        raise Unusable(f"its config does not build a model ({type(e).__name__}: {e})") from None
    expected = _expected(skeleton, dtype)
    recorded = {n: (v[0], v[1]) for n, v in table.items()}
    if header != expected or recorded != expected:
        wrong = sorted(n for n in expected.keys() | header.keys() | recorded.keys()
                       if not (header.get(n) == recorded.get(n) == expected.get(n)))
        raise Unusable(f"its tensors are not the model's ({len(wrong)} differ in name, dtype or shape, "
                       f"e.g. {wrong[:3]})")
    tensors = {n: handle.get_tensor(n) for n in names}  # views of the mapping: nothing is read yet
    crcs = _crcs(tensors)
    bad = [n for n in names if crcs[n] != table[n][2]]
    if bad:
        raise Unusable(f"{len(bad)} tensor(s) fail their CRC-32, e.g. {bad[:3]}")
    state = {n: t.to(device) for n, t in tensors.items()}
    tied = _tied_head(skeleton)
    if tied:
        state["lm_head.weight"] = state["embed_tokens.weight"]
    skeleton.load_state_dict(state, assign=True, strict=True)
    if tied:
        skeleton.lm_head.weight = skeleton.embed_tokens.weight
    return skeleton.eval()


# ---------------------------------------------------------------------------- writing
def _write(entry: Path, key: dict, model, dtype: torch.dtype) -> None:
    from safetensors.torch import save_file

    state = model.state_dict()
    expected = _expected(model, dtype)
    tensors = {n: state[n].detach().to("cpu").contiguous() for n in expected}
    got = {n: (str(t.dtype).removeprefix("torch."), list(t.shape)) for n, t in tensors.items()}
    if got != expected:  # the converter's output is not what a load would check for: write nothing
        raise Unusable(f"the converted model's tensors are not in the cached layout: "
                       f"{sorted(n for n in expected if got.get(n) != expected[n])[:3]}")
    config = model.config.to_hf()
    crcs = _crcs(tensors)
    table = {n: [*expected[n], crcs[n]] for n in expected}
    metadata = {"format": "pt", "dscoder.key": _canonical(key), "dscoder.config": _canonical(config),
                "dscoder.tensors": _canonical(table), "dscoder.digest": _digest(key, config, table)}
    entry.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(entry.parent)  # temporaries of writers that were killed
    with replacing(entry) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)
    _remove_superseded(entry, key)


def _remove_superseded(entry: Path, key: dict) -> None:
    """Remove the entries of the same file, dtype and quantization written by other code (or torch):
    nothing would read them again, and each is the size of the model."""
    from safetensors import safe_open

    same = {k: key[k] for k in ("source_sha256", "dtype", "quant")}
    for other in entry.parent.glob("*.safetensors"):
        if other == entry or other.is_symlink():
            continue
        try:
            with safe_open(str(other), framework="pt") as handle:
                theirs = json.loads((handle.metadata() or {})["dscoder.key"])
        except Exception:  # noqa: BLE001 - unreadable entries are the reader's to discard, with its log line
            continue
        if isinstance(theirs, dict) and {k: theirs.get(k) for k in same} == same and theirs != key:
            _discard(other)


def _discard(entry: Path) -> None:
    """Remove a bad entry (a symlink itself, never its target)."""
    try:
        os.unlink(entry)
    except FileNotFoundError:
        pass
    except OSError as e:
        log.warning("dscoder: could not remove %s: %s", entry, e)


def load_converted(path: str | os.PathLike, dtype: torch.dtype, device, quant: QuantConfig | None,
                   convert: Callable[[], Transformer]) -> Transformer:
    """The model converted from GGUF file `path`: mapped from the cache when its entry passes every check,
    else `convert()`ed and written to the cache for the next start (a failed write only costs a log line)."""
    key = cache_key(path, dtype, quant)
    entry = entry_path(key)
    if os.path.lexists(entry):
        try:
            return _read(entry, key, dtype, device, quant)
        except Unusable as e:
            log.warning("dscoder: weights cache entry %s for %s is unusable (%s): rebuilding it", entry, path, e)
            _discard(entry)
        except OSError as e:
            log.warning("dscoder: weights cache entry %s cannot be read (%s): converting %s again", entry, e, path)
        except Exception as e:  # noqa: BLE001 - past every check, still not loadable: a cache never stops a load
            log.warning("dscoder: weights cache entry %s for %s failed to load (%s: %s): rebuilding it", entry, path,
                        type(e).__name__, e)
            _discard(entry)
    model = convert()
    try:
        _write(entry, key, model, dtype)
    except (OSError, Unusable) as e:
        log.warning("dscoder: could not write the weights cache entry %s: %s", entry, e)
    return model
