"""`dscoder train` as a user runs it: the run directory's files, the plot, extension, and the run-time options.

One small pretraining run through the command line, then checks of what it leaves: metrics with
every promised field, TensorBoard event files holding those scalars, the PNG, a checkpoint that
`dscoder complete` loads; then `train extend` from that checkpoint, whose config.json carries the
new RoPE settings and whose run records loss by position before and after. Activation
checkpointing must not change a step, and bf16 autocast must train.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from dscoder.formats.hf import read_config
from dscoder.train.config import TrainConfig, build
from dscoder.train.loop import Trainer
from training_data import tiny_settings


def _dscoder(*args: str) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "-m", "dscoder.cli", *args], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def _sets(**changes) -> list[str]:
    return [a for k, v in tiny_settings(**changes).items() for a in ("--set", f"{k}={v}")]


@pytest.mark.slow  # long (CI time); run with pytest -m slow
def test_pretrain_then_extend_through_the_command_line(tiny_corpus, v2_dir, tmp_path):
    run = tmp_path / "run"
    _dscoder("train", "pretrain", "--model", str(v2_dir), "--scratch", "--data", str(tiny_corpus), "--out", str(run),
             "--no-progress", *_sets(steps=6, eval_every=3, fim_eval=4, save_every=3, keep_last=1))
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert records[0]["step"] == 0 and records[0]["unigram_loss"] > 0 and "val_loss" in records[0]
    steps = [r for r in records if "loss" in r]
    assert [r["step"] for r in steps] == list(range(1, 7))
    for key in ("lr", "grad_norm", "tokens_per_s", "mfu", "memory_gib", "moe_aux_loss", "moe_max_over_mean"):
        assert all(key in r for r in steps), key
    assert {"val_loss", "val_bpb", "fim_exact_match"} <= set(steps[2]) and {"val_loss", "val_bpb"} <= set(steps[5])
    assert steps[-1]["loss"] < steps[0]["loss"]

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    assert [e.step for e in events.Scalars("loss")] == list(range(1, 7))
    assert events.Scalars("loss")[-1].value == pytest.approx(steps[-1]["loss"], rel=1e-6)
    assert (run / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    checkpoints = sorted((run / "checkpoints").iterdir())
    assert [c.name for c in checkpoints] == ["step-0000006"]  # keep_last=1
    done = _dscoder("complete", "--model", str(checkpoints[0]), "def f(x):\n", "--max-tokens", "4")
    assert done.stdout

    extended = tmp_path / "extended"
    _dscoder("train", "extend", "--model", str(checkpoints[0]), "--data", str(tiny_corpus), "--out", str(extended),
             "--recipe", "extend-tiny", "--no-progress", "--set", "steps=2", "--set", "seq_len=256",
             "--set", "max_position_embeddings=1024", "--set", "global_batch=2", "--set", "micro_batch=1",
             "--set", "eval_rows=4", "--set", "fim_eval=0")
    config = read_config(extended / "checkpoints" / "step-0000002")
    assert config.rope_scaling == {"type": "linear", "factor": 4.0} and config.max_position_embeddings == 1024
    ext = json.loads((extended / "extension.json").read_text())
    assert ext["seq_len"] == 256 and len(ext["before"]) == len(ext["after"]) == 8
    final_lr = torch.load(checkpoints[0] / "train_state.pt", weights_only=True)["lr"]
    assert {json.loads(line).get("lr", final_lr) for line in (extended / "metrics.jsonl").read_text().splitlines()} \
        == {final_lr}  # extension trains at the final LR of the checkpoint it starts from
    _dscoder("train", "plot", str(extended), "--png", str(tmp_path / "ext.png"))
    assert (tmp_path / "ext.png").stat().st_size > 10_000
    listing = _dscoder("train", "recipes").stdout
    assert "v1-1.3b" in listing and "extend-v2-128k" in listing and "stage_boundaries" in listing


def _one_step(corpus, model, out, **changes) -> tuple[float, dict[str, torch.Tensor]]:
    trainer = Trainer(build(TrainConfig(data=str(corpus), out=str(out), model=str(model), scratch=True), None,
                            tiny_settings(**changes)), progress=False)
    record = trainer.train_step()
    return record["loss"], {k: v.clone() for k, v in trainer.net.state_dict().items()}


def test_activation_checkpointing_changes_nothing(tiny_corpus, v2_dir, tmp_path):
    loss, weights = _one_step(tiny_corpus, v2_dir, tmp_path / "a")
    loss_ac, weights_ac = _one_step(tiny_corpus, v2_dir, tmp_path / "b", activation_checkpointing=True)
    assert loss_ac == loss
    for name, w in weights.items():
        torch.testing.assert_close(weights_ac[name], w, rtol=1e-6, atol=1e-7, msg=name)


def test_bf16_autocast_trains_with_fp32_master_weights(tiny_corpus, llama_dir, tmp_path):
    trainer = Trainer(build(TrainConfig(data=str(tiny_corpus), out=str(tmp_path / "run"), model=str(llama_dir),
                                        scratch=True), None, tiny_settings(precision="bf16", steps=4)), progress=False)
    fp32_loss, _ = _one_step(tiny_corpus, llama_dir, tmp_path / "fp32")
    losses = [trainer.train_step()["loss"] for _ in range(4)]
    assert losses[0] == pytest.approx(fp32_loss, rel=2e-2) and losses[0] != fp32_loss  # bf16 really ran
    assert losses[-1] < losses[0]
    assert all(p.dtype == torch.float32 for p in trainer.net.parameters())
    assert all(s["exp_avg"].dtype == torch.float32 for s in trainer.optimizer.state.values())
