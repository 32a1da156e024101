"""What one client may take of the server: body size, time to send a request, time to wait in
the queue, connections.  Settings only (no FastAPI or uvicorn here), so `dscoder serve --help`
reads them without importing the web stack; `ServeConfig` offers them as options.

Each bound turns a way of holding the server (a huge body, a connection that trickles its
headers, a request queued behind hundreds of others) into a prompt, named refusal:
413, a closed connection, 503 with Retry-After.
"""

from __future__ import annotations

from dataclasses import dataclass

from dscoder.errors import ConfigError
from dscoder.settings import setting

MIB = 1 << 20
BYTES_PER_TOKEN = 8  # JSON text of code is ~4 bytes a token with its escapes; a token id "12345," is 6
FD_RESERVE = 64  # descriptors kept back from connections: the model's files, logs, pipes, a /health probe


@dataclass(frozen=True)
class HttpLimits:
    """Bounds on what one client may ask of the server; `dscoder serve` offers every field."""

    max_body_bytes: int | None = setting(
        None, "Largest request body in bytes; a larger one is refused with 413 before it is read "
              "(default: 8 bytes per token of context times --max-running prompts, at least 1 MiB).")
    header_timeout: float = setting(
        10.0, "Seconds a connection has to send a complete request head (from connecting, or from its "
              "previous response); a slower one is closed.")
    body_timeout: float = setting(
        60.0, "Seconds a request body may take to arrive once its head has; a slower one is answered 408 and "
              "its connection closed.")
    queue_timeout: float = setting(
        60.0, "Seconds a request may wait in the queue before it starts; a longer wait is refused with 503 "
              "and Retry-After.")
    max_connections: int | None = setting(
        None, "Open connections at most; past it a new connection closes the longest-idle one (default: the "
              "open-file limit less 64).")

    def check(self) -> None:
        """Refuse impossible numbers before anything loads; the message names the option."""
        for name in ("header_timeout", "body_timeout", "queue_timeout"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"--{name.replace('_', '-')} must be positive, got {getattr(self, name)}")
        for name in ("max_body_bytes", "max_connections"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(f"--{name.replace('_', '-')} must be at least 1, got {value}")

    def body_limit(self, max_model_len: int | None, max_running: int | None) -> int:
        """--max-body-bytes, else room for --max-running prompts that each fill the context
        (the most one request can usefully send), at least 1 MiB; 1 MiB while the model loads."""
        if self.max_body_bytes is not None:
            return self.max_body_bytes
        if max_model_len is None or max_running is None:
            return MIB
        return max(MIB, BYTES_PER_TOKEN * max_model_len * max_running)

    def connection_limit(self, open_files: int) -> int:
        """--max-connections, else the open-file limit less what the process needs besides."""
        if self.max_connections is not None:
            return self.max_connections
        return max(8, open_files - FD_RESERVE)
