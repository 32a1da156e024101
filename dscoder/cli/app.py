"""The `dscoder` command: the Typer app, its commands registered in the order `--help` lists them,
and the one place user errors are reported.

Each command lives in the module of its group (model, run, assist, tokens, data, eval, serve)
and only parses its options, calls the library and prints. Every error raised for bad input
is a `dscoder.errors.UserError`; it and `OSError` (a missing file) are reported here as one
line, `error: ...`, with exit code 2. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import typer
from rich.markup import escape

from dscoder.cli import assist, data, model, run, tokens
from dscoder.cli.common import err
from dscoder.errors import UserError

USER_ERRORS = (UserError, OSError)


def reports_user_errors(fn: Callable) -> Callable:
    """`fn` with a user error turned into one line on stderr and exit code 2 (applied at registration)."""
    @functools.wraps(fn)
    def command(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except USER_ERRORS as e:
            err.print(f"[bold red]error:[/] {escape(str(e))}")
            raise typer.Exit(2) from None
    return command


class App(typer.Typer):
    """A Typer whose every command reports user errors the same way."""

    def command(self, *args: Any, **kwargs: Any) -> Callable[[Callable], Callable]:
        register = super().command(*args, **kwargs)

        def decorate(fn: Callable) -> Callable:
            register(reports_user_errors(fn))
            return fn
        return decorate


app = App(help="DeepSeek-Coder on PyTorch: inspect, run and convert models.", no_args_is_help=True,
          pretty_exceptions_enable=False)
tokenizer_app = App(help="Train byte-level BPE tokenizers.", no_args_is_help=True)
data_app = App(help="Build and inspect repository-level training corpora.", no_args_is_help=True)
eval_app = App(help="Run benchmarks with DeepSeek-Coder's protocols, every sample judged in the sandbox.",
               no_args_is_help=True)
train_app = App(help="Pretrain, extend and fine-tune models (SFT, LoRA); one process, or many under torchrun.",
                no_args_is_help=True)


@app.callback()
def main() -> None:
    """DeepSeek-Coder on PyTorch."""


def _register() -> None:
    from dscoder.cli.eval import (all_command, benchmark_command, fetch_command, loss_by_position_command,
                                  toolchains_command)
    from dscoder.tasks import BENCHMARKS
    from dscoder.cli.finetune import finetune_command
    from dscoder.cli.serve import serve_command
    from dscoder.cli.train import merge_command
    from dscoder.cli.train import extend_command, plot_command, pretrain_command, recipes_command, sft_command
    from dscoder.cli.train import grpo_command, reward_model_command

    for fn in (model.info, model.convert, run.complete, run.infill, run.chat, assist.explain, assist.tests,
               assist.doc, assist.translate, assist.fix, assist.review, tokens.tokenize, tokens.detokenize):
        app.command()(fn)
    tokenizer_app.command("train")(tokens.tokenizer_train)
    data_app.command("build")(data.build_command)
    data_app.command("stats")(data.stats_command)
    app.add_typer(tokenizer_app, name="tokenizer")
    app.add_typer(data_app, name="data")
    train_app.command("pretrain")(pretrain_command)
    train_app.command("extend")(extend_command)
    train_app.command("sft")(sft_command)
    train_app.command("grpo")(grpo_command)
    train_app.command("reward-model")(reward_model_command)
    train_app.command("plot")(plot_command)
    train_app.command("recipes")(recipes_command)
    train_app.command("merge")(merge_command)
    app.add_typer(train_app, name="train")
    app.command("finetune")(finetune_command)
    for name, benchmark in BENCHMARKS.items():
        eval_app.command(name)(benchmark_command(name, benchmark))
    eval_app.command("all")(all_command)
    eval_app.command("fetch")(fetch_command)
    eval_app.command("loss-by-position")(loss_by_position_command)
    app.add_typer(eval_app, name="eval")
    app.command("toolchains")(toolchains_command)
    app.command("serve")(serve_command)


_register()

if __name__ == "__main__":
    app()
