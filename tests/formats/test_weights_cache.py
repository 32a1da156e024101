"""The weights cache: a GGUF file's converted (and quantized) weights written once, mapped afterwards,
and the mapped model the very model a fresh conversion gives (bit for bit).

The hostile cases (truncated, flipped, swapped, linked entries) are in
tests/hostile/test_hostile_weights_cache.py.
"""

from __future__ import annotations

import json
import logging
import os

import pytest
import torch

from dscoder.formats import weights_cache
from dscoder.formats.hf import load_gguf
from dscoder.hub import load_model
from dscoder.model.quant import QuantConfig
from tiny_gguf import write_tiny_gguf

PROMPT = torch.tensor([[1, 5, 7, 9, 11, 40, 3]])


@pytest.fixture(autouse=True)
def cache_root(tmp_path, monkeypatch):
    """Each test its own cache (the weights part only: the native kernels keep the user's cache)."""
    root = tmp_path / "cache"
    monkeypatch.setattr(weights_cache, "directory", lambda: root / "weights")
    monkeypatch.delenv(weights_cache.ENV_SWITCH, raising=False)
    return root / "weights"


def entries(directory) -> list[str]:
    return sorted(p.name for p in directory.glob("*.safetensors")) if directory.exists() else []


@torch.no_grad()
def outputs(net) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """The prompt's logits without a cache, and those of a prefill and 3 single-token steps with one
    (the few-row path is where quantized layers run the integer kernels)."""
    full, _ = net(PROMPT)
    cache = net.new_cache(1, 16)
    steps = [net(PROMPT, 0, cache)[0]]
    for pos, token in enumerate((4, 8, 15), start=PROMPT.shape[1]):
        steps.append(net(torch.tensor([[token]]), pos, cache)[0])
    return full, steps


def assert_identical(a, b) -> None:
    (full_a, steps_a), (full_b, steps_b) = outputs(a), outputs(b)
    assert torch.equal(full_a, full_b)
    assert all(torch.equal(x, y) for x, y in zip(steps_a, steps_b, strict=True))


@pytest.mark.parametrize("quant, dtype", [(None, torch.float32), ("int8", torch.float32), ("int4", torch.float32),
                                          (None, torch.bfloat16)], ids=["fp32", "int8", "int4", "bf16"])
def test_the_mapped_model_is_the_freshly_converted_one_bit_for_bit(tmp_path, cache_root, quant, dtype):
    gguf = write_tiny_gguf(tmp_path / "tiny.gguf")
    fresh = load_model(gguf, dtype=dtype, quant=quant, cache=False)
    assert entries(cache_root) == []  # cache=False neither reads nor writes
    first = load_model(gguf, dtype=dtype, quant=quant)  # converted, and written
    assert len(entries(cache_root)) == 1
    mapped = load_model(gguf, dtype=dtype, quant=quant)
    assert_identical(fresh, first)
    assert_identical(fresh, mapped)
    assert type(mapped.lm_head) is type(fresh.lm_head)
    assert getattr(mapped, "quant_config", None) == getattr(fresh, "quant_config", None)
    assert mapped.config == fresh.config
    if quant is None:  # the tied head is the embedding itself, as in a fresh load
        assert mapped.lm_head.weight is mapped.embed_tokens.weight


def test_the_second_start_maps_instead_of_converting(tmp_path, cache_root):
    gguf = write_tiny_gguf(tmp_path / "tiny.gguf")
    quant = QuantConfig.parse("int4")
    calls = []

    def convert():
        calls.append(1)
        return load_gguf(gguf, torch.float32, "cpu", quant)

    first = weights_cache.load_converted(gguf, torch.float32, "cpu", quant, convert)
    second = weights_cache.load_converted(gguf, torch.float32, "cpu", quant, convert)
    assert len(calls) == 1
    assert_identical(first, second)
    # the packed weights are views of the file: their memory is the file's mapping, not a copy
    entry = cache_root / entries(cache_root)[0]
    address = second.layers[0].self_attn.q_proj.qweight.data_ptr()
    spans = [line.split()[0].split("-") for line in open("/proc/self/maps").read().splitlines()
             if line.endswith(str(entry))]
    assert any(int(start, 16) <= address < int(end, 16) for start, end in spans)


def test_each_dtype_and_quantization_has_its_own_entry(tmp_path, cache_root):
    gguf = write_tiny_gguf(tmp_path / "tiny.gguf")
    for quant in (None, "int8", "int4"):
        load_model(gguf, quant=quant)
    load_model(gguf, dtype=torch.bfloat16)
    assert len(entries(cache_root)) == 4
    keys = {json.dumps(weights_cache.cache_key(gguf, d, q and QuantConfig.parse(q)), sort_keys=True)
            for d, q in ((torch.float32, None), (torch.float32, "int8"), (torch.float32, "int4"),
                         (torch.bfloat16, None))}
    assert len(keys) == 4


