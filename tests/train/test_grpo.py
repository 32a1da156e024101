"""GRPO: the objective against hand-computed values, a synthetic task the loop must learn, the
engine sampling from the updated policy, and a resumed run that continues exactly.

The model is the tiny Llama over the 512-token tokenizer of tests/training_data.py, with
weights drawn at std 0.3 so its distribution is peaked enough for a reward to vary within a
group. The synthetic reward is 1 when the completion contains "(" (about one sample in eight
at the start), so a working loop must raise it in a few steps.
"""

from __future__ import annotations

import json
import math

import pytest
import torch

from training_data import random_model_dir
from dscoder.serve.engine import Engine
from dscoder.tokenizer.tokenizer import Tokenizer
from dscoder.train import checkpoint
from dscoder.train.config import TrainConfig, build
from dscoder.train.grpo import GrpoTrainer, train_grpo
from dscoder.train.grpo_objective import STD_EPS, group_advantages, k3_kl, policy_loss
from dscoder.train.rl_prompts import synthetic

LONG_PROMPT = "def parse(text):\n    result = []\n    for line in text.splitlines():\n        "


# ------------------------------------------------------------------------------ the objective
def test_group_advantages_are_the_reward_against_its_group_mean_over_the_sample_std():
    rewards = torch.tensor([1.0, 0.0, 0.0, 1.0, 0.5, 0.5, 0.5, 0.5, 3.0, 0.0, 0.0, 0.0], dtype=torch.float64)
    adv = group_advantages(rewards, 4)
    std = math.sqrt(4 * 0.25 / 3)  # group 1: mean 0.5, squared deviations 0.25 each, n - 1 = 3
    assert adv[:4].tolist() == pytest.approx([0.5 / (std + STD_EPS), -0.5 / (std + STD_EPS),
                                              -0.5 / (std + STD_EPS), 0.5 / (std + STD_EPS)], rel=1e-12)
    assert adv[4:8].tolist() == [0.0, 0.0, 0.0, 0.0]  # no signal, not 0/0
    std3 = math.sqrt((2.25 ** 2 + 3 * 0.75 ** 2) / 3)  # group 3: mean 0.75
    assert adv[8].item() == pytest.approx(2.25 / (std3 + STD_EPS), rel=1e-12)
    with pytest.raises(ValueError):
        group_advantages(rewards, 5)


def test_k3_kl_is_the_papers_estimator():
    logp = torch.log(torch.tensor([0.5, 0.2, 0.3]))
    ref = torch.log(torch.tensor([0.25, 0.2, 0.6]))
    # pi_ref/pi - log(pi_ref/pi) - 1: 0.5 - ln 0.5 - 1; 0; 2 - ln 2 - 1
    expected = [0.5 - math.log(0.5) - 1, 0.0, 2 - math.log(2) - 1]
    assert k3_kl(logp, ref).tolist() == pytest.approx(expected, abs=1e-6)
    assert (k3_kl(torch.randn(100), torch.randn(100)) >= 0).all()


