"""OpenAI's error envelope `{"error": {"message", "type", "param", "code"}}`, and the app's
exception handlers that put every failure in it: a client written for OpenAI reads our
refusals as it reads OpenAI's, and a bad request is never a bare 500 or FastAPI's own shape.
"""

from __future__ import annotations

import logging
import re

from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from dscoder.serve.protocol import UNICODE_ERROR

log = logging.getLogger(__name__)
# pydantic names the member of a union that failed ("prompt.str", "messages.0.content.list[TextPart].0.type"):
# not a field of the request, so left out of the `param` a client sees.
_UNION_MEMBER = re.compile(r"^(str|int|float|bool|none|[A-Za-z-]+\[.*\])$")


class ApiError(Exception):
    """A refusal a route raises; the handler below answers it as OpenAI's envelope."""

    def __init__(self, status: int, message: str, type: str = "invalid_request_error", param: str | None = None,
                 code: str | None = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type, param, code
        self.headers = headers or {}

    def response(self) -> JSONResponse:
        body = {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}
        return JSONResponse(body, status_code=self.status, headers=self.headers)


async def api_error(_, e: ApiError) -> JSONResponse:
    return e.response()


async def invalid_request(_, e: RequestValidationError) -> JSONResponse:
    """A body that does not parse or fails protocol.py's checks: a 400 whose `param` names the field.
    A value no member of a union takes fails in each member; text that is not Unicode is named
    rather than the other members' "not a list"."""
    errors = e.errors()
    first = next((x for x in errors if x.get("type") == UNICODE_ERROR), errors[0] if errors else {})
    where = [str(p) for p in first.get("loc", ()) if p != "body" and not _UNION_MEMBER.match(str(p))]
    param = ".".join(where) or None
    message = first.get("msg", "invalid request")
    if first.get("type") == "json_invalid":
        message, param = "the request body is not valid JSON", None
    return ApiError(400, f"{param + ': ' if param else ''}{message}", param=param).response()


async def http_error(_, e: StarletteHTTPException) -> JSONResponse:
    """Starlette's own refusals (an unknown path, a wrong method) in the envelope too."""
    kind = "not_found_error" if e.status_code == 404 else "invalid_request_error"
    return ApiError(e.status_code, str(e.detail), kind).response()


async def unexpected(_, e: Exception) -> JSONResponse:
    """A bug: logged with its traceback; the client learns only the exception's type."""
    log.exception("unhandled error")
    return ApiError(500, f"internal error: {type(e).__name__}", "server_error").response()


EXCEPTION_HANDLERS = {ApiError: api_error, RequestValidationError: invalid_request,
                      StarletteHTTPException: http_error, Exception: unexpected}