def test_the_hash_is_remembered_and_recomputed_when_the_file_changes_in_place(tmp_path, cache_root):
    """A file rewritten in place, size and mtime restored, is another model: its ctime changed, so the
    remembered hash is not used, and the weights are the new file's."""
    gguf = write_tiny_gguf(tmp_path / "tiny.gguf", seed=0)
    other = write_tiny_gguf(tmp_path / "other.gguf", seed=1)
    assert gguf.stat().st_size == other.stat().st_size
    load_model(gguf)
    memo = list((cache_root / "sources").glob("*.json"))
    assert len(memo) == 1 and json.loads(memo[0].read_text())["sha256"] == weights_cache.sha256_file(gguf)
    before = gguf.stat()
    gguf.write_bytes(other.read_bytes())
    os.utime(gguf, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert gguf.stat().st_size == before.st_size and gguf.stat().st_mtime_ns == before.st_mtime_ns
    assert_identical(load_model(gguf), load_model(other, cache=False))


def test_switched_off_by_the_environment(tmp_path, cache_root, monkeypatch):
    gguf = write_tiny_gguf(tmp_path / "tiny.gguf")
    monkeypatch.setenv(weights_cache.ENV_SWITCH, "0")
    load_model(gguf, quant="int4")
    assert not cache_root.exists()
    monkeypatch.setenv(weights_cache.ENV_SWITCH, "1")
    load_model(gguf, quant="int4")
    assert len(entries(cache_root)) == 1


def test_convert_does_not_fill_the_cache(tmp_path, cache_root):
    from dscoder.hub import convert

    gguf = write_tiny_gguf(tmp_path / "tiny.gguf")
    convert(gguf, tmp_path / "out", dtype="fp32")
    assert entries(cache_root) == []


def test_a_cache_that_cannot_be_written_costs_a_log_line_not_the_load(tmp_path, monkeypatch, caplog):
    gguf = write_tiny_gguf(tmp_path / "tiny.gguf")
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the cache directory should be\n")
    monkeypatch.setattr(weights_cache, "directory", lambda: blocker / "weights")
    with caplog.at_level(logging.WARNING, logger=weights_cache.__name__):
        net = load_model(gguf, quant="int8")
    assert_identical(net, load_model(gguf, quant="int8", cache=False))
    assert any("could not write the weights cache entry" in r.getMessage() for r in caplog.records)


def test_the_default_directory_follows_dscoder_cache(tmp_path, monkeypatch):
    monkeypatch.undo()  # the real `directory`, not this module's fixture
    monkeypatch.setenv("DSCODER_CACHE", str(tmp_path / "elsewhere"))
    assert weights_cache.directory() == tmp_path / "elsewhere" / "weights"


@pytest.mark.parametrize("quant", [None, "int4"], ids=["fp32", "int4"])
def test_the_embedded_model_mapped_is_the_embedded_model_converted(smollm2_gguf, cache_root, quant):
    fresh = load_model(smollm2_gguf, quant=quant, cache=False)
    load_model(smollm2_gguf, quant=quant)
    mapped = load_model(smollm2_gguf, quant=quant)
    assert_identical(fresh, mapped)


def test_an_update_of_the_converting_code_replaces_the_old_entries(tmp_path, cache_root, monkeypatch):
    """Entries written by older code are never read again: the new entry of the same file, dtype and
    quantization removes them; another file's entry stays."""
    gguf = write_tiny_gguf(tmp_path / "tiny.gguf")
    other = write_tiny_gguf(tmp_path / "other.gguf", seed=1)
    real = weights_cache._code_sha256
    monkeypatch.setattr(weights_cache, "_code_sha256", lambda: "older code")
    load_model(gguf, quant="int4")
    load_model(gguf, quant="int8")
    (old_int4,) = set(entries(cache_root)) - {weights_cache.entry_path(
        weights_cache.cache_key(gguf, torch.float32, QuantConfig.parse("int8"))).name}
    monkeypatch.setattr(weights_cache, "_code_sha256", real)
    load_model(other, quant="int4")
    load_model(gguf, quant="int4")
    new_int4 = weights_cache.entry_path(weights_cache.cache_key(gguf, torch.float32, QuantConfig.parse("int4"))).name
    assert old_int4 not in entries(cache_root) and new_int4 in entries(cache_root)
    assert len(entries(cache_root)) == 3  # gguf's new int4, gguf's old int8 (not rebuilt yet), other's int4
