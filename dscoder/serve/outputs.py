"""Reading a request's engine outputs on the event loop: merged as they arrive, or collected
whole.  Whoever stops reading cancels what still runs, so a client that goes away (or a route
that has what it needs) frees its KV blocks at once.

Before either, `started` waits for the engine to take the request out of its queue, and refuses
it (503 with Retry-After, as vLLM and TGI answer when overloaded) once it has waited longer than
--queue-timeout: every request gets an answer within a bound, however long the queue.  A stream
waits there too, so its refusal is a 503, not an error after a 200.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import aclosing

from fastapi import Request

from dscoder.serve.engine import Engine, Output, RequestHandle
from dscoder.serve.errors import ApiError
from dscoder.serve.submit import cancel_all


def generated(outs: Iterable[Output]) -> int:
    """How many of the outputs carry a generated token (a final one may carry none)."""
    return sum(o.token_id is not None for o in outs)


async def merged(handles: list[RequestHandle]) -> AsyncIterator[tuple[int, Output]]:
    """(index, output) from several handles as they arrive; closing it early cancels them all."""
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
        cancel_all(handles)


async def _until_disconnect(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def started(request: Request, handles: list[RequestHandle], engine: Engine, timeout: float) -> None:
    """Return once the engine has admitted every one of `handles`; past `timeout` seconds, or when
    the client goes away meanwhile, cancel them all and raise (503 with Retry-After, or 499)."""
    async def all_admitted() -> None:
        for h in handles:
            await h.left_queue()

    admitted = asyncio.ensure_future(all_admitted())
    gone = asyncio.ensure_future(_until_disconnect(request))
    try:
        done, _ = await asyncio.wait({admitted, gone}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        admitted.cancel()
        gone.cancel()
    if admitted in done:
        return
    cancel_all(handles)
    if gone in done:
        raise ApiError(499, "client disconnected", code="client_closed_request")
    engine.metrics.queue_timeouts.inc()
    raise ApiError(503, f"the request waited {timeout:g} s in the queue without starting (the server's "
                        "--queue-timeout); retry later", "server_unavailable", code="queue_timeout",
                   headers={"Retry-After": str(int(engine.retry_after()))})


async def collect(request: Request, handles: list[RequestHandle],
                  until: Callable[[int, Output], bool] | None = None) -> list[list[Output]]:
    """All outputs of every handle; a client that disconnects first cancels them all, and so does
    `until` returning True for an output (the outputs so far are returned)."""
    results: list[list[Output]] = [[] for _ in handles]

    async def gather() -> None:
        async with aclosing(merged(handles)) as outputs:  # closing it cancels what still runs
            async for i, out in outputs:
                results[i].append(out)
                if until is not None and until(i, out):
                    return

    work, gone = asyncio.ensure_future(gather()), asyncio.ensure_future(_until_disconnect(request))
    done, _ = await asyncio.wait({work, gone}, return_when=asyncio.FIRST_COMPLETED)
    if work not in done:
        work.cancel()
        cancel_all(handles)
        raise ApiError(499, "client disconnected", code="client_closed_request")
    gone.cancel()
    work.result()
    for outs in results:
        if outs and outs[-1].finish_reason == "error":
            raise ApiError(500, f"generation failed: {outs[-1].text}", "server_error")
    return results
