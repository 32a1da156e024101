"""The HTTP API: OpenAI's completions (with a native `suffix` for FIM) and chat, llama.cpp's /infill,
tokenize/detokenize, health, Prometheus metrics, and the web playground at `/`.

Every error leaves in OpenAI's envelope `{"error": {"message", "type", "param", "code"}}`:
bad input is a 400 that names the field (never a 500), an unknown model a 404, a full
queue a 429 with Retry-After, a server still loading a 503 with Retry-After.  A client
that goes away, streaming or not, cancels its generation, which frees its KV blocks.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import secrets
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import aclosing
from dataclasses import dataclass, field, replace
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from dscoder.tokenizer.chat import ChatTemplateError, chat_prompt, stop_token_ids
from dscoder.tokenizer.fim import FimUnsupportedError, fim_prompt, fim_tokens
from dscoder.infer.generate import ContextLengthError, GenerationError, SamplingParams
from dscoder.serve.engine import Engine, EngineBusy, Output, RequestHandle
from dscoder.serve.protocol import ChatRequest, CompletionRequest, DetokenizeRequest, InfillRequest, TokenizeRequest

log = logging.getLogger(__name__)
STATIC = Path(__file__).parent / "static"
OPEN_PATHS = ("/", "/health", "/static")  # reachable without the API key (the playground asks for it)
# pydantic names the member of a union that failed ("prompt.str", "messages.0.content.list[TextPart].0.type"):
# not a field of the request, so left out of the `param` a client sees.
_UNION_MEMBER = re.compile(r"^(str|int|float|bool|none|[A-Za-z-]+\[.*\])$")
# Sampling runs in float32, where a tiny (or denormal) parameter becomes inf or 0 and the
# probabilities NaN.  Below 1e-5 a temperature is greedy decoding (vLLM's rule); below 1e-6
# top_p keeps only the likeliest token anyway (no vocabulary is large enough for that token to
# be less likely), so raising it there changes nothing; a repetition penalty below 1e-6 is as
# extreme as any smaller one.
_GREEDY_BELOW, _FLOAT32_SAFE = 1e-5, 1e-6


class ApiError(Exception):
    def __init__(self, status: int, message: str, type: str = "invalid_request_error", param: str | None = None,
                 code: str | None = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type, param, code
        self.headers = headers or {}

    def response(self) -> JSONResponse:
        body = {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}
        return JSONResponse(body, status_code=self.status, headers=self.headers)


@dataclass
class ServerState:
    model_name: str
    engine: Engine | None = None
    load_error: str | None = None
    started: float = field(default_factory=time.time)

    def ready(self) -> Engine:
        if self.engine is None:
            why = f"the model failed to load: {self.load_error}" if self.load_error else "the model is still loading"
            raise ApiError(503, why, "server_unavailable", code="model_loading", headers={"Retry-After": "5"})
        return self.engine

    def check_model(self, name: str | None) -> None:
        if name is not None and name != self.model_name:
            raise ApiError(404, f"the model {name!r} does not exist; this server serves {self.model_name!r}",
                           param="model", code="model_not_found")


def _params(body, max_tokens: int, stop_ids: list[int], logprobs: bool) -> SamplingParams:
    temperature = body.temperature if body.temperature >= _GREEDY_BELOW else 0.0
    return SamplingParams(max_new_tokens=max_tokens, temperature=temperature, top_k=body.top_k,
                          top_p=max(body.top_p, _FLOAT32_SAFE), min_p=body.min_p,
                          repetition_penalty=max(getattr(body, "repetition_penalty", 1.0), _FLOAT32_SAFE),
                          frequency_penalty=getattr(body, "frequency_penalty", 0.0),
                          presence_penalty=getattr(body, "presence_penalty", 0.0),
                          seed=body.seed if body.seed is None or body.seed >= 0 else None,
                          stop_token_ids=tuple(stop_ids), stop=tuple(body.stop) if isinstance(body.stop, list)
                          else ((body.stop,) if body.stop else ()), logprobs=logprobs)


def _submit(engine: Engine, ids: list[int], params: SamplingParams, count: int, prompt_field: str, **kwargs
            ) -> list[RequestHandle]:
    """`count` requests for one prompt; all or none (a refusal cancels the ones already queued)."""
    handles: list[RequestHandle] = []
    try:
        for i in range(count):
            seed = params.seed + i if params.seed is not None and i else params.seed  # n samples differ
            handles.append(engine.submit(ids, replace(params, seed=seed), **kwargs))
    except BaseException as e:
        for h in handles:
            h.cancel()
        if isinstance(e, ContextLengthError):
            raise ApiError(400, str(e), param=prompt_field, code="context_length_exceeded") from None
        if isinstance(e, GenerationError):
            raise ApiError(400, str(e), param=getattr(e, "param", None) or prompt_field) from None
        if isinstance(e, EngineBusy):
            raise ApiError(429, str(e), "rate_limit_error", code="server_busy",
                           headers={"Retry-After": str(int(e.retry_after))}) from None
        raise
    return handles


async def _merged(handles: list[RequestHandle]) -> AsyncIterator[tuple[int, Output]]:
    """(index, output) from several handles as they arrive."""
    queue: asyncio.Queue = asyncio.Queue()

    async def pump(i: int, handle: RequestHandle) -> None:
        async for out in handle:
            await queue.put((i, out))

    tasks = [asyncio.ensure_future(pump(i, h)) for i, h in enumerate(handles)]
    remaining = len(handles)
    try:
        while remaining:
            i, out = await queue.get()
            if out.finish_reason is not None:
                remaining -= 1
            yield i, out
    finally:
        for t in tasks:
            t.cancel()
        for h in handles:
            h.cancel()


async def _until_disconnect(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def _collect(request: Request, handles: list[RequestHandle],
                   until: Callable[[int, Output], bool] | None = None) -> list[list[Output]]:
    """All outputs of every handle; a client that disconnects first cancels them all, and so does
    `until` returning True for an output (the outputs so far are returned)."""
    results: list[list[Output]] = [[] for _ in handles]

    async def gather() -> None:
        async with aclosing(_merged(handles)) as outputs:  # closing it cancels what still runs
            async for i, out in outputs:
                results[i].append(out)
                if until is not None and until(i, out):
                    return

    work, gone = asyncio.ensure_future(gather()), asyncio.ensure_future(_until_disconnect(request))
    done, _ = await asyncio.wait({work, gone}, return_when=asyncio.FIRST_COMPLETED)
    if work not in done:
        work.cancel()
        for h in handles:
            h.cancel()
        raise ApiError(499, "client disconnected", code="client_closed_request")
    gone.cancel()
    work.result()
    _raise_engine_error(results)
    return results


def _raise_engine_error(results: list[list[Output]]) -> None:
    for outs in results:
        if outs and outs[-1].finish_reason == "error":
            raise ApiError(500, f"generation failed: {outs[-1].text}", "server_error")


def _sse(obj) -> str:
    return f"data: {json.dumps(obj, ensure_ascii=False)}\n\n"


def _sse_error(message: str) -> str:
    """An engine failure after the stream's 200 went out: the envelope as an event, as vLLM sends it."""
    return _sse({"error": {"message": message, "type": "server_error", "param": None, "code": None}})


