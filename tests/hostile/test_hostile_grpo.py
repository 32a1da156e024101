"""GRPO's hostile input: model-written code that tries to pass without passing, prompt sets that
cannot reward anything, a weakened sandbox, a reward that is not a number.

RL optimises against these verdicts, so every way out of the checks that the evaluation harness
refuses must be refused here too, with a reward below an honest failure."""

from __future__ import annotations

import json
import math

import pytest
import torch

from training_data import random_model_dir
from dscoder.execute import sandbox
from dscoder.execute.programs import Executor
from dscoder.tokenizer.tokenizer import Tokenizer
from dscoder.train import rewards
from dscoder.train.config import TrainConfig, TrainConfigError, build
from dscoder.train.grpo import GrpoTrainer, RewardError
from dscoder.train.rewards import Scored, SandboxReward
from dscoder.train.rl_prompts import PromptsError, load

PROBLEM = {"task_id": "add", "instruction": "Write add(a, b) returning the sum, in a ```python block.",
           "prompt": "def add(a, b):\n", "tests": ["assert add(1, 2) == 3", "assert add(2, 2) == 4"],
           "entry_points": ["add"], "reference": "def add(a, b):\n    return a + b\n"}


def _fence(code: str) -> str:
    return f"Here it is:\n```python\n{code}```\n"


@pytest.fixture(scope="module")
def scorer():
    cfg = build(TrainConfig(data="x", out="y"), "grpo-tiny", {"sandbox_timeout": 2.0})
    with Executor(2, cfg.sandbox_timeout) as executor:
        yield cfg, SandboxReward(cfg, executor)


@pytest.fixture(scope="module")
def task(tmp_path_factory):
    path = tmp_path_factory.mktemp("prompts") / "add.jsonl"
    path.write_text(json.dumps(PROBLEM) + "\n")
    return load(str(path))[0]


@pytest.mark.parametrize("name, code, category", [
    ("correct", "def add(a, b):\n    return a + b\n", "passed"),
    ("sys.exit(0) before the checks", "import sys\ndef add(a, b):\n    return 0\nsys.exit(0)\n", "refused"),
    ("os._exit(0) inside the entry point", "import os\ndef add(a, b):\n    os._exit(0)\n", "refused"),
    # the harness runs the checks' failure to its own exit status: the hook never gets to exit 0
    ("atexit that exits 0", "import atexit, os\natexit.register(lambda: os._exit(0))\n"
                            "def add(a, b):\n    return 0\n", "failed"),
    ("an always-equal object", "class Eq(int):\n    def __eq__(self, other):\n        return True\n"
                               "def add(a, b):\n    return Eq(0)\n", "refused"),
    ("the harness's marker printed by hand", "print('dscoder: checks completed 0123456789abcdef')\n"
                                             "def add(a, b):\n    return 0\n", "failed"),
    ("a syntax error", "def add(a, b)\n    return a + b\n", "syntax_error"),
    ("an endless loop", "def add(a, b):\n    while True:\n        pass\n", "timeout"),
])
def test_a_policy_cannot_pass_without_passing_the_checks(scorer, task, name, code, category):
    cfg, reward = scorer
    scored = reward.score(task, _fence(code), "stop")
    assert scored.category == category, (name, scored)
    if category == "passed":
        assert scored.reward == 1.0
    else:
        assert scored.reward < 1.0 and scored.passed < scored.total
    if category == "refused":
        assert scored.reward == cfg.reward_refused < 0 and "dscoder: " in scored.detail


def test_partial_answers_score_the_fraction_of_tests_and_a_missing_block_scores_no_code(scorer, task):
    cfg, reward = scorer
    half = reward.score(task, _fence("def add(a, b):\n    return 3\n"), "stop")  # passes add(1, 2) only
    assert (half.category, half.passed, half.total, half.reward) == ("failed", 1, 2, 0.5)
    bare = reward.score(task, "def add(a, b): return a + b", "stop")
    assert (bare.category, bare.reward) == ("no_code", cfg.reward_no_code)


