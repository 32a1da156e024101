"""Real `dscoder` HTTP servers for the tests, and helpers to watch them without racing them.

- `LiveServer`: uvicorn in a background thread of the test process, on port 0 (the port is read
  back from the bound socket, so there is no race for a free one); the app is `create_app` around
  a real engine over a real (tiny) model.
- `dscoder_serve`: `dscoder serve --port 0` as a subprocess; its port is read from the socket it
  listens on.
- `StepGate`: holds the engine's model steps until the test lets them through, so a test knows
  where a generation stands when it hangs up, fills the queue or sends more work.
- `wait_for`, `settle`: poll a condition; the bound only stops a leak from hanging the suite,
  it is never a timing assertion.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import torch
import uvicorn

from dscoder.serve.engine import Engine, Stats

ROOT = Path(__file__).resolve().parents[1]


def wait_for(predicate, what: str | Callable[[], str], bound: float = 60.0, interval: float = 0.01):
    """Poll `predicate` until it returns something truthy (generous bound, never a timing check).
    `what` names the condition in the failure (a callable is asked only then, e.g. for a log's tail)."""
    deadline = time.monotonic() + bound
    while not (value := predicate()):
        if time.monotonic() > deadline:
            raise AssertionError(f"never happened: {what() if callable(what) else what}")
        time.sleep(interval)
    return value


class LiveServer:
    """`with LiveServer(app) as live:` serves `app` at `live.url` until the block ends."""

    def __init__(self, app):
        self.app = app
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning",
                                                    lifespan="on", timeout_graceful_shutdown=5))
        self.port = 0
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> "LiveServer":
        self._thread = threading.Thread(target=self.server.run, name="uvicorn", daemon=True)
        self._thread.start()
        wait_for(lambda: self.server.started or not self._thread.is_alive(), "the test server started")
        assert self.server.started, "the test server stopped while starting"
        self.port = self.server.servers[0].sockets[0].getsockname()[1]
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=30)


def listening_port(pid: int) -> int | None:
    """The TCP port process `pid` listens on (from /proc), or None while it listens on none."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = fd.readlink().name
        except OSError:  # closed meanwhile
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:["):-1])
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                return int(fields[1].rsplit(":", 1)[1], 16)
    return None


@contextmanager
def dscoder_serve(args: list[str], log: Path, bound: float = 300, prefix: Sequence[str] = ()
                  ) -> Iterator[tuple[subprocess.Popen, str]]:
    """`dscoder serve ARGS` on loopback port 0 as a subprocess: yields (process, base URL) once
    /health answers 200, and stops the process after the block.  `prefix` goes before the
    command, for a wrapper that execs it in the same process (`prlimit --nofile=...`)."""
    argv = [*prefix, sys.executable, "-m", "dscoder.cli.app", "serve", *args, "--host", "127.0.0.1", "--port", "0"]
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def ready() -> str | None:
        assert proc.poll() is None, f"dscoder serve exited with {proc.returncode}:\n{log.read_text()[-4000:]}"
        port = listening_port(proc.pid)
        if port is None:
            return None
        url = f"http://127.0.0.1:{port}"
        try:
            with urllib.request.urlopen(url + "/health", timeout=5) as resp:
                return url if resp.status == 200 else None
        except (urllib.error.URLError, OSError):  # 503 while the model loads
            return None

    try:
        url = wait_for(ready, lambda: f"dscoder serve became healthy:\n{log.read_text()[-4000:]}", bound, 0.1)
        assert f" on {url}/ " in log.read_text(), "the ready line names the port actually bound"
        yield proc, url
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


def stats(engine: Engine) -> Stats:
    """`engine.stats()` read from another thread: read again if the engine thread changed its
    queue while it was being counted (a deque raises RuntimeError then)."""
    for _ in range(1000):
        try:
            return engine.stats()
        except RuntimeError:
            time.sleep(0.001)
    return engine.stats()


def idle(engine: Engine) -> bool:
    now = stats(engine)
    return now.running == 0 and now.waiting == 0 and now.blocks_used == 0


def settle(engine: Engine, bound: float = 60.0) -> Stats:
    """The engine's stats once nothing runs, waits or holds a KV block; fails (not a timing
    assertion: the bound is only there so a leak cannot hang the suite) if that never happens."""
    wait_for(lambda: idle(engine), lambda: f"the engine went idle: {stats(engine)}", bound, 0.02)
    return stats(engine)


def counter(engine: Engine, name: str, **labels) -> float:
    """A sample of the engine's Prometheus registry (0 before it was first counted)."""
    return engine.metrics.registry.get_sample_value(name, labels) or 0.0


