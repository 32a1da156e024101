"""The HTTP API: OpenAI's completions (with a native `suffix` for FIM) and chat, llama.cpp's /infill,
tokenize/detokenize, health, Prometheus metrics, and the web playground at `/`.

Every error leaves in OpenAI's envelope `{"error": {"message", "type", "param", "code"}}`:
bad input is a 400 that names the field (never a 500), an unknown model a 404, a body over
--max-body-bytes a 413 (before it is read), a full queue a 429 with Retry-After, a request
that waited longer than --queue-timeout or a server still loading a 503 with Retry-After.  A
client that goes away, streaming or not, cancels its generation, which frees its KV blocks.

This module builds the app and runs its start-up and shut-down; the routes live in
routes_openai.py, routes_llama.py and routes_ops.py, the envelope in errors.py, the API key in
auth.py.  Everything a route needs is on `app.state` (`server`: the `ServerState`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware

from dscoder.serve import routes_llama, routes_openai, routes_ops, verification
from dscoder.serve.auth import require_api_key
from dscoder.serve.body_limit import BodyLimit
from dscoder.serve.engine import Engine
from dscoder.serve.errors import EXCEPTION_HANDLERS
from dscoder.serve.state import ServerState

__all__ = ["ServerState", "create_app"]
log = logging.getLogger(__name__)


def _load(state: ServerState, loader: Callable[[], Engine], on_load_error: Callable[[str], None] | None) -> None:
    try:
        state.engine = loader().start()
    except Exception as e:  # reported by /health and the command, never a crash mid-request
        log.exception("loading the model failed")
        state.load_error = f"{type(e).__name__}: {e}"
        if on_load_error:
            on_load_error(state.load_error)


@asynccontextmanager
async def lifespan(app: FastAPI):
    """Start loading the model in the background (the server answers 503 meanwhile); stop the engine at exit."""
    state: ServerState = app.state.server
    if app.state.loader is not None and state.engine is None:
        threading.Thread(target=_load, args=(state, app.state.loader, app.state.on_load_error), name="dscoder-load",
                         daemon=True).start()
    yield
    if state.engine is not None:
        state.engine.shutdown()
    verification.close_pool(app)  # the sandbox pool of `verify` requests, if one was made


def create_app(state: ServerState, loader: Callable[[], Engine] | None = None, api_key: str | None = None,
               on_load_error: Callable[[str], None] | None = None) -> FastAPI:
    """The app over `state`; with a `loader`, the engine is built in the background after start-up
    (GET /health answers 503 until it is ready)."""
    app = FastAPI(title="dscoder", version="0.1.0", lifespan=lifespan, exception_handlers=EXCEPTION_HANDLERS,
                  middleware=[Middleware(BaseHTTPMiddleware, dispatch=require_api_key),
                              Middleware(BodyLimit, limit=state.body_limit)],
                  description="DeepSeek-Coder serving: OpenAI-compatible completions (with FIM suffix) and chat, "
                              "llama.cpp-compatible /infill, tokenize/detokenize, metrics.")
    app.state.server, app.state.api_key = state, api_key
    app.state.loader, app.state.on_load_error = loader, on_load_error
    for routes in (routes_ops, routes_openai, routes_llama):
        app.include_router(routes.router)
    routes_ops.mount_static(app)
    return app
