"""What the commands share: the consoles, the options every model-running command offers
(declared once here, from `dscoder.hub.ModelChoice` for the model ones: the model, --quant,
--kv-cache, --device, --dtype), reading a file argument, and loading a model with its load time
measured for the report line.
"""

from __future__ import annotations

import sys
import time
from typing import Optional

import typer
from rich.console import Console

from dscoder.cli.options import option
from dscoder.errors import UserError
from dscoder.hub import MODEL_HELP, ModelChoice

err = Console(stderr=True, soft_wrap=True)  # one error, one line: greppable, never re-wrapped
out = Console()

# The model argument, its quantization and KV-cache type: one declaration each (hub.ModelChoice).
MODEL = option(ModelChoice, "model")
MODEL_LONG_ONLY = option(ModelChoice, "model", flags=("--model",))  # chat: -m is --message there
MODEL_ARGUMENT = option(ModelChoice, "model", argument=True)
MODEL_REQUIRED_ARGUMENT = option(ModelChoice, "model", argument=True, default=..., help=f"{MODEL_HELP}.")
QUANT = option(ModelChoice, "quant")
KV_CACHE = option(ModelChoice, "kv_cache")
DEVICE = option(ModelChoice, "device")
DTYPE = option(ModelChoice, "dtype")

# Sampling: the same flags and help wherever a command samples.
TEMPERATURE = typer.Option(0.0, "--temperature", "-t", help="0 is greedy.")
TOP_P = typer.Option(1.0, "--top-p", help="Nucleus sampling: draw from the most likely tokens holding this "
                                          "share of the probability (1 is off).")
TOP_K = typer.Option(0, "--top-k", help="0 is off.")
SEED = typer.Option(None, "--seed", help="Seeds sampling (default: a fresh seed each run).")
STOP = typer.Option(None, "--stop", help="Stop string (repeatable); not printed.")


def max_tokens(default: int, help: str) -> typer.models.OptionInfo:
    """The token budget option: one flag pair, each command its own default (an answer is longer than a middle)."""
    return typer.Option(default, "--max-tokens", "-n", help=help)


def read_text(file: Optional[str]) -> str:
    """A file's exact text (newlines untouched), or stdin for None or '-'."""
    if file in (None, "-"):
        return sys.stdin.read()
    try:
        with open(file, encoding="utf-8", newline="") as f:
            return f.read()
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"cannot read {file} as UTF-8 text: {e}") from None


def load_timed(model: Optional[str], quant: Optional[str] = None, kv_cache: Optional[str] = None,
               device: str = "auto", dtype: str = "auto", lora: Optional[str] = None):
    """(network, tokenizer, seconds the load took): `dscoder.hub.load`, timed for the report line."""
    from dscoder.hub import load

    start = time.perf_counter()
    net, tok = load(model, quant, kv_cache, lora=lora, device=device, dtype=dtype)
    return net, tok, time.perf_counter() - start
