"""`dscoder train pretrain | extend | sft | plot | recipes`: the training loop from the command line.

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