def _finish(reason: str | None) -> str | None:
    return {"cancelled": "abort"}.get(reason, reason)


def create_app(state: ServerState, loader: Callable[[], Engine] | None = None, api_key: str | None = None,
               on_load_error: Callable[[str], None] | None = None) -> FastAPI:
    """The app over `state`; with a `loader`, the engine is built in the background after start-up
    (GET /health answers 503 until it is ready)."""

    async def lifespan(app: FastAPI):
        if loader is not None and state.engine is None:
            def load() -> None:
                try:
                    state.engine = loader().start()
                except Exception as e:  # reported by /health and the command, never a crash mid-request
                    log.exception("loading the model failed")
                    state.load_error = f"{type(e).__name__}: {e}"
                    if on_load_error:
                        on_load_error(state.load_error)
            threading.Thread(target=load, name="dscoder-load", daemon=True).start()
        yield
        if state.engine is not None:
            state.engine.shutdown()

    app = FastAPI(title="dscoder", version="0.1.0", lifespan=lifespan,
                  description="DeepSeek-Coder serving: OpenAI-compatible completions (with FIM suffix) and chat, "
                              "llama.cpp-compatible /infill, tokenize/detokenize, metrics.")
    app.state.server = state

    @app.exception_handler(ApiError)
    async def _api_error(_, e: ApiError):
        return e.response()

    @app.exception_handler(RequestValidationError)
    async def _invalid(_, e: RequestValidationError):
        first = e.errors()[0] if e.errors() else {}
        where = [str(p) for p in first.get("loc", ()) if p != "body" and not _UNION_MEMBER.match(str(p))]
        param = ".".join(where) or None
        message = first.get("msg", "invalid request")
        if first.get("type") == "json_invalid":
            message, param = "the request body is not valid JSON", None
        return ApiError(400, f"{param + ': ' if param else ''}{message}", param=param).response()

    @app.exception_handler(StarletteHTTPException)
    async def _http(_, e: StarletteHTTPException):
        kind = "not_found_error" if e.status_code == 404 else "invalid_request_error"
        return ApiError(e.status_code, str(e.detail), kind).response()

    @app.exception_handler(Exception)
    async def _unexpected(_, e: Exception):
        log.exception("unhandled error")
        return ApiError(500, f"internal error: {type(e).__name__}", "server_error").response()

    @app.middleware("http")
    async def _auth(request: Request, call_next):
        path = request.url.path
        if api_key and not (path == "/" or any(path.startswith(p) for p in OPEN_PATHS[1:])):
            given = request.headers.get("authorization", "")
            if not secrets.compare_digest(given.encode(), f"Bearer {api_key}".encode()):
                return ApiError(401, "missing or wrong API key (send Authorization: Bearer <key>)",
                                code="invalid_api_key", headers={"WWW-Authenticate": "Bearer"}).response()
        return await call_next(request)

    # ------------------------------------------------------------------ plain endpoints
    @app.get("/", include_in_schema=False)
    async def playground():
        index = STATIC / "index.html"
        if not index.is_file():
            raise ApiError(404, "the playground is not installed", "not_found_error")
        return FileResponse(index)

    if STATIC.is_dir():
        app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/health")
    async def health():
        if state.engine is None:
            status = "error" if state.load_error else "loading"
            return JSONResponse({"status": status, "error": state.load_error}, status_code=503,
                                headers={"Retry-After": "5"})
        return {"status": "ok"}

    @app.get("/v1/models")
    async def models():
        engine = state.ready()
        return {"object": "list", "data": [{"id": state.model_name, "object": "model", "created": int(state.started),
                                            "owned_by": "dscoder", "max_model_len": engine.max_model_len}]}

    @app.get("/metrics")
    async def metrics():
        from prometheus_client import CONTENT_TYPE_LATEST

        engine = state.ready()
        return Response(engine.metrics.render(), media_type=CONTENT_TYPE_LATEST)

    @app.post("/tokenize")
    async def tokenize(body: TokenizeRequest):
        engine = state.ready()
        state.check_model(body.model)
        text = body.content if body.content is not None else body.prompt
        if text is None:
            raise ApiError(400, "give the text as `content` (or `prompt`)", param="content")
        ids = engine.tokenizer.encode(text, add_bos=body.add_special and engine.tokenizer.bos_id is not None)
        return {"tokens": ids, "count": len(ids), "max_model_len": engine.max_model_len}

    @app.post("/detokenize")
    async def detokenize(body: DetokenizeRequest):
        engine = state.ready()
        state.check_model(body.model)
        _check_ids(engine, body.tokens, "tokens")
        return {"content": engine.tokenizer.decode(body.tokens)}

    # ------------------------------------------------------------------ completions
    @app.post("/v1/completions")
    async def completions(body: CompletionRequest, request: Request):
        engine = state.ready()
        state.check_model(body.model)
        tok = engine.tokenizer
        if body.suffix is not None and body.echo:
            raise ApiError(400, "echo cannot be combined with suffix (the prompt is rewritten for infilling)",
                           param="echo")
        jobs = []  # (prompt ids, echo text)
        for prompt in body.prompts():
            if body.suffix is not None:
                if not isinstance(prompt, str):
                    raise ApiError(400, "suffix needs a text prompt", param="prompt")
                try:
                    text = fim_prompt(prompt, body.suffix, fim_tokens(tok, state.model_name))
                except FimUnsupportedError as e:
                    raise ApiError(400, str(e), param="suffix", code="fim_unsupported") from None
                jobs.append((tok.encode(text), ""))
            elif isinstance(prompt, str):
                jobs.append((tok.encode(prompt), prompt))
            else:
                _check_ids(engine, prompt, "prompt")
                jobs.append((list(prompt), tok.decode(prompt)))
        want_lp = body.logprobs is not None
        handles, prompt_tokens = [], 0
        try:
            for ids, _ in jobs:
                params = _params(body, body.max_tokens or 16, [tok.eos_id] if tok.eos_id is not None else [], want_lp)
                handles += _submit(engine, ids, params, body.n, "prompt", top_logprobs=body.logprobs or 0,
                                   prompt_logprobs=want_lp and body.echo)
                prompt_tokens += len(ids)
        except ApiError:
            for h in handles:
                h.cancel()
            raise
        rid, created = f"cmpl-{uuid.uuid4().hex}", int(time.time())
        echoes = [echo for _, echo in jobs for _ in range(body.n)] if body.echo else None
        head = {"id": rid, "object": "text_completion", "created": created, "model": state.model_name}

        if body.stream:
            async def events() -> AsyncIterator[str]:
                completion_tokens = 0
                if echoes:
                    for i, text in enumerate(echoes):
                        yield _sse({**head, "choices": [{"index": i, "text": text, "logprobs": None,
                                                         "finish_reason": None}]})
                offsets = [len(e) for e in echoes] if echoes else [0] * len(handles)
                async for i, out in _merged(handles):
                    completion_tokens += out.token_id is not None
                    if out.finish_reason == "error":
                        yield _sse_error(out.text)
                        continue
                    scored = want_lp and out.token_id is not None
                    if not out.text and out.finish_reason is None and not scored:
                        continue
                    lp = None
                    if scored:  # text offsets run on over the choice's tokens, as in the non-streamed answer
                        lp = _completion_logprobs(tok, [out], offsets[i])
                        offsets[i] += len(lp["tokens"][0])
                    yield _sse({**head, "choices": [{"index": i, "text": out.text, "logprobs": lp,
                                                     "finish_reason": _finish(out.finish_reason)}]})
                if body.stream_options and body.stream_options.include_usage:
                    yield _sse({**head, "choices": [], "usage": _usage(prompt_tokens, completion_tokens)})
                yield "data: [DONE]\n\n"
            return StreamingResponse(events(), media_type="text/event-stream")

        results = await _collect(request, handles)
        choices, completion_tokens = [], 0
        for i, (outs, handle) in enumerate(zip(results, handles)):
            text = "".join(o.text for o in outs)
            completion_tokens += sum(o.token_id is not None for o in outs)
            lp = None
            if want_lp:
                lp = _completion_logprobs(tok, outs, len(echoes[i]) if echoes else 0)
                if echoes:
                    lp = _merge_prompt_logprobs(tok, handle, lp)
            choices.append({"index": i, "text": (echoes[i] if echoes else "") + text, "logprobs": lp,
                            "finish_reason": _finish(outs[-1].finish_reason)})
        return {**head, "choices": choices, "usage": _usage(prompt_tokens, completion_tokens)}

    # ------------------------------------------------------------------ chat
    @app.post("/v1/chat/completions")
    async def chat(body: ChatRequest, request: Request):
        engine = state.ready()
        state.check_model(body.model)
        tok = engine.tokenizer
        messages = [{"role": "system" if m.role == "developer" else m.role, "content": m.text()}
                    for m in body.messages]
        try:
            ids = tok.encode(chat_prompt(tok, messages), add_bos=False)
        except ChatTemplateError as e:
            raise ApiError(400, str(e), param="messages") from None
        limit = body.max_completion_tokens or body.max_tokens or max(1, engine.max_model_len - len(ids))
        want_lp = body.logprobs
        params = _params(body, limit, stop_token_ids(tok), want_lp)
        handles = _submit(engine, ids, params, body.n, "messages", top_logprobs=(body.top_logprobs or 0) if want_lp
                          else 0)
        rid, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
        head = {"id": rid, "object": "chat.completion.chunk" if body.stream else "chat.completion",
                "created": created, "model": state.model_name}

        if body.stream:
            async def events() -> AsyncIterator[str]:
                for i in range(len(handles)):
                    yield _sse({**head, "choices": [{"index": i, "delta": {"role": "assistant", "content": ""},
                                                     "logprobs": None, "finish_reason": None}]})
                completion_tokens = 0
                async for i, out in _merged(handles):
                    completion_tokens += out.token_id is not None
                    if out.finish_reason == "error":
                        yield _sse_error(out.text)
                        continue
                    if out.text:
                        lp = {"content": _chat_logprobs(tok, [out])} if want_lp and out.token_id is not None else None
                        yield _sse({**head, "choices": [{"index": i, "delta": {"content": out.text}, "logprobs": lp,
                                                         "finish_reason": None}]})
                    if out.finish_reason is not None:
                        yield _sse({**head, "choices": [{"index": i, "delta": {}, "logprobs": None,
                                                         "finish_reason": _finish(out.finish_reason)}]})
                if body.stream_options and body.stream_options.include_usage:
                    yield _sse({**head, "choices": [], "usage": _usage(len(ids), completion_tokens)})
                yield "data: [DONE]\n\n"
            return StreamingResponse(events(), media_type="text/event-stream")

        results = await _collect(request, handles)
        choices = []
        for i, outs in enumerate(results):
            choices.append({"index": i, "message": {"role": "assistant", "content": "".join(o.text for o in outs)},
                            "logprobs": {"content": _chat_logprobs(tok, outs)} if want_lp else None,
                            "finish_reason": _finish(outs[-1].finish_reason)})
        generated = sum(o.token_id is not None for outs in results for o in outs)
        return {**head, "choices": choices, "usage": _usage(len(ids), generated)}

    # ------------------------------------------------------------------ llama.cpp /infill
    @app.post("/infill")
    async def infill(body: InfillRequest, request: Request):
        engine = state.ready()
        state.check_model(body.model)
        tok = engine.tokenizer
        # Repository context in DeepSeek-Coder's repository-level layout: each file after a
        # "#path" line, then the file being edited.
        extra = "".join(f"#{chunk.filename}\n{chunk.text}\n" for chunk in body.input_extra)
        try:
            text = fim_prompt(extra + body.input_prefix + body.prompt, body.input_suffix,
                              fim_tokens(tok, state.model_name))
        except FimUnsupportedError as e:
            raise ApiError(400, str(e), param="input_prefix", code="fim_unsupported") from None
        ids = tok.encode(text)
        limit = body.n_predict if body.n_predict > 0 else max(1, engine.max_model_len - len(ids))
        deadline = time.monotonic() + body.t_max_predict_ms / 1000 if body.t_max_predict_ms else None
        params = _params(body, limit, [tok.eos_id] if tok.eos_id is not None else [], False)
        [handle] = _submit(engine, ids, params, 1, "input_prefix", deadline=deadline)
        indent = IndentCut(body.n_indent)
        started = time.perf_counter()

        def final(content: str, predicted: int, last: Output, cut: bool) -> dict:
            # llama.cpp's stop types: "eos" (end of middle), "word" (a stop string), "limit" (n_predict,
            # t_max_predict_ms, the context, or the n_indent cut)
            elapsed = (time.perf_counter() - started) * 1000
            reason = last.finish_reason
            stop_type = ("limit" if cut or reason == "length" else
                         ("word" if last.token_id is not None else "eos") if reason == "stop" else "none")
            return {"content": content, "stop": True, "model": state.model_name, "tokens_predicted": predicted,
                    "tokens_evaluated": len(ids), "stop_type": stop_type, "truncated": False,
                    "timings": {"prompt_n": len(ids), "predicted_n": predicted, "predicted_ms": elapsed,
                                "predicted_per_second": predicted / elapsed * 1000 if elapsed else 0.0}}

        if body.stream:
            async def events() -> AsyncIterator[str]:
                predicted = 0
                async for _, out in _merged([handle]):
                    predicted += out.token_id is not None
                    if out.finish_reason == "error":
                        yield _sse_error(out.text)
                        return
                    text, cut = indent.push(out.text)
                    if text:
                        yield _sse({"content": text, "stop": False})
                    if cut or out.finish_reason is not None:
                        handle.cancel()
                        yield _sse(final("", predicted, out, cut))
                        return
            return StreamingResponse(events(), media_type="text/event-stream")

        pieces, cut = [], False

        def take(_: int, out: Output) -> bool:
            nonlocal cut
            text, cut = indent.push(out.text)
            pieces.append(text)
            return cut  # the middle ends at the cut: stop generating there

        [outs] = await _collect(request, [handle], until=take)
        return final("".join(pieces), sum(o.token_id is not None for o in outs), outs[-1], cut)

    return app


