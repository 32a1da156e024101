"""`dscoder train pretrain | extend | sft | reward-model | plot | recipes`: the training loop from the command line.

The options name where data and checkpoints are; hyper-parameters come from `--recipe` and
`--set key=value` (every field of `dscoder.train.config.TrainConfig`, listed by `dscoder train
recipes`). Under torchrun the same command runs on every process.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Optional

import typer

from dscoder.cli.common import err, out
from dscoder.cli.options import from_settings
from dscoder.train.config import TrainConfig
from dscoder.train.reward_model import RewardModelConfig

RECIPE = typer.Option(None, "--recipe", "-r", help="Named recipe (`dscoder train recipes` lists them).")
SETS = typer.Option(None, "--set", "-s", help="Override one setting: key=value (repeatable).")
NO_PROGRESS = typer.Option(False, "--no-progress", help="No progress bar (logs still go to metrics.jsonl).")


def _run(cfg: TrainConfig, recipe: str | None, sets: list[str] | None, progress: bool, extend: bool,
         task: str = "pretrain") -> None:
    from dscoder.train import config as train_config
    from dscoder.train import distributed
    from dscoder.train.loop import train
    from dscoder.train.plot import plot_run

    cfg = train_config.build(cfg, recipe, sets or [])
    if extend and cfg.rope_scaling is None and cfg.rope_theta is None and cfg.max_position_embeddings is None:
        raise train_config.TrainConfigError("extend needs new RoPE settings: pass an extension recipe (" +
                                            ", ".join(train_config.EXTEND_RECIPES) + ") or --set rope_scaling=...")
    try:
        result = train(cfg, progress=progress, extend=extend, task=task)
    finally:
        distributed.teardown()
    if result.is_main:
        png = plot_run(result.run_dir)
        err.print(f"step {result.step}: checkpoint {result.checkpoint}; curves {png}")
        if result.last_eval:
            out.print(" ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}"
                               for k, v in result.last_eval.items()))


@from_settings(TrainConfig)
def pretrain_command(cfg: TrainConfig, recipe: Optional[str] = RECIPE, sets: Optional[list[str]] = SETS,
                     no_progress: bool = NO_PROGRESS) -> None:
    """Pretrain on corpus shards (next token + the FIM documents in them), from scratch or a checkpoint."""
    _run(cfg, recipe, sets, not no_progress, extend=False)


@from_settings(TrainConfig)
def extend_command(cfg: TrainConfig, recipe: Optional[str] = RECIPE, sets: Optional[list[str]] = SETS,
                   no_progress: bool = NO_PROGRESS) -> None:
    """Extend a checkpoint's context (new RoPE scaling, longer rows) and report loss by position before and after."""
    _run(cfg, recipe, sets, not no_progress, extend=True)


@from_settings(TrainConfig)
def sft_command(cfg: TrainConfig, recipe: Optional[str] = typer.Option(
                    "sft-official", "--recipe", "-r", help="Named recipe (`dscoder train recipes`): sft-official "
                    "(the official finetune script), sft-v1, sft-v2 (the papers), sft-tiny (LoRA, this machine)."),
                sets: Optional[list[str]] = SETS, no_progress: bool = NO_PROGRESS) -> None:
    """Instruction-tune a model on a JSONL of chats ({"messages": [...]}) or {"instruction", "output"} rows:
    loss on the assistant turns only; full fine-tuning, or LoRA with --set lora_rank=16."""
    _run(cfg, recipe, sets, not no_progress, extend=False, task="sft")


@from_settings(RewardModelConfig)
def reward_model_command(cfg: RewardModelConfig, no_progress: bool = NO_PROGRESS) -> None:
    """Train a reward model on GRPO runs' samples.jsonl (sandbox-labelled completions): the policy's network with
    a scalar head, pointwise BCE; prints its accuracy and AUC on held-out prompts."""
    from dscoder.train.reward_model import train_reward_model

    summary = train_reward_model(cfg, progress=not no_progress)
    dropped = ", ".join(f"{n} {c}" for c, n in summary["dropped"].items()) or "none"
    err.print(f"wrote {summary['out']}: {summary['train_samples']} training samples "
              f"({summary['train_positives']} passed), {summary['steps']} steps, dropped: {dropped}")
    out.print(f"held-out accuracy {summary['held_out_accuracy']:.4f} AUC {summary['held_out_auc']:.4f} "
              f"({summary['held_out_positives']} passed, {summary['held_out_negatives']} not, "
              f"{summary['held_out_tasks']} prompts; majority class {summary['held_out_majority_accuracy']:.4f})")


