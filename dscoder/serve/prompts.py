"""The prompts the server builds from a request: fill-in-the-middle text in the model's own FIM
tokens, the chat template, and token-id prompts checked against the vocabulary.

Tokenizing is the heavy part of a request before the engine sees it: the routes call these in
a worker thread (`run_in_threadpool`), so a long prompt does not hold up the event loop that
streams every other request's tokens.
"""

from __future__ import annotations

from dscoder.serve.engine import Engine
from dscoder.serve.errors import ApiError
from dscoder.tokenizer.chat import ChatTemplateError, chat_prompt
from dscoder.tokenizer.fim import FimUnsupportedError, fim_prompt, fim_tokens
from dscoder.tokenizer.tokenizer import Tokenizer


def fim_ids(tok: Tokenizer, model_name: str, prefix: str, suffix: str, param: str) -> list[int]:
    """The FIM prompt's ids; a model without FIM tokens is a 400 naming `param`."""
    try:
        text = fim_prompt(prefix, suffix, fim_tokens(tok, model_name))
    except FimUnsupportedError as e:
        raise ApiError(400, str(e), param=param, code="fim_unsupported") from None
    return tok.encode(text)


def chat_ids(tok: Tokenizer, messages: list[dict]) -> list[int]:
    """The chat template's ids (the template writes the BOS itself); a conversation it refuses is a 400."""
    try:
        return tok.encode(chat_prompt(tok, messages), add_bos=False)
    except ChatTemplateError as e:
        raise ApiError(400, str(e), param="messages") from None


def check_ids(engine: Engine, ids: list[int], param: str) -> None:
    """Before ids are decoded (echo, detokenize): the tokenizer would fail on one outside the vocabulary."""
    vocab = engine.model.config.vocab_size
    if bad := [t for t in ids if not 0 <= t < vocab]:
        raise ApiError(400, f"token id {bad[0]} is outside the vocabulary (0..{vocab - 1})", param=param)


def decode_ids(engine: Engine, ids: list[int], param: str) -> str:
    check_ids(engine, ids, param)
    return engine.tokenizer.decode(ids)
