"""Fuzzing the live HTTP API from its own OpenAPI document with schemathesis: whatever the body,
valid or not, the answer is never a 5xx, and bad input is a 4xx in OpenAI's error envelope.

For every operation of /openapi.json: schemathesis's coverage cases (each field at and past
its bounds, missing, of the wrong type), then Hypothesis-generated valid and invalid requests.
The server's context is small (`max_model_len=128`), so a huge max_tokens is refused at once; the
fuzzer's in-range lengths are lowered to a few tokens to keep the run short.  Each operation
must have been answered with both a success and a refusal, so the fuzzing provably reached the
generation code and the validation code.
"""

from __future__ import annotations

import json
from collections import Counter

import pytest

schemathesis = pytest.importorskip("schemathesis")
pytest.importorskip("uvicorn")
from hypothesis import HealthCheck, Phase, given, settings  # noqa: E402
from schemathesis import GenerationMode  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.config import GenerationConfig  # noqa: E402

from dscoder.hub import load_model  # noqa: E402
from dscoder.serve.api import ServerState, create_app  # noqa: E402
from dscoder.serve.engine import Engine, EngineConfig  # noqa: E402
from dscoder.tokenizer.tokenizer import Tokenizer  # noqa: E402
from serve_live import LiveServer, settle  # noqa: E402

MODEL = "tiny-coder"
MAX_LEN = 128
LENGTH_FIELDS = ("max_tokens", "max_completion_tokens", "n_predict")
SHORT = 4  # in-range lengths the fuzzer picks are lowered to this
# Every operation of the schema: whether it must have served a valid request (200), and whether it
# takes a body (then invalid bodies are generated too, and at least one must have been refused
# with a 4xx).  A new endpoint fails the schema test below until it is listed here.
OPERATIONS = {
    "GET /health": (True, False),
    "GET /v1/models": (True, False),
    "GET /metrics": (True, False),
    "POST /tokenize": (True, True),
    "POST /detokenize": (True, True),
    "POST /v1/completions": (True, True),
    "POST /v1/chat/completions": (True, True),
    "POST /infill": (True, True),
}
EXAMPLES = 25  # per operation and mode, beside schemathesis's coverage cases


@pytest.fixture(scope="module")
def server(fim_model_dir):
    model, tok = load_model(fim_model_dir), Tokenizer.load(fim_model_dir)
    engine = Engine(model, tok, EngineConfig(num_blocks=256, max_running=32, max_waiting=512, max_model_len=MAX_LEN))
    with LiveServer(create_app(ServerState(MODEL, engine=engine.start()))) as live:
        live.engine = engine
        yield live


@pytest.fixture(scope="module")
def schema(server):
    return schemathesis.openapi.from_url(f"{server.url}/openapi.json")


def adjust(case, label: str, mode: GenerationMode) -> None:
    """Valid requests name the served model (a random name is a 404 before anything else is
    looked at) and run for a few tokens (the generation is what is exercised, not its length):
    lengths past the context, zero, negative or of the wrong type go as generated.  Invalid
    requests go exactly as generated."""
    if mode is not GenerationMode.POSITIVE or not isinstance(case.body, dict):
        return
    if isinstance(case.body.get("model"), str):
        case.body["model"] = MODEL
    for name in LENGTH_FIELDS:
        value = case.body.get(name)
        if type(value) is int and (SHORT < value <= MAX_LEN or (name == "n_predict" and value == -1)):
            case.body[name] = SHORT
    if label == "POST /infill" and "n_predict" not in case.body:
        case.body["n_predict"] = SHORT  # its default runs to the end of the context


def test_the_schema_lists_every_endpoint(schema):
    labels = {result.ok().label for result in schema.get_all_operations()}
    assert labels == set(OPERATIONS)


@pytest.mark.parametrize("label", list(OPERATIONS))
def test_no_request_gets_a_server_error(schema, server, label):
    operation = schema.find_operation_by_label(label)
    assert operation is not None, label
    statuses: Counter = Counter()

    wants_ok, has_body = OPERATIONS[label]
    modes = [GenerationMode.POSITIVE, GenerationMode.NEGATIVE] if has_body else [GenerationMode.POSITIVE]

    def send(case, mode: GenerationMode) -> None:
        adjust(case, label, mode)
        response = case.call(timeout=60)
        statuses[response.status_code] += 1
        if response.status_code >= 400:  # a refusal is OpenAI's envelope, whatever the input was
            body = json.loads(response.content)
            assert set(body["error"]) == {"message", "type", "param", "code"}, body
        case.validate_response(response, checks=[not_a_server_error])

    for mode in modes:
        for case in schema.iter_coverage_cases(operation, generation_modes=[mode],
                                               generation_config=GenerationConfig(modes=[mode])):
            send(case, mode)

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
                  phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
        def fuzz(case) -> None:
            send(case, mode)

        fuzz()
    settle(server.engine)  # nothing the fuzzer sent is still running or holding KV blocks
    assert not any(status >= 500 for status in statuses), statuses
    if wants_ok:
        assert statuses[200] > 0, f"no valid request reached {label}: {dict(statuses)}"
    if has_body:
        assert any(400 <= s < 500 for s in statuses), f"nothing invalid reached {label}: {dict(statuses)}"
    print(f"{label}: {dict(sorted(statuses.items()))}")
