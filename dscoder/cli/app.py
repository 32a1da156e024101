"""The `dscoder` command: the Typer app, its commands registered in the order `--help` lists them,
and the one place user errors are reported.

Each command lives in the module of its group (model, run, assist, tokens, data, eval, serve)
and only parses its options, calls the library and prints. Every error raised for bad input
is a `dscoder.errors.UserError`; it and `OSError` (a missing file) are reported here as one
line, `error: ...`, with exit code 2. Anything else is a bug and keeps its traceback.

Start-up is paid by every command, so nothing heavy is imported to build the command line:
the groups and commands whose modules pull in torch, the trainer, the harness or the server
(`tokenizer`, `data`, `train`, `finetune`, `eval`, `toolchains`, `serve`) are registered as
`LAZY` entries, a name and a one-line help each, and their modules are imported only when the
command line names them (`LazyGroup.resolve_command`). `dscoder --help` lists them from the
table; `tests/cli/test_startup.py` checks that the table's help is the loaded command's.
The commands registered eagerly (info, convert, complete, ...) import their libraries inside
the command function.
"""

from __future__ import annotations

import difflib
import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import typer
import typer.core

try:  # recent typer releases carry their own copy of click: its errors are that copy's
    from typer._click.exceptions import UsageError
except ImportError:  # pragma: no cover - an older typer, on click itself
    from click.exceptions import UsageError
from rich.markup import escape

from dscoder.cli import assist, model, run, tokens
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


@dataclass(frozen=True)
class Lazy:
    """A command or group whose module is imported only when the command line names it.

    `help` is what `dscoder --help` lists (the loaded command's first paragraph: a test keeps
    them equal); `build` imports the module and returns the group's `App`, or the command's
    function for a single command."""

    help: str
    build: Callable[[], Any]


def _tokenizer_app() -> App:
    group = App(help=LAZY["tokenizer"].help, no_args_is_help=True)
    group.command("train")(tokens.tokenizer_train)
    return group


def _data_app() -> App:
    from dscoder.cli import data

    group = App(help=LAZY["data"].help, no_args_is_help=True)
    group.command("build")(data.build_command)
    group.command("stats")(data.stats_command)
    return group


def _train_app() -> App:
    from dscoder.cli.train import (extend_command, grpo_command, merge_command, plot_command, pretrain_command,
                                   recipes_command, reward_model_command, sft_command)

    group = App(help=LAZY["train"].help, no_args_is_help=True)
    group.command("pretrain")(pretrain_command)
    group.command("extend")(extend_command)
    group.command("sft")(sft_command)
    group.command("grpo")(grpo_command)
    group.command("reward-model")(reward_model_command)
    group.command("plot")(plot_command)
    group.command("recipes")(recipes_command)
    group.command("merge")(merge_command)
    return group


def _eval_app() -> App:
    from dscoder.cli.eval import all_command, benchmark_command, fetch_command, loss_by_position_command
    from dscoder.tasks import BENCHMARKS

    group = App(help=LAZY["eval"].help, no_args_is_help=True)
    for name, benchmark in BENCHMARKS.items():
        group.command(name)(benchmark_command(name, benchmark))
    group.command("all")(all_command)
    group.command("fetch")(fetch_command)
    group.command("loss-by-position")(loss_by_position_command)
    return group


def _finetune():
    from dscoder.cli.finetune import finetune_command
    return finetune_command


def _toolchains():
    from dscoder.cli.eval import toolchains_command
    return toolchains_command


def _serve():
    from dscoder.cli.serve import serve_command
    return serve_command


# After the eager commands, in this order. The help of a group is its own; a command's, its docstring's first line.
LAZY: dict[str, Lazy] = {
    "tokenizer": Lazy("Train byte-level BPE tokenizers.", _tokenizer_app),
    "data": Lazy("Build and inspect repository-level training corpora.", _data_app),
    "train": Lazy("Pretrain, extend and fine-tune models (SFT, LoRA); one process, or many under torchrun.",
                  _train_app),
    "finetune": Lazy("Fine-tune a model on a repository (LoRA; FIM too with --add-fim-tokens) and measure it on "
                     "held-out files.", _finetune),
    "eval": Lazy("Run benchmarks with DeepSeek-Coder's protocols, every sample judged in the sandbox.", _eval_app),
    "toolchains": Lazy("Which benchmark languages can run here, and how strongly the sandbox isolates them.",
                       _toolchains),
    "serve": Lazy("Serve a model over HTTP: OpenAI completions (with FIM suffix) and chat, llama.cpp /infill, a "
                  "playground at /.", _serve),
}


def load_lazy(name: str) -> typer.core.TyperCommand:
    """The click command (or group) of LAZY entry `name`, its module imported now."""
    built = LAZY[name].build()
    if isinstance(built, typer.Typer):
        return typer.main.get_group(built)
    holder = App()
    holder.command(name)(built)
    holder.callback()(lambda: None)  # two registrations make a group, from which the one command is taken
    return typer.main.get_group(holder).commands[name]


class LazyGroup(typer.core.TyperGroup):
    """The top-level group: eager commands as usual, LAZY ones as placeholders (name and help)
    until the command line resolves them; only then is the module imported and the real command
    put in their place."""

    def list_commands(self, ctx: typer.Context) -> list[str]:
        return [*super().list_commands(ctx), *(name for name in LAZY if name not in self.commands)]

    def get_command(self, ctx: typer.Context, cmd_name: str) -> typer.core.TyperCommand | None:
        found = super().get_command(ctx, cmd_name)
        if found is None and cmd_name in LAZY:  # listed in --help; not imported
            return typer.core.TyperCommand(cmd_name, help=LAZY[cmd_name].help, callback=None)
        return found

    def resolve_command(self, ctx: typer.Context, args: list[str]):
        if args and args[0] in LAZY and args[0] not in self.commands:
            real = load_lazy(args[0])
            real.name = args[0]
            self.commands[args[0]] = real
        try:
            return super().resolve_command(ctx, args)
        except UsageError as e:  # typer suggests from the loaded commands only: add the lazy ones
            close = difflib.get_close_matches(args[0], self.list_commands(ctx)) if args else []
            if close and "Did you mean" not in e.message:
                e.message = f"{e.message.rstrip('.')}. Did you mean {', '.join(map(repr, close))}?"
            raise


app = App(help="DeepSeek-Coder on PyTorch: inspect, run and convert models.", no_args_is_help=True,
          pretty_exceptions_enable=False, cls=LazyGroup)


@app.callback()
def main() -> None:
    """DeepSeek-Coder on PyTorch."""


for _fn in (model.info, model.convert, run.complete, run.infill, run.chat, assist.explain, assist.tests,
            assist.doc, assist.translate, assist.fix, assist.review, tokens.tokenize, tokens.detokenize):
    app.command()(_fn)

if __name__ == "__main__":
    app()