class IndentCut:
    """llama.cpp's n_indent: once a new line starts with less indentation than n_indent, the
    middle ends there (its newline and indentation kept, as llama.cpp keeps them).  As in
    llama.cpp, a blank (or whitespace-only) line counts: its indentation is what precedes its newline."""

    def __init__(self, n_indent: int):
        self.n_indent, self.seen_newline, self.column, self.in_indent = n_indent, False, 0, False

    def push(self, text: str) -> tuple[str, bool]:
        if self.n_indent <= 0:
            return text, False
        for i, ch in enumerate(text):
            if ch == "\n":
                if self.in_indent and self.seen_newline and self.column < self.n_indent:
                    return text[:i], True
                self.seen_newline, self.column, self.in_indent = True, 0, True
            elif self.in_indent and ch in " \t":
                self.column += 1
            elif self.in_indent:
                self.in_indent = False
                if self.seen_newline and self.column < self.n_indent:
                    return text[:i], True
        return text, False


def _check_ids(engine: Engine, ids: list[int], param: str) -> None:
    """Before ids are decoded (echo, detokenize): the tokenizer would fail on one outside the vocabulary."""
    vocab = engine.model.config.vocab_size
    if bad := [t for t in ids if not 0 <= t < vocab]:
        raise ApiError(400, f"token id {bad[0]} is outside the vocabulary (0..{vocab - 1})", param=param)


