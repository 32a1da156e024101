"""The `verify` extension of /v1/completions and /v1/chat/completions: execution-verified generation
(`dscoder.verify`) on the server's own engine and a sandbox pool shared by all requests.

A request with `verify` gets `verify.n` candidates (the first greedy) in one batch, each run in
the sandbox against the tests as soon as it is decoded; the answer is one choice, the first
candidate that passed (or the one passing most checks), with a `verification` object (per
candidate: status, checks passed, failures, an stderr excerpt; the chosen index; `passed`).
Streamed (`stream: true`), the events are `verification.tests`, then one `verification.verdict`
per candidate as its run ends, then the chosen choice as one chunk carrying the
`verification` object, then `[DONE]`.

What is refused, before anything is generated, each naming the field: `n` other than 1 (the
candidates are `verify.n`), `echo`, `suffix`, `logprobs`, `repo`, several prompts or token-id
prompts (400); tests that do not parse (400 naming the line); no tests at all (400). And
where the sandbox cannot run model-written code safely (bubblewrap missing, a weakened
sandbox) or `dscoder serve --no-verify` turned it off: 503 / 400 with the reason. The sandbox
runs on the pool's threads, never on the event loop; a client that goes away cancels the
candidates still decoding and the runs not started.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace

from fastapi import Request
from starlette.concurrency import run_in_threadpool

from dscoder.errors import UserError
from dscoder.infer.assist import extract_code
from dscoder.infer.generate import ContextLengthError, GenerationError, SamplingParams
from dscoder.serve.engine import Engine, EngineBusy
from dscoder.serve.errors import ApiError
from dscoder.serve.prompts import chat_ids, check_ids_fit, text_ids
from dscoder.serve.sse import DONE, event_stream, sse, sse_error
from dscoder.serve.state import ServerState
from dscoder.verify import run, select
from dscoder.verify.candidates import code_block_closed
from dscoder.verify.settings import VerifySettings
from dscoder.verify.tests import TestsError

DEFAULT_MAX_TOKENS = 256  # a completion with verify and no max_tokens (OpenAI's 16 holds no function)
STDERR_SHOWN = 600  # characters of each candidate's stderr in the answer


# ---- the sandbox pool --------------------------------------------------------------------------

def _pool(app):
    """The app's sandbox pool (created on first use, in a worker thread: probing the sandbox and
    leasing uids block), or an ApiError saying why model-written code cannot run here."""
    from dscoder.execute import sandbox
    from dscoder.execute.programs import Executor
    from dscoder.execute.toolchains import toolchain

    pool = getattr(app.state, "verify_pool", None)
    if pool is not None:
        return pool
    iso = sandbox.isolation()
    if iso.warning:
        raise ApiError(503, f"verification is unavailable on this server: {iso.warning} It runs model-written code "
                            "only in the full sandbox", "server_unavailable", param="verify",
                       code="sandbox_unavailable")
    missing = toolchain("python").missing()
    if missing:
        raise ApiError(503, f"verification is unavailable on this server: Python cannot run in the sandbox "
                            f"({missing})", "server_unavailable", param="verify", code="sandbox_unavailable")
    pool = Executor()
    app.state.verify_pool = pool
    return pool


def close_pool(app) -> None:
    """At shutdown: wait for the runs in flight, free the sandbox uids."""
    pool = getattr(app.state, "verify_pool", None)
    if pool is not None:
        app.state.verify_pool = None
        pool.close()


# ---- checks on the request ----------------------------------------------------------------------

def _refuse_with_verify(body, fields: dict[str, bool]) -> None:
    for name, given in fields.items():
        if given:
            raise ApiError(400, f"{name} cannot be combined with verify", param=name)
    if body.n != 1:
        raise ApiError(400, "verify answers with one choice; ask for candidates with verify.n, not n", param="n")


def _settings(body) -> VerifySettings:
    v = body.verify
    return VerifySettings(n=v.n, temperature=v.temperature, top_p=v.top_p, seed=v.seed, timeout=v.timeout,
                          model_tests=v.model_tests)


async def _suite(engine: Engine, body, context: str, settings: VerifySettings, base: SamplingParams):
    v = body.verify
    try:
        return await run.tests_for(engine, context, settings, base, tests_text=v.tests, examples_too=v.use_doctests)
    except TestsError as e:
        param = "verify.tests" if v.tests is not None and "request's tests" in str(e) else "verify"
        raise ApiError(400, str(e), param=param, code="invalid_tests") from None
    except EngineBusy as e:
        raise ApiError(429, str(e), "rate_limit_error", code="server_busy",
                       headers={"Retry-After": str(int(e.retry_after))}) from None


def _candidate(judged: select.Judged) -> dict:
    o, c = judged.outcome, judged.candidate
    stderr = o.stderr.strip()
    if len(stderr) > STDERR_SHOWN:
        stderr = "...\n" + stderr[-STDERR_SHOWN:]
    return {"index": c.index, "status": o.status, "passed": o.passed, "checks_passed": o.passed_checks,
            "checks_total": o.total_checks, "failures": o.failures, "stderr": stderr, "tokens": c.tokens,
            "finish_reason": c.finish_reason, "seconds": round(o.seconds, 3)}


def _tests(suite) -> dict:
    return {"source": suite.origin, "checks": suite.checks, "skipped": dict(suite.skipped),
            "description": suite.describe()}


def _verification(result: select.Result, suite) -> dict:
    return {"passed": result.passed, "chosen": result.chosen.index, "summary": result.summary(),
            "code": result.chosen.candidate.code, "tests": _tests(suite), "asked": result.asked,
            "candidates": [_candidate(j) for j in result.judged]}


# ---- one verified request ------------------------------------------------------------------------

async def _events(engine: Engine, ids: list[int], base: SamplingParams, settings: VerifySettings, to_code,
                  judge: select.Judge, stop_at_first: bool, until) -> AsyncIterator:
    """`run.generate`, the engine's refusals turned into the API's errors."""
    try:
        async for event in run.generate(engine, ids, base, settings, to_code, judge, stop_at_first, until):
            yield event
    except ContextLengthError as e:
        raise ApiError(400, str(e), param="prompt", code="context_length_exceeded") from None
    except EngineBusy as e:
        raise ApiError(429, str(e), "rate_limit_error", code="server_busy",
                       headers={"Retry-After": str(int(e.retry_after))}) from None
    except GenerationError as e:
        raise ApiError(400, str(e), param="prompt") from None


async def _until_disconnect(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def _whole(request: Request, events: AsyncIterator) -> select.Result:
    """The result, or a 499 when the client goes away first (which cancels what still runs)."""
    async def last() -> select.Result:
        result = None
        async for event in events:
            result = event
        return result

    work, gone = asyncio.ensure_future(last()), asyncio.ensure_future(_until_disconnect(request))
    try:
        done, _ = await asyncio.wait({work, gone}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        gone.cancel()
    if work not in done:
        work.cancel()
        await asyncio.gather(work, return_exceptions=True)
        raise ApiError(499, "client disconnected", code="client_closed_request")
    return work.result()


async def _respond(request: Request, state: ServerState, body, head: dict, ids: list[int], base: SamplingParams,
                   context: str, to_code, choice, until=None) -> dict:
    """Shared by both routes: `choice(result)` makes the one choice (a completion's text, a message);
    `until` ends a candidate early (a chat answer once its code block closes)."""
    engine = state.ready()
    if not state.verify:
        raise ApiError(400, "verification is turned off on this server (dscoder serve --no-verify)", param="verify",
                       code="verification_disabled")
    pool = await run_in_threadpool(_pool, request.app)
    settings = _settings(body)
    suite = await _suite(engine, body, context, settings, base)
    judge = select.Judge(pool, suite, settings.timeout)
    events = _events(engine, ids, base, settings, to_code, judge, body.verify.stop_at_first, until)
    if body.stream:
        return event_stream(_stream(head, suite, events, choice))
    result = await _whole(request, events)
    usage = {"prompt_tokens": len(ids), "completion_tokens": sum(j.candidate.tokens for j in result.judged)}
    usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
    return {**head, "choices": [choice(result, False)], "usage": usage,
            "verification": _verification(result, suite)}


async def _stream(head: dict, suite, events: AsyncIterator, choice) -> AsyncIterator[str]:
    base = {"id": head["id"], "created": head["created"], "model": head["model"]}
    yield sse({**base, "object": "verification.tests", "tests": _tests(suite)})
    try:
        async for event in events:
            if isinstance(event, select.Result):
                yield sse({**head, "choices": [choice(event, True)], "verification": _verification(event, suite)})
            else:
                yield sse({**base, "object": "verification.verdict", "verdict": _candidate(event)})
    except (ApiError, UserError) as e:  # after the 200 went out: an error event, as the engine's failures are sent
        yield sse_error(getattr(e, "message", str(e)))
    yield DONE


async def completion(body, request: Request, state: ServerState) -> dict:
    """/v1/completions with `verify`: the code is the prompt followed by each completion."""
    from dscoder.serve.submit import eos_stop, sampling_params

    engine = state.ready()
    _refuse_with_verify(body, {"echo": body.echo, "suffix": body.suffix is not None,
                               "logprobs": body.logprobs is not None, "repo": getattr(body, "repo", None) is not None})
    prompts = body.prompts()
    if len(prompts) != 1 or not isinstance(prompts[0], str):
        raise ApiError(400, "verify takes one text prompt (the code the completions continue)", param="prompt")
    prompt = prompts[0]
    max_tokens = body.max_tokens if "max_tokens" in body.model_fields_set else DEFAULT_MAX_TOKENS
    ids = await run_in_threadpool(text_ids, engine, prompt, "prompt")
    check_ids_fit(engine, len(ids), max_tokens, "prompt")
    base = sampling_params(body, max_tokens, eos_stop(engine.tokenizer), False)
    base = replace(base, stop=base.stop or run.PYTHON_STOPS)
    head = {"id": f"cmpl-{uuid.uuid4().hex}", "object": "text_completion", "created": int(time.time()),
            "model": state.model_name}

    def choice(result: select.Result, streamed: bool) -> dict:
        chosen = result.chosen.candidate
        return {"index": 0, "text": chosen.text, "logprobs": None, "finish_reason": chosen.finish_reason}

    return await _respond(request, state, body, head, ids, base, prompt, lambda text: prompt + text, choice)


async def chat(body, request: Request, state: ServerState) -> dict:
    """/v1/chat/completions with `verify`: the code is each answer's code block (an answer ends once
    that block closes); examples are read from the user's messages."""
    from dscoder.serve.submit import sampling_params
    from dscoder.tokenizer.chat import stop_token_ids

    engine = state.ready()
    _refuse_with_verify(body, {"logprobs": body.logprobs})
    messages = [{"role": "system" if m.role == "developer" else m.role, "content": m.text()} for m in body.messages]
    ids = await run_in_threadpool(chat_ids, engine, messages)
    limit = body.max_completion_tokens or body.max_tokens or max(1, engine.max_model_len - len(ids))
    check_ids_fit(engine, len(ids), limit, "messages")
    base = sampling_params(body, limit, stop_token_ids(engine.tokenizer), False)
    context = "\n".join(m["content"] for m in messages if m["role"] == "user")
    head = {"id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion.chunk" if body.stream
            else "chat.completion", "created": int(time.time()), "model": state.model_name}

    def choice(result: select.Result, streamed: bool) -> dict:
        chosen = result.chosen.candidate
        key = "delta" if streamed else "message"
        return {"index": 0, key: {"role": "assistant", "content": chosen.text}, "logprobs": None,
                "finish_reason": chosen.finish_reason}

    return await _respond(request, state, body, head, ids, base, context,
                          lambda answer: extract_code(answer, "python"), choice, until=code_block_closed)


__all__ = ["completion", "chat", "close_pool"]
