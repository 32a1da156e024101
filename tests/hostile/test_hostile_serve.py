"""`dscoder serve` stays live under abuse: each attack of issue 17 against the server, replayed.

- Huge bodies: a request that takes seconds of tokenizing does not stop /health (proved by
  order: several health answers arrive while the big answer has not begun to), and a body
  over --max-body-bytes is a 413 before it is read (declared or chunked).
- Lone surrogates ("\\ud800") in any text field are a 400 naming the field, not a 500.
- Slow clients: a connection that trickles its request head, or stalls in its body, is cut
  after --header-timeout / --body-timeout; hundreds of them under a small open-file limit do
  not lock /health out, and the log stays small; the soft open-file limit is raised to the hard one.
- Waiting without end: a request that waits longer than --queue-timeout is a 503 with
  Retry-After (a stream too, before its first byte); under a load of 200 every request is
  answered, none is lost, and the server is healthy after.

Servers are real: `dscoder serve` subprocesses (their own GIL, descriptors and stderr) or the
app in-process (`LiveServer`) where a test holds the engine's steps (`StepGate`).  Nothing
asserts a duration: where liveness is the point, the order of answers proves it.
"""

from __future__ import annotations

import asyncio
import json
import re
import select
import socket
import statistics
import time
from pathlib import Path

import pytest

httpx = pytest.importorskip("httpx")
h11 = pytest.importorskip("h11")
pytest.importorskip("uvicorn")

from dscoder.hub import load_model  # noqa: E402
from dscoder.serve.api import ServerState, create_app  # noqa: E402
from dscoder.serve.engine import Engine, EngineConfig  # noqa: E402
from dscoder.serve.limits import HttpLimits  # noqa: E402
from dscoder.tokenizer.tokenizer import Tokenizer  # noqa: E402
from serve_live import LiveServer, StepGate, dscoder_serve, parse_metrics, settle, wait_for  # noqa: E402

MB = 1 << 20
CODE = "def add(a, b):\n    return a + b\n\n\nclass Point:\n    x: int = 0\n    y: int = 0\n\n"
MODEL = "tiny-coder"
BOUND = 120.0  # a deadline that only stops a broken server from hanging the suite, never a measurement


# ---------------------------------------------------------------------------- helpers
class Raw:
    """One HTTP/1.1 exchange on a plain socket, parsed by h11: the test decides what is sent when."""

    def __init__(self, port: int, timeout: float = BOUND):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.conn = h11.Connection(h11.CLIENT)

    def head(self, method: str, path: str, headers: dict[str, str]) -> "Raw":
        self.sock.sendall(self.conn.send(h11.Request(method=method, target=path,
                                                     headers=[("Host", "127.0.0.1"), *headers.items()])))
        return self

    def send(self, data: bytes) -> None:
        self.sock.sendall(self.conn.send(h11.Data(data=data)))

    def end(self) -> None:
        self.sock.sendall(self.conn.send(h11.EndOfMessage()))

    def post(self, path: str, body: bytes) -> "Raw":
        self.head("POST", path, {"Content-Type": "application/json", "Content-Length": str(len(body))})
        self.send(body)
        self.end()
        return self

    def answering(self) -> bool:
        """Whether the answer has begun to arrive (never waits)."""
        return bool(select.select([self.sock], [], [], 0)[0])

    def response(self) -> tuple[int, dict[str, str], bytes]:
        """(status, headers, body) of the answer, read whole."""
        status, headers, body = None, {}, b""
        while True:
            event = self.conn.next_event()
            if event is h11.NEED_DATA:
                self.conn.receive_data(self.sock.recv(1 << 20))
            elif isinstance(event, h11.Response):
                status = event.status_code
                headers = {k.decode().lower(): v.decode() for k, v in event.headers}
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, (h11.EndOfMessage, h11.ConnectionClosed)):
                return status, headers, body

    def close(self) -> None:
        self.sock.close()


