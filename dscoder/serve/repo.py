"""Repository context on the server: `dscoder serve --repo DIR` and the `repo` request field.

The server reads one repository, the one named when it started, never a path a client sends:
a request's `repo.file` only says which file of that repository the cursor is in, and a path
that climbs out of it is a 400. The index (`dscoder.repo.context.RepoIndex`) is shared by all
requests and looked at again when it is older than `REFRESH_SECONDS`, so files saved in the
editor since are read anew (only those); a lock keeps one request from reading it while
another refreshes it. All of it runs in a worker thread, off the event loop.
"""

from __future__ import annotations

import threading
import time

from dscoder.errors import UserError
from dscoder.repo.context import RepoContext, RepoIndex, with_context
from dscoder.serve.engine import Engine
from dscoder.serve.errors import ApiError
from dscoder.serve.prompts import encode

REFRESH_SECONDS = 2.0


class RepoSource:
    def __init__(self, index: RepoIndex):
        self.index = index
        self._lock = threading.Lock()

    def prefix(self, engine: Engine, path: str | None, prefix: str, suffix: str, reserve: int,
               max_tokens: int | None = None) -> tuple[str, RepoContext]:
        """(the prompt prefix with the repository context, the context), as `with_context` sizes it,
        at most `max_tokens` of context when the request caps it."""
        def count(text: str) -> int:
            return len(encode(engine.tokenizer, text, False))

        with self._lock:
            if time.monotonic() - self.index.refreshed > REFRESH_SECONDS:
                self.index.refresh(near=path)
            window = engine.max_model_len
            if max_tokens is not None:  # cap the context: shrink the window it may fill to the file plus the cap
                own = count(prefix + suffix)
                window = min(window, own + max_tokens + reserve + 8)
            try:
                return with_context(self.index, path, prefix, suffix, window, reserve, count)
            except UserError as e:
                raise ApiError(400, str(e), param="repo.file") from None


def require(source: RepoSource | None) -> RepoSource:
    if source is None:
        raise ApiError(400, "this server was started without --repo: it has no repository to read context from",
                       param="repo", code="repo_unavailable")
    return source


def context_summary(context: RepoContext | None) -> dict | None:
    """What the answer says of the context it read (dscoder's extension field `repo_context`): its
    tokens, and each block's path and kind, so a client sees what the prompt cost and why."""
    if context is None:
        return None
    return {"tokens": context.tokens, "blocks": [{"path": context.shown_prefix + b.path, "kind": b.kind,
                                                  "tokens": b.tokens} for b in context.blocks],
            "left_out": len(context.left_out)}
