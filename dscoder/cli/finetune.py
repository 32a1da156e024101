"""`dscoder finetune --repo PATH`: LoRA on a repository's own files, with before/after on held-out files.

The stages and what each writes are in `dscoder.train.finetune`; the options come from its
`FinetuneConfig`, the training hyper-parameters from `--recipe` (default finetune-repo) and
`--set key=value` (`dscoder train recipes` lists them).
"""

from __future__ import annotations

from typing import Optional

import typer

from dscoder.cli.common import err, out
from dscoder.cli.options import from_settings
from dscoder.train.finetune import FinetuneConfig


@from_settings(FinetuneConfig)
def finetune_command(cfg: FinetuneConfig,
                     recipe: Optional[str] = typer.Option("finetune-repo", "--recipe", "-r",
                                                          help="Training recipe (`dscoder train recipes`)."),
                     sets: Optional[list[str]] = typer.Option(None, "--set", "-s",
                                                              help="Override one training setting: key=value."),
                     no_progress: bool = typer.Option(False, "--no-progress", help="No progress bars.")) -> None:
    """Fine-tune a model on a repository (LoRA; FIM too with --add-fim-tokens) and measure it on held-out files."""
    from dscoder.train import distributed
    from dscoder.train.finetune import finetune

    try:
        summary = finetune(cfg, recipe, sets or [], progress=not no_progress, say=err.print)
    finally:
        distributed.teardown()
    err.print(f"{summary['minutes']:.1f} min; adapter {summary['adapter']}; merged {summary['merged']}; "
              f"picture {summary['png']}")
    out.print(f"perplexity {summary['before']['perplexity']:.3f} -> {summary['after']['perplexity']:.3f}")
