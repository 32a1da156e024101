"""OpenAI's routes: /v1/models, /v1/completions (with a native `suffix` for fill-in-the-middle)
and /v1/chat/completions, whole or streamed as server-sent events.

Bodies, `finish_reason`s, usage and logprobs take OpenAI's shapes, so its clients work
unchanged.  A client that goes away, streaming or not, cancels its generation.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterable

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from dscoder.serve.engine import Engine, Output, RequestHandle
from dscoder.serve.errors import ApiError
from dscoder.serve.logprobs import chat_logprobs, completion_logprobs, merge_prompt_logprobs
from dscoder.serve.outputs import collect, generated, merged, started
from dscoder.serve.prompts import chat_ids, check_ids_fit, decode_ids, fim_ids, text_ids
from dscoder.serve.protocol import ChatRequest, CompletionRequest
from dscoder.serve.repo import RepoSource, require
from dscoder.serve import verification
from dscoder.serve.sse import DONE, event_stream, sse, sse_error
from dscoder.serve.state import serving, server_state
from dscoder.serve.submit import cancel_all, eos_stop, sampling_params, submit
from dscoder.tokenizer.chat import stop_token_ids

router = APIRouter()


def _usage(prompt: int, completion: int) -> dict:
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _finish(reason: str | None) -> str | None:
    """The engine's finish reason in OpenAI's words."""
    return {"cancelled": "abort"}.get(reason, reason)


async def _events(head: dict, handles: list[RequestHandle], body, prompt_tokens: int,
                  choices: Callable[[int, Output], list[dict]], first: Iterable[dict] = ()) -> AsyncIterator[str]:
    """An OpenAI stream: a chunk for each of the `first` choices, then for each choice `choices`
    makes of an output as it arrives; an engine failure as an error event; the usage when
    stream_options asks for it; [DONE]."""
    for choice in first:
        yield sse({**head, "choices": [choice]})
    completion_tokens = 0
    async for i, out in merged(handles):
        completion_tokens += out.token_id is not None
        if out.finish_reason == "error":
            yield sse_error(out.text)
            continue
        for choice in choices(i, out):
            yield sse({**head, "choices": [choice]})
    if body.stream_options and body.stream_options.include_usage:
        yield sse({**head, "choices": [], "usage": _usage(prompt_tokens, completion_tokens)})
    yield DONE


@router.get("/v1/models")
async def models(request: Request):
    state = server_state(request)
    engine = state.ready()
    return {"object": "list", "data": [{"id": state.model_name, "object": "model", "created": int(state.started),
                                        "owned_by": "dscoder", "max_model_len": engine.max_model_len}]}


# ---------------------------------------------------------------------------- completions
COMPLETION_MAX_TOKENS = 16  # OpenAI's default for /v1/completions without max_tokens


def _completion_jobs(body: CompletionRequest, engine: Engine, model_name: str,
                     repo: RepoSource | None = None) -> list[tuple[list[int], str]]:
    """(prompt ids, echo text) for every prompt, in order (runs in a worker thread: it tokenizes).
    A prompt too long for the context stops it there, before the next is tokenized. With `repo`
    (the request's extension field), each text prompt is preceded by the repository's context."""
    jobs = []
    for prompt in body.prompts():
        if body.repo is not None:
            if not isinstance(prompt, str):
                raise ApiError(400, "repo needs a text prompt (token ids cannot be given context)", param="prompt")
            reserve = (body.max_tokens or COMPLETION_MAX_TOKENS) + 8
            prompt = require(repo).prefix(engine, body.repo.file, prompt, body.suffix or "", reserve,
                                          body.repo.max_tokens)[0]
        if body.suffix is not None:
            if not isinstance(prompt, str):
                raise ApiError(400, "suffix needs a text prompt", param="prompt")
            ids, echo = fim_ids(engine, model_name, prompt, body.suffix, "suffix"), ""
        elif isinstance(prompt, str):
            ids, echo = text_ids(engine, prompt, "prompt"), prompt
        else:
            ids, echo = list(prompt), None
        check_ids_fit(engine, len(ids), body.max_tokens or COMPLETION_MAX_TOKENS, "prompt")
        jobs.append((ids, decode_ids(engine, ids, "prompt") if echo is None else echo))
    return jobs


@router.post("/v1/completions")
async def completions(body: CompletionRequest, request: Request):
    state, engine = serving(request, body.model)
    if body.verify is not None:  # dscoder's extension: candidates run against tests (serve/verification.py)
        return await verification.completion(body, request, state)
    tok = engine.tokenizer
    if body.suffix is not None and body.echo:
        raise ApiError(400, "echo cannot be combined with suffix (the prompt is rewritten for infilling)",
                       param="echo")
    if body.repo is not None and body.echo:
        raise ApiError(400, "echo cannot be combined with repo (the prompt is rewritten with the repository's context)",
                       param="echo")
    jobs = await run_in_threadpool(_completion_jobs, body, engine, state.model_name, state.repo)
    want_lp = body.logprobs is not None
    handles, prompt_tokens = [], 0
    try:
        for ids, _ in jobs:
            params = sampling_params(body, body.max_tokens or COMPLETION_MAX_TOKENS, eos_stop(tok), want_lp)
            handles += submit(engine, ids, params, body.n, "prompt", top_logprobs=body.logprobs or 0,
                              prompt_logprobs=want_lp and body.echo)
            prompt_tokens += len(ids)
    except ApiError:
        cancel_all(handles)
        raise
    await started(request, handles, engine, state.limits.queue_timeout)
    echoes = [echo for _, echo in jobs for _ in range(body.n)] if body.echo else None
    head = {"id": f"cmpl-{uuid.uuid4().hex}", "object": "text_completion", "created": int(time.time()),
            "model": state.model_name}

    if body.stream:
        offsets = [len(e) for e in echoes] if echoes else [0] * len(handles)

        def choices(i: int, out: Output) -> list[dict]:
            scored = want_lp and out.token_id is not None
            if not out.text and out.finish_reason is None and not scored:
                return []
            lp = None
            if scored:  # text offsets run on over the choice's tokens, as in the non-streamed answer
                lp = completion_logprobs(tok, [out], offsets[i])
                offsets[i] += len(lp["tokens"][0])
            return [{"index": i, "text": out.text, "logprobs": lp, "finish_reason": _finish(out.finish_reason)}]

        first = [{"index": i, "text": text, "logprobs": None, "finish_reason": None}
                 for i, text in enumerate(echoes or [])]
        return event_stream(_events(head, handles, body, prompt_tokens, choices, first))

    results = await collect(request, handles)
    answers = []
    for i, (outs, handle) in enumerate(zip(results, handles)):
        lp = None
        if want_lp:
            lp = completion_logprobs(tok, outs, len(echoes[i]) if echoes else 0)
            if echoes:
                lp = merge_prompt_logprobs(tok, handle, lp)
        answers.append({"index": i, "text": (echoes[i] if echoes else "") + "".join(o.text for o in outs),
                        "logprobs": lp, "finish_reason": _finish(outs[-1].finish_reason)})
    completion_tokens = sum(generated(outs) for outs in results)
    return {**head, "choices": answers, "usage": _usage(prompt_tokens, completion_tokens)}


# ---------------------------------------------------------------------------- chat
@router.post("/v1/chat/completions")
async def chat(body: ChatRequest, request: Request):
    state, engine = serving(request, body.model)
    if body.verify is not None:
        return await verification.chat(body, request, state)
    tok = engine.tokenizer
    messages = [{"role": "system" if m.role == "developer" else m.role, "content": m.text()}
                for m in body.messages]
    ids = await run_in_threadpool(chat_ids, engine, messages)
    limit = body.max_completion_tokens or body.max_tokens or max(1, engine.max_model_len - len(ids))
    want_lp = body.logprobs
    params = sampling_params(body, limit, stop_token_ids(tok), want_lp)
    handles = submit(engine, ids, params, body.n, "messages", top_logprobs=(body.top_logprobs or 0) if want_lp
                     else 0)
    await started(request, handles, engine, state.limits.queue_timeout)
    head = {"id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion.chunk" if body.stream
            else "chat.completion", "created": int(time.time()), "model": state.model_name}

    if body.stream:
        def choices(i: int, out: Output) -> list[dict]:
            found = []
            if out.text:
                lp = {"content": chat_logprobs(tok, [out])} if want_lp and out.token_id is not None else None
                found.append({"index": i, "delta": {"content": out.text}, "logprobs": lp, "finish_reason": None})
            if out.finish_reason is not None:
                found.append({"index": i, "delta": {}, "logprobs": None, "finish_reason": _finish(out.finish_reason)})
            return found

        first = [{"index": i, "delta": {"role": "assistant", "content": ""}, "logprobs": None, "finish_reason": None}
                 for i in range(len(handles))]
        return event_stream(_events(head, handles, body, len(ids), choices, first))

    results = await collect(request, handles)
    answers = [{"index": i, "message": {"role": "assistant", "content": "".join(o.text for o in outs)},
                "logprobs": {"content": chat_logprobs(tok, outs)} if want_lp else None,
                "finish_reason": _finish(outs[-1].finish_reason)} for i, outs in enumerate(results)]
    return {**head, "choices": answers, "usage": _usage(len(ids), sum(generated(outs) for outs in results))}
