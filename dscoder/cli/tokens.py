"""`dscoder tokenize`, `detokenize` and `tokenizer train`: text to ids, ids to text, a new vocabulary."""

from __future__ import annotations

import json
import sys
from typing import Optional

import typer

from dscoder.cli import common
from dscoder.cli.common import err
from dscoder.errors import UserError

TOKENIZER = typer.Option(None, "--tokenizer", help="A model directory, tokenizer.json, .gguf file, preset or HF repo "
                                                   "id (default: the embedded model).")


def tokenize(
    text: Optional[str] = typer.Option(None, "--text", "-t", help="Text to encode."),
    file: Optional[str] = typer.Option(None, "--file", "-f", help="File to encode ('-' for stdin)."),
    tokenizer: Optional[str] = TOKENIZER,
    bos: Optional[bool] = typer.Option(None, "--bos/--no-bos", help="Prepend BOS (default: the model's setting)."),
) -> None:
    """Print the token ids of a text as a JSON list."""
    from dscoder.hub import load_tokenizer

    if (text is None) == (file is None):
        raise UserError("give exactly one of --text or --file")
    if file is not None:
        text = common.read_text(file)
    typer.echo(json.dumps(load_tokenizer(tokenizer).encode(text, add_bos=bos)))


def _ids_from_stdin() -> list[int]:
    raw = sys.stdin.read()
    try:
        ids = json.loads(raw)
    except ValueError:
        ids = None
    if not isinstance(ids, list) or not all(isinstance(i, int) for i in ids):
        raise UserError(f"stdin must be a JSON list of integer ids, got {raw[:80]!r}")
    return ids


def detokenize(
    ids: Optional[list[int]] = typer.Argument(None, help="Token ids (default: a JSON list on stdin)."),
    tokenizer: Optional[str] = TOKENIZER,
    skip_special: bool = typer.Option(False, "--skip-special", help="Drop special tokens such as BOS."),
) -> None:
    """Print the text of token ids exactly (no added newline)."""
    from dscoder.hub import load_tokenizer

    ids = ids or _ids_from_stdin()
    tok = load_tokenizer(tokenizer)
    bad = [i for i in ids if not 0 <= i < tok.vocab_size]
    if bad:
        raise UserError(f"ids out of range for a vocabulary of {tok.vocab_size}: {bad[:10]}")
    sys.stdout.buffer.write(tok.decode(ids, skip_special_tokens=skip_special).encode("utf-8"))  # exact bytes
    sys.stdout.flush()


def tokenizer_train(
    dirs: list[str] = typer.Argument(..., help="Directories of source files."),
    out: str = typer.Option(..., "--out", help="Output directory for tokenizer.json + tokenizer_config.json."),
    vocab_size: int = typer.Option(32000, "--vocab-size", help="Total vocabulary, special tokens included."),
    min_frequency: int = typer.Option(2, "--min-frequency", help="Merges must be seen at least this often."),
    pre: str = typer.Option("deepseek-coder", "--pre", help="Pre-tokenizer: deepseek-coder, deepseek-llm, smollm."),
) -> None:
    """Train a byte-level BPE with the DeepSeek-Coder pre-tokenizer and FIM/chat special tokens."""
    from dscoder.tokenizer.train import train_tokenizer

    tok, stats = train_tokenizer(dirs, vocab_size, out, pre=pre, min_frequency=min_frequency)
    skipped = ", ".join(f"{n} {why}" for why, n in sorted(stats.skipped.items())) or "none"
    err.print(f"trained on {stats.files:,} files ({stats.bytes:,} bytes; skipped: {skipped}); "
              f"vocabulary {tok.vocab_size:,}; wrote {out}")
