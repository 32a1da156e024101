"""Infilling for editors: the FIM prompt plus the stop rules an editor user expects.

A FIM model writes the middle until its end token, but an editor wants less than "until
the model is done": no more lines than asked, nothing past the end of the cursor's block
(a line indented less than the cursor line starts code that belongs to the suffix's
scope), and never the suffix again (models like to regenerate the line after the cursor).
The rules are judged on whole lines, so the middle is released line by line.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace

from dscoder.tokenizer.fim import fim_prompt, fim_tokens
from dscoder.infer.generate import SamplingParams, stream
from dscoder.model.transformer import Transformer
from dscoder.tokenizer.tokenizer import Tokenizer
from dscoder.errors import UserError

CURSOR = "<CURSOR>"
DEFAULT_MAX_TOKENS = 128


@dataclass(frozen=True)
class InfillRules:
    max_lines: int | None = None  # lines of middle, the cursor's own line included
    stop_at_dedent: bool = True


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" \t"))


def split_at_cursor(text: str, line: int | None = None, col: int | None = None) -> tuple[str, str]:
    """(prefix, suffix) of a file, at its single <CURSOR> marker or at 1-based line/column."""
    if line is None:
        count = text.count(CURSOR)
        if count != 1:
            raise UserError(f"the file must contain exactly one {CURSOR} marker (found {count}), or pass --line/--col")
        prefix, suffix = text.split(CURSOR)
        return prefix, suffix
    lines = text.split("\n")
    if not 1 <= line <= len(lines):
        raise UserError(f"--line {line} is outside the file (1..{len(lines)})")
    col = len(lines[line - 1]) + 1 if col is None else col
    if not 1 <= col <= len(lines[line - 1]) + 1:
        raise UserError(f"--col {col} is outside line {line} (1..{len(lines[line - 1]) + 1})")
    offset = sum(len(l) + 1 for l in lines[: line - 1]) + col - 1
    return text[:offset], text[offset:]


class _LineJudge:
    """Decides, one complete line at a time, whether the middle goes on."""

    def __init__(self, prefix: str, suffix: str, rules: InfillRules):
        self.rules = rules
        self.block_indent = _indent(prefix.rsplit("\n", 1)[-1])
        self.suffix_head = next((l.strip() for l in suffix.split("\n") if l.strip()), None)
        self.lines = 0

    def accepts(self, line: str) -> bool:
        """`line` (without its newline) may follow the lines accepted so far."""
        first = self.lines == 0
        self.lines += 1
        if self.rules.max_lines is not None and self.lines > self.rules.max_lines:
            return False
        if first or not line.strip():
            return True
        if self.rules.stop_at_dedent and _indent(line) < self.block_indent:
            return False
        return line.strip() != self.suffix_head


def infill_stream(model: Transformer, tokenizer: Tokenizer, prefix: str, suffix: str,
                  params: SamplingParams = SamplingParams(max_new_tokens=DEFAULT_MAX_TOKENS),
                  rules: InfillRules = InfillRules(), mode: str = "psm") -> Iterator[str]:
    """The middle between prefix and suffix, released line by line, cut by `rules`.

    A line's newline is released only with the next accepted line (or when the model ends
    the middle itself), so a middle cut by a rule never ends in a stray newline; a line the
    token budget cut short is dropped rather than left half-written.
    """
    prompt = fim_prompt(prefix, suffix, fim_tokens(tokenizer), mode)
    stops = (tokenizer.eos_id,) if tokenizer.eos_id is not None else ()
    params = replace(params, stop_token_ids=params.stop_token_ids + stops)
    judge, pending, separator, finish = _LineJudge(prefix, suffix, rules), "", "", None
    for delta in stream(model, tokenizer, prompt, params):
        pending += delta.text
        finish = delta.finish_reason
        while "\n" in pending:
            line, pending = pending.split("\n", 1)
            if not judge.accepts(line):
                return
            yield separator + line
            separator = "\n"
            if judge.lines == rules.max_lines:
                return
    if finish == "stop" and (not pending or judge.accepts(pending)):
        yield separator + pending


def infill(model: Transformer, tokenizer: Tokenizer, prefix: str, suffix: str, **kwargs) -> str:
    return "".join(infill_stream(model, tokenizer, prefix, suffix, **kwargs))