GRPO_OVERRIDES = {"data": {"flags": ("--prompts", "-p"), "help": "Problems to learn from: mbpp-train, mbpp-validation "
                                                                  "(comma-separated to join) or a JSONL file of "
                                                                  "problems with tests (docs/grpo.md)."}}


@from_settings(TrainConfig, overrides=GRPO_OVERRIDES)
def grpo_command(cfg: TrainConfig, recipe: Optional[str] = typer.Option(
                     "grpo-tiny", "--recipe", "-r", help="Named recipe: grpo-v2 (the papers' settings at scale) or "
                     "grpo-tiny (LoRA on a small model, this machine)."),
                 sets: Optional[list[str]] = SETS, no_progress: bool = NO_PROGRESS) -> None:
    """Reinforce a model with GRPO: samples from the batched engine, rewarded by running the problem's tests in
    the sandbox (or by a reward model), group-normalised advantages, clipped ratio, k3 KL to the reference."""
    from dscoder.train import config as train_config
    from dscoder.train.grpo import train_grpo
    from dscoder.train.plot import plot_grpo

    cfg = train_config.build(cfg, recipe, sets or [])
    result = train_grpo(cfg, progress=not no_progress)
    png = plot_grpo(result.run_dir)
    err.print(f"step {result.step}: checkpoint {result.checkpoint}; curves {png}; report "
              f"{result.run_dir / 'report.md'}; samples {result.run_dir / 'samples.jsonl'}")
    if result.last_eval:
        out.print(" ".join(f"{k} {v:.4f}" for k, v in result.last_eval.items()))


def plot_command(run: Path = typer.Argument(..., help="A run directory (--out of a training run)."),
                 png: Optional[Path] = typer.Option(None, help="Where to write the PNG (default: RUN/curves.png).")
                 ) -> None:
    """Plot a run's loss, validation loss, LR and FIM exact match (and loss by position after extension)."""
    from dscoder.train.plot import plot_run

    err.print(f"wrote {plot_run(run, png)}")


def recipes_command() -> None:
    """List the recipes and every setting --set accepts, with its default and help."""
    from rich.table import Table

    from dscoder.train.config import RECIPES

    table = Table("recipe", "settings")
    for name, values in RECIPES.items():
        table.add_row(name, ", ".join(f"{k}={v}" for k, v in values.items()))
    out.print(table)
    settings = Table("--set key", "default", "help")
    for f in dataclasses.fields(TrainConfig):
        if not f.metadata.get("cli", True):
            default = f.default if f.default is not dataclasses.MISSING else "(required)"
            settings.add_row(f.name, str(default), f.metadata["help"])
    out.print(settings)


def merge_command(model: str = typer.Option(..., "--model", "-m", help="The base model the adapter was trained on "
                                                                       "(directory, .gguf file, preset or repo id)."),
                  adapter: Path = typer.Option(..., "--adapter", help="A LoRA adapter directory in peft's format "
                                               "(adapter_config.json + adapter_model.safetensors)."),
                  out_dir: Path = typer.Option(..., "--out", "-o", help="Directory for the merged model (HF format)."),
                  dtype: str = typer.Option("fp32", "--dtype", help="Element type of the saved weights: fp32, bf16 "
                                                                    "or fp16."),
                  force: bool = typer.Option(False, "--force", help="Replace OUT if it exists (it stays whole until "
                                                                    "the merged model is complete).")) -> None:
    """Merge a LoRA adapter into its base: an HF checkpoint (weights + tokenizer) that loads with no adapter."""
    from dscoder.hub import merge_adapter

    done = merge_adapter(model, adapter, out_dir, dtype=dtype, force=force)
    err.print(f"wrote {done.path}: {done.parameters:,} parameters ({dtype}), {done.tokenizer}")
