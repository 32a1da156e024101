"""`dscoder finetune --repo` as a user runs it, on a tiny model that has no FIM tokens.

One small run through the command line with `--add-fim-tokens`: whole files held out, the
corpus built from the others with FIM documents in the grown vocabulary, LoRA trained with the
new FIM rows, the adapter merged, and the held-out measurements before (prefix-only: the model
could not infill) and after (FIM). Then the merged model is what `dscoder infill` uses.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
import torch

from training_data import random_model_dir
from dscoder import hub
from dscoder.formats.hf import load_hf_dir, read_config
from dscoder.tokenizer.fim import DEEPSEEK_FIM
from dscoder.tokenizer.tokenizer import Tokenizer


def _dscoder(*args: str, ok: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "-m", "dscoder.cli", *args], capture_output=True, text=True, timeout=900)
    if ok:
        assert done.returncode == 0, done.stderr[-3000:]
    return done


@pytest.fixture(scope="module")
def smol_vocab_model(smollm2_gguf, tmp_path_factory) -> Path:
    """A random two-layer model over the embedded SmolLM2's real vocabulary (which has no FIM tokens)."""
    return random_model_dir(tmp_path_factory.mktemp("smol-vocab"), Tokenizer.load(smollm2_gguf), std=0.02)


@pytest.fixture(scope="module")
def small_repo(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("repo") / "jsonpkg"
    shutil.copytree(Path(sysconfig.get_paths()["stdlib"]) / "json", root,
                    ignore=shutil.ignore_patterns("__pycache__", "test*"))
    return root


def test_finetune_a_repository_with_added_fim_tokens(smol_vocab_model, small_repo, tmp_path):
    out = tmp_path / "ft"
    _dscoder("finetune", "--repo", str(small_repo), "--out", str(out), "--model", str(smol_vocab_model),
             "--add-fim-tokens", "--held-out", "0.3", "--next-line-cases", "4", "--fim-cases", "4",
             "--eval-context", "64", "--fim-rate", "1.0", "--no-progress", "--set", "steps=4", "--set", "seq_len=128",
             "--set", "global_batch=2", "--set", "micro_batch=2", "--set", "save_every=2")
    split = json.loads((out / "split.json").read_text())
    assert split["held_out"] and split["train"] and not set(split["held_out"]) & set(split["train"])
    # the corpora hold only the training files: as one repository, and each file alone (FIM documents)
    repo_tree = next((out / "work" / "source-repo").iterdir())
    assert {str(p.relative_to(repo_tree)) for p in repo_tree.rglob("*") if p.is_file()} == set(split["train"])
    singles = sorted((out / "work" / "source-files").iterdir())
    assert len(singles) == len(split["train"]) and all(len(list(d.rglob("*.py"))) == 1 for d in singles)
    manifest = json.loads((out / "corpus" / "files" / "manifest.json").read_text())
    assert manifest["fim"] == {"psm": len(split["train"])}  # --fim-rate 1.0: every file a FIM document
    summary = json.loads((out / "finetune.json").read_text())
    new_ids = summary["added_fim_tokens"]
    assert len(new_ids) == 3
    assert summary["before"]["fim_mode"] == "prefix-only" and summary["after"]["fim_mode"] == "fim"
    assert summary["before"]["n_next_line"] == summary["after"]["n_next_line"] == 4
    assert summary["after"]["perplexity"] != summary["before"]["perplexity"]
    assert (out / "finetune.png").stat().st_size > 10_000

    # the adapter is peft's format, the merged model has the grown vocabulary and the learned FIM rows
    adapter = Path(summary["adapter"])
    assert (adapter / "adapter_config.json").is_file() and (adapter / "token_rows.safetensors").is_file()
    merged = load_hf_dir(out / "merged")
    base = load_hf_dir(smol_vocab_model)
    assert read_config(out / "merged").vocab_size == base.config.vocab_size + 3
    for rows in (merged.embed_tokens.weight[new_ids], merged.lm_head.weight[new_ids]):
        assert not torch.allclose(rows[0], rows[1]) and not torch.allclose(rows[1], rows[2])  # apart from the mean
    assert torch.equal(merged.embed_tokens.weight[:base.config.vocab_size], base.embed_tokens.weight)
    tok = hub.load_tokenizer(out / "merged")
    assert [tok.token_to_id(t) for t in (DEEPSEEK_FIM.prefix, DEEPSEEK_FIM.suffix, DEEPSEEK_FIM.middle)] == new_ids

    # and infilling works on it, where the model as given refused
    source = tmp_path / "f.py"
    source.write_text("def add(a, b):\n    \n")
    refused = _dscoder("infill", str(source), "--line", "2", "--model", str(smol_vocab_model), "--max-tokens", "4",
                       ok=False)
    assert refused.returncode != 0 and "fill-in-the-middle" in refused.stderr
    _dscoder("infill", str(source), "--line", "2", "--model", str(out / "merged"), "--max-tokens", "4")
