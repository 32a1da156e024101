"""llama.cpp server's routes, for the editor plugins written against it (llama.vscode and
similar): /infill (fill-in-the-middle over DeepSeek-Coder's repository layout, with n_indent and
t_max_predict_ms), /tokenize and /detokenize (which also take vLLM's field names)."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from dscoder.serve.engine import Output, RequestHandle
from dscoder.serve.errors import ApiError
from dscoder.serve.indent import IndentCut
from dscoder.serve.outputs import collect, generated, merged, started
from dscoder.serve.prompts import decode_ids, encode, fim_ids
from dscoder.serve.protocol import DetokenizeRequest, InfillRequest, TokenizeRequest
from dscoder.serve.repo import context_summary, require
from dscoder.serve.sse import event_stream, sse, sse_error
from dscoder.serve.state import serving
from dscoder.serve.submit import eos_stop, sampling_params, submit

router = APIRouter()
DEFAULT_MAX_TOKENS = 128  # the answer's tokens kept free beside the repository context when n_predict is -1


@dataclass
class _InfillAnswer:
    """The last object of an /infill answer (whole, or the last event of a stream): llama.cpp's fields."""

    model: str
    prompt_n: int
    repo_context: dict | None = None
    started: float = field(default_factory=time.perf_counter)

    def final(self, content: str, predicted: int, last: Output, cut: bool) -> dict:
        # llama.cpp's stop types: "eos" (end of middle), "word" (a stop string), "limit" (n_predict,
        # t_max_predict_ms, the context, or the n_indent cut)
        elapsed = (time.perf_counter() - self.started) * 1000
        reason = last.finish_reason
        stop_type = ("limit" if cut or reason == "length" else
                     ("word" if last.token_id is not None else "eos") if reason == "stop" else "none")
        final = {"content": content, "stop": True, "model": self.model, "tokens_predicted": predicted,
                 "tokens_evaluated": self.prompt_n, "stop_type": stop_type, "truncated": False,
                 "timings": {"prompt_n": self.prompt_n, "predicted_n": predicted, "predicted_ms": elapsed,
                             "predicted_per_second": predicted / elapsed * 1000 if elapsed else 0.0}}
        return final if self.repo_context is None else {**final, "repo_context": self.repo_context}


async def _infill_events(handle: RequestHandle, indent: IndentCut, answer: _InfillAnswer) -> AsyncIterator[str]:
    """llama.cpp's stream: `{"content", "stop": false}` pieces, then the final object; the
    generation stops at the n_indent cut."""
    predicted = 0
    async for _, out in merged([handle]):
        predicted += out.token_id is not None
        if out.finish_reason == "error":
            yield sse_error(out.text)
            return
        text, cut = indent.push(out.text)
        if text:
            yield sse({"content": text, "stop": False})
        if cut or out.finish_reason is not None:
            handle.cancel()
            yield sse(answer.final("", predicted, out, cut))
            return


@router.post("/infill")
async def infill(body: InfillRequest, request: Request):
    state, engine = serving(request, body.model)
    tok = engine.tokenizer
    # Repository context in DeepSeek-Coder's repository-level layout: each file after a
    # "#path" line, then the file being edited.
    extra = "".join(f"#{chunk.filename}\n{chunk.text}\n" for chunk in body.input_extra)
    prefix, context = body.input_prefix + body.prompt, None
    if body.repo is not None or (not body.input_extra and state.repo is not None):
        # the repository's context (dscoder's extension): asked for with `repo`, or by default on a
        # server started with --repo when the client sends no context of its own
        ref = body.repo
        reserve = (body.n_predict if body.n_predict > 0 else DEFAULT_MAX_TOKENS) + 8
        prefix, context = await run_in_threadpool(require(state.repo).prefix, engine, ref.file if ref else None,
                                                  prefix, body.input_suffix, reserve, ref.max_tokens if ref else None)
    ids = await run_in_threadpool(fim_ids, engine, state.model_name, extra + prefix, body.input_suffix,
                                  "input_prefix")
    limit = body.n_predict if body.n_predict > 0 else max(1, engine.max_model_len - len(ids))
    deadline = time.monotonic() + body.t_max_predict_ms / 1000 if body.t_max_predict_ms else None
    params = sampling_params(body, limit, eos_stop(tok), False)
    [handle] = submit(engine, ids, params, 1, "input_prefix", deadline=deadline)
    await started(request, [handle], engine, state.limits.queue_timeout)
    indent = IndentCut(body.n_indent)
    answer = _InfillAnswer(state.model_name, len(ids), context_summary(context))

    if body.stream:
        return event_stream(_infill_events(handle, indent, answer))

    pieces, cut = [], False

    def take(_: int, out: Output) -> bool:
        nonlocal cut
        text, cut = indent.push(out.text)
        pieces.append(text)
        return cut  # the middle ends at the cut: stop generating there

    [outs] = await collect(request, [handle], until=take)
    return answer.final("".join(pieces), generated(outs), outs[-1], cut)


@router.post("/tokenize")
async def tokenize(body: TokenizeRequest, request: Request):
    _, engine = serving(request, body.model)
    text = body.content if body.content is not None else body.prompt
    if text is None:
        raise ApiError(400, "give the text as `content` (or `prompt`)", param="content")
    ids = await run_in_threadpool(encode, engine.tokenizer, text,
                                  body.add_special and engine.tokenizer.bos_id is not None)
    rendered = await run_in_threadpool(_tokens_json, ids, engine.max_model_len)
    return Response(rendered, media_type="application/json")


def _tokens_json(ids: list[int], max_model_len: int) -> bytes:
    """/tokenize's answer as JSON, rendered a slice of ids at a time: one `json.dumps` of millions
    of ids would hold the GIL (and so the event loop) for a second; between slices it is let go."""
    step = 1 << 16
    tokens = ",".join(json.dumps(ids[i:i + step], separators=(",", ":"))[1:-1] for i in range(0, len(ids), step))
    return f'{{"tokens":[{tokens}],"count":{len(ids)},"max_model_len":{max_model_len}}}'.encode()


@router.post("/detokenize")
async def detokenize(body: DetokenizeRequest, request: Request):
    _, engine = serving(request, body.model)
    return {"content": await run_in_threadpool(decode_ids, engine, body.tokens, "tokens")}
