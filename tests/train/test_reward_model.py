"""The reward model of `dscoder train reward-model`: its AUC, that it learns a clearly separable signal,
that it reads each sample's last real token, and that what it saves scores as it did in memory.

Everything runs on a tiny Llama (two layers, hidden 64) over the session's 512-token BPE
tokenizer, so each test takes seconds on two cores.
"""

from __future__ import annotations

import json
import random

import pytest
import torch
from typer.testing import CliRunner

from dscoder.errors import UserError
from dscoder.formats.hf import save_hf_dir
from dscoder.model.lora import apply_lora, lora_modules
from dscoder.model.presets import get_preset
from dscoder.model.transformer import Transformer
from dscoder.tokenizer.tokenizer import Tokenizer
from dscoder.train.reward_model import (CATEGORIES, RewardModel, RewardModelConfig, RewardModelError, RewardScorer,
                                        auc, encode_pair, read_samples, save_reward_model, split, train_reward_model)


# ------------------------------------------------------------------------------ helpers
def tiny_policy(tok: Tokenizer, seed: int = 0) -> Transformer:
    cfg = get_preset("tiny-llama").config.replace(vocab_size=tok.vocab_size, bos_token_id=tok.bos_id,
                                                  eos_token_id=tok.eos_id, rope_scaling=None)
    return Transformer(cfg).init_weights(0.02, torch.Generator().manual_seed(seed))