def one_request_in(engine: Engine) -> Callable[[], bool]:
    """For `StepGate.through(..., only_while=...)`: true from when the next request is queued until
    one more request has finished, so the engine takes steps only for that request's sake."""
    finished = counter(engine, "dscoder_e2e_request_latency_seconds_count")
    queued = False

    def in_engine() -> bool:
        nonlocal queued
        queued = queued or stats(engine).waiting > 0
        return queued and counter(engine, "dscoder_e2e_request_latency_seconds_count") == finished

    return in_engine


class StepGate:
    """`with StepGate(model) as gate:` holds every forward of `model` (every step of an engine
    over it) until the test lets it through; leaving the block opens the gate for good.

    A generation cannot run ahead of the test, or finish, while the gate holds it: a test that
    hangs up, fills the queue or sends a request beside it knows the generation is in flight,
    and how many steps it has taken, instead of slowing the model and hoping."""

    def __init__(self, model: torch.nn.Module):
        self.model = model
        self._cond = threading.Condition()
        self._permits = 0
        self._open = False
        self.held = 0  # forwards waiting at the gate now
        self.passed = 0  # forwards let through

    def __enter__(self) -> "StepGate":
        self._hook = self.model.register_forward_pre_hook(self._wait)
        return self

    def __exit__(self, *exc) -> None:
        self.open()
        self._hook.remove()

    def open(self) -> None:
        """Let every forward through from now on (as leaving the block does), from any thread."""
        with self._cond:
            self._open = True
            self._cond.notify_all()

    def _wait(self, *_) -> None:
        with self._cond:
            self.held += 1
            self._cond.notify_all()
            self._cond.wait_for(lambda: self._open or self._permits > 0)
            if not self._open:
                self._permits -= 1
            self.held -= 1
            self.passed += 1
            self._cond.notify_all()

    def run_until(self, predicate, what: str, only_while: Callable[[], bool] | None = None, bound: float = 120.0):
        """Let forwards through one at a time until `predicate()` is truthy (checked while a
        forward is held, when the engine cannot move), and only while `only_while()` holds;
        returns the predicate's value."""
        deadline = time.monotonic() + bound
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self.held, timeout=0.01)
            if value := predicate():
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"never happened: {what} ({self.passed} forwards let through)")
            with self._cond:
                if self.held and not self._permits and (only_while is None or only_while()):
                    self._permits, target = 1, self.passed + 1
                    self._cond.notify_all()
                    self._cond.wait_for(lambda: self.passed >= target, timeout=deadline - time.monotonic())
                else:
                    self._cond.wait(timeout=0.01)

    def through(self, call: Callable, what: str, only_while: Callable[[], bool] | None = None):
        """`call()` in another thread, forwards let through (while `only_while()`) until it returns; its result."""
        pool = ThreadPoolExecutor(1)
        try:
            future = pool.submit(call)
            self.run_until(future.done, what, only_while)
            return future.result()
        finally:
            pool.shutdown(wait=False)  # after a failure the call ends once the gate opens


def parse_metrics(text: str) -> dict[tuple[str, tuple], float]:
    """Prometheus text -> {(sample name, sorted labels): value}."""
    from prometheus_client.parser import text_string_to_metric_families

    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}
