"""Typer options generated from settings dataclasses (`dscoder.settings`).

A command that takes a settings object declares it once, in the library:

    @app.command("eval")
    @from_settings(EvalConfig)
    def eval_command(cfg: EvalConfig, workers: int = typer.Option(...)) -> None:
        ...

`from_settings` gives the command one typer parameter per field (its flags, default, help
and choices from the field's metadata) followed by the function's own parameters, and calls
the function with the settings object built from the values given. So the command line and
the library share one default and one help text per setting.

Written by hand because typer builds its parameters from a function signature only; this
module turns a dataclass into such a signature (`__signature__`), which typer reads.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import types
import typing
from collections.abc import Callable, Iterable
from typing import Any, Optional

import typer


def _annotation(tp: Any) -> Any:
    """`X | None` -> `Optional[X]` (the form typer understands on every supported Python)."""
    if isinstance(tp, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return Optional[args[0]]
    return tp


def _default(field: dataclasses.Field) -> Any:
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return ...


def _choice(name: str, choices: tuple[str, ...]) -> Callable[[str], str]:
    def parse(value: str) -> str:
        if value not in choices:
            raise typer.BadParameter(f"{value!r} is not one of {', '.join(choices)}")
        return value
    parse.__name__ = name  # typer names the parameter type after the parser
    return parse


def _parameter(field: dataclasses.Field, annotation: Any, overrides: dict[str, Any]) -> inspect.Parameter:
    meta = {**field.metadata, **overrides}
    default = overrides.get("default", _default(field))
    extra: dict[str, Any] = {"help": meta["help"]}
    if meta.get("choices"):
        extra["parser"] = _choice(field.name, tuple(meta["choices"]))
        extra["metavar"] = "[" + "|".join(meta["choices"]) + "]"
    if meta.get("argument"):
        info = typer.Argument(default, **extra)
    else:
        flags = meta.get("flags") or ("--" + field.name.replace("_", "-"),)
        info = typer.Option(default, *flags, **extra)
    return inspect.Parameter(field.name, inspect.Parameter.KEYWORD_ONLY, default=info, annotation=annotation)


def settings_parameters(cls: type, exclude: Iterable[str] = (), overrides: dict[str, dict] | None = None
                        ) -> list[inspect.Parameter]:
    """One typer parameter per command-line field of the settings dataclass `cls`."""
    hints = typing.get_type_hints(cls)
    skip, overrides = set(exclude), overrides or {}
    return [_parameter(f, _annotation(hints[f.name]), overrides.get(f.name, {}))
            for f in dataclasses.fields(cls) if f.metadata.get("cli", True) and f.name not in skip]


def from_settings(cls: type, *, exclude: Iterable[str] = (), overrides: dict[str, dict] | None = None,
                  fixed: dict[str, Any] | None = None) -> Callable[[Callable], Callable]:
    """Decorate a command `fn(cfg, **own)`: its options become `cls`'s fields plus `fn`'s own.

    `exclude` leaves fields off the command line (they keep their defaults, or take `fixed`);
    `overrides` changes a field's metadata for this command only (e.g. another default).
    Arguments (positional) are listed first, as typer expects.
    """
    fixed = fixed or {}
    exclude = set(exclude) | set(fixed)

    def decorate(fn: Callable) -> Callable:
        own = list(inspect.signature(fn).parameters.values())
        rest = own[1:]  # own[0] receives the settings object
        generated = settings_parameters(cls, exclude, overrides)
        names = {p.name for p in generated}
        clash = names & {p.name for p in rest}
        if clash:
            raise TypeError(f"{fn.__name__}: parameters {sorted(clash)} are already settings of {cls.__name__}")
        params = generated + [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in rest]
        params.sort(key=lambda p: not isinstance(p.default, typer.models.ArgumentInfo))

        @functools.wraps(fn)
        def command(**values: Any) -> Any:
            cfg = cls(**{name: values.pop(name) for name in names}, **fixed)
            return fn(cfg, **values)

        command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
        del command.__wrapped__  # typer must read the generated signature, not fn's
        command.__annotations__ = {p.name: p.annotation for p in params}
        return command

    return decorate