def test_policy_loss_clips_the_ratio_as_equation_3_and_normalises_by_tokens_or_sequences():
    # four tokens in two samples: ratios 1.5, 0.5 (sample 0, advantage +1) and 1.5, 0.5 (sample 1, advantage -1)
    old = torch.zeros(2, 2)
    logp = torch.log(torch.tensor([[1.5, 0.5], [1.5, 0.5]])).requires_grad_(True)
    adv = torch.tensor([1.0, -1.0])
    mask = torch.ones(2, 2)
    out = policy_loss(logp, old, None, adv, mask, clip_eps=0.2, kl_coef=0.0, norm="token", total_tokens=4,
                      total_samples=2)
    # per-token objective min(r A, clip(r) A): +1.2 (clipped), +0.5, -1.5, -0.8 (clipped)
    assert out.loss.item() == pytest.approx(-(1.2 + 0.5 - 1.5 - 0.8) / 4, abs=1e-6)
    assert out.clipped.item() == 2
    out.loss.backward()
    # a clipped token gets no gradient; an unclipped one d(-r A)/d logp / 4 = -r A / 4
    assert logp.grad.flatten().tolist() == pytest.approx([0.0, -0.5 / 4, 1.5 / 4, 0.0], abs=1e-6)
    # sequence norm: each sample's mean over its real tokens, then the mean over samples
    mask = torch.tensor([[1.0, 1.0], [1.0, 0.0]])
    seq = policy_loss(logp.detach(), old, None, adv, mask, 0.2, 0.0, "sequence", total_tokens=3, total_samples=2)
    assert seq.loss.item() == pytest.approx(-((1.2 + 0.5) / 2 + (-1.5)) / 2, abs=1e-6)
    # the KL term: beta * k3 added per token
    ref = torch.zeros(2, 2)
    with_kl = policy_loss(logp.detach(), old, ref, adv, torch.ones(2, 2), 0.2, 0.04, "token", 4, 2)
    kl = k3_kl(logp.detach(), ref)
    assert with_kl.loss.item() == pytest.approx(out.loss.item() + 0.04 * kl.sum().item() / 4, abs=1e-6)


# ------------------------------------------------------------------------------ the loop
@pytest.fixture(scope="module")
def peaked_model(tiny_tokenizer, tmp_path_factory):
    return random_model_dir(tmp_path_factory.mktemp("grpo-model"), Tokenizer.load(tiny_tokenizer / "tokenizer.json"),
                            std=0.3)


def _cfg(model, out, **changes) -> TrainConfig:
    values = dict(reward="contains:(", prompt_form="base", lora_rank=0, lr=3e-3, max_new_tokens=16, global_batch=32,
                  group_size=8, micro_batch=8, steps=12, save_every=0, kl_coef=0.04, warmup_steps=0)
    values.update(changes)
    return build(TrainConfig(data="synthetic", out=str(out), model=str(model)), "grpo-tiny", values)


def _metrics(run_dir) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def _samples(run_dir) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "samples.jsonl").read_text().splitlines()]


def test_a_synthetic_reward_rises_within_a_few_steps(peaked_model, tmp_path):
    result = train_grpo(_cfg(peaked_model, tmp_path / "run"), progress=False, tasks=synthetic(8, "def f(x):"))
    records = _metrics(result.run_dir)
    rewards = [r["reward"] for r in records]
    assert len(records) == 12
    assert sum(rewards[:3]) / 3 < 0.3
    assert sum(rewards[-3:]) / 3 > sum(rewards[:3]) / 3 + 0.3, rewards
    # the policy starts as the reference (rounding apart: the reference pass runs the no-grad kernels) and moves
    assert abs(records[0]["kl"]) < 1e-6 and records[-1]["kl"] > 1e-3
    assert all(r["logprob_gap"] < 1e-4 for r in records)  # the engine sampled from the weights being trained
    assert (result.run_dir / "report.md").is_file()
    assert len(_samples(result.run_dir)) == 12 * 32


def test_the_engine_logprobs_equal_the_trainers_and_follow_each_update(peaked_model, tmp_path, monkeypatch):
    """With LoRA (the reference is the base with adapters off) and a prompt longer than a KV block, so
    that the prefix cache holds it between steps: the engine's log-probabilities of what it sampled
    equal the trainer's recomputation after every update; without dropping the cache they do not."""
    cfg = _cfg(peaked_model, tmp_path / "lora", lora_rank=8, lora_alpha=16.0, lr=2e-2, steps=3, global_batch=16)
    tasks = synthetic(2, LONG_PROMPT)
    result = train_grpo(cfg, progress=False, tasks=tasks)
    records = _metrics(result.run_dir)
    assert [r["logprob_gap"] < 1e-4 for r in records] == [True] * 3
    assert abs(records[0]["kl"]) < 1e-6  # B = 0 at the start: the adapted policy is the base
    assert records[-1]["kl"] > 1e-4

    monkeypatch.setattr(Engine, "forget_prefixes", lambda self: 0)  # keep the stale keys/values
    stale = train_grpo(_cfg(peaked_model, tmp_path / "stale", lora_rank=8, lora_alpha=16.0, lr=2e-2, steps=3,
                            global_batch=16), progress=False, tasks=tasks)
    gaps = [r["logprob_gap"] for r in _metrics(stale.run_dir)]
    assert gaps[0] < 1e-4 and max(gaps[1:]) > 1e-3, gaps


