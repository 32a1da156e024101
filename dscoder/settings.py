"""Settings live once: a dataclass field per setting, with its default, its help text and its
command-line flags, from which `dscoder.cli` generates the typer options.

So a default or a help text is written in one place and the command line cannot drift from
the library. A field is declared with `setting(...)`:

    @dataclass
    class EngineConfig:
        block_size: int = setting(16, "Tokens per KV-cache block.", "--block-size")

Metadata keys (read by `dscoder.cli.options`):
- help:   the help text (required: a setting nobody can read about is a setting nobody can use)
- flags:  the option names; default `--field-name`
- run:    True for settings that say how work runs, not what it produces (workers, progress),
          so a resumed run may change them
- cli:    False for a field the command line does not offer (set by the library, or an argument)
- choices: the allowed values, shown in the help and checked before anything runs
- argument: True for a positional command-line argument instead of an option
- envvar: an environment variable the command line reads when the option is not given

A bool setting that defaults to True and whose one flag is `--no-...` is an off switch: the
command line shows the flag alone (no value), and giving it sets the setting to False.

A field whose type is itself a settings dataclass (declared with `setting(help=...,
default_factory=...)`) is nested: the command line offers its fields in its place.
`like(cls, name)` declares a field exactly as another class declares it, for settings two
classes share (the model argument, say).

This module is at the bottom of the layers beside `errors`: every package may declare settings.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

MISSING = dataclasses.MISSING


def setting(default: Any = MISSING, help: str = "", *flags: str, default_factory: Callable[[], Any] | None = None,
            run: bool = False, cli: bool = True, choices: Sequence[str] | None = None, argument: bool = False,
            envvar: str | None = None) -> Any:
    """A dataclass field carrying its help text and flags (see the module docstring)."""
    if not help:
        raise ValueError("a setting needs a help text")
    metadata = {"help": help, "flags": tuple(flags), "run": run, "cli": cli, "argument": argument,
                "choices": tuple(choices) if choices is not None else None, "envvar": envvar}
    if default_factory is not None:
        return dataclasses.field(default_factory=default_factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def like(cls: type, name: str) -> Any:
    """A field declared as `cls` declares its field `name` (default, help, flags...): a setting two classes share."""
    f = next(f for f in dataclasses.fields(cls) if f.name == name)
    if f.default_factory is not MISSING:
        return dataclasses.field(default_factory=f.default_factory, metadata=f.metadata)
    return dataclasses.field(default=f.default, metadata=f.metadata)


def help_of(cls: type, name: str) -> str:
    """The help text of one field of a settings dataclass."""
    return next(f.metadata["help"] for f in dataclasses.fields(cls) if f.name == name)


def identity(config: Any) -> dict:
    """The settings that determine a run's output (all but `run=True` ones): what a resumed run must match."""
    return {f.name: getattr(config, f.name) for f in dataclasses.fields(config) if not f.metadata.get("run")}


def as_dict(config: Any) -> dict:
    """Every setting, for writing beside a run's output (paths and other objects as strings)."""
    out = {}
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if dataclasses.is_dataclass(value):  # a nested settings class
            out[f.name] = as_dict(value)
            continue
        out[f.name] = value if isinstance(value, (str, int, float, bool, type(None), list, dict)) else str(value)
    return out