def test_prompt_sets_that_cannot_reward_are_refused_by_line(tmp_path):
    no_tests = tmp_path / "no_tests.jsonl"
    no_tests.write_text(json.dumps(PROBLEM) + "\n" + json.dumps({**PROBLEM, "task_id": "b", "tests": []}) + "\n")
    with pytest.raises(PromptsError, match=r"no_tests.jsonl:2: no tests"):
        load(str(no_tests))
    broken = tmp_path / "broken.jsonl"
    broken.write_text(json.dumps(PROBLEM) + "\n{not json\n")
    with pytest.raises(PromptsError, match=r"broken.jsonl:2: not JSON"):
        load(str(broken))
    alien = tmp_path / "alien.jsonl"
    alien.write_text(json.dumps({**PROBLEM, "language": "cobol"}) + "\n")
    with pytest.raises(PromptsError, match="cobol"):
        load(str(alien))
    with pytest.raises(PromptsError, match="evaluation split"):
        load("mbpp-test")
    with pytest.raises(PromptsError, match="neither a built-in split"):
        load(str(tmp_path / "missing.jsonl"))


@pytest.fixture(scope="module")
def small_model(tiny_tokenizer, tmp_path_factory):
    return random_model_dir(tmp_path_factory.mktemp("hostile-grpo-model"),
                            Tokenizer.load(tiny_tokenizer / "tokenizer.json"), std=0.3)


def _grpo_cfg(model, out, prompts, **changes):
    values = dict(prompt_form="base", lora_rank=0, lr=1e-3, max_new_tokens=8, global_batch=4, group_size=2,
                  micro_batch=2, steps=1, save_every=0, sandbox_timeout=5.0)
    values.update(changes)
    return build(TrainConfig(data=str(prompts), out=str(out), model=str(model)), "grpo-tiny", values)


def test_problems_whose_reference_fails_are_dropped_with_a_count(small_model, tmp_path):
    prompts = tmp_path / "p.jsonl"
    wrong = {**PROBLEM, "task_id": "wrong-reference", "reference": "def add(a, b):\n    return a - b\n"}
    prompts.write_text(json.dumps(PROBLEM) + "\n" + json.dumps(wrong) + "\n")
    trainer = GrpoTrainer(_grpo_cfg(small_model, tmp_path / "run", prompts), progress=False)
    try:
        assert [t.task_id for t in trainer.tasks] == ["add"]
        assert trainer.data_summary["dropped_reference_fails"] == ["wrong-reference"]
        run = json.loads((tmp_path / "run" / "run.json").read_text())
        assert run["data"]["dropped_reference_fails"] == ["wrong-reference"]
        checked = json.loads((tmp_path / "run" / "reference_check.json").read_text())
        assert checked["wrong-reference"]["status"] == "failed" and checked["add"]["status"] == "passed"
    finally:
        trainer.close()


def test_a_weakened_sandbox_is_refused_unless_allowed(small_model, tmp_path, monkeypatch):
    weak = sandbox.Isolation("rlimits", drop_uid=False, warning="SANDBOX WEAKENED: bubblewrap is missing")
    monkeypatch.setattr(rewards.sandbox, "isolation", lambda: weak)
    prompts = tmp_path / "p.jsonl"
    prompts.write_text(json.dumps(PROBLEM) + "\n")
    with pytest.raises(TrainConfigError, match="--allow-weak-sandbox"):
        GrpoTrainer(_grpo_cfg(small_model, tmp_path / "run", prompts), progress=False)
    assert rewards.check_sandbox(_grpo_cfg(small_model, tmp_path / "run2", prompts, allow_weak_sandbox=True)) == \
        weak.describe()


def test_a_reward_that_is_not_a_number_stops_the_step_before_any_update(small_model, tmp_path, monkeypatch):
    prompts = tmp_path / "p.jsonl"
    prompts.write_text(json.dumps(PROBLEM) + "\n")
    trainer = GrpoTrainer(_grpo_cfg(small_model, tmp_path / "run", prompts), progress=False)
    try:
        before = {k: v.clone() for k, v in trainer.net.state_dict().items()}
        calls = []

        def nan_reward(task, text, finish_reason):
            calls.append(text)
            return Scored(math.nan if len(calls) == 2 else 0.0, "failed", 0, 2)

        monkeypatch.setattr(trainer, "score", nan_reward)
        with pytest.raises(RewardError, match="not finite.*add sample"):
            trainer.train_step()
        assert all(torch.equal(before[k], v) for k, v in trainer.net.state_dict().items())
        logged = [json.loads(line) for line in (tmp_path / "run" / "samples.jsonl").read_text().splitlines()]
        assert len(logged) == 4 and sum(math.isnan(r["reward"]) for r in logged) == 1  # the step's samples kept
    finally:
        trainer.close()
