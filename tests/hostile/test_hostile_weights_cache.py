"""The weights cache read back from a hostile or damaged cache directory.

Whatever is found under the entry's name (a truncated file, flipped bytes in its header or its
data, another model's or another quantization's entry, a forged entry whose tensors have other
dtypes or shapes, a symlink to a file elsewhere, a directory, a garbled hash memo), the load says
so in one log line, throws the entry away and converts again: the model is always the one a
fresh conversion gives, never a crash. A symlink is removed, never followed: its target stays
as it was. (Someone who can write the cache can also write a consistent entry of their own
weights: the cache is as trusted as the user's home; see the module docstring of
dscoder/formats/weights_cache.py.)
"""

from __future__ import annotations

import json
import logging
import os
import shutil

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from dscoder.formats import weights_cache
from dscoder.hub import load_model
from tiny_gguf import write_tiny_gguf

PROMPT = torch.tensor([[1, 5, 7, 9, 11, 40, 3]])


@pytest.fixture(autouse=True)
def cache_root(tmp_path, monkeypatch):
    root = tmp_path / "cache" / "weights"
    monkeypatch.setattr(weights_cache, "directory", lambda: root)
    monkeypatch.delenv(weights_cache.ENV_SWITCH, raising=False)
    return root


@pytest.fixture
def gguf(tmp_path):
    return write_tiny_gguf(tmp_path / "tiny.gguf", seed=0)


@torch.no_grad()
def logits(net) -> torch.Tensor:
    return net(PROMPT)[0]


def entry_of(gguf, quant=None, dtype=torch.float32):
    from dscoder.model.quant import QuantConfig

    return weights_cache.entry_path(weights_cache.cache_key(gguf, dtype, quant and QuantConfig.parse(quant)))


def load_after_damage(gguf, caplog, quant=None):
    """Load through the damaged cache: (model, the cache's log messages); the model must be the fresh one
    and the entry a good one again afterwards."""
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger=weights_cache.__name__):
        net = load_model(gguf, quant=quant)
    messages = [r.getMessage() for r in caplog.records if r.name == weights_cache.__name__]
    assert torch.equal(logits(net), logits(load_model(gguf, quant=quant, cache=False)))
    entry = entry_of(gguf, quant)
    assert entry.is_file() and not entry.is_symlink()
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger=weights_cache.__name__):
        again = load_model(gguf, quant=quant)  # the rebuilt entry is used, silently
    assert not caplog.records and torch.equal(logits(again), logits(net))
    return net, messages


def one_unusable_line(messages: list[str], why: str) -> None:
    assert len(messages) == 1, messages
    assert "is unusable" in messages[0] and why in messages[0] and "rebuilding" in messages[0], messages[0]


def header_length(entry) -> int:
    with open(entry, "rb") as f:
        return int.from_bytes(f.read(8), "little")


