"""Learning rate against step: the two DeepSeek-Coder schedules and a constant one.

- `v1-multistep` (DeepSeek-Coder V1, section 3.4): linear warm-up, then three stages, each at
  √(1/10) of the previous stage's LR, so the last stage runs at 10% of the peak. The paper does
  not say where the stages change; we drop at 80% and 90% of the steps (`stage_boundaries`), as
  DeepSeek LLM (arXiv 2401.02954, section 2.3) did with the same multi-step schedule.
- `v2-cosine` (DeepSeek-Coder-V2, section 3.2): linear warm-up, then cosine decay from the peak
  to `min_lr_ratio` of it at the last step.
- `constant`: warm-up (if any), then the peak: context extension trains at the final LR.

The papers warm up for 2000 steps in runs of hundreds of thousands of steps; a run of a few
hundred steps would never leave its warm-up, so the warm-up is capped at `warmup_max_fraction`
of the run.
"""

from __future__ import annotations

import math

from dscoder.train.config import TrainConfig


def warmup_steps(cfg: TrainConfig) -> int:
    return min(cfg.warmup_steps, math.ceil(cfg.warmup_max_fraction * cfg.steps))


def lr_at(cfg: TrainConfig, step: int) -> float:
    """The LR of optimizer step `step` (0-based): step 0 is the first update."""
    peak, warm = float(cfg.lr), warmup_steps(cfg)
    if step < warm:
        return peak * (step + 1) / warm
    if cfg.schedule == "constant":
        return peak
    if cfg.schedule == "v1-multistep":
        first, second = (round(b * cfg.steps) for b in cfg.stage_boundaries)
        stage = 0 if step < first else 1 if step < second else 2
        # sqrt(0.1) twice is 0.1 exactly in intent; min_lr_ratio generalises the last stage.
        return peak * (cfg.min_lr_ratio ** (stage / 2))
    if cfg.schedule == "v2-cosine":
        span = max(cfg.steps - 1 - warm, 1)
        progress = min(max(step - warm, 0) / span, 1.0)
        floor = cfg.min_lr_ratio
        return peak * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress)))
    raise ValueError(f"unknown schedule {cfg.schedule!r}")