@pytest.fixture(autouse=True)
def one_thread():
    """One intra-op thread: a tiny model's matmuls gain nothing from more, and on a shared two-core machine a
    second thread that must wait for the other tenant makes every step several times slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tok(tiny_tokenizer) -> Tokenizer:
    return Tokenizer.load(tiny_tokenizer / "tokenizer.json")


@pytest.fixture(scope="module")
def policy_dir(tok, tmp_path_factory):
    """A tiny policy saved as an HF directory with its tokenizer: what `--model` names."""
    directory = tmp_path_factory.mktemp("policy")
    save_hf_dir(tiny_policy(tok), directory)
    tok.save(directory)
    return directory


NAMES = ["add", "plus", "total", "combine", "join", "merge", "both", "pair", "mix", "sum_of"]
VARS = ["x", "y", "z", "result", "out", "value", "s", "r"]


def separable_rows(tasks: int = 60, per_task: int = 4, seed: int = 0) -> list[dict]:
    """Samples whose label is passed iff the completion computes `a + b` (else `a - b`), one pass to three
    failures per task (so pos_weight is 3). The marker sits mid-completion and both kinds end alike
    (`return <var>`), so the score at the last token must look back to find it."""
    rng = random.Random(seed)
    rows = []
    for t in range(tasks):
        prompt = f"# problem {t}\ndef {rng.choice(NAMES)}_{t}(a, b):\n"
        for k in range(per_task):
            good = k == 0
            v = rng.choice(VARS)
            rows.append({"step": 1 + t // 8, "task_id": f"task/{t}", "prompt_index": t % 8, "sample": k,
                         "prompt": prompt, "completion": f"    {v} = a {'+' if good else '-'} b\n    return {v}\n",
                         "reward": 1.0 if good else 0.0, "category": "passed" if good else "failed",
                         "tests_passed": 3 if good else 1, "tests_total": 3, "detail": ""})
    return rows


def write_jsonl(path, rows) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return str(path)


# ------------------------------------------------------------------------------ AUC
def test_auc_equals_hand_computed_values_with_ties():
    assert auc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]) == pytest.approx(0.75)  # sklearn's documented example
    assert auc([1, 2, 3, 4], [0, 0, 1, 1]) == 1.0
    assert auc([1, 2, 3, 4], [1, 1, 0, 0]) == 0.0
    # pos {2, 3} vs neg {1, 2}: 2>1, 2=2 (a half), 3>1, 3>2 -> 3.5 of 4 pairs
    assert auc([1, 2, 2, 3], [0, 0, 1, 1]) == pytest.approx(0.875)
    assert auc([0.5] * 4, [0, 1, 0, 1]) == pytest.approx(0.5)  # all tied: chance
    # pos {3, 3, 1} vs neg {3, 2}: (3 vs 3: .5, 3 vs 2: 1) x 2 + (1 vs 3: 0, 1 vs 2: 0) -> 3 of 6
    assert auc([3, 3, 1, 3, 2], [1, 1, 1, 0, 0]) == pytest.approx(0.5)
    assert auc([0.2, 0.9, 0.9], [False, True, False]) == pytest.approx(0.75)  # booleans as labels


def test_auc_refuses_one_class_and_nan():
    with pytest.raises(UserError, match="both classes.*3 positive and 0 negative"):
        auc([0.1, 0.2, 0.3], [1, 1, 1])
    with pytest.raises(UserError, match="both classes"):
        auc([0.1, 0.2], [0, 0])
    with pytest.raises(UserError, match="NaN"):
        auc([0.1, float("nan")], [0, 1])


def test_auc_matches_scipys_mann_whitney_u():
    """AUC is the Mann-Whitney U of the positives over the negatives, divided by their pairs (ties count
    half): scipy (a dependency of datasketch, which set-up installs) computes U with midranks."""
    from scipy.stats import mannwhitneyu

    rng = random.Random(3)
    for _ in range(20):
        n = rng.randint(2, 60)
        labels = [rng.random() < 0.3 for _ in range(n)]
        labels[0], labels[1] = True, False
        scores = [round(rng.random(), 1) for _ in range(n)]  # rounded: many ties
        pos = [s for s, y in zip(scores, labels) if y]
        neg = [s for s, y in zip(scores, labels) if not y]
        expected = mannwhitneyu(pos, neg).statistic / (len(pos) * len(neg))
        assert auc(scores, labels) == pytest.approx(expected, abs=1e-12)


def test_categories_are_those_grpo_writes():
    from dscoder.train import rewards

    assert CATEGORIES == rewards.CATEGORIES


# ------------------------------------------------------------------------------ data
def test_samples_are_read_split_by_task_and_labelled(tmp_path):
    rows = separable_rows(tasks=40)
    rows[1] = {**rows[1], "category": "sandbox_error"}
    rows[2] = {**rows[2], "category": "failed", "tests_passed": 2, "tests_total": 3}
    a = write_jsonl(tmp_path / "a.jsonl", rows[:80])
    run = tmp_path / "run"
    run.mkdir()
    write_jsonl(run / "samples.jsonl", rows[80:])
    cfg = RewardModelConfig(samples=f"{a},{run}", out=str(tmp_path / "out"))
    samples, dropped = read_samples(cfg.sample_paths(), "passed", cfg.dropped())
    assert len(samples) == len(rows) - 1 and dropped == {"sandbox_error": 1}
    assert [s.target for s in samples[:3]] == [1.0, 0.0, 0.0]
    fractions, _ = read_samples(cfg.sample_paths(), "fraction", cfg.dropped())
    assert [s.target for s in fractions[:3]] == [1.0, pytest.approx(2 / 3), pytest.approx(1 / 3)]

    train, held = split(samples, seed=0, fraction=0.25)
    assert {s.group for s in train}.isdisjoint({s.group for s in held})  # held-out prompts are unseen
    assert 0.1 < len({s.group for s in held}) / 40 < 0.45
    again, _ = split(samples, seed=0, fraction=0.25)
    assert [s.where for s in again] == [s.where for s in train]  # seeded: the same split every time
    other, _ = split(samples, seed=1, fraction=0.25)
    assert {s.group for s in other} != {s.group for s in train}


def test_encode_pair_cuts_the_prompt_from_the_left_and_keeps_the_completion(tok):
    prompt, completion = "# a long prompt\n" * 20, "    return a + b\n"
    p, c = tok.encode(prompt), tok.encode(completion, add_bos=False)
    assert encode_pair(tok, prompt, completion, 10_000) == p + c
    cut = encode_pair(tok, prompt, completion, len(c) + 5)
    assert cut == p[-5:] + c
    assert encode_pair(tok, prompt, completion, 3) == c[-3:]  # a completion too long keeps its end
    templated = tok.bos_token + "User: hi\n"  # a chat template writes its own BOS: not a second one
    assert encode_pair(tok, templated, "x", 100)[:2] != [tok.bos_id, tok.bos_id]
    assert encode_pair(tok, templated, "x", 100)[0] == tok.bos_id


# ------------------------------------------------------------------------------ the model
def test_the_score_is_read_at_the_last_real_token(tok):
    torch.manual_seed(0)
    model = RewardModel(tiny_policy(tok, seed=1)).eval()
    scorer = RewardScorer(model, tok, max_len=256)
    pairs = [("def f(a, b):\n", "    return a + b\n"), ("# short\n", "x"),
             ("# a much longer prompt that pads the others a lot\n" * 6, "    return a - b\n"), ("", "y = 1\n")]
    alone = [scorer.logits([p], batch=1)[0] for p in pairs]
    together = scorer.logits(pairs, batch=4)
    assert together == pytest.approx(alone, abs=1e-5)

    # The same rows with many more padding columns, straight through forward.
    rows = [encode_pair(tok, p, c, 256) for p, c in pairs]
    lengths = torch.tensor([len(r) for r in rows])
    for width in (max(lengths), max(lengths) + 17):
        tokens = torch.full((len(rows), width), scorer.pad, dtype=torch.long)
        for i, r in enumerate(rows):
            tokens[i, :len(r)] = torch.tensor(r)
        with torch.inference_mode():
            logits, _ = model(tokens, lengths)
        assert logits.tolist() == pytest.approx(alone, abs=1e-5)
        with torch.inference_mode():
            at_the_end, _ = model(tokens)  # reading the padded end instead gives other numbers
        assert at_the_end[1].item() != pytest.approx(alone[1], abs=1e-3)


def test_saved_reward_model_scores_as_it_did_in_memory(tok, policy_dir, tmp_path):
    torch.manual_seed(0)
    model = RewardModel(tiny_policy(tok, seed=2))
    apply_lora(model.backbone, 4, 8.0, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():  # adapters that change something, so merging them is checked
        for layer in lora_modules(model.backbone).values():
            layer.lora_B.weight.normal_(0.0, 0.05)
    model.eval()
    pairs = [("def f(a, b):\n", "    return a + b\n"), ("# q\n", "print(1)\n"), ("x = 1\n" * 30, "y = x\n")] * 3
    in_memory = RewardScorer(model, tok, max_len=128).score(pairs, batch=4)
    out = tmp_path / "rm"
    save_reward_model(model, out, policy_dir, {"max_len": 128, "label": "passed"})
    loaded = RewardScorer.load(out)
    assert loaded.max_len == 128
    scores = loaded.score(pairs, batch=3)
    assert scores == pytest.approx(in_memory, abs=1e-5)
    assert all(0.0 < s < 1.0 for s in scores) and max(scores) - min(scores) > 1e-4
    # The backbone is also a plain model (the policy's head kept).
    from dscoder.hub import load_model
    assert load_model(out).lm_head.weight.shape == (tok.vocab_size, 64)


def test_scorer_names_the_sample_whose_score_is_not_finite(tok):
    model = RewardModel(tiny_policy(tok)).eval()
    scorer = RewardScorer(model, tok, max_len=64)
    with torch.no_grad():
        model.score.bias.fill_(float("nan"))
    with pytest.raises(UserError, match="sample 0: .*not finite"):
        scorer.score([("a", "b"), ("c", "d")])
    with pytest.raises(UserError, match=r"sample 1: expected a \(prompt, completion\) pair"):
        scorer.score([("a", "b"), ("c", 3)])


def test_a_tiny_reward_model_learns_a_separable_marker(policy_dir, tok, tmp_path):
    """Label = passed iff the completion says `a + b`: a few dozen steps reach held-out AUC > 0.9 from an untrained
    model that cannot tell them apart; a wrong head, position or loss sign would not."""
    samples = write_jsonl(tmp_path / "samples.jsonl", separable_rows())
    out = tmp_path / "rm"
    cfg = RewardModelConfig(samples=samples, out=str(out), model=str(policy_dir), lr=3e-3, steps=40, batch=16,
                            held_out=0.25, seed=0, eval_every=20)
    torch.manual_seed(123)  # the run seeds itself: another global seed must change nothing
    summary = train_reward_model(cfg, progress=False)
    assert summary["before"]["held_out_auc"] < 0.8
    assert summary["held_out_auc"] > 0.9 and summary["held_out_accuracy"] > 0.9
    assert summary["pos_weight"] == pytest.approx(summary["train_negatives"] / summary["train_positives"])
    assert summary["pos_weight"] == pytest.approx(3.0)
    assert summary["held_out_positives"] + summary["held_out_negatives"] == summary["held_out_samples"]

    names = {p.name for p in out.iterdir()}
    assert {"config.json", "model.safetensors", "score.safetensors", "reward_model.json", "metrics.jsonl",
            "reward_model.png", "tokenizer.json"} <= names
    assert (out / "reward_model.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    info = json.loads((out / "reward_model.json").read_text())
    assert info["label"] == "passed" and info["config"]["lr"] == 3e-3
    assert info["metrics"]["held_out_auc"] == summary["held_out_auc"]
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "loss" in r] == list(range(1, 41))
    assert [r["step"] for r in records if "held_out_auc" in r] == [0, 20, 40]

    # Loaded from disk it scores the held-out samples as training measured them.
    rows, _ = read_samples([samples])
    _, held = split(rows, 0, 0.25)
    scores = RewardScorer.load(out).score([(s.prompt, s.completion) for s in held])
    assert auc(scores, [s.passed for s in held]) == pytest.approx(summary["held_out_auc"], abs=1e-6)
    accuracy = sum((p > 0.5) == s.passed for p, s in zip(scores, held)) / len(held)
    assert accuracy == pytest.approx(summary["held_out_accuracy"])


def test_lora_and_fraction_labels_train_through_the_command_line(policy_dir, tmp_path):
    from dscoder.cli.app import app

    rows = separable_rows(tasks=30)
    rows.append({**rows[1], "category": "sandbox_error"})
    samples = write_jsonl(tmp_path / "samples.jsonl", rows)
    out = tmp_path / "rm"
    result = CliRunner().invoke(app, ["train", "reward-model", "--samples", samples, "--out", str(out), "--model",
                                      str(policy_dir), "--label", "fraction", "--lora-rank", "4", "--lr", "1e-2",
                                      "--steps", "6", "--batch", "8", "--held-out", "0.3", "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "held-out accuracy" in result.output and "AUC" in result.output
    assert "dropped: 1 sandbox_error" in result.output
    info = json.loads((out / "reward_model.json").read_text())
    assert info["label"] == "fraction" and info["metrics"]["dropped"] == {"sandbox_error": 1}
    scorer = RewardScorer.load(out)
    assert not lora_modules(scorer.model.backbone)  # merged when saved
    assert len(scorer.score([("def f(a, b):\n", "    return a + b\n")])) == 1


def test_settings_are_checked_before_anything_runs(tmp_path):
    for changes, message in [({"held_out": 0.0}, "held_out must lie in"), ({"lr": -1.0}, "lr must be"),
                             ({"drop_categories": "sandbox_error,bogus"}, "unknown categories 'bogus'"),
                             ({"label": "pairwise"}, "label must be one of")]:
        cfg = RewardModelConfig(samples=str(tmp_path / "none.jsonl"), out=str(tmp_path / "out"), **changes)
        with pytest.raises(RewardModelError, match=message):
            train_reward_model(cfg, progress=False)
    assert not (tmp_path / "out").exists()
