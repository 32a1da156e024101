"""Two processes train the same run as one: DDP and FSDP2 under torchrun, on real gloo.

Every run here is a real `dscoder train pretrain` command; the two-process ones are started by
`torch.distributed.run --standalone --nproc-per-node 2`, so process-group setup, the collectives
and teardown are the ones a user gets. Rank r reads the r-th half of each global batch, so with
the same seed and settings the per-step loss and gradient norm of the global batch must equal
those of one process up to the order of floating-point reductions, and so must the weights of
the final checkpoint. The runs validate in the middle and at the end (collectives in eval mode,
FIM generation on every rank) and write a checkpoint in the middle and at the end (the full
state dict gathered from every rank, written by rank 0), and the checkpoints must be Hugging Face
directories that transformers loads and that compute our logits.

The MoE model makes ranks use different parameters: after a few steps some expert receives no
token of one rank's micro-batches but some of the other's. Without `find_unused_parameters` DDP
desynchronised on step 3, and without `set_reduce_scatter_unused_params` FSDP2's reduce-scatters
differed in size on step 5 (gloo: "Received data size doesn't match expected size"), so the MoE
runs are 6 steps long.

FSDP2 (`fully_shard`) runs on CPU with gloo in this torch: nothing is skipped.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

from dscoder import hub
from dscoder.formats.hf import load_hf_dir
from dscoder.train import checkpoint
from training_data import tiny_settings

pytestmark = pytest.mark.skipif(not (dist.is_available() and dist.is_gloo_available()),
                                reason="this torch has no gloo backend")

TIMEOUT = 300  # a hang (a collective one rank never joins) fails the test instead of blocking it
SETTINGS = tiny_settings(steps=6, global_batch=4, micro_batch=1, eval_every=3, fim_eval=2, save_every=3, keep_last=5,
                         device="cpu")
REL = 1e-5  # loss and gradient norm: the same numbers summed in another order


def _env() -> dict:
    root = str(Path(__file__).resolve().parents[2])
    path = os.environ.get("PYTHONPATH")
    # One thread per process: two processes on two cores, and the same kernels in every run.
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": root + (os.pathsep + path if path else "")}


def _train(model: Path, corpus: Path, out: Path, processes: int = 1, parallel: str | None = None) -> Path:
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}"] \
        if processes > 1 else [sys.executable]
    args = [*launcher, "-m", "dscoder.cli", "train", "pretrain", "--model", str(model), "--scratch",
            "--data", str(corpus), "--out", str(out), "--no-progress"]
    sets = dict(SETTINGS, **({"parallel": parallel} if parallel else {}))
    for key, value in sets.items():
        args += ["--set", f"{key}={value}"]
    # A session of its own, so that a timeout kills torchrun's workers too, not only torchrun.
    proc = subprocess.Popen(args, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        output, _ = proc.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        output, _ = proc.communicate()
        pytest.fail(f"{processes} process(es), parallel={parallel}: no end after {TIMEOUT} s\n{output[-4000:]}")
    assert proc.returncode == 0, f"{processes} process(es), parallel={parallel}: exit {proc.returncode}\n" \
                                 f"{output[-6000:]}"
    return out


def _metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]


@pytest.fixture(scope="module")
def single(tiny_corpus, llama_dir, v2_dir, tmp_path_factory):
    """The one-process run of each model, made on first use and shared by the comparisons."""
    runs: dict[str, Path] = {}

    def get(name: str) -> Path:
        if name not in runs:
            model = {"llama": llama_dir, "v2": v2_dir}[name]
            runs[name] = _train(model, tiny_corpus, tmp_path_factory.mktemp(f"single-{name}") / "run")
        return runs[name]
    return get


def _assert_same_run(one: Path, two: Path) -> None:
    a, b = _metrics(one), _metrics(two)
    # Only rank 0 writes: one line per step, no duplicates from rank 1.
    assert [r["step"] for r in b] == [r["step"] for r in a] == list(range(SETTINGS["steps"] + 1))
    for x, y in zip(a, b):
        step = x["step"]
        assert x["tokens"] == y["tokens"], step
        for key in ("loss", "grad_norm", "lr", "val_loss", "val_bpb", "moe_aux_loss"):
            assert (key in x) == (key in y), (step, key)
            if key in x:
                assert y[key] == pytest.approx(x[key], rel=REL, abs=1e-9), (step, key, x[key], y[key])
        for key in ("val_tokens", "fim_examples", "fim_exact_match"):
            assert x.get(key) == y.get(key), (step, key)
        if "moe_max_over_mean" in x:  # the load of the global batch, counted on both ranks
            assert y["moe_max_over_mean"] == pytest.approx(x["moe_max_over_mean"], abs=1e-4), step
    assert any("val_loss" in r for r in a[1:-1]), "no validation in the middle of the run"
    assert json.loads((two / "run.json").read_text())["world_size"] == 2


def _assert_checkpoints(one: Path, two: Path) -> None:
    steps = [s for s, _ in checkpoint.complete_checkpoints(two)]
    assert steps == [s for s, _ in checkpoint.complete_checkpoints(one)] == [3, 6]
    for step in steps:
        mine, theirs = checkpoint.step_dir(two, step), checkpoint.step_dir(one, step)
        state = checkpoint.load_state(mine)
        assert state["step"] == step and len(state["rng"]) == 2  # every rank's RNG state
        assert set(state["optimizer"]["state"]) == set(checkpoint.load_state(theirs)["optimizer"]["state"])
        ours, reference = load_hf_dir(mine).state_dict(), load_hf_dir(theirs).state_dict()
        assert set(ours) == set(reference)
        for name, w in reference.items():  # trained on the same batches: the same weights
            assert torch.allclose(ours[name], w, rtol=1e-4, atol=1e-4), (step, name, (ours[name] - w).abs().max())


def _assert_transformers_loads(directory: Path) -> None:
    transformers = pytest.importorskip("transformers")
    ref = transformers.AutoModelForCausalLM.from_pretrained(directory, torch_dtype=torch.float32).eval()
    ours = hub.load_model(directory).eval()
    tokens = torch.tensor([[(7 * i + 3) % ours.config.vocab_size for i in range(48)]])
    with torch.no_grad():
        theirs = ref(tokens).logits
        mine, _ = ours(tokens)
    assert theirs.shape == mine.shape
    assert (theirs - mine).abs().max().item() <= 1e-4


@pytest.mark.parametrize("name,parallel", [("llama", "ddp"), ("v2", "ddp"), ("v2", "fsdp")],
                         ids=["llama-ddp", "moe-ddp", "moe-fsdp"])
def test_two_processes_train_as_one(name, parallel, single, tiny_corpus, llama_dir, v2_dir, tmp_path):
    one = single(name)
    model = {"llama": llama_dir, "v2": v2_dir}[name]
    two = _train(model, tiny_corpus, tmp_path / "run", processes=2, parallel=parallel)
    _assert_same_run(one, two)
    _assert_checkpoints(one, two)
    _assert_transformers_loads(checkpoint.latest(two))