class _Stop(Exception):
    pass


def test_a_resumed_grpo_run_samples_and_computes_what_an_unbroken_one_does(peaked_model, tmp_path, monkeypatch):
    tasks = synthetic(8, "def f(x):")
    whole = train_grpo(_cfg(peaked_model, tmp_path / "whole", steps=6, save_every=3), progress=False, tasks=tasks)

    broken_dir = tmp_path / "broken"
    step = GrpoTrainer.train_step

    def stop_after_three(self):
        if self.step == 3:
            raise _Stop()
        return step(self)

    monkeypatch.setattr(GrpoTrainer, "train_step", stop_after_three)
    with pytest.raises(_Stop):
        train_grpo(_cfg(peaked_model, broken_dir, steps=6, save_every=3), progress=False, tasks=tasks)
    monkeypatch.setattr(GrpoTrainer, "train_step", step)
    assert [r["step"] for r in _metrics(broken_dir)] == [1, 2, 3]  # it really stopped after step 3
    assert [s for s, _ in checkpoint.complete_checkpoints(broken_dir)] == [3]
    resumed = train_grpo(_cfg(peaked_model, broken_dir, steps=6, save_every=3, resume=True), progress=False,
                         tasks=tasks)
    assert resumed.losses and len(resumed.losses) == 3  # only steps 4-6 ran in the resumed process

    def key(rows):
        return [(r["step"], r["prompt_index"], r["sample"], r["completion"], r["reward"]) for r in rows]

    assert key(_samples(broken_dir)) == key(_samples(whole.run_dir))
    for a, b in zip(_metrics(broken_dir), _metrics(whole.run_dir)):
        assert a["loss"] == b["loss"] and a["kl"] == b["kl"] and a["reward"] == b["reward"]


# ------------------------------------------------------------------------------ MBPP prompts and the CLI
def test_grpo_on_mbpp_runs_the_program_evaluation_runs(tmp_path):
    """The reward's all-tests program is byte for byte the program `dscoder eval mbpp --form instruct` judges
    (one verdict function, one program), and the reference solutions pass it."""
    from conftest import shared_data
    from dscoder.execute.programs import Executor
    from dscoder.train.rewards import SandboxReward
    from dscoder.train.rl_prompts import load

    data = shared_data("mbpp", "mbpp.jsonl").parents[1]
    tasks = load("mbpp-validation", data=data)
    assert [t.task_id for t in tasks[:2]] == ["MBPP/511", "MBPP/512"] and len(tasks) == 90
    answer = f"```python\n{tasks[0].problem.reference}\n```"
    assert tasks[0].program(tasks[0].code(answer, "instruct"), tasks[0].tests) == \
        tasks[0].problem.answer_program(answer)
    zero = load("mbpp-train", data=data, shots=0)
    assert len(zero) == 374 and len(zero[0].problem.instruction) < len(load("mbpp-train", data=data)[0].problem.instruction) / 3
    cfg = build(TrainConfig(data="x", out="y"), "grpo-tiny")
    with Executor(2, 10.0) as executor:
        reward = SandboxReward(cfg, executor)
        for task in tasks[:3]:
            scored = reward.score(task, f"```python\n{task.problem.reference}\n```", "stop")
            assert (scored.category, scored.reward) == ("passed", 1.0), (task.task_id, scored)


