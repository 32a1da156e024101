"""Hostile input to `dscoder train reward-model`: each refusal is a UserError naming what is wrong, given
before the model loads, and OUT is left as it was (absent, or untouched).

A bad samples line is named by file and line, and one bad line refuses the whole set: training on
fewer samples than the user believes are there, without a word, would be worse than stopping.
"""

from __future__ import annotations

import json
import os
import re

import pytest
import torch

from training_data import random_model_dir
from dscoder.errors import UserError
from dscoder.tokenizer.tokenizer import Tokenizer
from dscoder.train.reward_model import RewardModelConfig, RewardScorer, train_reward_model


@pytest.fixture(scope="module")
def policy_dir(tiny_tokenizer, tmp_path_factory):
    return random_model_dir(tmp_path_factory.mktemp("policy"), Tokenizer.load(tiny_tokenizer / "tokenizer.json"),
                            std=0.02)


def row(task: int, passed: bool, **changes) -> dict:
    return {"step": 1, "task_id": f"t{task}", "prompt_index": task, "sample": 0, "prompt": f"# task {task}\n",
            "completion": "return a + b\n" if passed else "return a - b\n", "reward": float(passed),
            "category": "passed" if passed else "failed", "tests_passed": int(passed), "tests_total": 1,
            "detail": "", **changes}


def good_rows(tasks: int = 40) -> list[dict]:
    return [row(t, k == 0) for t in range(tasks) for k in range(2)]


def refused(tmp_path, policy_dir, lines: list[str] | None = None, out=None, **changes) -> str:
    """The message of the UserError a run over `lines` gives; OUT must be as it was before."""
    samples = tmp_path / "samples.jsonl"
    if lines is not None:
        samples.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = out or tmp_path / "out"
    before = sorted(os.listdir(out)) if out.exists() else None
    cfg = RewardModelConfig(**{"samples": str(samples), "out": str(out), "model": str(policy_dir), "steps": 2,
                               "batch": 4, "held_out": 0.3, **changes})
    with pytest.raises(UserError) as info:
        train_reward_model(cfg, progress=False)
    after = sorted(os.listdir(out)) if out.exists() else None
    assert after == before, "OUT was changed by a refused run"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".") or "tmp" in p.name]  # no leftovers beside
    return str(info.value)


@pytest.mark.parametrize("bad, reason", [
    ("{not json", r"samples\.jsonl:3: not JSON \(Expecting property name"),
    ('["a", "list"]', r"samples\.jsonl:3: a JSON list, not an object"),
    (json.dumps({k: v for k, v in row(1, True).items() if k != "completion"}), r"samples\.jsonl:3: lacks 'completion'"),
    (json.dumps({k: v for k, v in row(1, True).items() if k not in ("prompt", "category")}),
     r"samples\.jsonl:3: lacks 'prompt', 'category'"),
    (json.dumps(row(1, True, prompt=["a"])), r"samples\.jsonl:3: 'prompt' must be a string, not list"),
    (json.dumps(row(1, True, category="exploded")), r"samples\.jsonl:3: unknown category 'exploded'"),
])
def test_a_bad_line_is_named_by_file_and_line(tmp_path, policy_dir, bad, reason):
    lines = [json.dumps(r) for r in good_rows()]
    message = refused(tmp_path, policy_dir, lines[:2] + [bad] + lines[2:])
    assert "1 of 81 sample lines cannot be used, so the samples are refused as a whole" in message
    assert re.search(reason, message), message


def test_many_bad_lines_are_listed_and_counted(tmp_path, policy_dir):
    lines = [json.dumps(r) for r in good_rows()] + ["oops"] * 14
    message = refused(tmp_path, policy_dir, lines)
    assert "14 of 94 sample lines cannot be used" in message and "... and 4 more" in message


def test_fraction_labels_need_test_counts(tmp_path, policy_dir):
    lines = [json.dumps(r) for r in good_rows()]
    lines[5] = json.dumps(row(2, False, tests_passed=None))
    lines[6] = json.dumps(row(3, False, tests_passed=5, tests_total=2))
    message = refused(tmp_path, policy_dir, lines, label="fraction")
    assert re.search(r"samples\.jsonl:6: --label fraction needs 'tests_passed' and 'tests_total'", message)
    assert re.search(r"samples\.jsonl:7: tests_passed 5 exceeds tests_total 2", message)


