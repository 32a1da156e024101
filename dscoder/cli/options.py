"""Typer options generated from settings dataclasses (`dscoder.settings`).

A command that takes a settings object declares it once, in the library:

    @from_settings(BuildConfig)
    def build_command(cfg: BuildConfig, restart: bool = typer.Option(...)) -> None:
        ...

`from_settings` gives the command one typer parameter per field (its flags, default, help,
choices and environment variable from the field's metadata) followed by the function's own
parameters, and calls the function with the settings object built from the values given. So
the command line and the library share one default and one help text per setting. A field
whose type is a settings dataclass is flattened: its fields become options in its place and
the nested object is built from them. `option(cls, name)` is one field's option, for options
several commands share without a settings object of their own.

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


def _flags(field: dataclasses.Field, meta: dict) -> tuple[str, ...]:
    return tuple(meta.get("flags") or ("--" + field.name.replace("_", "-"),))


def _off_switch(field: dataclasses.Field, annotation: Any, meta: dict, default: Any) -> bool:
    """A bool setting on by default whose one flag is `--no-x`: the flag alone turns it off."""
    flags = _flags(field, meta)
    return annotation is bool and default is True and len(flags) == 1 and flags[0].startswith("--no-")


def _info(field: dataclasses.Field, annotation: Any, overrides: dict[str, Any]) -> Any:
    """The typer OptionInfo (or ArgumentInfo) of one field."""
    meta = {**field.metadata, **overrides}
    default = overrides.get("default", _default(field))
    extra: dict[str, Any] = {"help": meta["help"]}
    if meta.get("choices"):
        extra["parser"] = _choice(field.name, tuple(meta["choices"]))
        extra["metavar"] = "[" + "|".join(meta["choices"]) + "]"
    if meta.get("envvar"):
        extra["envvar"] = meta["envvar"]
    if meta.get("argument"):
        return typer.Argument(default, **extra)
    if _off_switch(field, annotation, meta, default):
        default = False  # the flag's value: given or not; `_value` turns it back into the setting
    return typer.Option(default, *meta.get("flags", ()), **extra)  # no flags: typer's own (`--x/--no-x` for a bool)


def option(cls: type, name: str, **overrides: Any) -> Any:
    """The typer option of field `name` of settings class `cls`, e.g. for a parameter default:
    `model: Optional[str] = option(ModelChoice, "model")`. `overrides` change its metadata here
    (`flags=("--model",)`, `default=...`, `help=...`)."""
    field = next(f for f in dataclasses.fields(cls) if f.name == name)
    return _info(field, _annotation(typing.get_type_hints(cls)[name]), overrides)


def _nested(annotation: Any) -> bool:
    return isinstance(annotation, type) and dataclasses.is_dataclass(annotation)


def _walk(cls: type, skip: set[str]) -> Iterable[tuple[dataclasses.Field, Any]]:
    """(field, annotation) of every command-line field of `cls`, nested settings classes flattened in place."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if not f.metadata.get("cli", True) or f.name in skip:
            continue
        if _nested(hints[f.name]):
            yield from _walk(hints[f.name], skip)
        else:
            yield f, _annotation(hints[f.name])


def settings_parameters(cls: type, exclude: Iterable[str] = (), overrides: dict[str, dict] | None = None
                        ) -> list[inspect.Parameter]:
    """One typer parameter per command-line field of the settings dataclass `cls` (nested classes flattened)."""
    overrides = overrides or {}
    params: dict[str, inspect.Parameter] = {}
    for f, annotation in _walk(cls, set(exclude)):
        if f.name in params:
            raise TypeError(f"{cls.__name__}: two settings named {f.name!r} (a nested class repeats an outer field)")
        info = _info(f, annotation, overrides.get(f.name, {}))
        params[f.name] = inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=info, annotation=annotation)
    return list(params.values())


def build(cls: type, values: dict[str, Any], fixed: dict[str, Any] | None = None) -> Any:
    """The settings object of `cls` from command-line `values` (by field name; nested classes built too).

    Fields absent from `values` take `fixed`'s value, else their default; off switches are turned back.
    """
    fixed = fixed or {}
    hints = typing.get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        annotation = _annotation(hints[f.name])
        if f.name in fixed:
            kwargs[f.name] = fixed[f.name]
        elif _nested(hints[f.name]) and f.metadata.get("cli", True):
            kwargs[f.name] = build(hints[f.name], values, fixed)
        elif f.name in values:
            given = values[f.name]
            kwargs[f.name] = (not given) if _off_switch(f, annotation, f.metadata, _default(f)) else given
    return cls(**kwargs)


def _names(cls: type) -> set[str]:
    hints = typing.get_type_hints(cls)
    out = set()
    for f in dataclasses.fields(cls):
        out |= _names(hints[f.name]) if _nested(hints[f.name]) else {f.name}
    return out


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
        clash = (names | _names(cls)) & {p.name for p in rest}
        if clash:
            raise TypeError(f"{fn.__name__}: parameters {sorted(clash)} are already settings of {cls.__name__}")
        params = generated + [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in rest]
        params.sort(key=lambda p: not isinstance(p.default, typer.models.ArgumentInfo))

        @functools.wraps(fn)
        def command(**values: Any) -> Any:
            cfg = build(cls, {name: values.pop(name) for name in names}, fixed)
            return fn(cfg, **values)

        command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
        del command.__wrapped__  # typer must read the generated signature, not fn's
        command.__annotations__ = {p.name: p.annotation for p in params}
        return command

    return decorate