def _usage(prompt: int, completion: int) -> dict:
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _token_text(tok, token_id: int) -> str:
    return tok.decode([token_id])


def _completion_logprobs(tok, outs: list[Output], offset: int) -> dict:
    lp = {"tokens": [], "token_logprobs": [], "top_logprobs": [], "text_offset": []}
    for out in outs:
        if out.token_id is None:
            continue
        text = _token_text(tok, out.token_id)
        lp["tokens"].append(text)
        lp["token_logprobs"].append(out.logprob)
        lp["top_logprobs"].append({_token_text(tok, i): v for i, v in out.top_logprobs} if out.top_logprobs else None)
        lp["text_offset"].append(offset)
        offset += len(text)
    return lp


def _merge_prompt_logprobs(tok, handle: RequestHandle, lp: dict) -> dict:
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


def _chat_logprobs(tok, outs: list[Output]) -> list[dict]:
    items = []
    for out in outs:
        if out.token_id is None:
            continue
        text = _token_text(tok, out.token_id)
        top = [{"token": _token_text(tok, i), "logprob": v, "bytes": list(_token_text(tok, i).encode())}
               for i, v in (out.top_logprobs or [])]
        items.append({"token": text, "logprob": out.logprob, "bytes": list(text.encode()), "top_logprobs": top})
    return items
