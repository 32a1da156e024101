"""Collapse repeated log messages, so an attack cannot turn the server's log into a flood.

Out of descriptors, asyncio logs a traceback for every connection it fails to accept (tens of
thousands a second), and a slowloris client makes the server log a closed connection per
socket.  `RepeatFilter` lets the first of identical messages through, drops the ones that follow
within a window (tracebacks included), and appends to the first one after the window how many
it dropped.  The standard library has no such filter and no maintained package offers one, so
it is written here (it is small).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict

WINDOW = 10.0  # seconds an identical message is held back after it was written
_KEYS = 1024  # distinct messages remembered (the oldest forgotten first)


class RepeatFilter(logging.Filter):
    """A handler filter: identical records (logger, level, message) at most once per `window` seconds."""

    def __init__(self, window: float = WINDOW):
        super().__init__()
        self.window = window
        self._seen: OrderedDict[tuple, list] = OrderedDict()  # key -> [when written, dropped since]
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        key = (record.name, record.levelno, message)
        now = time.monotonic()
        with self._lock:
            entry = self._seen.get(key)
            if entry is not None and now - entry[0] < self.window:
                entry[1] += 1
                return False
            dropped = entry[1] if entry is not None else 0
            self._seen[key] = [now, 0]
            self._seen.move_to_end(key)
            while len(self._seen) > _KEYS:
                self._seen.popitem(last=False)
        if dropped:
            record.msg, record.args = f"{message} [{dropped} identical messages dropped since the last one shown]", ()
        return True


def limit_repeats(*loggers: str, window: float = WINDOW) -> None:
    """Give every handler of `loggers` ("" is the root) a RepeatFilter of its own (once)."""
    for name in loggers:
        for handler in logging.getLogger(name or None).handlers:
            if not any(isinstance(f, RepeatFilter) for f in handler.filters):
                handler.addFilter(RepeatFilter(window))
