"""N candidates for one prompt, sampled in one batch by the serving engine.

Candidate 0 is greedy, so verification with N = 1 is plain greedy decoding and every larger N
starts from the answer greedy would have given; candidates 1..N-1 are sampled at the verify
settings' temperature and top-p (0.8 and 0.95 by default: CodeT's sampling settings), each
with its own seed (`seed + index`), so a candidate is the same whichever N it was drawn among.

All N go to the engine at once: it decodes them in one batched forward per step (several
times the throughput of one at a time on a CPU), shares the prompt's KV blocks through its
prefix cache, and decodes greedy rows batch-invariantly. Each candidate is yielded as soon as
it finishes, so its sandboxed run starts while the others still decode.

An answer in chat form may end as soon as its first code block closes (`until=code_block_closed`):
what is verified is that code, and the prose a chat model writes after it is not worth decoding
N times. Decoding is causal, so the code is what the full answer would have held, unless a
later, longer block would have been extracted instead (`infer.assist.extract_code` takes the
longest).

The engine is anything with `submit(prompt_ids, SamplingParams)` returning a handle that is
async-iterable over outputs with `text`, `token_id` and `finish_reason`, and `cancel()`:
`dscoder.serve.engine.Engine`, which `verify` (below `serve` in the layers) never imports.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace

from dscoder.infer.generate import GenerationError, SamplingParams
from dscoder.verify.settings import VerifySettings


@dataclass
class Candidate:
    index: int
    text: str  # what the model wrote
    code: str  # the program under test: the prompt's code with the completion, or an answer's code block
    finish_reason: str | None
    tokens: int
    seconds: float  # from submission to its last token


_CLOSED_BLOCK = re.compile(r"^(`{3,}|~{3,})[ \t]*[\w+#.-]*[^\n]*\n.*?^\1[ \t]*\n", re.S | re.M)


def code_block_closed(text: str) -> bool:
    """Whether `text` holds a fenced code block whose closing fence line has ended."""
    return _CLOSED_BLOCK.search(text) is not None


def params_for(settings: VerifySettings, base: SamplingParams, n: int | None = None) -> list[SamplingParams]:
    """The sampling parameters of candidates 0..n-1: greedy first, then sampled with their own seeds."""
    n = settings.n if n is None else n
    sampled = replace(base, max_new_tokens=settings.max_tokens or base.max_new_tokens,
                      temperature=settings.temperature, top_p=settings.top_p)
    return [replace(base, max_new_tokens=sampled.max_new_tokens, temperature=0.0, seed=None)] + \
        [replace(sampled, seed=settings.seed + i) for i in range(1, n)]


async def sample(engine, ids: list[int], params: list[SamplingParams], to_code: Callable[[str], str],
                 first: int = 0, until: Callable[[str], bool] | None = None) -> AsyncIterator[Candidate]:
    """Candidates `first..first+len(params)-1` for prompt `ids`, each yielded as it finishes (or as soon
    as `until(text)` holds: its decoding is cancelled then). Leaving the iteration early cancels those
    still decoding (their KV blocks are freed)."""
    handles = []
    try:
        for p in params:
            handles.append(engine.submit(ids, p))
    except BaseException:
        for h in handles:
            h.cancel()
        raise
    started = time.perf_counter()

    async def one(i: int, handle) -> Candidate:
        text, tokens, reason = "", 0, None
        async for out in handle:
            if out.finish_reason == "error":
                raise GenerationError(f"candidate {i} failed in the engine: {out.text}")
            text += out.text
            tokens += out.token_id is not None
            reason = out.finish_reason or reason
            if until is not None and out.finish_reason is None and until(text):
                handle.cancel()
                reason = "stop"
                break
        return Candidate(i, text, to_code(text), reason, tokens, time.perf_counter() - started)

    tasks = [asyncio.ensure_future(one(first + i, h)) for i, h in enumerate(handles)]
    try:
        for next_done in asyncio.as_completed(tasks):
            yield await next_done
    finally:
        for task in tasks:
            task.cancel()
        for h in handles:
            h.cancel()  # a no-op for those that finished


async def collect(engine, ids: list[int], params: list[SamplingParams], to_code: Callable[[str], str],
                  until: Callable[[str], bool] | None = None) -> list[Candidate]:
    """Every candidate, in candidate order."""
    found = [c async for c in sample(engine, ids, params, to_code, until=until)]
    return sorted(found, key=lambda c: c.index)


__all__ = ["Candidate", "params_for", "sample", "collect", "code_block_closed"]
