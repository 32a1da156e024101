"""Server-sent events as OpenAI and llama.cpp stream them: `data: <json>` lines, each ending
with a blank line."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

from fastapi.responses import StreamingResponse

DONE = "data: [DONE]\n\n"  # OpenAI's last event


def sse(obj) -> str:
    return f"data: {json.dumps(obj, ensure_ascii=False)}\n\n"


def sse_error(message: str) -> str:
    """An engine failure after the stream's 200 went out: the envelope as an event, as vLLM sends it."""
    return sse({"error": {"message": message, "type": "server_error", "param": None, "code": None}})


def event_stream(events: AsyncIterator[str]) -> StreamingResponse:
    return StreamingResponse(events, media_type="text/event-stream")