def test_train_grpo_through_the_command_line(peaked_model, tmp_path):
    import subprocess
    import sys

    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"task_id": f"p{i}", "prompt": "def f(x):\n"}) + "\n" for i in range(4)))
    sets = dict(reward="contains:(", prompt_form="base", lora_rank=4, max_new_tokens=8, global_batch=8, group_size=4,
                micro_batch=4, steps=2, save_every=0)
    argv = [sys.executable, "-m", "dscoder.cli", "train", "grpo", "--model", str(peaked_model), "--prompts",
            str(prompts), "--out", str(tmp_path / "run"), "--no-progress"]
    for key, value in sets.items():
        argv += ["--set", f"{key}={value}"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "reward" in done.stdout
    run = tmp_path / "run"
    assert [r["step"] for r in _metrics(run)] == [1, 2]
    assert (run / "grpo.png").stat().st_size > 10_000 and (run / "report.md").is_file()
    assert (run / "checkpoints").is_dir() and list(run.glob("tensorboard/*"))
    assert json.loads((run / "run.json").read_text())["task"] == "grpo"


def test_a_reward_model_trained_on_a_runs_samples_is_the_reward_of_the_next(peaked_model, tmp_path):
    """The sandbox's labels of one run train a reward model (`train reward-model`), whose probability is then
    the reward of another run: the rewards are its scores, not 0/1, and the verdicts are still counted."""
    from dscoder.train.reward_model import RewardModelConfig, RewardScorer, train_reward_model

    tasks = [t for t in synthetic(20, "def f(x):")]
    first = train_grpo(_cfg(peaked_model, tmp_path / "first", steps=3), progress=False, tasks=tasks)
    summary = train_reward_model(RewardModelConfig(samples=str(first.run_dir), out=str(tmp_path / "rm"),
                                                   model=str(peaked_model), steps=30, lr=1e-3, batch=16,
                                                   held_out=0.25), progress=False)
    assert 0.0 <= summary["held_out_auc"] <= 1.0
    second = train_grpo(_cfg(peaked_model, tmp_path / "second", steps=1, global_batch=16, reward="model",
                             reward_model=str(tmp_path / "rm")), progress=False, tasks=tasks)
    rows = _samples(second.run_dir)
    scorer = RewardScorer.load(tmp_path / "rm")
    expected = scorer.score([(r["prompt"], r["completion"]) for r in rows[:4]])
    assert [r["reward"] for r in rows[:4]] == pytest.approx(expected, abs=1e-5)
    assert all(0.0 < r["reward"] < 1.0 for r in rows)
    assert sum(_metrics(second.run_dir)[0]["verdicts"].values()) == 16


def test_later_policy_updates_are_corrected_by_the_clipped_ratio(peaked_model, tmp_path):
    result = train_grpo(_cfg(peaked_model, tmp_path / "mu", steps=2, policy_updates=3, lr=3e-2), progress=False,
                        tasks=synthetic(4, "def f(x):"))
    records = _metrics(result.run_dir)
    # the first update is on-policy (ratio 1 to rounding); the later ones move the ratio, and the clip bites
    assert all(r["ratio_max"] > 1.0 + 0.2 for r in records)
    assert all(r["clip_fraction"] > 0 for r in records)


def test_an_mla_moe_policy_samples_and_trains_on_policy(tiny_tokenizer, tmp_path):
    """DeepSeek-V2's shape (MLA, whose decode folds kv_b_proj's LoRA into its absorbed weights, and routed
    experts): the engine's log-probabilities still equal the trainer's after each LoRA update."""
    root = random_model_dir(tmp_path / "v2", Tokenizer.load(tiny_tokenizer / "tokenizer.json"), std=0.3,
                            preset="tiny-v2-lite")
    result = train_grpo(_cfg(root, tmp_path / "run", lora_rank=8, lora_alpha=16.0, lr=2e-2, steps=3,
                             global_batch=16), progress=False, tasks=synthetic(2, LONG_PROMPT))
    records = _metrics(result.run_dir)
    assert all(r["logprob_gap"] < 1e-4 for r in records), [r["logprob_gap"] for r in records]
    assert records[-1]["kl"] > 1e-5
