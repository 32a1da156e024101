"""A hostile server as the model under test (`dscoder eval --api`): its answers are hostile input.

A loopback http.server answers each HumanEval problem its own way: the reference solution
(judged "passed", also when it runs on past a stop string the harness never sent), a wrong one
("failed"), HTTP 500, 429 for ever, 503 once, a dropped connection, a body that is not JSON, is
nested too deeply, is over the size limit, has a text that is no string, no Unicode or the
wrong shape, an error message full of terminal escapes, an answer that is not HTTP, and answers
that never come (a sleep, a trickle of a byte at a time). Each failure is that sample's named
error, the others are judged, the run completes and `dscoder eval` says how many failed; once
the server behaves, the same command asks exactly the failed samples again. A server that is
not listening, or lists no model, stops the run before any sample with one clear message.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from dscoder import eval as evaluation
from dscoder.eval import api
from dscoder.eval.config import EvalConfig, EvalError
from dscoder.tasks import humaneval
from conftest import ROOT

TIMEOUT = 3  # --api-timeout of the runs here: the sleeping and trickling answers pass it
ESCAPES = "\x1b[31mred\x1b]0;title\x07\r\n"


def _entry(text: str) -> str:
    """The function a HumanEval prompt (or an instruction quoting it) ends by declaring."""
    return text[text.rindex("def ") + 4:].split("(")[0]


# Each case: (what the server does for the problem, the row's status, what its error says or None).
CASES = [
    ("reference", "passed", None),
    ("reference, then on past the unsent stop \\nprint", "passed", None),
    ("wrong", "failed", None),
    ("http 500", "error", "HTTP 500 from POST"),
    ("429 for ever", "error", "HTTP 429 from POST"),
    ("503 once", "passed", None),
    ("drops the connection", "error", "the connection failed"),
    ("not json", "error", "the answer is not JSON"),
    ("nested too deeply", "error", "the answer is not JSON (nested too deeply)"),
    ("huge body", "error", "is over 8 MiB"),
    ("text is a number", "error", "choices[0].text is not a string (got int)"),
    ("choices is a string", "error", "choices is not a list with an item 0 (got str)"),
    ("a JSON list", "error", "the answer has no field 'choices' (got list)"),
    ("usage is words", "error", "usage.completion_tokens is not a count of tokens (got 'lots')"),
    ("lone surrogate", "error", "choices[0].text is not Unicode text (a lone surrogate at character 5)"),
    ("escapes in the error", "error", "HTTP 400 from POST"),
    ("not http", "error", "not a valid HTTP answer"),
    ("sleeps", "error", f"within --api-timeout {TIMEOUT} s"),
    ("trickles", "error", f"within --api-timeout {TIMEOUT} s"),
]
PROBLEMS = humaneval.problems("python")[:len(CASES)]
ENTRY = {p.task_id: _entry(p.prompt) for p in PROBLEMS}
REFERENCE = {_entry(p.prompt): p.reference for p in PROBLEMS}


class HostileServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), Handler)
        self.behaviour = {entry: case for (case, _, _), entry in zip(CASES, ENTRY.values())}
        self.attempts: Counter = Counter()
        self.healed = False  # answer every problem with its reference
        self.models: bytes = json.dumps({"object": "list", "data": [{"id": "hostile"}]}).encode()
        self.released = threading.Event()  # ends the sleeping and trickling answers
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class Handler(BaseHTTPRequestHandler):
    server: HostileServer
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:
        self._send(200, self.server.models)

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        asked = body.get("prompt") or body["messages"][0]["content"]
        entry = _entry(asked)
        with self.server.lock:
            self.server.attempts[entry] += 1
            attempt = self.server.attempts[entry]
        case = "reference" if self.server.healed else self.server.behaviour[entry]
        reference = REFERENCE[entry]
        if body.get("messages"):  # the instruct form: the quoted function, completed, in a fence
            reference = "```python\n" + asked.split("```python\n")[1].split("```")[0] + "\n" + reference + "```"
        answer = lambda text, usage={"completion_tokens": 7}: json.dumps(  # noqa: E731
            {"choices": [{"index": 0, "text": text, "message": {"role": "assistant", "content": text},
                          "finish_reason": "stop"}], "usage": usage}).encode()
        if case == "reference":
            return self._send(200, answer(reference))
        if case.startswith("reference, then"):
            return self._send(200, answer(reference + "\nprint(undefined_name)\n"))
        if case == "wrong":
            return self._send(200, answer("    return None\n"))
        if case == "http 500":
            return self._send(500, json.dumps({"error": {"message": "the model fell over"}}).encode())
        if case == "429 for ever":
            return self._send(429, b'{"error": {"message": "slow down"}}', {"Retry-After": "0"})
        if case == "503 once":
            if attempt == 1:
                return self._send(503, b'{"error": {"message": "loading"}}', {"Retry-After": "0"})
            return self._send(200, answer(reference))
        if case == "drops the connection":
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        if case == "not json":
            return self._send(200, b"<html>an error page</html>")
        if case == "nested too deeply":
            return self._send(200, b"[" * 200_000)
        if case == "huge body":
            return self._send(200, answer("x" * (9 << 20)))
        if case == "text is a number":
            return self._send(200, b'{"choices": [{"text": 123, "message": {"content": 123}}]}')
        if case == "choices is a string":
            return self._send(200, b'{"choices": "many"}')
        if case == "a JSON list":
            return self._send(200, b'[1, 2, 3]')
        if case == "usage is words":
            return self._send(200, answer(reference, {"completion_tokens": "lots"}))
        if case == "lone surrogate":
            return self._send(200, b'{"choices": [{"text": "    x\\ud800 = 1", "message": {"content": "\\ud800"}}]}')
        if case == "escapes in the error":
            return self._send(400, json.dumps({"error": {"message": ESCAPES * 3}}).encode())
        if case == "not http":
            self.close_connection = True
            self.wfile.write(b"SSH-2.0-OpenSSH\r\n\r\n")
            return
        if case == "sleeps":
            self.server.released.wait(120)
            return self._send(200, answer(reference))
        if case == "trickles":  # a head, then a byte at a time: every read succeeds, the answer never ends
            self.close_connection = True
            self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n")
            while not self.server.released.wait(0.1):
                try:
                    self.wfile.write(b" ")
                    self.wfile.flush()
                except OSError:
                    return
            return
        raise AssertionError(case)

    def _send(self, status: int, data: bytes, headers: dict | None = None) -> None:
        self.send_response(status)
        for name, value in {"Content-Type": "application/json", "Content-Length": str(len(data)),
                            **(headers or {})}.items():
            self.send_header(name, value)
        self.end_headers()
        try:
            self.wfile.write(data)
        except OSError:  # the client gave up (a body over its limit)
            pass


@pytest.fixture(scope="module")
def hostile():
    server = HostileServer()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.released.set()
    server.shutdown()
    server.server_close()


def dscoder_eval(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dscoder.cli.app", "eval", "humaneval", *args, "--no-progress"],
                          cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env={k: v for k, v in os.environ.items() if k not in ("DSCODER_API_KEY", "OPENAI_API_KEY")})


@pytest.fixture(scope="module")
def run(hostile, tmp_path_factory):
    """One `dscoder eval --api` run against the hostile server: (the CLI's result, rows by task, out)."""
    out = tmp_path_factory.mktemp("hostile") / "run"
    cli = dscoder_eval("--api", hostile.url, "--limit", str(len(CASES)), "--api-timeout", str(TIMEOUT),
                       "--concurrency", "6", "--out", str(out))
    rows = {json.loads(line)["task_id"]: json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()}
    return cli, rows, out


@pytest.mark.parametrize("case, status, error", CASES, ids=[c for c, _, _ in CASES])
def test_each_answer_is_judged_or_that_samples_named_error(run, case, status, error):
    cli, rows, _ = run
    row = rows[PROBLEMS[[c for c, _, _ in CASES].index(case)].task_id]
    assert row["status"] == status, row["stderr"][:500]
    if error is None:
        assert row["stage"] != "generate"
    else:
        assert row["stage"] == "generate" and error in row["stderr"], row["stderr"][:500]
        assert len(row["stderr"]) < 1000 and all(c.isprintable() for c in row["stderr"])


def test_the_run_completes_and_says_how_many_failed(run, hostile):
    cli, rows, _ = run
    failed = sum(status == "error" for _, status, _ in CASES)
    assert cli.returncode == 0, cli.stderr
    assert len(rows) == len(CASES)
    assert f"{failed} samples failed at the server" in cli.stderr
    assert "\x1b" not in cli.stdout + cli.stderr  # the server's escapes never reach the terminal
    by_case = {case: hostile.attempts[ENTRY[p.task_id]] for (case, _, _), p in zip(CASES, PROBLEMS)}
    # 429, 503 and a dropped connection are retried (3 times at most); nothing else is
    assert (by_case["429 for ever"], by_case["drops the connection"], by_case["503 once"]) == (4, 4, 2)
    assert by_case["http 500"] == by_case["not json"] == by_case["sleeps"] == 1


def test_the_same_command_asks_only_the_failed_samples_again(run, hostile):
    _, rows, out = run
    failed = {ENTRY[task] for task, row in rows.items() if row["status"] == "error"}
    before = Counter(hostile.attempts)
    hostile.healed = True
    try:  # the command's settings, as a library call
        summary = evaluation.run(EvalConfig("humaneval", api=hostile.url, limit=len(CASES), api_timeout=TIMEOUT,
                                            out=out, progress=False))
    finally:
        hostile.healed = False
    asked = {entry for entry in hostile.attempts if hostile.attempts[entry] > before[entry]}
    assert asked == failed and summary.new_samples == len(failed)
    again = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    assert Counter(row["status"] for row in again) == {"passed": len(CASES) - 1, "failed": 1}


def test_the_instruct_form_reads_the_chat_answer(hostile, tmp_path):
    """/v1/chat/completions: a fenced reference passes; a number or a lone surrogate as content is an error."""
    picked = ["reference", "text is a number", "lone surrogate"]
    problems = [p for (case, _, _), p in zip(CASES, PROBLEMS) if case in picked]
    rows = _run_problems(hostile, problems, tmp_path, form="instruct")
    assert [r["status"] for r in rows] == ["passed", "error", "error"]
    assert "choices[0].message.content is not a string (got int)" in rows[1]["stderr"]
    assert "choices[0].message.content is not Unicode text" in rows[2]["stderr"]


def _run_problems(hostile, problems, tmp_path, **settings) -> list[dict]:
    """The hostile server's answers for these problems through the real completer and runner."""
    from dscoder.eval import runner

    cfg = EvalConfig("humaneval", subset="python", api=hostile.url, api_model="hostile", api_timeout=TIMEOUT,
                     **settings)
    return runner.run(problems, api.ApiCompleter(cfg), cfg, tmp_path / "run", progress=False)


def test_infill_answers_are_read_as_data():
    """/infill's answer (llama.cpp's `content`): the same checks as the OpenAI routes'."""
    assert api.read_answer("infill", b'{"content": "x = 1", "tokens_predicted": 3}') == ("x = 1", 3)
    for body, message in [(b'{"content": 5}', "content is not a string (got int)"),
                          (b'{"content": "a", "tokens_predicted": -1}', "tokens_predicted is not a count"),
                          (b'{"content": "a", "tokens_predicted": true}', "tokens_predicted is not a count"),
                          (b'{"text": "a"}', "the answer has no field 'content'"),
                          (b"\xff\xfe{", "the answer is not JSON")]:
        with pytest.raises(api.Failed, match=message.replace("(", r"\(").replace(")", r"\)")):
            api.read_answer("infill", body)


def test_a_server_that_is_not_listening_is_one_clear_message(tmp_path):
    with socket.socket() as probe:  # a port nothing listens on once this socket is closed
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    cli = dscoder_eval("--api", f"http://127.0.0.1:{port}/v1", "--out", str(tmp_path / "run"))
    assert cli.returncode == 2
    assert f"nothing is listening at http://127.0.0.1:{port} (connection refused)" in cli.stderr
    assert "Traceback" not in cli.stderr and not (tmp_path / "run").exists()


@pytest.mark.parametrize("models, message", [
    (b"not json", "give --api-model: http://127.0.0.1:\\d+/v1/models did not name the model \\(its answer is "
                  "not a list of models: not json\\)"),
    (b'{"data": [{"id": "a"}, {"id": "b"}]}', "serves several models; choose one with --api-model: 'a', 'b'"),
    (b'{"data": [{"id": 1}, "x", null]}', "did not name the model \\(it listed none\\)"),
])
def test_a_model_list_that_names_no_one_model_stops_the_run(hostile, tmp_path, models, message):
    saved, hostile.models = hostile.models, models
    try:
        with pytest.raises(EvalError, match=message):
            evaluation.run(EvalConfig("humaneval", api=hostile.url, limit=1, out=tmp_path / "run", progress=False))
    finally:
        hostile.models = saved
    assert not (tmp_path / "run").exists()
