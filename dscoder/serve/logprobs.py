"""Log-probabilities in OpenAI's two shapes: completions' parallel lists (tokens, token_logprobs,
top_logprobs, text_offset) and chat's list of token objects (with their UTF-8 bytes)."""

from __future__ import annotations

from dscoder.serve.engine import Output, RequestHandle


def _token_text(tok, token_id: int) -> str:
    return tok.decode([token_id])


def _scored(tok, outs: list[Output]) -> list[tuple[Output, str]]:
    """(output, its token's text) for each output that carries a token (a final one may not)."""
    return [(out, _token_text(tok, out.token_id)) for out in outs if out.token_id is not None]


def completion_logprobs(tok, outs: list[Output], offset: int) -> dict:
    """The scored outputs of one choice; text offsets start at `offset` (after an echoed prompt)."""
    lp = {"tokens": [], "token_logprobs": [], "top_logprobs": [], "text_offset": []}
    for out, text in _scored(tok, outs):
        lp["tokens"].append(text)
        lp["token_logprobs"].append(out.logprob)
        lp["top_logprobs"].append({_token_text(tok, i): v for i, v in out.top_logprobs} if out.top_logprobs else None)
        lp["text_offset"].append(offset)
        offset += len(text)
    return lp


def merge_prompt_logprobs(tok, handle: RequestHandle, lp: dict) -> dict:
    """echo + logprobs: the prompt's tokens come first, the first one without a logprob (as in OpenAI);
    text offsets run on over all the tokens' texts (as vLLM's do), a BOS included."""
    ids = handle._seq.tokens[:handle.prompt_tokens]
    texts = [_token_text(tok, i) for i in ids]
    offsets, at = [], 0
    for t in texts + lp["tokens"]:
        offsets.append(at)
        at += len(t)
    values = (handle.prompt_logprobs or [None]) + [None] * len(ids)
    return {"tokens": texts + lp["tokens"], "token_logprobs": values[:len(ids)] + lp["token_logprobs"],
            "top_logprobs": [None] * len(ids) + lp["top_logprobs"], "text_offset": offsets}


def chat_logprobs(tok, outs: list[Output]) -> list[dict]:
    items = []
    for out, text in _scored(tok, outs):
        top = [{"token": _token_text(tok, i), "logprob": v, "bytes": list(_token_text(tok, i).encode())}
               for i, v in (out.top_logprobs or [])]
        items.append({"token": text, "logprob": out.logprob, "bytes": list(text.encode()), "top_logprobs": top})
    return items
