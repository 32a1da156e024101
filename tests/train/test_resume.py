"""A training run killed with SIGKILL and resumed computes the same losses, bit for bit, as one never stopped.

Both runs are real `dscoder train pretrain` processes. The interrupted one is killed by the
kernel (SIGKILL: no handler, no cleanup) while it is between checkpoints; the test proves the
kill happened (the exit status is -SIGKILL and fewer steps than planned were logged). Resumed
with `--resume` it goes back to its last complete checkpoint, drops the metrics it logged after
it, and runs to the end: every step's loss and gradient norm must equal the uninterrupted run's
exactly (the JSON floats are the float64 repr, so equality is bitwise).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from conftest import wait_for
from training_data import tiny_settings

STEPS = 60


def _command(corpus: Path, model: Path, out: Path, *extra: str) -> list[str]:
    sets = tiny_settings(steps=STEPS, global_batch=16, micro_batch=1, save_every=10, keep_last=2, lr=2e-3)
    args = [sys.executable, "-m", "dscoder.cli", "train", "pretrain", "--model", str(model), "--scratch",
            "--data", str(corpus), "--out", str(out), "--no-progress", *extra]
    for key, value in sets.items():
        args += ["--set", f"{key}={value}"]
    return args


def _env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1"}  # the same thread count in every run: same reduction order


def _steps(out: Path) -> list[dict]:
    path = out / "metrics.jsonl"
    if not path.exists():
        return []
    return [r for r in (json.loads(line) for line in path.read_text().splitlines() if line.strip()) if "loss" in r]


def test_sigkill_then_resume_gives_bit_identical_losses(tiny_corpus, llama_dir, tmp_path):
    whole = tmp_path / "whole"
    subprocess.run(_command(tiny_corpus, llama_dir, whole), env=_env(), check=True, timeout=600,
                   capture_output=True)
    reference = _steps(whole)
    assert [r["step"] for r in reference] == list(range(1, STEPS + 1))

    cut = tmp_path / "cut"
    proc = subprocess.Popen(_command(tiny_corpus, llama_dir, cut), env=_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    try:
        # Past the second checkpoint (step 20) and on its way to the third: killed between checkpoints.
        wait_for(lambda: len(_steps(cut)) >= 24 or proc.poll() is not None, 300, "step 24 of the run to be killed")
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == -signal.SIGKILL, f"the run ended by itself ({proc.returncode}) before it was killed"
    logged = len(_steps(cut))
    assert 24 <= logged < STEPS
    checkpoints = sorted(p.name for p in (cut / "checkpoints").iterdir() if p.name.startswith("step-"))
    last = int(checkpoints[-1].split("-")[1])
    assert last < logged, "the kill must land after the last checkpoint, so the resumed run redoes steps"

    resumed = subprocess.run(_command(tiny_corpus, llama_dir, cut, "--resume"), env=_env(), timeout=600,
                             capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    after = _steps(cut)
    assert [r["step"] for r in after] == list(range(1, STEPS + 1)), "each step logged exactly once"
    for mine, theirs in zip(after, reference):
        assert (mine["step"], mine["loss"], mine["grad_norm"], mine["lr"]) == \
            (theirs["step"], theirs["loss"], theirs["grad_norm"], theirs["lr"]), f"step {mine['step']}"
    final = sorted(p.name for p in (cut / "checkpoints").iterdir())
    assert final == [f"step-{s:07d}" for s in (50, 60)]  # keep_last=2, no temporaries left behind
