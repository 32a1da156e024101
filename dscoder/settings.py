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

This module is at the bottom of the layers beside `errors`: every package may declare settings.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

MISSING = dataclasses.MISSING


def setting(default: Any = MISSING, help: str = "", *flags: str, default_factory: Callable[[], Any] | None = None,
            run: bool = False, cli: bool = True, choices: Sequence[str] | None = None, argument: bool = False) -> Any:
    """A dataclass field carrying its help text and flags (see the module docstring)."""
    if not help:
        raise ValueError("a setting needs a help text")
    metadata = {"help": help, "flags": tuple(flags), "run": run, "cli": cli, "argument": argument,
                "choices": tuple(choices) if choices is not None else None}
    if default_factory is not None:
        return dataclasses.field(default_factory=default_factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


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
        out[f.name] = value if isinstance(value, (str, int, float, bool, type(None), list, dict)) else str(value)
    return out