def envelope(status: int, headers: dict, body: bytes, expected: int, param=..., code=...) -> dict:
    """OpenAI's error envelope with the expected status (and param and code, unless ...)."""
    assert status == expected, (status, body[:500])
    err = json.loads(body)["error"]
    assert set(err) == {"message", "type", "param", "code"} and err["message"], err
    if param is not ...:
        assert err["param"] == param, err
    if code is not ...:
        assert err["code"] == code, err
    return err


def cut(sock: socket.socket) -> bytes | None:
    """What the server sent before it closed `sock`, or None while it is open (reads only what is there)."""
    got = b""
    while select.select([sock], [], [], 0)[0]:
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, BrokenPipeError):
            return got
        if not chunk:
            return got
        got += chunk
    return None


def log_tail(log: Path) -> str:
    return log.read_text(errors="replace")[-4000:]


@pytest.fixture(scope="module")
def tiny(fim_model_dir):
    return load_model(fim_model_dir), Tokenizer.load(fim_model_dir)


@pytest.fixture(scope="module")
def big_bodies(fim_model_dir, tmp_path_factory):
    """`dscoder serve` that takes bodies up to 64 MiB (so the big requests are read, then tokenized)."""
    log = tmp_path_factory.mktemp("serve-big") / "serve.log"
    with dscoder_serve(["--model", str(fim_model_dir), "--max-body-bytes", str(64 * MB), "--log-level", "warning"],
                       log) as (proc, url):
        yield url, int(url.rsplit(":", 1)[1]), httpx.get(url + "/v1/models", timeout=30).json()["data"][0]["id"]


