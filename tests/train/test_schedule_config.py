"""The learning-rate schedules at chosen steps, the recipes' numbers, and `--set` parsing."""

from __future__ import annotations

import math

import pytest

from dscoder.train.config import RECIPES, TrainConfig, TrainConfigError, build, parse_sets
from dscoder.train.schedule import lr_at, warmup_steps


def _cfg(**changes) -> TrainConfig:
    return build(TrainConfig(data="d", out="o"), None, changes)


def test_v1_multistep_warms_up_then_drops_by_sqrt_tenth_twice():
    cfg = _cfg(schedule="v1-multistep", lr=5.3e-4, steps=100_000, warmup_steps=2000)
    assert warmup_steps(cfg) == 2000
    assert lr_at(cfg, 0) == pytest.approx(5.3e-4 / 2000)
    assert lr_at(cfg, 999) == pytest.approx(5.3e-4 * 1000 / 2000)
    assert lr_at(cfg, 1999) == pytest.approx(5.3e-4)
    assert lr_at(cfg, 79_999) == pytest.approx(5.3e-4)  # stage 1 until 80% of the steps
    assert lr_at(cfg, 80_000) == pytest.approx(5.3e-4 * math.sqrt(0.1))
    assert lr_at(cfg, 89_999) == pytest.approx(5.3e-4 * math.sqrt(0.1))
    assert lr_at(cfg, 90_000) == pytest.approx(5.3e-4 * 0.1)  # ends at 10% of the peak
    assert lr_at(cfg, 99_999) == pytest.approx(5.3e-4 * 0.1)


def test_v2_cosine_decays_to_a_tenth_of_the_peak():
    cfg = _cfg(schedule="v2-cosine", lr=4.2e-4, steps=12_000, warmup_steps=2000, warmup_max_fraction=1.0)
    assert lr_at(cfg, 1999) == pytest.approx(4.2e-4)
    middle = 2000 + (12_000 - 1 - 2000) / 2
    assert lr_at(cfg, int(middle)) == pytest.approx(4.2e-4 * 0.55, rel=1e-3)  # halfway: (1 + 0.1) / 2
    assert lr_at(cfg, 11_999) == pytest.approx(4.2e-4 * 0.1)
    values = [lr_at(cfg, s) for s in range(2000, 12_000, 97)]
    assert all(a >= b for a, b in zip(values, values[1:]))


def test_warmup_scales_down_for_tiny_runs():
    cfg = _cfg(schedule="v2-cosine", steps=200, warmup_steps=2000, warmup_max_fraction=0.05)
    assert warmup_steps(cfg) == 10
    assert lr_at(cfg, 9) == pytest.approx(cfg.lr)
    assert lr_at(cfg, 199) == pytest.approx(cfg.lr * 0.1)


def test_constant_schedule_for_extension():
    cfg = _cfg(schedule="constant", lr=5.3e-5, steps=1000, warmup_steps=0)
    assert {lr_at(cfg, s) for s in (0, 500, 999)} == {5.3e-5}


def test_paper_recipes():
    assert (RECIPES["v1-1.3b"]["lr"], RECIPES["v1-1.3b"]["global_batch"]) == (5.3e-4, 1024)
    assert (RECIPES["v1-6.7b"]["lr"], RECIPES["v1-6.7b"]["global_batch"]) == (4.2e-4, 2304)
    assert (RECIPES["v1-33b"]["lr"], RECIPES["v1-33b"]["global_batch"]) == (3.5e-4, 3840)
    assert all(RECIPES[r]["seq_len"] == 4096 for r in ("v1-1.3b", "v1-6.7b", "v1-33b", "v2-lite"))
    v1 = RECIPES["extend-v1"]
    assert v1["rope_scaling"] == {"type": "linear", "factor": 4.0} and v1["rope_theta"] == 100000.0
    assert (v1["seq_len"], v1["global_batch"], v1["steps"]) == (16384, 512, 1000)
    y32, y128 = RECIPES["extend-v2-32k"], RECIPES["extend-v2-128k"]
    assert y32["rope_scaling"]["factor"] == 40 and y32["rope_scaling"]["beta_fast"] == 32
    assert y32["rope_scaling"]["beta_slow"] == 1
    assert (y32["seq_len"], y32["global_batch"], y128["seq_len"], y128["global_batch"]) == (32768, 1152, 131072, 288)
    defaults = TrainConfig(data="d", out="o")
    assert (defaults.beta1, defaults.beta2, defaults.weight_decay, defaults.grad_clip) == (0.9, 0.95, 0.1, 1.0)


def test_set_parses_by_type_and_names_bad_keys():
    assert parse_sets(["lr=1e-3", "steps=2e3", "stage_boundaries=[0.7, 0.85]", "compile=true",
                       "rope_scaling={\"type\": \"linear\", \"factor\": 2}"]) == {
        "lr": 1e-3, "steps": 2000, "stage_boundaries": (0.7, 0.85), "compile": True,
        "rope_scaling": {"type": "linear", "factor": 2}}
    with pytest.raises(TrainConfigError, match="no setting named 'learning_rate'"):
        parse_sets(["learning_rate=1"])
    with pytest.raises(TrainConfigError, match="not a valid int"):
        parse_sets(["steps=many"])
    with pytest.raises(TrainConfigError, match="expected key=value"):
        parse_sets(["steps"])
    with pytest.raises(TrainConfigError, match="no recipe named 'v3'"):
        build(TrainConfig(data="d", out="o"), "v3")
    with pytest.raises(TrainConfigError, match="min_lr_ratio"):
        build(TrainConfig(data="d", out="o"), None, {"min_lr_ratio": 2.0})
