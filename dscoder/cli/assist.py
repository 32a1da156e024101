"""`dscoder explain`, `tests`, `doc`, `translate`, `fix`, `review`: the documented task prompts
(`dscoder.infer.assist`) on the chat model. Code answers come out of their fenced block."""

from __future__ import annotations

import sys
from typing import Optional

import typer

from dscoder.cli import common
from dscoder.cli.common import DEVICE, DTYPE, MODEL, QUANT
from dscoder.cli.verify import verify_options

FILE = typer.Argument(..., help="Source file ('-' for stdin).")
TOKENS = common.max_tokens(1024, "Most tokens in the answer.")
RAW = typer.Option(False, "--raw", help="Print the whole answer, not just its code block.")


def _run_task(name: str, file: Optional[str], model: Optional[str], max_tokens: int, raw: bool,
              target: str = "", error: str = "", quant: Optional[str] = None, verify=None, device: str = "auto",
              dtype: str = "auto") -> None:
    """One task prompt on the chat model: the code block of a code answer, else the answer streamed."""
    from dscoder.infer.assist import TASKS, extract_code, language_of, task_prompt
    from dscoder.infer.generate import SamplingParams
    from dscoder.infer.session import ChatSession

    code = common.read_text(file)
    prompt = task_prompt(name, code, file, target=target, error=error)
    if verify is not None:
        from dscoder.cli import verify as verification
        verification.check_task(name, file, raw)
    net, tok = common.load_timed(model, quant, device=device, dtype=dtype)[:2]
    if verify is not None:
        return verification.task(name, file, code, net, tok, max_tokens, verify, error=error)
    session = ChatSession(net, tok, SamplingParams(max_new_tokens=max_tokens))
    if TASKS[name].returns_code and not raw:
        sys.stdout.write(extract_code(session.ask(prompt), target or language_of(file)))
        return
    for piece in session.send(prompt):
        sys.stdout.write(piece)
        sys.stdout.flush()
    sys.stdout.write("\n")


def explain(file: str = FILE, model: Optional[str] = MODEL, max_tokens: int = TOKENS,
            quant: Optional[str] = QUANT, device: str = DEVICE, dtype: str = DTYPE) -> None:
    """Explain what a file does, step by step."""
    _run_task("explain", file, model, max_tokens, raw=True, quant=quant, device=device, dtype=dtype)


@verify_options
def tests(file: str = FILE, model: Optional[str] = MODEL, max_tokens: int = TOKENS, raw: bool = RAW,
          quant: Optional[str] = QUANT, device: str = DEVICE, dtype: str = DTYPE, verify=None) -> None:
    """Write unit tests for a file (pytest, Jest, JUnit... by language); prints the test code. With --verify
    (Python), each candidate suite must run and pass on the file itself."""
    _run_task("tests", file, model, max_tokens, raw, quant=quant, device=device, dtype=dtype, verify=verify)


def doc(file: str = FILE, model: Optional[str] = MODEL, max_tokens: int = TOKENS, raw: bool = RAW,
        quant: Optional[str] = QUANT, device: str = DEVICE, dtype: str = DTYPE) -> None:
    """Add docstrings and comments; prints the documented code."""
    _run_task("doc", file, model, max_tokens, raw, quant=quant, device=device, dtype=dtype)


def translate(file: str = FILE, to: str = typer.Option(..., "--to", help="Target language, e.g. Rust."),
              model: Optional[str] = MODEL, max_tokens: int = TOKENS, raw: bool = RAW,
              quant: Optional[str] = QUANT, device: str = DEVICE, dtype: str = DTYPE) -> None:
    """Translate a file to another language; prints the translated code."""
    _run_task("translate", file, model, max_tokens, raw, target=to, quant=quant, device=device, dtype=dtype)


@verify_options
def fix(file: str = FILE, error: str = typer.Option(..., "--error", help="The error message or failing output."),
        model: Optional[str] = MODEL, max_tokens: int = TOKENS, raw: bool = RAW,
        quant: Optional[str] = QUANT, device: str = DEVICE, dtype: str = DTYPE, verify=None) -> None:
    """Fix a file given its error; prints the corrected code. With --verify (Python), each candidate fix
    must pass --tests (or the file's own docstring examples)."""
    _run_task("fix", file, model, max_tokens, raw, error=error, quant=quant, device=device, dtype=dtype, verify=verify)


def review(model: Optional[str] = MODEL, max_tokens: int = TOKENS, quant: Optional[str] = QUANT, device: str = DEVICE, dtype: str = DTYPE) -> None:
    """Review a diff read from stdin (e.g. git diff | dscoder review)."""
    _run_task("review", None, model, max_tokens, raw=True, quant=quant, device=device, dtype=dtype)