def test_missing_and_unreadable_samples_files(tmp_path, policy_dir):
    message = refused(tmp_path, policy_dir, None, samples=str(tmp_path / "nowhere.jsonl"))
    assert "samples file" in message and "nowhere.jsonl does not exist" in message
    good = tmp_path / "good.jsonl"
    good.write_text("".join(json.dumps(r) + "\n" for r in good_rows()))
    binary = tmp_path / "binary.jsonl"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    message = refused(tmp_path, policy_dir, None, samples=f"{good},{binary}")
    assert "binary.jsonl is not UTF-8 text" in message
    if os.geteuid() != 0:  # root reads anything
        locked = tmp_path / "locked.jsonl"
        locked.write_text(json.dumps(row(1, True)) + "\n")
        locked.chmod(0)
        assert "locked.jsonl cannot be read" in refused(tmp_path, policy_dir, None, samples=str(locked))


def test_one_class_data_is_refused(tmp_path, policy_dir):
    failures = [json.dumps(row(t, False)) for t in range(40)]
    message = refused(tmp_path, policy_dir, failures)
    assert "the training split has no positive (no sample passed) labels" in message
    passes = [json.dumps(row(t, True)) for t in range(40)]
    assert "has no negative (every sample passed) labels" in refused(tmp_path, policy_dir, passes)
    # Both classes in training, but the held-out prompts all failed: their AUC would mean nothing.
    mixed = [json.dumps(row(t, k == 0)) for t in range(40) for k in range(2)]
    mixed += [json.dumps(row(t, False)) for t in range(100, 104)]
    message = refused(tmp_path, policy_dir, mixed, held_out=0.03, seed=_seed_holding_out_only(range(100, 104)))
    assert "held-out split" in message and "only failures" in message and "AUC is undefined" in message


def _seed_holding_out_only(tasks) -> int:
    """A seed whose 3% hash split holds out some of `tasks` and none of tasks 0..39."""
    from dscoder.train.reward_model import in_held_out

    for seed in range(10_000):
        if not any(in_held_out(f"t{t}", seed, 0.03) for t in range(40)) and \
                any(in_held_out(f"t{t}", seed, 0.03) for t in tasks):
            return seed
    raise AssertionError("no such seed")


def test_sandbox_errors_alone_are_no_data(tmp_path, policy_dir):
    lines = [json.dumps(row(t, False, category="sandbox_error")) for t in range(10)]
    message = refused(tmp_path, policy_dir, lines)
    assert "no usable samples" in message and "all dropped: {'sandbox_error': 10}" in message


def test_a_non_empty_out_is_refused(tmp_path, policy_dir):
    lines = [json.dumps(r) for r in good_rows()]
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    assert "exists and is not an empty directory" in refused(tmp_path, policy_dir, lines, out=out)
    assert (out / "notes.txt").read_text() == "mine"
    (out / "notes.txt").unlink()
    (out / "reward_model.json").write_text("{}")
    assert "already holds a reward model" in refused(tmp_path, policy_dir, lines, out=out)
    assert (out / "reward_model.json").read_text() == "{}"


def test_an_empty_out_is_used(tmp_path, policy_dir):
    samples = tmp_path / "samples.jsonl"
    samples.write_text("".join(json.dumps(r) + "\n" for r in good_rows()))
    out = tmp_path / "out"
    out.mkdir()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a tiny model: a second thread only waits on a shared machine
    try:
        summary = train_reward_model(RewardModelConfig(samples=str(samples), out=str(out), model=str(policy_dir),
                                                       steps=2, batch=4, held_out=0.3), progress=False)
    finally:
        torch.set_num_threads(threads)
    assert (out / "reward_model.json").is_file() and 0 <= summary["held_out_auc"] <= 1


def test_a_directory_that_is_no_reward_model_is_not_loaded(tmp_path, policy_dir):
    with pytest.raises(UserError, match="is not a reward model directory"):
        RewardScorer.load(policy_dir)