# ---------------------------------------------------------------------------- huge bodies
@pytest.mark.parametrize("megabytes", [2, pytest.param(10, marks=pytest.mark.slow)], ids=lambda m: f"{m}MB")
def test_health_answers_while_a_huge_tokenize_runs(big_bodies, megabytes):
    """Today a 10 MB /tokenize stalls every request for 20-30 s (the tokenizer held the GIL for
    the whole text, so the event loop stood still).  Sent whole, then /health asked again and
    again: several answers must come while the big request's answer has not begun to arrive.
    (Completions, chat and /infill refuse a text that long before tokenizing it: next test.)"""
    url, port, _ = big_bodies
    route = "/tokenize"
    body = {"content": CODE * (megabytes * MB // len(CODE))}
    baseline = []
    for _ in range(5):
        started = time.perf_counter()
        assert httpx.get(url + "/health", timeout=BOUND).status_code == 200
        baseline.append(time.perf_counter() - started)
    big = Raw(port).post(route, json.dumps(body).encode())
    latencies = []
    try:
        while not big.answering():
            started = time.perf_counter()
            r = httpx.get(url + "/health", timeout=BOUND)
            latency = time.perf_counter() - started
            assert r.status_code == 200, r.text
            if big.answering():
                break  # this one may have come after the big answer: not counted
            latencies.append(latency)
        status, _, answer = big.response()
    finally:
        big.close()
    ms = [t * 1000 for t in latencies] or [float("nan")]
    print(f"\n/health while {route} read a {megabytes} MB body: {len(latencies)} answers, median "
          f"{statistics.median(ms):.1f} ms, worst {max(ms):.1f} ms (idle: median "
          f"{statistics.median(baseline) * 1000:.1f} ms)")
    assert status == 200 and json.loads(answer)["count"] > megabytes * MB // 8, answer[:300]
    assert len(latencies) >= 3, f"only {len(latencies)} /health answers came before the big request's answer"


LONG = CODE * (2 * MB // len(CODE))
TOO_LONG = [("/v1/completions", {"prompt": LONG}, "prompt"),
            ("/v1/completions", {"prompt": "x", "suffix": LONG}, "suffix"),
            ("/v1/chat/completions", {"messages": [{"role": "user", "content": LONG}]}, "messages"),
            ("/infill", {"input_prefix": LONG}, "input_prefix")]


@pytest.mark.parametrize("path,fields,param", TOO_LONG, ids=[f"{p}:{f}" for p, _, f in TOO_LONG])
def test_a_prompt_longer_than_any_context_is_refused_before_tokenizing(big_bodies, path, fields, param):
    """2 MB of text cannot fit 512 tokens of context whatever it tokenizes to: a 400 that says so
    from its length in characters, without tokenizing it (today it was tokenized first, seconds
    of a core a megabyte, and the 400 named its tokens)."""
    url, port, model = big_bodies
    big = Raw(port).post(path, json.dumps({"model": model, **fields}).encode())
    try:
        err = envelope(*big.response(), 400, param=param, code="context_length_exceeded")
    finally:
        big.close()
    assert "characters" in err["message"], err
    assert httpx.get(url + "/health", timeout=BOUND).status_code == 200


@pytest.fixture(scope="module")
def small_limit(tiny):
    """The app in-process with a 100 kB body limit."""
    model, tok = tiny
    engine = Engine(model, tok, EngineConfig(num_blocks=256, max_running=4, max_waiting=16)).start()
    state = ServerState(MODEL, engine=engine, limits=HttpLimits(max_body_bytes=100_000))
    with LiveServer(create_app(state)) as server:
        yield server


def test_a_declared_body_over_the_limit_is_a_413_before_it_is_read(small_limit):
    """Content-Length says 1 GB and not a byte of the body comes: the 413 arrives anyway (today
    the server waits for the body), and the connection is closed."""
    raw = Raw(small_limit.port).head("POST", "/v1/completions", {"Content-Type": "application/json",
                                                                 "Content-Length": str(1 << 30)})
    try:
        status, headers, body = raw.response()
        err = envelope(status, headers, body, 413, code="request_too_large")
        assert "100000" in err["message"] and headers.get("connection") == "close"
    finally:
        raw.close()


def test_a_chunked_body_is_cut_at_the_limit(small_limit):
    """A chunked body that passes 100 kB and goes on (the end never sent): the 413 comes while it
    is still unfinished (today the server waits for the rest, however much comes)."""
    raw = Raw(small_limit.port).head("POST", "/tokenize", {"Content-Type": "application/json",
                                                           "Transfer-Encoding": "chunked"})
    try:
        raw.send(b'{"content": "')
        for _ in range(3):
            raw.send(b"x" * 65536)
        status, headers, answer = raw.response()
    finally:
        raw.close()
    envelope(status, headers, answer, 413, code="request_too_large")


def test_the_default_body_limit_follows_the_context(tiny):
    """Unset, the limit is 8 bytes a token of context for --max-running prompts, at least 1 MiB."""
    assert HttpLimits().body_limit(16384, 64) == 8 * MB  # DeepSeek-Coder's context, the default batch
    assert HttpLimits().body_limit(512, 16) == MB  # a tiny context: the floor
    model, tok = tiny
    state = ServerState(MODEL, engine=Engine(model, tok, EngineConfig(num_blocks=64, max_running=1024)))
    assert state.body_limit() == 8 * 512 * 1024


# ---------------------------------------------------------------------------- lone surrogates
SURROGATE_CASES = [
    ("/v1/completions", {"model": MODEL, "prompt": "x = \ud800"}, "prompt"),
    ("/v1/completions", {"model": MODEL, "prompt": ["ok", "\udc00"]}, "prompt.1"),
    ("/v1/completions", {"model": MODEL, "prompt": "def f(", "suffix": "\ud800)"}, "suffix"),
    ("/v1/chat/completions", {"model": MODEL, "messages": [{"role": "user", "content": "hi \ud800"}]},
     "messages.0.content"),
    ("/v1/chat/completions", {"model": MODEL, "messages": [{"role": "user", "content": [
        {"type": "text", "text": "\udfff"}]}]}, "messages.0.content.0.text"),
    ("/tokenize", {"content": "\ud800"}, "content"),
    ("/tokenize", {"prompt": "a\ud800b"}, "prompt"),
    ("/infill", {"input_prefix": "\ud800", "input_suffix": ""}, "input_prefix"),
    ("/infill", {"input_prefix": "x", "input_suffix": "\ud800"}, "input_suffix"),
    ("/infill", {"input_prefix": "x", "prompt": "\ud800"}, "prompt"),
    ("/infill", {"input_prefix": "x", "input_extra": [{"filename": "a.py", "text": "\ud800"}]},
     "input_extra.0.text"),
]


@pytest.mark.parametrize("path,body,param", SURROGATE_CASES, ids=[f"{p}:{f}" for p, _, f in SURROGATE_CASES])
def test_a_lone_surrogate_is_a_400_naming_the_field(small_limit, path, body, param):
    """JSON can escape half a UTF-16 pair; Python keeps it, the tokenizer cannot take it (today a
    500 "internal error: TypeError")."""
    payload = json.dumps(body).encode()  # ensure_ascii writes the lone surrogate as \\ud800
    assert b"\\ud" in payload
    r = httpx.post(small_limit.url + path, content=payload, headers={"Content-Type": "application/json"},
                   timeout=BOUND)
    err = envelope(r.status_code, r.headers, r.content, 400, param=param)
    assert "surrogate" in err["message"], err


# ---------------------------------------------------------------------------- slow clients
@pytest.fixture(scope="module")
def few_files(fim_model_dir, tmp_path_factory):
    """`dscoder serve` started with a soft open-file limit of 64 and a hard one of 128, and 2 s to send a
    request's head or body."""
    log = tmp_path_factory.mktemp("serve-fds") / "serve.log"
    args = ["--model", str(fim_model_dir), "--header-timeout", "2", "--body-timeout", "2", "--log-level", "warning"]
    with dscoder_serve(args, log, prefix=["prlimit", "--nofile=64:128"]) as (proc, url):
        yield proc, url, int(url.rsplit(":", 1)[1]), log


def test_the_soft_open_file_limit_is_raised_to_the_hard_one(few_files):
    proc, *_ = few_files
    [line] = [x for x in Path(f"/proc/{proc.pid}/limits").read_text().splitlines() if x.startswith("Max open files")]
    assert line.split()[3:5] == ["128", "128"], line


def _tricklers(port: int, count: int) -> list[socket.socket]:
    socks = []
    for _ in range(count):
        s = socket.create_connection(("127.0.0.1", port), timeout=BOUND)
        s.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        socks.append(s)
    return socks


def test_a_trickling_request_head_is_cut(few_files):
    """40 clients send their headers a byte at a time (slowloris): each is answered 408 and cut
    once its 2 s are up (today they are held for ever)."""
    _, url, port, log = few_files
    socks = _tricklers(port, 40)
    answers: dict[int, bytes] = {}
    try:
        deadline = time.monotonic() + BOUND
        while len(answers) < len(socks):
            assert time.monotonic() < deadline, f"{len(socks) - len(answers)} trickling clients never cut:\n" \
                                                f"{log_tail(log)}"
            for i, s in enumerate(socks):
                if i in answers:
                    continue
                if (got := cut(s)) is not None:
                    answers[i] = got
                    continue
                try:
                    s.send(b"a")
                except OSError:  # closed since the check above
                    answers[i] = cut(s) or b""
            time.sleep(0.1)  # the trickle's pace, not a measurement
    finally:
        for s in socks:
            s.close()
    timed_out = sum(a.startswith(b"HTTP/1.1 408") for a in answers.values())
    print(f"\n{timed_out} of {len(socks)} trickling clients read the 408 before the connection closed")
    assert all(a == b"" or a.startswith(b"HTTP/1.1 408") for a in answers.values()), answers
    assert httpx.get(url + "/health", timeout=BOUND).status_code == 200


def test_a_stalled_request_body_is_cut(few_files):
    """A request head promising 1000 bytes of body, then 10 bytes and silence: 408 and closed
    once the 2 s are up (today the connection is held for ever)."""
    _, url, port, log = few_files
    raw = Raw(port).head("POST", "/tokenize", {"Content-Type": "application/json", "Content-Length": "1000"})
    try:
        raw.send(b'{"content"')
        # Waits for the close itself ([what came], truthy even when nothing came), so a close
        # without the 408 fails the assert below, saying so, instead of timing out here.
        [got] = wait_for(lambda: None if (sent := cut(raw.sock)) is None else [sent],
                         lambda: f"the stalled body was cut:\n{log_tail(log)}", bound=BOUND)
    finally:
        raw.close()
    assert got.startswith(b"HTTP/1.1 408"), f"{got!r}\n{log_tail(log)}"


def test_hundreds_of_trickling_sockets_do_not_lock_out_health(few_files):
    """300 sockets trickling headers against 128 descriptors: /health is still answered, and
    the log stays small (today accept fails with EMFILE, nothing gets in, and asyncio logs a
    traceback per failed accept: megabytes a second)."""
    proc, url, port, log = few_files
    before = log.stat().st_size
    socks = _tricklers(port, 300)
    try:
        for s in socks[::7]:  # some keep trickling, the rest are idle
            try:
                s.send(b"b")
            except OSError:
                pass
        started = time.perf_counter()
        r = httpx.get(url + "/health", timeout=BOUND)
        latency = time.perf_counter() - started
        assert r.status_code == 200, r.text
        fds = len(list(Path(f"/proc/{proc.pid}/fd").iterdir()))
    finally:
        for s in socks:
            s.close()
    assert httpx.get(url + "/health", timeout=BOUND).status_code == 200 and proc.poll() is None
    grew = log.stat().st_size - before
    print(f"\nwith 300 trickling sockets: /health 200 in {latency * 1000:.0f} ms, the server held {fds} "
          f"descriptors, its log grew {grew} bytes")
    assert "Too many open files" not in log.read_text(errors="replace")[before:], log_tail(log)
    assert grew < 64 * 1024, f"the log grew {grew} bytes:\n{log_tail(log)}"


# ---------------------------------------------------------------------------- waiting without end
def _answer(status: int, headers: dict, body: bytes) -> str:
    """'ok' for a complete 200 (a stream ends with [DONE]), 'refused' for a 503 with Retry-After in
    OpenAI's envelope, else what is wrong."""
    if status == 200:
        text = body.decode(errors="replace")
        return "ok" if "choices" in text and ("data: [DONE]" in text or '"finish_reason"' in text) else f"200 {text}"
    if status == 503 and int(headers.get("retry-after", "0")) >= 1:
        err = json.loads(body)["error"]
        return "refused" if err["code"] == "queue_timeout" else f"503 {err}"
    return f"{status} {body[:300]!r}"


def test_a_request_queued_past_the_queue_timeout_is_a_503(tiny):
    """30 requests (half streamed) at an engine that runs one at a time, its steps held: every one
    that waits 0.5 s in the queue is answered 503 with Retry-After, a stream before its first
    byte; the admitted ones finish once the steps go on.  30 answers, none lost (today the
    queued ones wait as long as the engine is held)."""
    model, tok = tiny
    engine = Engine(model, tok, EngineConfig(num_blocks=256, max_running=1, max_waiting=64)).start()
    state = ServerState(MODEL, engine=engine, limits=HttpLimits(queue_timeout=0.5))
    bodies = [{"model": MODEL, "prompt": f"x{i} = ", "max_tokens": 4, "stream": i % 2 == 1} for i in range(30)]

    async def ask(c: httpx.AsyncClient, body: dict) -> tuple[int, dict, bytes]:
        async with c.stream("POST", "/v1/completions", json=body) as r:
            return r.status_code, dict(r.headers), await r.aread()

    async def all_of(url: str, gate: StepGate) -> list[tuple[int, dict, bytes]]:
        async with httpx.AsyncClient(base_url=url, timeout=BOUND,
                                     limits=httpx.Limits(max_connections=64)) as c:
            tasks = [asyncio.ensure_future(ask(c, b)) for b in bodies]
            deadline = time.monotonic() + BOUND
            while sum(t.done() for t in tasks) < len(tasks) - engine.config.max_running:
                assert time.monotonic() < deadline, f"only {sum(t.done() for t in tasks)} answered while held"
                await asyncio.sleep(0.05)
            refused_while_held = sum(t.done() for t in tasks)
            gate.open()  # let the admitted one finish
            results = await asyncio.gather(*tasks)
            assert refused_while_held >= len(tasks) - engine.config.max_running
            return results

    with LiveServer(create_app(state)) as server:
        with StepGate(model) as gate:
            results = asyncio.run(all_of(server.url, gate))
        kinds = [_answer(*r) for r in results]
        assert len(kinds) == 30 and set(kinds) <= {"ok", "refused"}, kinds
        assert 1 <= kinds.count("ok") <= engine.config.max_running and kinds.count("refused") >= 29, kinds
        streamed_refusals = [r for r, b in zip(results, bodies) if b["stream"] and r[0] == 503]
        assert streamed_refusals and all(h["content-type"] == "application/json" for _, h, _ in streamed_refusals)
        settle(engine)
        m = parse_metrics(httpx.get(server.url + "/metrics", timeout=BOUND).text)
        assert m[("dscoder_request_queue_timeouts_total", ())] == kinds.count("refused")
        assert httpx.get(server.url + "/health", timeout=BOUND).status_code == 200


@pytest.mark.slow
def test_two_hundred_concurrent_completions_are_all_answered(smollm2_gguf, tmp_path):
    """The issue's load: 200 concurrent 16-token completions (a quarter streamed) at `dscoder serve`
    on the embedded model (SmolLM2-135M: on two cores a batch of 64 takes far longer than the queue
    timeout) with a 10 s queue timeout.  Each gets an answer, completed or 503 with Retry-After
    (none lost), none later than the issue's 300 s window (today 136 of 200 still waited then:
    the client's deadline is the bound), and the server is healthy and idle after."""
    queue_timeout, window = 10, 300
    args = ["--model", str(smollm2_gguf), "--queue-timeout", str(queue_timeout), "--log-level", "warning"]
    with dscoder_serve(args, tmp_path / "serve.log") as (proc, url):
        model = httpx.get(url + "/v1/models", timeout=BOUND).json()["data"][0]["id"]

        async def ask(c: httpx.AsyncClient, i: int) -> tuple[str, float]:
            started = time.perf_counter()
            body = {"model": model, "prompt": f"{CODE}# {i}\n", "max_tokens": 16, "stream": i % 4 == 0}
            try:
                async with c.stream("POST", "/v1/completions", json=body) as r:
                    answer = _answer(r.status_code, dict(r.headers), await r.aread())
            except httpx.TimeoutException:
                answer = f"no answer within {window} s"
            return answer, time.perf_counter() - started

        async def load():
            async with httpx.AsyncClient(base_url=url, timeout=window, limits=httpx.Limits(max_connections=256)) as c:
                return await asyncio.gather(*(ask(c, i) for i in range(200)))

        results = asyncio.run(load())
        kinds = [k for k, _ in results]
        slowest = {k: max(t for kk, t in results if kk == k) for k in set(kinds)}
        print(f"\n200 concurrent: {kinds.count('ok')} completed, {kinds.count('refused')} refused (503); "
              f"slowest answer of each kind: { {k: round(v, 1) for k, v in slowest.items()} } s "
              f"(queue timeout {queue_timeout} s)")
        assert len(kinds) == 200 and set(kinds) <= {"ok", "refused"}, [k for k in kinds if k not in ("ok", "refused")]
        assert httpx.get(url + "/health", timeout=BOUND).status_code == 200
        gauges = lambda: parse_metrics(httpx.get(url + "/metrics", timeout=BOUND).text)  # noqa: E731
        wait_for(lambda: gauges()[("dscoder_num_requests_running", ())] == 0
                 and gauges()[("dscoder_num_requests_waiting", ())] == 0, "the server went idle")
        assert proc.poll() is None
