"""The prompts the server builds from a request: fill-in-the-middle text in the model's own FIM
tokens, the chat template, and token-id prompts checked against the vocabulary and the context.

Tokenizing is the heavy part of a request before the engine sees it (seconds for megabytes).
The routes call these functions in a worker thread (`run_in_threadpool`), and `encode` lets go
of the GIL while the Rust BPE runs, so a long prompt holds up neither the event loop that
streams every other request's tokens nor /health.  A text longer than any tokenization of
it could fit in the context is refused before it is tokenized at all.
"""

from __future__ import annotations

from dscoder.infer.generate import ContextLengthError, check_length
from dscoder.serve.engine import Engine
from dscoder.serve.errors import ApiError
from dscoder.tokenizer.chat import ChatTemplateError, chat_prompt
from dscoder.tokenizer.fim import FimUnsupportedError, fim_prompt, fim_tokens
from dscoder.tokenizer.tokenizer import Tokenizer


def encode(tok: Tokenizer, text: str, add_bos: bool | None = None) -> list[int]:
    """`tok.encode(text, add_bos)`, with the GIL released while the BPE runs.

    `tokenizers` holds the GIL through `Tokenizer.encode` (20 s for 10 MB, during which no
    other Python thread runs, the event loop included) but releases it in `encode_batch`; one
    text in a batch of one gives the same ids.  `encode_batch_fast` (tokenizers 0.20 on) skips
    the character offsets nobody here reads, which takes a third less time."""
    backend = tok.backend
    batch = getattr(backend, "encode_batch_fast", backend.encode_batch)
    ids = batch([text], add_special_tokens=False)[0].ids
    bos = tok.encode("", add_bos=add_bos)  # [] or [BOS]: the tokenizer's own rule (and its error)
    return bos + ids if bos else ids


def check_fits(engine: Engine, text: str, param: str) -> None:
    """Refuse, before tokenizing it, a text with more characters than the context could hold
    in tokens of the longest text any token stands for (a 400 naming `param`)."""
    most = engine.max_model_len * engine.max_token_bytes
    if len(text) > most:
        raise ApiError(400, f"the prompt has {len(text)} characters; this model's context of {engine.max_model_len} "
                            f"tokens holds at most {most}", param=param, code="context_length_exceeded")


def check_ids_fit(engine: Engine, count: int, max_new_tokens: int, param: str) -> None:
    """A 400 naming `param` when a prompt of `count` tokens and the tokens asked for exceed the context."""
    try:
        check_length(count, max_new_tokens, engine.max_model_len)
    except ContextLengthError as e:
        raise ApiError(400, str(e), param=param, code="context_length_exceeded") from None


def text_ids(engine: Engine, text: str, param: str, add_bos: bool | None = None) -> list[int]:
    """The ids of a prompt text that may fit the context (see `check_fits`), tokenized off the GIL."""
    check_fits(engine, text, param)
    return encode(engine.tokenizer, text, add_bos)


def fim_ids(engine: Engine, model_name: str, prefix: str, suffix: str, param: str) -> list[int]:
    """The FIM prompt's ids; a model without FIM tokens is a 400 naming `param`."""
    try:
        text = fim_prompt(prefix, suffix, fim_tokens(engine.tokenizer, model_name))
    except FimUnsupportedError as e:
        raise ApiError(400, str(e), param=param, code="fim_unsupported") from None
    return text_ids(engine, text, param)


def chat_ids(engine: Engine, messages: list[dict]) -> list[int]:
    """The chat template's ids (the template writes the BOS itself); a conversation it refuses is a 400."""
    try:
        text = chat_prompt(engine.tokenizer, messages)
    except ChatTemplateError as e:
        raise ApiError(400, str(e), param="messages") from None
    return text_ids(engine, text, "messages", add_bos=False)


def check_ids(engine: Engine, ids: list[int], param: str) -> None:
    """Before ids are decoded (echo, detokenize): the tokenizer would fail on one outside the vocabulary."""
    vocab = engine.model.config.vocab_size
    if bad := [t for t in ids if not 0 <= t < vocab]:
        raise ApiError(400, f"token id {bad[0]} is outside the vocabulary (0..{vocab - 1})", param=param)


def decode_ids(engine: Engine, ids: list[int], param: str) -> str:
    check_ids(engine, ids, param)
    return engine.tokenizer.decode(ids)
