"""LoRA adapters that do not fit, or are not adapters: one clear UserError, nothing changed, nothing written.

An adapter directory comes from anywhere (a download, another run, a typo). Each case below is
loaded three ways, by the library (`load_adapter`: the network must come out untouched), by
`dscoder train merge` (exit 2, one line, no output directory and no leftovers beside it) and
by `dscoder complete --lora` (exit 2, one line, before anything is generated).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from conftest import randomize_
from dscoder.errors import UserError
from dscoder.formats.hf import load_hf_dir, read_config, save_hf_dir
from dscoder.formats.peft import AdapterError, AdapterMismatchError, load_adapter, peft_key, save_adapter
from dscoder.model.lora import apply_lora, lora_modules
from dscoder.model.transformer import Transformer
from dscoder.tokenizer.tokenizer import Tokenizer
from training_data import model_dir

BASE_NAME = "someone/tiny-llama-64"


def saved_model(config_dir: Path, out: Path) -> Path:
    net = randomize_(Transformer(read_config(config_dir)), seed=4)
    save_hf_dir(net, out)
    Tokenizer.load(config_dir).save(out)
    return out


def adapter_of(model: Path, out: Path, targets=None, base_name: str = BASE_NAME) -> Path:
    net = load_hf_dir(model)
    apply_lora(net, 4, 8.0, 0.0, targets, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        for layer in lora_modules(net).values():
            layer.lora_B.weight.normal_(0, 0.1, generator=torch.Generator().manual_seed(1))
    return save_adapter(net, out, base_name)


@pytest.fixture(scope="module")
def models(llama_dir, v2_dir, tiny_tokenizer, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("hostile-adapter")
    wide = model_dir(root / "wide-config", "tiny-llama", tiny_tokenizer, hidden_size=128)
    deep = model_dir(root / "deep-config", "tiny-llama", tiny_tokenizer, num_hidden_layers=3)
    out = {name: saved_model(config, root / name) for name, config in
           (("llama", llama_dir), ("wide", wide), ("deep", deep), ("v2", v2_dir))}
    out["adapter"] = adapter_of(out["llama"], root / "adapter")
    out["wide-adapter"] = adapter_of(out["wide"], root / "wide-adapter", base_name="someone/tiny-llama-128")
    out["deep-adapter"] = adapter_of(out["deep"], root / "deep-adapter", base_name="someone/tiny-llama-3-layers")
    out["v2-adapter"] = adapter_of(out["v2"], root / "v2-adapter", base_name="someone/tiny-v2-lite")
    return out


def _config(directory: Path, **changes) -> None:
    path = directory / "adapter_config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


def _truncate(directory: Path) -> None:
    path = directory / "adapter_model.safetensors"
    path.write_bytes(path.read_bytes()[:-100])


def _nan(directory: Path) -> None:
    from safetensors.torch import load_file, save_file

    path = directory / "adapter_model.safetensors"
    tensors = load_file(path)
    tensors[peft_key("layers.1.mlp.down_proj", "lora_B")][0, 0] = float("nan")
    save_file(tensors, path)


def _dora(directory: Path) -> None:
    from safetensors.torch import load_file, save_file

    path = directory / "adapter_model.safetensors"
    tensors = load_file(path)
    tensors["base_model.model.model.layers.0.self_attn.q_proj.lora_magnitude_vector"] = torch.ones(64, 1)
    save_file(tensors, path)


# (case id, the adapter it starts from, what is done to it, words the error must hold)
def _rows(ids: list[int], width: int):
    def write(directory: Path) -> None:
        from safetensors.torch import save_file

        save_file({"ids": torch.tensor(ids, dtype=torch.int64), "embed_tokens": torch.ones(len(ids), width)},
                  str(directory / "token_rows.safetensors"))
    return write


CASES = [
    ("another base: wider", "wide-adapter", None, ["someone/tiny-llama-128", "[4, 128]", "[4, 64]",
                                                   "layers.0.self_attn.q_proj", "64 -> 64"]),
    ("another base: deeper", "deep-adapter", None, ["someone/tiny-llama-3-layers", "layers.2.", "has no such layer"]),
    ("another architecture", "v2-adapter", None, ["someone/tiny-v2-lite", "'kv_a_proj_with_mqa'",
                                                  "match no layer", "q_proj"]),
    ("no weights", "adapter", lambda d: (d / "adapter_model.safetensors").unlink(), ["no adapter_model.safetensors"]),
    ("pickled weights only", "adapter",
     lambda d: (d / "adapter_model.safetensors").rename(d / "adapter_model.bin"), ["adapter_model.bin", "pickle"]),
    ("truncated weights", "adapter", _truncate, ["not a readable safetensors file"]),
    ("garbage weights", "adapter", lambda d: (d / "adapter_model.safetensors").write_bytes(b"\xff" * 64),
     ["not a readable safetensors file"]),
    ("NaN in a factor", "adapter", _nan, ["NaN", "layers.1.mlp.down_proj.lora_B"]),
    ("DoRA tensor", "adapter", _dora, ["lora_magnitude_vector", "not a LoRA factor"]),
    ("no config", "adapter", lambda d: (d / "adapter_config.json").unlink(), ["no adapter_config.json"]),
    ("config not JSON", "adapter", lambda d: (d / "adapter_config.json").write_text("{'r': 8,"),
     ["adapter_config.json is not valid JSON"]),
    ("config a list", "adapter", lambda d: (d / "adapter_config.json").write_text("[1, 2]"), ["JSON list"]),
    ("unknown target", "adapter", lambda d: _config(d, target_modules=["q_proj", "qkv_proj"]),
     ["'qkv_proj'", "match no layer", BASE_NAME]),
    ("the output head", "adapter", lambda d: _config(d, target_modules=["lm_head"]), ["'lm_head'", "output head"]),
    ("a regex target", "adapter", lambda d: _config(d, target_modules=".*proj"), ["'.*proj'", "list of layer names"]),
    ("DoRA", "adapter", lambda d: _config(d, use_dora=True), ["use_dora=True", "not supported"]),
    ("per-layer ranks", "adapter", lambda d: _config(d, rank_pattern={"q_proj": 8}), ["rank_pattern"]),
    ("not LoRA", "adapter", lambda d: _config(d, peft_type="IA3"), ["'IA3'", "only LoRA"]),
    ("rank zero", "adapter", lambda d: _config(d, r=0), ["r must be a positive integer"]),
    ("rank contradicting the tensors", "adapter", lambda d: _config(d, r=8), ["[4, 64]", "[8, 64]", "r=8"]),
    ("not a directory", "adapter", lambda d: shutil.rmtree(d), ["is not a directory"]),
    ("token rows of a grown vocabulary", "adapter", _rows([10_000_000], 64), ["token ids up to 10000000",
                                                                              "grown vocabulary"]),
    ("token rows of another width", "adapter", _rows([3], 128), ["token_rows.safetensors", "[1, 128]", "[1, 64]"]),
]


@pytest.fixture(params=CASES, ids=[c[0] for c in CASES])
def case(request, models, tmp_path) -> tuple[Path, list[str]]:
    _, source, damage, words = request.param
    directory = tmp_path / "adapter"
    shutil.copytree(models[source], directory)
    if damage is not None:
        damage(directory)
    return directory, words


def _holds(message: str, words: list[str]) -> None:
    for word in words:
        assert word in message, f"{word!r} not in: {message}"


def test_the_library_refuses_and_leaves_the_network_untouched(case, models):
    directory, words = case
    net = load_hf_dir(models["llama"])
    before = {k: v.clone() for k, v in net.state_dict().items()}
    with pytest.raises(AdapterError) as raised:
        load_adapter(net, directory)
    assert isinstance(raised.value, UserError)
    _holds(str(raised.value), words)
    if "another" in str(raised.value) or "match no layer" in str(raised.value):
        assert isinstance(raised.value, AdapterMismatchError)
    assert not lora_modules(net) and all(p.requires_grad for p in net.parameters())
    assert net.state_dict().keys() == before.keys()
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())


def _one_line_error(result, words: list[str]) -> None:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and result.output.count("error:") == 1
    _holds(" ".join(result.output.split()), [" ".join(w.split()) for w in words])


def test_train_merge_refuses_and_writes_nothing(case, models, tmp_path):
    from dscoder.cli import app

    directory, words = case
    before = sorted(p.name for p in directory.iterdir()) if directory.is_dir() else None
    out_parent = tmp_path / "outputs"
    out_parent.mkdir()
    result = CliRunner().invoke(app, ["train", "merge", "--model", str(models["llama"]), "--adapter", str(directory),
                                      "--out", str(out_parent / "merged")], env={"COLUMNS": "400"})
    _one_line_error(result, words)
    assert list(out_parent.iterdir()) == []  # no output, and no temporary beside it
    assert (sorted(p.name for p in directory.iterdir()) if directory.is_dir() else None) == before


def test_complete_with_a_bad_adapter_is_one_line_and_prints_nothing(case, models):
    from dscoder.cli import app

    directory, words = case
    result = CliRunner().invoke(app, ["complete", "def f():", "--model", str(models["llama"]), "--lora",
                                      str(directory), "--max-tokens", "4"], env={"COLUMNS": "400"})
    _one_line_error(result, words)
    assert result.stdout == ""


def test_merge_will_not_overwrite_the_base_or_the_adapter(models):
    from dscoder.cli import app

    for out in (models["llama"], models["adapter"]):
        before = sorted(p.name for p in out.iterdir())
        result = CliRunner().invoke(app, ["train", "merge", "-m", str(models["llama"]), "--adapter",
                                          str(models["adapter"]), "-o", str(out), "--force"])
        assert result.exit_code == 2 and "itself" in result.output, result.output
        assert sorted(p.name for p in out.iterdir()) == before
