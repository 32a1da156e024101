"""Bad input and bad luck during training: each a clear error that names what is wrong, and nothing lost.

NaN loss, an output directory holding another run, rows longer than the model's context, a
missing or truncated shard, a corpus made by another tokenizer, and a disk that fills up while a
checkpoint is written (a real file-size limit on a real process).
"""

from __future__ import annotations

import json
import resource
import shutil
import subprocess
import sys

import pytest
import torch

from dscoder import hub
from dscoder.train import checkpoint
from dscoder.train.config import TrainConfig, TrainConfigError, build
from dscoder.train.corpus import CorpusError
from dscoder.train.loop import RunDirectoryError, Trainer, TrainingDiverged
from training_data import model_dir, tiny_settings


def _config(corpus, model, out, **changes) -> TrainConfig:
    return build(TrainConfig(data=str(corpus), out=str(out), model=str(model), scratch=True), None,
                 tiny_settings(**changes))


def test_nan_loss_stops_naming_the_step_and_keeps_the_last_good_checkpoint(tiny_corpus, llama_dir, tmp_path):
    trainer = Trainer(_config(tiny_corpus, llama_dir, tmp_path / "run", steps=10, save_every=2), progress=False)
    for _ in range(2):
        trainer.train_step()
    good = trainer.save()
    with torch.no_grad():
        trainer.net.layers[0].mlp.up_proj.weight[0, 0] = float("inf")  # what a diverging run looks like
    with pytest.raises(TrainingDiverged) as info:
        trainer.train_step()
    message = str(info.value)
    assert "step 3" in message and str(good) in message and "--resume" in message
    assert checkpoint.latest(tmp_path / "run") == good
    assert torch.isfinite(hub.load_model(good).layers[0].mlp.up_proj.weight).all()


def test_another_runs_directory_is_refused_unless_resume(tiny_corpus, llama_dir, tmp_path):
    out = tmp_path / "run"
    Trainer(_config(tiny_corpus, llama_dir, out, steps=2), progress=False).run()
    with pytest.raises(RunDirectoryError, match=r"other settings \(lr: 0.003 -> 0.001"):
        Trainer(_config(tiny_corpus, llama_dir, out, steps=2, lr=1e-3), progress=False)
    with pytest.raises(RunDirectoryError, match="already holds this run's checkpoints"):
        Trainer(_config(tiny_corpus, llama_dir, out, steps=2), progress=False)
    resumed = Trainer(_config(tiny_corpus, llama_dir, out, steps=4, resume=True), progress=False)
    assert resumed.step == 2  # continued from the checkpoint


def test_rows_longer_than_the_context_are_refused(tiny_corpus, llama_dir, tmp_path):
    with pytest.raises(TrainConfigError, match=r"seq_len 1024 exceeds the model's context \(max_position_embeddings=512"):
        Trainer(_config(tiny_corpus, llama_dir, tmp_path / "run", seq_len=1024), progress=False)


def _cli(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dscoder.cli", "train", "pretrain", "--no-progress", *args],
                          capture_output=True, text=True, timeout=300, **kwargs)


def _sets(**changes) -> list[str]:
    return [a for k, v in tiny_settings(**changes).items() for a in ("--set", f"{k}={v}")]


def test_missing_and_truncated_shards_are_named(tiny_corpus, llama_dir, tmp_path):
    for damage in ("missing", "truncated"):
        corpus = tmp_path / damage
        shutil.copytree(tiny_corpus, corpus)
        shard = sorted(corpus.glob("train-*.bin"))[1]
        if damage == "missing":
            shard.unlink()
        else:
            shard.write_bytes(shard.read_bytes()[:-10])
        done = _cli("--model", str(llama_dir), "--scratch", "--data", str(corpus), "--out", str(tmp_path / "run"),
                    *_sets())
        assert done.returncode == 2, done.stderr
        assert f"shard {shard}" in done.stderr.replace("\n", "") and "Traceback" not in done.stderr
        assert not (tmp_path / "run").exists()


def test_a_corpus_of_another_tokenizer_is_refused_naming_both(tiny_corpus, stdlib_sources, tmp_path):
    from dscoder.tokenizer.train import train_tokenizer

    other_tok = tmp_path / "other-tok"
    train_tokenizer([stdlib_sources / "json"], 400, other_tok, show_progress=False)
    other = model_dir(tmp_path / "other-model", "tiny-llama", other_tok, vocab_size=512)
    with pytest.raises(CorpusError) as info:
        Trainer(_config(tiny_corpus, other, tmp_path / "run"), progress=False)
    manifest = json.loads((tiny_corpus / "manifest.json").read_text())
    message = str(info.value)
    assert manifest["tokenizer"]["sha256"] in message and str(other) in message


def test_a_full_disk_during_a_checkpoint_loses_nothing(tiny_corpus, llama_dir, tmp_path):
    out = tmp_path / "run"
    first = _cli("--model", str(llama_dir), "--scratch", "--data", str(tiny_corpus), "--out", str(out),
                 *_sets(steps=4, save_every=2))
    assert first.returncode == 0, first.stderr
    good = checkpoint.latest(out)
    weights = (good / "model.safetensors").stat().st_size

    def limit_file_size():  # writes past the limit fail with EFBIG, as they would with ENOSPC on a full disk
        resource.setrlimit(resource.RLIMIT_FSIZE, (weights // 2, weights // 2))

    full = _cli("--model", str(llama_dir), "--scratch", "--data", str(tiny_corpus), "--out", str(out), "--resume",
                *_sets(steps=6, save_every=2), preexec_fn=limit_file_size)
    assert full.returncode == 2, full.stderr
    assert "could not write the checkpoint of step 6" in full.stderr and "Traceback" not in full.stderr
    assert str(good) in full.stderr.replace("\n", "")
    assert checkpoint.latest(out) == good  # still the last complete checkpoint, and it still loads
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step-0000002", "step-0000004"]
    hub.load_model(good)
    assert checkpoint.load_state(good)["step"] == 4
