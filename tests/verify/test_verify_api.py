"""The `verify` extension of the HTTP API on a live server (uvicorn on loopback, a real engine over
the tiny model, the real sandbox): the answer's shape, the stream's events, refusals."""

from __future__ import annotations

import json

import pytest

httpx = pytest.importorskip("httpx")

from dscoder.serve.api import ServerState, create_app  # noqa: E402
from dscoder.serve.engine import Engine, EngineConfig  # noqa: E402
from serve_live import LiveServer, dscoder_serve, settle  # noqa: E402
from verify_helpers import pool, tiny  # noqa: E402,F401  (fixtures)

PROMPT = "def f():\n    return 1\n# "  # the tiny model's noise continues a comment: the code always parses


@pytest.fixture(scope="module")
def live(tiny):
    model, tok = tiny
    engine = Engine(model, tok, EngineConfig(num_blocks=256, block_size=16, max_running=16, max_waiting=64))
    with LiveServer(create_app(ServerState("tiny", engine=engine.start()))) as server:
        server.engine = engine
        yield server


def completion(live, verify: dict, **extra) -> httpx.Response:
    body = {"model": "tiny", "prompt": PROMPT, "max_tokens": 8, "stop": ["\n", "\r"], "verify": verify, **extra}
    return httpx.post(f"{live.url}/v1/completions", json=body, timeout=300)


def test_a_verified_completion_answers_one_choice_and_the_verification(live, pool):
    r = completion(live, {"tests": "assert f() == 1\n", "n": 4, "stop_at_first": False})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["object"] == "text_completion" and len(body["choices"]) == 1
    v = body["verification"]
    assert v["passed"] is True and v["chosen"] == 0 and v["asked"] == 4
    assert v["tests"] == {"source": "the request's tests", "checks": 1, "skipped": {},
                          "description": "1 check from the request's tests"}
    assert [c["index"] for c in v["candidates"]] == [0, 1, 2, 3]
    assert all(c["status"] == "passed" and c["checks_passed"] == 1 for c in v["candidates"])
    assert v["code"] == PROMPT + body["choices"][0]["text"]
    assert body["usage"]["completion_tokens"] == sum(c["tokens"] for c in v["candidates"])
    settle(live.engine)


def test_none_passing_is_still_an_answer_the_best_with_its_failures(live, pool):
    r = completion(live, {"tests": "assert f() == 1\nassert f() == 2\n", "n": 3})
    assert r.status_code == 200, r.text
    v = r.json()["verification"]
    assert v["passed"] is False and v["chosen"] == 0
    assert v["candidates"][0]["failures"] == ["FAILED assert f() == 2 (the request's tests:2): AssertionError"]
    assert v["summary"] == "0/3 passed; none passed: chose candidate 1, the most checks passed (1/2)"


def test_the_stream_sends_the_tests_each_verdict_then_the_choice(live, pool):
    body = {"model": "tiny", "prompt": PROMPT, "max_tokens": 8, "stop": ["\n", "\r"], "stream": True,
            "verify": {"tests": "assert f() == 1\n", "n": 3, "stop_at_first": False}}
    with httpx.stream("POST", f"{live.url}/v1/completions", json=body, timeout=300) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in r.iter_lines() if line]
    assert lines[-1] == "data: [DONE]"
    events = [json.loads(line[6:]) for line in lines[:-1]]
    assert events[0]["object"] == "verification.tests" and events[0]["tests"]["checks"] == 1
    verdicts = [e["verdict"] for e in events[1:-1]]
    assert [e["object"] for e in events[1:-1]] == ["verification.verdict"] * 3
    assert sorted(v["index"] for v in verdicts) == [0, 1, 2] and all(v["passed"] for v in verdicts)
    last = events[-1]
    assert last["object"] == "text_completion" and last["verification"]["chosen"] == 0
    assert last["choices"][0]["index"] == 0 and last["verification"]["code"] == PROMPT + last["choices"][0]["text"]


def test_a_chat_with_verify_checks_each_answers_code_block(live, pool):
    messages = [{"role": "user", "content": "Write f.\n```python\ndef f():\n    '''\n    >>> f()\n    1\n    '''\n```"}]
    r = httpx.post(f"{live.url}/v1/chat/completions", timeout=300,
                   json={"model": "tiny", "messages": messages, "max_tokens": 16, "verify": {"n": 2}})
    assert r.status_code == 200, r.text
    body = r.json()
    v = body["verification"]
    assert v["tests"]["source"] == "the prompt's examples" and v["tests"]["checks"] == 1
    assert body["object"] == "chat.completion" and body["choices"][0]["message"]["role"] == "assistant"
    assert v["passed"] is False, "the tiny model's noise defines no f"
    chosen = v["candidates"][v["chosen"]]
    assert chosen["status"] == "failed" and chosen["failures"] and chosen["stderr"]
    assert v["code"] != body["choices"][0]["message"]["content"] or "```" not in v["code"]


def test_a_client_that_goes_away_mid_stream_cancels_the_candidates(live, pool):
    body = {"model": "tiny", "prompt": PROMPT, "max_tokens": 400, "stream": True,
            "verify": {"tests": "assert f() == 1\n", "n": 8, "stop_at_first": False}}
    with httpx.stream("POST", f"{live.url}/v1/completions", json=body, timeout=300) as r:
        for line in r.iter_lines():
            if line.startswith("data: "):
                assert json.loads(line[6:])["object"] == "verification.tests"
                break
    settle(live.engine)  # nothing left decoding, no KV block held


def test_verification_turned_off_is_a_400_saying_so(tiny):
    model, tok = tiny
    engine = Engine(model, tok, EngineConfig(num_blocks=64, block_size=16, max_running=4))
    with LiveServer(create_app(ServerState("tiny", engine=engine.start(), verify=False))) as off:
        r = completion(off, {"tests": "assert f() == 1\n"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "verification_disabled", r.text
    assert "--no-verify" in r.json()["error"]["message"]


def test_a_server_whose_sandbox_is_weakened_refuses_verification_with_503(fim_model_dir, tmp_path, monkeypatch):
    """DSCODER_SANDBOX=rlimits: no namespaces, the network and the file system open. The server still
    serves, but runs no model-written code: 503 naming the reason."""
    monkeypatch.setenv("DSCODER_SANDBOX", "rlimits")
    with dscoder_serve(["--model", str(fim_model_dir)], tmp_path / "serve.log") as (_, url):
        r = httpx.post(f"{url}/v1/completions", timeout=120,
                       json={"model": fim_model_dir.name, "prompt": PROMPT, "verify": {"tests": "assert f() == 1"}})
        plain = httpx.post(f"{url}/v1/completions", timeout=120,
                           json={"model": fim_model_dir.name, "prompt": PROMPT, "max_tokens": 2})
    assert r.status_code == 503, r.text
    error = r.json()["error"]
    assert error["code"] == "sandbox_unavailable" and "SANDBOX WEAKENED" in error["message"]
    assert plain.status_code == 200, "everything else is served"
