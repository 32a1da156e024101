"""An ASGI middleware that refuses request bodies over a size limit with 413 before they are
read whole.

A declared Content-Length over the limit is refused before a byte of the body is read; a
chunked body (or one that runs past its declared length) is counted as it arrives and refused
the moment it passes the limit.  Either way the answer closes the connection, so the client
stops sending.  A body within the limit is read here and handed to the app as one message
(FastAPI reads every body whole before a route runs anyway), so nothing behind this sees more
than the limit.  The limit comes from `limit()` per request: the default depends on the
model's context, known only once it has loaded.

Not Starlette's own RequestBodyLimitMiddleware (recent Starlette only, newer than the project
requires): its limit is fixed when the app is built, before the model that sizes ours has
loaded, its 413 is plain text instead of OpenAI's envelope, and it leaves the connection open
for a client that goes on sending.  And a plain ASGI middleware rather than BaseHTTPMiddleware,
which cannot stop a body half-way; FastAPI would also turn an exception raised while it reads the
body into a 400 "error parsing the body".
"""

from __future__ import annotations

from collections.abc import Callable

from dscoder.serve.errors import ApiError

_BODY_METHODS = {"POST", "PUT", "PATCH"}


def _too_large(limit: int) -> ApiError:
    return ApiError(413, f"the request body is larger than {limit} bytes (the server's --max-body-bytes)",
                    code="request_too_large", headers={"Connection": "close"})


class BodyLimit:
    def __init__(self, app, limit: Callable[[], int]):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope["method"] not in _BODY_METHODS:
            return await self.app(scope, receive, send)
        limit = self.limit()
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            return await _too_large(limit).response()(scope, receive, send)
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return  # the client left (or sent its body too slowly): nobody to answer
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                return await _too_large(limit).response()(scope, receive, send)
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body, replayed = b"".join(chunks), False

        async def replay():
            """The body as one message, then the connection's own messages (a disconnect)."""
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)
