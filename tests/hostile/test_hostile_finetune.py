"""Hostile input to `dscoder finetune --repo`: the repository is data, and a refused job writes nothing.

- A repository's links are never followed: a `secrets.py` linking to a file outside the
  repository (or a directory link) is neither trained on nor measured.
- `--add-fim-tokens` on a model that has FIM tokens, a repository with fewer than two source
  files, and an `--out` holding something else are refused with one line naming the problem,
  before anything is written.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from dscoder.formats.hf import read_config, save_hf_dir
from dscoder.model.transformer import Transformer
from dscoder.tokenizer.tokenizer import Tokenizer
from dscoder.train.finetune import FinetuneError, read_sources


def _finetune(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dscoder.cli", "finetune", "--no-progress", *args],
                          capture_output=True, text=True, timeout=300)


def test_links_in_the_repository_are_not_read(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "private.py").write_text("API_KEY = 'do-not-train-on-me'\n")
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "a.py").write_text("def a():\n    return 1\n")
    (repo / "b.py").write_text("def b():\n    return 2\n")
    os.symlink(outside / "private.py", repo / "secrets.py")
    os.symlink(outside, repo / "vendored")
    files = read_sources(str(repo))
    assert set(files) == {"a.py", "b.py"}
    assert not any("do-not-train-on-me" in text for text in files.values())


def test_a_repository_without_two_source_files_is_refused(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "only.py").write_text("x = 1\n")
    (repo / "notes.bin").write_bytes(b"\0\1\2")
    with pytest.raises(FinetuneError, match="1 source file"):
        read_sources(str(repo))
    done = _finetune("--repo", str(repo), "--out", str(tmp_path / "out"))
    assert done.returncode == 2 and "needs at least two" in done.stderr
    assert not (tmp_path / "out").exists()


def test_add_fim_tokens_on_a_model_that_has_them_is_refused(llama_dir, tmp_path):
    model = tmp_path / "model"  # a DeepSeek-style vocabulary: its FIM tokens are there already
    save_hf_dir(Transformer(read_config(llama_dir)).init_weights(), model)
    Tokenizer.load(llama_dir).save(model)
    repo = tmp_path / "repo"
    repo.mkdir()
    for name in ("a.py", "b.py", "c.py"):
        (repo / name).write_text(f"def {name[0]}():\n    return '{name}'\n")
    done = _finetune("--repo", str(repo), "--out", str(tmp_path / "out"), "--model", str(model),
                     "--add-fim-tokens")
    assert done.returncode == 2
    assert "already has FIM tokens" in done.stderr and "<｜fim▁begin｜>" in done.stderr
    assert not (tmp_path / "out").exists()


def test_an_out_directory_holding_something_else_is_not_overwritten(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    for name in ("a.py", "b.py"):
        (repo / name).write_text("pass\n")
    out = tmp_path / "out"
    out.mkdir()
    (out / "thesis.tex").write_text("years of work")
    done = _finetune("--repo", str(repo), "--out", str(out))
    assert done.returncode == 2 and "--resume" in done.stderr
    assert sorted(p.name for p in out.iterdir()) == ["thesis.tex"]
