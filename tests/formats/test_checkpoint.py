"""HF checkpoints: round trips with transformers, sharding, dtypes, and every kind of bad input."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from dscoder.formats.hf import load_hf_dir, save_hf_dir
from dscoder.errors import CheckpointError
from dscoder.hub import load_model, resolve
from dscoder.model.transformer import Transformer
from dscoder.model.presets import get_preset
from conftest import randomize_


def ours(name: str, **changes) -> Transformer:
    return randomize_(Transformer(get_preset(name).config.replace(**changes)), seed=5).eval()


def tokens(vocab: int) -> torch.Tensor:
    return torch.randint(0, vocab, (2, 48), generator=torch.Generator().manual_seed(7))


@pytest.mark.parametrize("name", ["tiny-llama-gqa", "tiny-v2-lite", "tiny-v2"])
@pytest.mark.parametrize("rope_format", ["legacy", "parameters"])
@torch.no_grad()
def test_ours_to_transformers_same_logits(name, rope_format, tmp_path):
    from transformers import AutoModelForCausalLM

    model = ours(name)
    save_hf_dir(model, tmp_path, rope_format=rope_format)
    theirs = AutoModelForCausalLM.from_pretrained(tmp_path, dtype=torch.float32).eval()
    expected = {"tiny-llama-gqa": "LlamaForCausalLM"}.get(name, "DeepseekV2ForCausalLM")
    assert type(theirs).__name__ == expected
    x = tokens(model.config.vocab_size)
    assert (theirs(x).logits - model(x)[0]).abs().max().item() <= 1e-4


@torch.no_grad()
def test_sharded_save_loads_in_transformers_and_back(tmp_path):
    from transformers import AutoModelForCausalLM

    model = ours("tiny-v2")
    save_hf_dir(model, tmp_path, max_shard_bytes=200_000)
    index = json.loads((tmp_path / "model.safetensors.index.json").read_text())
    assert len(set(index["weight_map"].values())) > 1
    x = tokens(model.config.vocab_size)
    theirs = AutoModelForCausalLM.from_pretrained(tmp_path, dtype=torch.float32)
    assert (theirs(x).logits - model(x)[0]).abs().max().item() <= 1e-4
    assert torch.equal(load_hf_dir(tmp_path)(x)[0], model(x)[0])


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@torch.no_grad()
def test_half_precision_save_and_load(dtype, tmp_path):
    model = ours("tiny-llama")
    save_hf_dir(model, tmp_path, dtype=dtype)
    assert json.loads((tmp_path / "config.json").read_text())["torch_dtype"] == str(dtype).split(".")[1]
    assert all(t.dtype == dtype for t in load_file(tmp_path / "model.safetensors").values())
    loaded = load_hf_dir(tmp_path, dtype=dtype)
    assert loaded.embed_tokens.weight.dtype == dtype
    x = tokens(model.config.vocab_size)
    assert (loaded(x)[0].float() - model(x)[0]).abs().max().item() < 0.15  # half-precision rounding only
    assert torch.equal(load_hf_dir(tmp_path).embed_tokens.weight, model.embed_tokens.weight.to(dtype).float())


@torch.no_grad()
def test_tied_embeddings_round_trip(tmp_path):
    model = ours("tiny-llama", tie_word_embeddings=True)
    save_hf_dir(model, tmp_path)
    assert "lm_head.weight" not in load_file(tmp_path / "model.safetensors")
    loaded = load_hf_dir(tmp_path)
    assert loaded.lm_head.weight is loaded.embed_tokens.weight
    x = tokens(model.config.vocab_size)
    assert torch.equal(loaded(x)[0], model(x)[0])


def test_resolve_and_load_model_accept_a_directory(tmp_path):
    save_hf_dir(ours("tiny-llama"), tmp_path)
    assert resolve(str(tmp_path)) == tmp_path
    assert load_model(str(tmp_path)).config == get_preset("tiny-llama").config


def test_resolve_offline_hub_id_says_how_to_pass_a_local_path(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(CheckpointError, match="pass its local directory"):
        resolve("deepseek-ai/deepseek-coder-1.3b-base")
    with pytest.raises(CheckpointError, match="pass its local directory"):
        resolve("deepseek-coder-6.7b-instruct")


def test_resolve_rejects_nonsense():
    with pytest.raises(CheckpointError, match="not a model directory, a .gguf file, a preset"):
        resolve("no-such-thing")
    with pytest.raises(CheckpointError, match="test configuration with no published weights"):
        resolve("tiny-v2")


# ---------------------------------------------------------------- bad input
@pytest.fixture
def saved(tmp_path):
    save_hf_dir(ours("tiny-v2-lite"), tmp_path)
    return tmp_path


def rewrite(directory, edit):
    path = directory / "model.safetensors"
    state = load_file(path)
    edit(state)
    save_file(state, path, metadata={"format": "pt"})


@pytest.mark.parametrize("edit, message", [
    (lambda s: s.pop("model.layers.1.mlp.experts.3.up_proj.weight"),
     r"1 tensor\(s\) missing.*layers\.1\.mlp\.experts\.3\.up_proj"),
    (lambda s: s.__setitem__("model.layers.9.mlp.gate.weight", torch.zeros(2, 2)),
     r"unexpected.*model\.layers\.9\.mlp\.gate\.weight"),
    (lambda s: s.__setitem__("model.layers.0.self_attn.kv_b_proj.weight", torch.zeros(128, 31)),
     r"kv_b_proj\.weight has shape \[128, 31\], expected \[128, 32\]"),
], ids=["missing", "unexpected", "shape-mismatch"])
def test_bad_tensors_are_named(saved, edit, message):
    rewrite(saved, edit)
    with pytest.raises(CheckpointError, match=message):
        load_hf_dir(saved)


def test_derived_rotary_buffers_in_old_checkpoints_are_ignored(saved):
    rewrite(saved, lambda s: s.__setitem__("model.layers.0.self_attn.rotary_emb.inv_freq", torch.ones(4)))
    load_hf_dir(saved)


def test_config_that_contradicts_the_weights(saved):
    cfg = json.loads((saved / "config.json").read_text())
    cfg["vocab_size"] = 300
    (saved / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match=r"(lm_head|embed_tokens)\.weight has shape \[256, 64\], expected \[300, 64\]"
                                              r".*config contradicts the weights"):
        load_hf_dir(saved)
    cfg["vocab_size"], cfg["num_hidden_layers"] = 256, 2
    (saved / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match=r"unexpected.*model\.layers\.2\..*does not match the weights"):
        load_hf_dir(saved)


def test_truncated_safetensors(saved):
    path = saved / "model.safetensors"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"model\.safetensors.*truncated or corrupt"):
        load_hf_dir(saved)


def test_corrupt_safetensors_header(saved):
    path = saved / "model.safetensors"
    path.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all" + path.read_bytes()[24:])
    with pytest.raises(CheckpointError, match=r"model\.safetensors.*truncated or corrupt"):
        load_hf_dir(saved)


def test_unknown_architecture(saved):
    cfg = json.loads((saved / "config.json").read_text())
    cfg.update(model_type="qwen2", architectures=["Qwen2ForCausalLM"])
    (saved / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match=r"config\.json.*unsupported architecture.*qwen2"):
        load_hf_dir(saved)


def test_missing_shard_and_missing_config(tmp_path):
    model = ours("tiny-llama")
    save_hf_dir(model, tmp_path / "sharded", max_shard_bytes=100_000)
    next((tmp_path / "sharded").glob("model-00002-*.safetensors")).unlink()
    with pytest.raises(CheckpointError, match="lists shards that do not exist"):
        load_hf_dir(tmp_path / "sharded")
    shutil.copytree(tmp_path / "sharded", tmp_path / "noconfig")
    (tmp_path / "noconfig" / "config.json").unlink()
    with pytest.raises(CheckpointError, match="has no config.json"):
        load_hf_dir(tmp_path / "noconfig")
