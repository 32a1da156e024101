"""The API key: with one set, every path but the playground and /health asks for
`Authorization: Bearer KEY` (the playground page asks the user for it; load balancers probe
/health without it).  The key is read from `app.state.api_key`, set by `create_app`.
"""

from __future__ import annotations

import secrets

from fastapi import Request

from dscoder.serve.errors import ApiError

OPEN_PATHS = ("/", "/health", "/static")  # reachable without the API key (the playground asks for it)


def is_open(path: str) -> bool:
    return path == "/" or any(path.startswith(p) for p in OPEN_PATHS[1:])


async def require_api_key(request: Request, call_next):
    """HTTP middleware: a 401 in OpenAI's envelope for a missing or wrong key (compared in constant time)."""
    api_key = request.app.state.api_key
    if api_key and not is_open(request.url.path):
        given = request.headers.get("authorization", "")
        if not secrets.compare_digest(given.encode(), f"Bearer {api_key}".encode()):
            return ApiError(401, "missing or wrong API key (send Authorization: Bearer <key>)",
                            code="invalid_api_key", headers={"WWW-Authenticate": "Bearer"}).response()
    return await call_next(request)