@pytest.mark.parametrize("keep", [0, 5, 8, 100, "header", "half"])
def test_a_truncated_entry_is_rebuilt(gguf, caplog, keep):
    load_model(gguf, quant="int4")
    entry = entry_of(gguf, "int4")
    data = entry.read_bytes()
    cut = {"header": 8 + header_length(entry), "half": len(data) // 2}.get(keep, keep)
    entry.write_bytes(data[:cut])
    _, messages = load_after_damage(gguf, caplog, "int4")
    one_unusable_line(messages, "safetensors cannot read it")
    assert entry.stat().st_size == len(data)


@pytest.mark.parametrize("where", [0, 3, 7, 9, 40, 200, "dtype", "shape", "key", "config", "last"])
def test_flipped_bytes_in_the_header_are_caught(gguf, caplog, where):
    load_model(gguf, quant="int8")
    entry = entry_of(gguf, "int8")
    data = bytearray(entry.read_bytes())
    n = header_length(entry)
    header = data[8:8 + n].decode()
    at = {"dtype": header.index('"I8"') + 2,  # I8 -> H8 (no such dtype), or a digit of a shape
          "shape": header.index('"shape":[') + 9,
          "key": 8 + header.index("source_sha256") + 20,  # inside the key, as stored
          "config": 8 + header.index("1e-0", header.index("rms_norm_eps")) + 4,  # 1e-05 -> 1e-04: valid JSON
          "last": 8 + n - 2}.get(where, where)
    if where in ("dtype", "shape"):
        at += 8
    data[at] ^= 0x01 if where in ("dtype", "shape", "key", "config") else 0xFF
    entry.write_bytes(bytes(data))
    _, messages = load_after_damage(gguf, caplog, "int8")
    why = {"key": "written for another key", "config": "does not match its checksum"}.get(where, "")
    assert len(messages) == 1 and "is unusable" in messages[0] and why in messages[0], messages


@pytest.mark.parametrize("quant", [None, "int4"])
def test_a_flipped_bit_in_the_data_is_caught(gguf, caplog, quant):
    load_model(gguf, quant=quant)
    entry = entry_of(gguf, quant)
    data = bytearray(entry.read_bytes())
    start = 8 + header_length(entry)
    data[start + (len(data) - start) // 3] ^= 0x10  # one bit, somewhere in some tensor
    entry.write_bytes(bytes(data))
    _, messages = load_after_damage(gguf, caplog, quant)
    one_unusable_line(messages, "fail their CRC-32")


def test_another_models_entry_under_this_name(tmp_path, gguf, caplog):
    other = write_tiny_gguf(tmp_path / "other.gguf", seed=1)
    load_model(other, quant="int4")
    entry = entry_of(gguf, "int4")
    entry.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(entry_of(other, "int4"), entry)
    _, messages = load_after_damage(gguf, caplog, "int4")
    one_unusable_line(messages, "written for another key")


@pytest.mark.parametrize("written, asked", [("int8", "int4"), (None, "int8"), ("int4", None)])
def test_another_quantizations_entry_under_this_name(gguf, caplog, written, asked):
    load_model(gguf, quant=written)
    shutil.copy(entry_of(gguf, written), entry_of(gguf, asked))
    _, messages = load_after_damage(gguf, caplog, asked)
    one_unusable_line(messages, "written for another key")


def forge(entry, change) -> None:
    """Rewrite `entry` with its key and a consistent digest, its tensors changed by `change(tensors)`:
    what the structural checks must catch even when every checksum agrees."""
    with safe_open(str(entry), framework="pt") as f:
        meta = f.metadata()
        tensors = {k: f.get_tensor(k).clone() for k in f.keys()}
    change(tensors)
    key, config = json.loads(meta["dscoder.key"]), json.loads(meta["dscoder.config"])
    table = {n: [str(t.dtype).removeprefix("torch."), list(t.shape), weights_cache._crc32(t)]
             for n, t in tensors.items()}
    meta.update({"dscoder.tensors": json.dumps(table), "dscoder.digest": weights_cache._digest(key, config, table)})
    save_file(tensors, str(entry), metadata=meta)


@pytest.mark.parametrize("change", ["dtype", "shape", "missing", "extra"])
def test_a_consistent_forgery_with_other_tensors_is_caught(gguf, caplog, change):
    load_model(gguf)
    entry = entry_of(gguf)
    name = "layers.0.mlp.up_proj.weight"

    def edit(tensors):
        if change == "dtype":
            tensors[name] = tensors[name].to(torch.bfloat16)
        elif change == "shape":
            tensors[name] = tensors[name][:-1].contiguous()
        elif change == "missing":
            del tensors[name]
        else:
            tensors["layers.0.mlp.extra"] = torch.zeros(3)

    forge(entry, edit)
    _, messages = load_after_damage(gguf, caplog)
    one_unusable_line(messages, "its tensors are not the model's")


@pytest.mark.parametrize("target", ["good-entry-elsewhere", "secret-file"])
def test_a_symlink_in_the_cache_is_not_followed(tmp_path, gguf, caplog, target):
    """A link planted under the entry's name, to a valid entry outside the cache or to any other file:
    never read through, removed (the link, not its target), rebuilt."""
    load_model(gguf, quant="int4")
    entry = entry_of(gguf, "int4")
    outside = tmp_path / "outside"
    outside.mkdir()
    if target == "good-entry-elsewhere":
        planted = outside / "entry.safetensors"
        shutil.move(entry, planted)
    else:
        planted = outside / "secret"
        planted.write_text("not weights\n")
        entry.unlink()
    before = planted.read_bytes()
    os.symlink(planted, entry)
    _, messages = load_after_damage(gguf, caplog, "int4")
    one_unusable_line(messages, "which the cache never follows")
    assert planted.read_bytes() == before and not planted.is_symlink()


def test_a_directory_under_the_entrys_name(gguf, caplog):
    entry = entry_of(gguf, "int8")
    (entry / "inside").mkdir(parents=True)
    with caplog.at_level(logging.WARNING, logger=weights_cache.__name__):
        net = load_model(gguf, quant="int8")
    assert torch.equal(logits(net), logits(load_model(gguf, quant="int8", cache=False)))
    messages = [r.getMessage() for r in caplog.records]
    assert any("not a regular file" in m for m in messages) and (entry / "inside").is_dir()


@pytest.mark.parametrize("memo", ["garbage", "[]", '{"sha256": 5}', "lying-identity"])
def test_a_garbled_hash_memo_means_hashing_again(tmp_path, gguf, cache_root, memo):
    load_model(gguf, quant="int4")
    (path,) = (cache_root / "sources").glob("*.json")
    if memo == "lying-identity":  # the memo of a file of the same path but another identity: not trusted
        known = json.loads(path.read_text())
        known.update(sha256="0" * 64, identity={**known["identity"], "ctime_ns": 1})
        memo = json.dumps(known)
    path.write_text(memo)
    net = load_model(gguf, quant="int4")
    assert torch.equal(logits(net), logits(load_model(gguf, quant="int4", cache=False)))
    assert json.loads(path.read_text())["sha256"] == weights_cache.sha256_file(gguf)
