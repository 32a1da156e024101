"""A real `dscoder` HTTP server on loopback inside the test process, and helpers to watch it.

uvicorn runs in a background thread on a socket the test bound itself (port 0, so no race
for a free port); the app is `create_app` around a real engine over a real (tiny) model.
"""

from __future__ import annotations

import socket
import threading
import time
from contextlib import contextmanager

import torch
import uvicorn

from dscoder.serve.engine import Engine, Stats


class LiveServer:
    """`with LiveServer(app) as live:` serves `app` at `live.url` until the block ends."""

    def __init__(self, app):
        self.app = app
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on",
                                                    timeout_graceful_shutdown=5))
        self.port = 0
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> "LiveServer":
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        self._thread = threading.Thread(target=self.server.run, kwargs={"sockets": [sock]}, name="uvicorn",
                                        daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the test server did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=30)


def stats(engine: Engine) -> Stats:
    """`engine.stats()` read from another thread: read again if the engine thread changed its
    queue while it was being counted (a deque raises RuntimeError then)."""
    for _ in range(1000):
        try:
            return engine.stats()
        except RuntimeError:
            time.sleep(0.001)
    return engine.stats()


def settle(engine: Engine, bound: float = 60.0) -> Stats:
    """The engine's stats once nothing runs, waits or holds a KV block; fails (not a timing
    assertion: the bound is only there so a leak cannot hang the suite) if that never happens."""
    deadline = time.monotonic() + bound
    while True:
        now = stats(engine)
        if now.running == 0 and now.waiting == 0 and now.blocks_used == 0:
            return now
        if time.monotonic() > deadline:
            raise AssertionError(f"the engine never went idle: {now}")
        time.sleep(0.02)


def wait_for(predicate, what: str, bound: float = 60.0):
    """Poll `predicate` until it returns something truthy (generous bound, never a timing check)."""
    deadline = time.monotonic() + bound
    while not (value := predicate()):
        if time.monotonic() > deadline:
            raise AssertionError(f"never happened: {what}")
        time.sleep(0.01)
    return value


@contextmanager
def slowed(model: torch.nn.Module, seconds: float = 0.01):
    """Each forward of `model` takes at least `seconds` longer, so a long request is still
    running when the test acts on it (the model itself is unchanged)."""
    hook = model.register_forward_pre_hook(lambda *_: time.sleep(seconds))
    try:
        yield
    finally:
        hook.remove()


def parse_metrics(text: str) -> dict[tuple[str, tuple], float]:
    """Prometheus text -> {(sample name, sorted labels): value}."""
    from prometheus_client.parser import text_string_to_metric_families

    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}
