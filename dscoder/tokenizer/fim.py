"""Fill-in-the-middle prompts in the spelling the model was trained with.

DeepSeek-Coder was trained on PSM (prefix, suffix, middle) documents written as
`<｜fim▁begin｜>{prefix}<｜fim▁hole｜>{suffix}<｜fim▁end｜>`: `begin` marks the prefix, `hole`
the suffix, `end` asks for the middle.  SPM orders the same three roles suffix first
(`hole suffix begin prefix end`, the ordering of Bavarian et al. 2022).  StarCoder-family
models spell the roles `<fim_prefix>`/`<fim_suffix>`/`<fim_middle>`; both spellings are
recognised by looking the tokens up in the model's own vocabulary.  A model with neither
gets `FimUnsupportedError`, never a prompt it would misread.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from dscoder.errors import UserError


class _Vocab(Protocol):
    def token_to_id(self, token: str) -> int | None: ...


class FimUnsupportedError(UserError):
    """The model's vocabulary has no fill-in-the-middle tokens."""


@dataclass(frozen=True)
class FimTokens:
    """The three FIM role markers: before the prefix, before the suffix, before the middle."""

    prefix: str
    suffix: str
    middle: str


DEEPSEEK_FIM = FimTokens(prefix="<｜fim▁begin｜>", suffix="<｜fim▁hole｜>", middle="<｜fim▁end｜>")
STARCODER_FIM = FimTokens(prefix="<fim_prefix>", suffix="<fim_suffix>", middle="<fim_middle>")
KNOWN_SPELLINGS = (DEEPSEEK_FIM, STARCODER_FIM)
MODES = ("psm", "spm")


def fim_tokens(vocab: _Vocab, model_name: str = "this model") -> FimTokens:
    for spelling in KNOWN_SPELLINGS:
        if all(vocab.token_to_id(t) is not None for t in (spelling.prefix, spelling.suffix, spelling.middle)):
            return spelling
    looked_for = "; ".join(f"{s.prefix} {s.suffix} {s.middle}" for s in KNOWN_SPELLINGS)
    raise FimUnsupportedError(f"{model_name} has no fill-in-the-middle tokens (looked for {looked_for}); "
                              f"infilling needs a FIM-trained model such as a DeepSeek-Coder base model")


def fim_prompt(prefix: str, suffix: str, tokens: FimTokens = DEEPSEEK_FIM, mode: str = "psm") -> str:
    """The FIM prompt text; the model's answer is the middle, ended by EOS."""
    if mode == "psm":
        return f"{tokens.prefix}{prefix}{tokens.suffix}{suffix}{tokens.middle}"
    if mode == "spm":
        return f"{tokens.suffix}{suffix}{tokens.prefix}{prefix}{tokens.middle}"
    raise UserError(f"FIM mode must be one of {', '.join(MODES)}, got {mode!r}")
