"""The HTTP API on a live server: the official `openai` client and raw HTTP against `create_app`
served by uvicorn on loopback, over a real engine and a tiny random model with DeepSeek-Coder's
vocabulary (FIM tokens, built-in chat template).

Every greedy answer is compared with `dscoder.infer.generate` run directly on the same model from the
prompt the server is documented to build (FIM, chat template, /infill's repository layout), so
a wrong prompt, a wrong stop rule or batching that changes results shows up as different text.
Nothing here asserts on timings or sleeps for them: a test that must act while a generation is
in flight holds the model's steps at a gate (`StepGate`) and lets them through one at a time, and
every poll has a generous bound that only stops a leak from hanging the suite.
"""

from __future__ import annotations

import json
import select
import socket
import threading
import time
from itertools import accumulate

import pytest
import torch

httpx = pytest.importorskip("httpx")
openai = pytest.importorskip("openai")
pytest.importorskip("uvicorn")

from dscoder.tokenizer.chat import chat_prompt, stop_token_ids  # noqa: E402
from dscoder.tokenizer.fim import fim_prompt, fim_tokens  # noqa: E402
from dscoder.infer.generate import SamplingParams, generate, stream  # noqa: E402
from dscoder.hub import load_model  # noqa: E402
from dscoder.model.transformer import Transformer  # noqa: E402
from dscoder.model.presets import get_preset  # noqa: E402
from dscoder.serve.api import ServerState, create_app  # noqa: E402
from dscoder.serve.engine import Engine, EngineConfig  # noqa: E402
from dscoder.serve.indent import IndentCut  # noqa: E402
from dscoder.tokenizer.tokenizer import Tokenizer  # noqa: E402
from serve_live import (LiveServer, StepGate, counter, idle, one_request_in, parse_metrics, settle, stats,  # noqa: E402
                        wait_for)

MODEL = "tiny-coder"
CONTEXT = 512  # the tiny preset's max_position_embeddings
PROMPT = "def add(a, b):\n"
MESSAGES = [{"role": "system", "content": "Answer with code only."},
            {"role": "user", "content": "Add two numbers."},
            {"role": "assistant", "content": "a + b"},
            {"role": "user", "content": "Now in Python, please."}]
EXTRA = [{"filename": "util.py", "text": "def helper():\n    return 1"}, {"filename": "pkg/ops.py", "text": "x = 2"}]


# ---------------------------------------------------------------------------- fixtures and helpers
@pytest.fixture(scope="module")
def tiny(fim_model_dir):
    return load_model(fim_model_dir), Tokenizer.load(fim_model_dir)


@pytest.fixture(scope="module")
def live(tiny):
    model, tok = tiny
    engine = Engine(model, tok, EngineConfig(num_blocks=512, block_size=16, max_running=16, max_waiting=64))
    with LiveServer(create_app(ServerState(MODEL, engine=engine.start()))) as server:
        server.engine = engine
        yield server  # the app's shutdown stops the engine


@pytest.fixture(autouse=True)
def _nothing_left_running(request):
    """After every test that used the main server, its engine runs nothing and holds no KV block."""
    yield
    if "live" in request.fixturenames:
        settle(request.getfixturevalue("live").engine)


@pytest.fixture(scope="module")
def client(live):
    return openai.OpenAI(base_url=f"{live.url}/v1", api_key="unused", max_retries=0, timeout=120)


@pytest.fixture(scope="module")
def http(live):
    with httpx.Client(base_url=live.url, timeout=120) as c:
        yield c


def direct(tiny, prompt: str | list[int], max_tokens: int, stop_ids=None, **params):
    """`dscoder.infer.generate` on the model itself: (text, token ids, finish reason)."""
    model, tok = tiny
    p = SamplingParams(max_new_tokens=max_tokens, stop_token_ids=tuple([tok.eos_id] if stop_ids is None else stop_ids),
                       **params)
    if isinstance(prompt, str):
        [c] = generate(model, tok, prompt, p)
        return c.text, c.token_ids, c.finish_reason
    text, ids, reason = "", [], None
    for d in stream(model, tok, prompt, p):
        text += d.text
        ids += [d.token_id] if d.token_id is not None else []
        reason = d.finish_reason or reason
    return text, ids, reason


def chat_ids(tok, messages) -> list[int]:
    return tok.encode(chat_prompt(tok, messages), add_bos=False)  # the template writes the BOS itself


@torch.no_grad()
def model_logprobs(model, ids: list[int]) -> torch.Tensor:
    """log_softmax of the model's own logits at every position (row i predicts token i + 1)."""
    logits, _ = model(torch.tensor([ids]))
    return logits[0].float().log_softmax(-1)


def metrics(http) -> dict:
    r = http.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain"), r.text
    return parse_metrics(r.text)


def metric(m: dict, name: str, **labels) -> float:
    return m.get((name, tuple(sorted(labels.items()))), 0.0)


def assert_error(r, status: int, param=..., code=..., type=None) -> dict:
    """OpenAI's envelope, exactly, with the given status, param and code (... = not checked)."""
    assert r.status_code == status, (r.status_code, r.text)
    body = r.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}, body
    err = body["error"]
    assert isinstance(err["message"], str) and err["message"], body
    if param is not ...:
        assert err["param"] == param, body
    if code is not ...:
        assert err["code"] == code, body
    if type is not None:
        assert err["type"] == type, body
    return err


def sse_events(lines) -> list:
    """The JSON events of an SSE body; asserts every line is `data: ...` or blank and that it ends with [DONE]."""
    data = [line for line in lines if line]
    assert data and data[-1] == "data: [DONE]", data[-3:]
    assert all(line.startswith("data: ") for line in data), data
    return [json.loads(line[6:]) for line in data[:-1]]


class RawRequest:
    """One HTTP/1.1 request on a plain socket, so a test decides exactly when the client goes away."""

    def __init__(self, port: int, path: str, body: dict, headers: dict[str, str] | None = None):
        payload = json.dumps(body).encode()
        head = {"Host": "127.0.0.1", "Content-Type": "application/json", "Content-Length": str(len(payload)),
                "Connection": "close", **(headers or {})}
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=120)
        self.sock.sendall(f"POST {path} HTTP/1.1\r\n".encode()
                          + "".join(f"{k}: {v}\r\n" for k, v in head.items()).encode() + b"\r\n" + payload)
        self.received = b""

    def read_until(self, marker: bytes) -> bytes:
        while marker not in self.received:
            self._receive()
        return self.received

    def has(self, marker: bytes) -> bool:
        """Whether `marker` has arrived, reading only what is already there (never waits)."""
        while marker not in self.received and select.select([self.sock], [], [], 0)[0]:
            self._receive()
        return marker in self.received

    def _receive(self) -> None:
        chunk = self.sock.recv(65536)
        assert chunk, f"the server closed the connection first: {self.received[-500:]!r}"
        self.received += chunk

    def close(self) -> None:
        self.sock.close()


# ---------------------------------------------------------------------------- completions
def test_plain_completion_equals_direct_generation(client, tiny):
    _, tok = tiny
    r = client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=24, temperature=0)
    text, ids, _ = direct(tiny, PROMPT, 24)
    assert r.object == "text_completion" and r.model == MODEL and r.id.startswith("cmpl-")
    [choice] = r.choices
    assert choice.index == 0 and choice.text == text and choice.finish_reason == "length"
    assert (r.usage.prompt_tokens, r.usage.completion_tokens, r.usage.total_tokens) == \
        (len(tok.encode(PROMPT)), 24, len(tok.encode(PROMPT)) + 24)


def test_suffix_completion_is_the_models_fim_prompt(client, tiny):
    _, tok = tiny
    prefix, suffix = "def add(a, b):\n    ", "\n\nprint(add(1, 2))\n"
    r = client.completions.create(model=MODEL, prompt=prefix, suffix=suffix, max_tokens=24, temperature=0)
    fim = fim_prompt(prefix, suffix, fim_tokens(tok))
    assert fim.startswith("<｜fim▁begin｜>")
    text, _, _ = direct(tiny, fim, 24)
    assert r.choices[0].text == text
    assert r.usage.prompt_tokens == len(tok.encode(fim))
    # the comparison can tell: the same prefix without the suffix continues differently
    assert direct(tiny, prefix, 24)[0] != text


def test_token_id_prompts_equal_their_text(client, tiny):
    _, tok = tiny
    ids = tok.encode(PROMPT)
    as_text = client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=12, temperature=0)
    as_ids = client.completions.create(model=MODEL, prompt=ids, max_tokens=12, temperature=0)
    assert as_ids.choices[0].text == as_text.choices[0].text
    assert as_ids.usage.prompt_tokens == len(ids)
    batch = client.completions.create(model=MODEL, prompt=[ids, tok.encode("x = 1\n")], max_tokens=12, temperature=0)
    assert [c.index for c in batch.choices] == [0, 1]
    assert batch.choices[0].text == as_text.choices[0].text
    assert batch.choices[1].text == direct(tiny, "x = 1\n", 12)[0]


def test_list_prompts_and_n_give_every_choice_in_order(client, tiny):
    _, tok = tiny
    prompts = [PROMPT, "import os\n", "class A:\n"]
    r = client.completions.create(model=MODEL, prompt=prompts, n=2, max_tokens=10, temperature=0)
    assert [c.index for c in r.choices] == list(range(6))
    for i, prompt in enumerate(prompts):  # grouped by prompt, as OpenAI does; greedy samples agree
        want = direct(tiny, prompt, 10)[0]
        assert r.choices[2 * i].text == r.choices[2 * i + 1].text == want
    assert r.usage.prompt_tokens == sum(len(tok.encode(p)) for p in prompts)  # each prompt once, whatever n
    assert r.usage.completion_tokens == 6 * 10
    sampled = client.completions.create(model=MODEL, prompt=PROMPT, n=3, max_tokens=24, temperature=1.5, seed=3)
    assert [c.index for c in sampled.choices] == [0, 1, 2]
    assert len({c.text for c in sampled.choices}) == 3, "n samples with one seed must still differ"


def test_stop_strings_end_the_text_before_them(client, tiny):
    base = client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=40, temperature=0).choices[0].text
    stop = base[len(base) // 2:len(base) // 2 + 3]
    want = base[:base.index(stop)]
    r = client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=40, temperature=0,
                                  stop=["never appears", stop])
    assert r.choices[0].text == want and r.choices[0].finish_reason == "stop"
    assert stop not in r.choices[0].text
    streamed = list(client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=40, temperature=0, stop=stop,
                                              stream=True))
    assert "".join(c.choices[0].text for c in streamed) == want
    assert [c.choices[0].finish_reason for c in streamed if c.choices[0].finish_reason] == ["stop"]
    untouched = client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=40, temperature=0,
                                          stop="never appears")
    assert untouched.choices[0].text == base and untouched.choices[0].finish_reason == "length"


def test_max_tokens_and_usage_equal_the_tokenizers_counts(client, tiny):
    _, tok = tiny
    for max_tokens in (1, 7):
        r = client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=max_tokens, temperature=0, logprobs=0)
        assert r.choices[0].finish_reason == "length"
        assert r.usage.completion_tokens == max_tokens == len(r.choices[0].logprobs.tokens)
        assert r.usage.prompt_tokens == len(tok.encode(PROMPT))
        assert r.usage.total_tokens == r.usage.prompt_tokens + max_tokens
    default = client.completions.create(model=MODEL, prompt=PROMPT, temperature=0)
    assert default.usage.completion_tokens == 16  # OpenAI's default max_tokens for completions


def test_echo_puts_the_prompt_first(client, tiny):
    _, tok = tiny
    plain = client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=8, temperature=0).choices[0].text
    r = client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=8, temperature=0, echo=True)
    assert r.choices[0].text == PROMPT + plain
    ids = tok.encode("x = 1\n")
    r = client.completions.create(model=MODEL, prompt=ids, max_tokens=8, temperature=0, echo=True)
    assert r.choices[0].text == tok.decode(ids) + direct(tiny, ids, 8)[0]


def test_logprobs_are_log_softmax_of_the_models_own_logits(client, tiny):
    model, tok = tiny
    r = client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=6, temperature=0, logprobs=5)
    lp, text = r.choices[0].logprobs, r.choices[0].text
    assert len(lp.tokens) == len(lp.token_logprobs) == len(lp.top_logprobs) == len(lp.text_offset) == 6
    assert "".join(lp.tokens) == text
    assert lp.text_offset == list(accumulate([0] + [len(t) for t in lp.tokens[:-1]]))
    ids = tok.encode(PROMPT)
    _, generated, _ = direct(tiny, PROMPT, 6)
    full = model_logprobs(model, ids + generated)
    for k, (token_id, value, top) in enumerate(zip(generated, lp.token_logprobs, lp.top_logprobs)):
        row = full[len(ids) - 1 + k]
        assert value == pytest.approx(float(row[token_id]), abs=2e-4)
        values, best = row.topk(5)
        assert len(top) == 5
        assert top == pytest.approx({tok.decode([i]): v for i, v in zip(best.tolist(), values.tolist())}, abs=2e-4)
        assert top[lp.tokens[k]] == pytest.approx(value) and value == pytest.approx(max(top.values()))  # greedy


def test_echo_with_logprobs_scores_the_prompt(client, tiny):
    model, tok = tiny
    ids = tok.encode(PROMPT)
    r = client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=3, temperature=0, echo=True, logprobs=1)
    lp = r.choices[0].logprobs
    n = len(ids)
    assert lp.tokens[:n] == [tok.decode([i]) for i in ids] and len(lp.tokens) == n + 3
    assert lp.token_logprobs[0] is None and lp.top_logprobs[:n] == [None] * n
    full = model_logprobs(model, ids)
    assert lp.token_logprobs[1:n] == pytest.approx([float(full[j - 1, ids[j]]) for j in range(1, n)], abs=2e-4)
    assert lp.text_offset == list(accumulate([0] + [len(t) for t in lp.tokens[:-1]]))


def test_seeded_sampling_is_reproducible(client, tiny):
    kw = dict(model=MODEL, prompt=PROMPT, max_tokens=24, temperature=1.5)
    a = client.completions.create(seed=1234, **kw).choices[0].text
    assert client.completions.create(seed=1234, **kw).choices[0].text == a
    assert client.completions.create(seed=4321, **kw).choices[0].text != a
    # it samples as dscoder.infer.generate does with the same seed
    assert a == direct(tiny, PROMPT, 24, temperature=1.5, seed=1234)[0]
    # n samples: the first is the request's seed, the others differ from it
    two = client.completions.create(seed=1234, n=2, **kw)
    assert two.choices[0].text == a and two.choices[1].text != a


def test_parameters_too_small_for_float32_sample_as_their_limit(client):
    """Valid values that float32 sampling cannot represent (a denormal temperature, top_p or
    repetition penalty overflows to inf or rounds to 0, and the probabilities become NaN) are
    served as their limit, never a 500: a tiny temperature is greedy decoding, and a tiny top_p
    keeps only the likeliest token, which is greedy decoding too."""
    kw = dict(model=MODEL, prompt=PROMPT, max_tokens=12)
    greedy = client.completions.create(temperature=0, **kw).choices[0].text
    for t in (1e-38, 5e-324):
        assert client.completions.create(temperature=t, **kw).choices[0].text == greedy
    for top_p in (1e-6, 1e-40, 5e-324):
        assert client.completions.create(temperature=1.0, top_p=top_p, seed=1, **kw).choices[0].text == greedy
    tiny_penalty = client.completions.create(temperature=1.0, seed=1, extra_body={"repetition_penalty": 5e-324}, **kw)
    assert tiny_penalty.choices[0].text == client.completions.create(
        temperature=1.0, seed=1, extra_body={"repetition_penalty": 1e-6}, **kw).choices[0].text


def test_streamed_completion_equals_the_whole_one(client, http):
    whole = client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=20, temperature=0)
    chunks = list(client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=20, temperature=0, stream=True,
                                            stream_options={"include_usage": True}))
    assert all(c.object == "text_completion" and c.model == MODEL for c in chunks)
    *texts, last = chunks
    assert "".join(c.choices[0].text for c in texts) == whole.choices[0].text
    assert [c.choices[0].finish_reason for c in texts if c.choices[0].finish_reason] == ["length"]
    assert texts[-1].choices[0].finish_reason == "length"
    assert last.choices == [] and last.usage.model_dump() == whole.usage.model_dump()
    # on the wire: only `data:` events, ending with [DONE]; no usage event unless asked
    body = {"model": MODEL, "prompt": PROMPT, "max_tokens": 20, "temperature": 0, "stream": True}
    with http.stream("POST", "/v1/completions", json=body) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        events = sse_events(list(r.iter_lines()))
    assert all(e["choices"] and "usage" not in e for e in events)
    assert "".join(e["choices"][0]["text"] for e in events) == whole.choices[0].text


def test_streamed_batch_keeps_each_choice_apart(client):
    prompts = [PROMPT, "import os\n"]
    whole = client.completions.create(model=MODEL, prompt=prompts, n=2, max_tokens=12, temperature=0)
    texts, finishes = ["", "", "", ""], [[], [], [], []]
    for chunk in client.completions.create(model=MODEL, prompt=prompts, n=2, max_tokens=12, temperature=0,
                                           stream=True):
        for c in chunk.choices:
            texts[c.index] += c.text
            if c.finish_reason:
                finishes[c.index].append(c.finish_reason)
    assert texts == [c.text for c in whole.choices]
    assert finishes == [["length"]] * 4


def test_streamed_echo_and_logprobs(client):
    chunks = list(client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=5, temperature=0, echo=True,
                                            logprobs=2, stream=True))
    assert chunks[0].choices[0].text == PROMPT
    whole = client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=5, temperature=0, logprobs=2)
    generated = [c for c in chunks[1:] if c.choices[0].logprobs]
    assert [t for c in generated for t in c.choices[0].logprobs.tokens] == whole.choices[0].logprobs.tokens
    assert [v for c in generated for v in c.choices[0].logprobs.token_logprobs] == \
        pytest.approx(whole.choices[0].logprobs.token_logprobs)


# ---------------------------------------------------------------------------- chat
def test_chat_prompt_is_the_chat_template(client, tiny):
    _, tok = tiny
    ids = chat_ids(tok, MESSAGES)
    assert ids[0] == tok.bos_id and ids.count(tok.bos_id) == 1  # one BOS, from the template
    text, _, _ = direct(tiny, ids, 30, stop_ids=stop_token_ids(tok))
    r = client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=30, temperature=0)
    assert r.object == "chat.completion" and r.model == MODEL and r.id.startswith("chatcmpl-")
    [choice] = r.choices
    assert choice.message.role == "assistant" and choice.message.content == text
    assert choice.finish_reason == "length"
    assert (r.usage.prompt_tokens, r.usage.completion_tokens) == (len(ids), 30)
    # the prompt depends on every message: dropping the system one changes the answer
    assert direct(tiny, chat_ids(tok, MESSAGES[1:]), 30, stop_ids=stop_token_ids(tok))[0] != text
    # "developer" is OpenAI's new name for "system"; content may come as text parts
    renamed = [{"role": "developer", "content": [{"type": "text", "text": "Answer with "},
                                                 {"type": "text", "text": "code only."}]}] + MESSAGES[1:]
    again = client.chat.completions.create(model=MODEL, messages=renamed, max_tokens=30, temperature=0)
    assert again.choices[0].message.content == text and again.usage.prompt_tokens == len(ids)


def test_chat_stream_equals_the_whole_answer(client):
    kw = dict(model=MODEL, messages=MESSAGES, max_tokens=20, temperature=0)
    whole = client.chat.completions.create(**kw)
    chunks = list(client.chat.completions.create(stream=True, stream_options={"include_usage": True}, **kw))
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    *deltas, last = chunks
    assert "".join(c.choices[0].delta.content or "" for c in deltas) == whole.choices[0].message.content
    assert [c.choices[0].finish_reason for c in deltas if c.choices[0].finish_reason] == ["length"]
    assert deltas[-1].choices[0].finish_reason == "length"
    assert last.choices == [] and last.usage.model_dump() == whole.usage.model_dump()


def test_chat_n_stop_and_max_tokens(client, tiny):
    _, tok = tiny
    greedy = client.chat.completions.create(model=MODEL, messages=MESSAGES, n=2, max_tokens=30, temperature=0)
    assert [c.index for c in greedy.choices] == [0, 1]
    base = greedy.choices[0].message.content
    assert greedy.choices[1].message.content == base and greedy.usage.completion_tokens == 60
    sampled = client.chat.completions.create(model=MODEL, messages=MESSAGES, n=3, max_tokens=24, temperature=1.5,
                                             seed=9)
    assert [c.index for c in sampled.choices] == [0, 1, 2] and len({c.message.content for c in sampled.choices}) == 3
    stop = base[len(base) // 2:len(base) // 2 + 2]
    r = client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=30, temperature=0, stop=[stop])
    assert r.choices[0].message.content == base[:base.index(stop)] and r.choices[0].finish_reason == "stop"
    r = client.chat.completions.create(model=MODEL, messages=MESSAGES, max_completion_tokens=7, temperature=0)
    assert r.usage.completion_tokens == 7 and r.choices[0].finish_reason == "length"
    assert r.choices[0].message.content == direct(tiny, chat_ids(tok, MESSAGES), 7, stop_ids=stop_token_ids(tok))[0]


def test_chat_logprobs_and_top_logprobs(client, tiny):
    model, tok = tiny
    r = client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=5, temperature=0, logprobs=True,
                                       top_logprobs=3)
    content = r.choices[0].logprobs.content
    assert len(content) == r.usage.completion_tokens == 5
    assert "".join(item.token for item in content) == r.choices[0].message.content
    ids = chat_ids(tok, MESSAGES)
    _, generated, _ = direct(tiny, ids, 5, stop_ids=stop_token_ids(tok))
    full = model_logprobs(model, ids + generated)
    for k, (item, token_id) in enumerate(zip(content, generated)):
        row = full[len(ids) - 1 + k]
        assert item.token == tok.decode([token_id]) and item.bytes == list(item.token.encode())
        assert item.logprob == pytest.approx(float(row[token_id]), abs=2e-4)
        assert len(item.top_logprobs) == 3
        assert [t.logprob for t in item.top_logprobs] == pytest.approx(row.topk(3).values.tolist(), abs=2e-4)
        assert item.top_logprobs[0].token == item.token  # greedy
    plain = client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=5, temperature=0)
    assert plain.choices[0].logprobs is None
    streamed = list(client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=5, temperature=0,
                                                   logprobs=True, top_logprobs=2, stream=True))
    items = [i for c in streamed if c.choices and c.choices[0].logprobs for i in c.choices[0].logprobs.content]
    assert [i.token for i in items] == [i.token for i in content]


# ---------------------------------------------------------------------------- batching never changes an answer
BACKGROUND = [  # eight different requests (nine sequences) that keep the batch full while the targets run
    ("/v1/completions", {"prompt": "import os\n", "max_tokens": 420, "temperature": 0}),
    ("/v1/completions", {"prompt": "class Stack:\n    def push(self, x):", "max_tokens": 420, "temperature": 0.9,
                         "seed": 5}),
    ("/v1/completions", {"prompt": ["a = 1\n", "b = 2\n"], "max_tokens": 420, "temperature": 0}),
    ("/v1/completions", {"prompt": "for i in range(3):\n", "max_tokens": 420, "temperature": 0.7, "top_k": 5,
                         "seed": 1, "logprobs": 2}),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "Write a loop."}], "max_tokens": 400}),
    ("/infill", {"input_prefix": "def g(x):\n", "input_suffix": "\n", "n_predict": 420}),
    ("/v1/completions", {"prompt": "# " + "word " * 60, "max_tokens": 360, "temperature": 0, "stop": ["zzz"]}),
    ("/v1/completions", {"prompt": "x = [", "max_tokens": 420, "frequency_penalty": 0.5, "temperature": 0,
                         "presence_penalty": 0.3}),
]


def test_answers_are_the_same_alone_and_in_a_busy_batch(client, live, tiny):
    long_prompt = "".join(f"def f{i}(x):\n    return x + {i}\n\n" for i in range(30))  # > one prefill chunk
    assert len(tiny[1].encode(long_prompt)) > 256
    targets = [dict(prompt=PROMPT, max_tokens=40, temperature=0),
               dict(prompt=long_prompt, max_tokens=24, temperature=0),
               dict(prompt="def add(a, b):\n    ", suffix="\nprint(add(1, 2))\n", max_tokens=24, temperature=0),
               dict(prompt=PROMPT, max_tokens=24, temperature=1.2, seed=77)]
    alone = [client.completions.create(model=MODEL, **t).choices[0].text for t in targets]
    chat_alone = client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=24,
                                                temperature=0).choices[0].message.content
    # The background takes a step only while it starts and while a target is in the engine, so it
    # runs ~170 of its 360+ tokens: it outlasts every target however slow the clients are.
    background = []
    try:
        with StepGate(tiny[0]) as gate:
            for path, body in BACKGROUND:
                req = RawRequest(live.port, path, {"model": MODEL, "stream": True, **body})
                background.append(req)
                gate.run_until(lambda: req.has(b"data: "), f"the first event of {body}")
            gate.run_until(lambda: stats(live.engine).running == 9, "all nine background sequences running")
            busy = [gate.through(lambda: client.completions.create(model=MODEL, **t).choices[0].text, f"target {t}",
                                 only_while=one_request_in(live.engine)) for t in targets]
            chat_busy = gate.through(lambda: client.chat.completions.create(
                model=MODEL, messages=MESSAGES, max_tokens=24, temperature=0).choices[0].message.content,
                "the chat target", only_while=one_request_in(live.engine))
            # the background outlasted every target, so each target ran in a batch of ten
            assert stats(live.engine).running == 9
    finally:
        for req in background:
            req.close()
    assert busy == alone
    assert chat_busy == chat_alone


# ---------------------------------------------------------------------------- llama.cpp /infill
def infill_text(extra, prefix, prompt) -> str:
    """/infill's documented prefix: each extra chunk as `#filename\\ntext\\n`, then input_prefix, then prompt."""
    return "".join(f"#{c['filename']}\n{c['text']}\n" for c in extra) + prefix + prompt


INFILL = {"input_extra": EXTRA, "input_prefix": "def add(a, b):\n", "prompt": "    ",
          "input_suffix": "\n\nprint(add(1, 2))\n"}


def test_infill_is_fim_over_the_repository_layout(http, tiny):
    _, tok = tiny
    fim = fim_prompt(infill_text(EXTRA, INFILL["input_prefix"], INFILL["prompt"]), INFILL["input_suffix"],
                     fim_tokens(tok))
    r = http.post("/infill", json={**INFILL, "n_predict": 30})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["content"] == direct(tiny, fim, 30)[0]
    assert body["stop"] is True and body["model"] == MODEL and body["stop_type"] == "limit"
    assert body["tokens_predicted"] == body["timings"]["predicted_n"] == 30
    assert body["tokens_evaluated"] == body["timings"]["prompt_n"] == len(tok.encode(fim))
    # every part of the prompt counts: without the repository context the middle differs
    bare = http.post("/infill", json={**INFILL, "input_extra": [], "n_predict": 30}).json()["content"]
    assert bare == direct(tiny, fim_prompt(INFILL["input_prefix"] + INFILL["prompt"], INFILL["input_suffix"],
                                           fim_tokens(tok)), 30)[0]
    assert bare != body["content"]


def test_infill_stream_ends_with_a_stop_event(http):
    whole = http.post("/infill", json={**INFILL, "n_predict": 25}).json()
    with http.stream("POST", "/infill", json={**INFILL, "n_predict": 25, "stream": True}) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in r.iter_lines() if line]
    assert all(line.startswith("data: ") for line in lines)
    events = [json.loads(line[6:]) for line in lines]
    *pieces, last = events
    assert pieces and all(e["stop"] is False and set(e) == {"content", "stop"} for e in pieces)
    assert last["stop"] is True and last["content"] == "" and last["tokens_predicted"] == 25
    assert "".join(e["content"] for e in pieces) == whole["content"]


def llama_indent_cut(text: str, n_indent: int) -> tuple[str, bool]:
    """llama.cpp server's n_indent rule, written from its source: every line after the first must
    start with at least n_indent spaces/tabs; the first that does not (a blank line included) is
    erased from its first character that is neither, its newline and indentation kept."""
    nl = text.find("\n")
    while nl != -1:
        pos = nl + 1
        while pos < len(text) and text[pos] in " \t":
            pos += 1
        if pos < len(text) and pos - (nl + 1) < n_indent:
            return text[:pos], True
        nl = text.find("\n", nl + 1)
    return text, False


@pytest.mark.parametrize("text", ["a\n    b\n  c\nd", "x\n\n    y", "x\n   \n    y", "x\n \t z\n    w\n", "  a\n  b",
                                  "a\n    b\n    ", "\nx", "a\n\tb\n\t\tc\n\nd"])
@pytest.mark.parametrize("n_indent", [1, 2, 3, 4])
def test_indent_cut_is_llama_cpps_rule_however_the_text_is_split(text, n_indent):
    want = llama_indent_cut(text, n_indent)
    for size in (1, 2, 3, len(text)):
        cut = IndentCut(n_indent)
        got, ended = "", False
        for i in range(0, len(text), size):
            piece, ended = cut.push(text[i:i + size])
            got += piece
            if ended:
                break
        assert (got, ended) == want, (size, got)


def test_infill_n_indent_cuts_as_llama_cpp_and_stops_generating(http, live, tiny):
    model, _ = tiny
    # this middle has lines indented by 4 and whitespace-only ones: n_indent 1, 4 and 5 cut it at
    # three different places, 5 at a whitespace-only line
    base = {"input_prefix": "def g():\n    return [\n", "input_suffix": INFILL["input_suffix"], "n_predict": 200}
    full = http.post("/infill", json=base).json()["content"]
    wants = {n: llama_indent_cut(full, n) for n in (1, 4, 5)}
    assert all(cut for _, cut in wants.values()) and len({want for want, _ in wants.values()}) == 3, wants
    assert full[len(wants[5][0])] == "\n"
    for n_indent, (want, _) in wants.items():
        before = metrics(http)
        with StepGate(model) as gate:  # one step at a time: the engine cannot run on while the cut travels
            r = gate.through(lambda: http.post("/infill", json={**base, "n_indent": n_indent}).json(),
                             f"the infill with n_indent={n_indent}")
            gate.run_until(lambda: idle(live.engine), "the request ended")
        after = metrics(http)
        assert r["content"] == want and r["stop"] is True and r["stop_type"] == "limit", (n_indent, r)
        assert r["tokens_predicted"] < 100
        generated = metric(after, "dscoder_generation_tokens_total") - metric(before, "dscoder_generation_tokens_total")
        assert generated < 100, "the non-streaming infill kept generating after the n_indent cut"
        with http.stream("POST", "/infill", json={**base, "n_indent": n_indent, "stream": True}) as s:
            events = [json.loads(line[6:]) for line in s.iter_lines() if line]
        assert "".join(e["content"] for e in events) == want
        assert events[-1]["stop"] is True and events[-1]["stop_type"] == "limit"


def test_infill_t_max_predict_ms_ends_at_a_newline(http, live, tiny):
    model, tok = tiny
    base = {**INFILL, "input_extra": [], "n_predict": 200}
    fim = fim_prompt(base["input_prefix"] + base["prompt"], base["input_suffix"], fim_tokens(tok))
    want = ""  # llama.cpp: once the time is up, the middle ends with the next token that holds a newline
    for delta in stream(model, tok, tok.encode(fim), SamplingParams(max_new_tokens=200, stop_token_ids=(tok.eos_id,))):
        want += delta.text
        if "\n" in delta.text:
            break
    assert "\n" in want and len(want) < len(direct(tiny, fim, 200)[0])
    held_at = []

    def time_is_up() -> bool:
        """Asked only while the gate holds a step: the first is the request's first, and the server
        started its 1 ms before it submitted the request, so the 1 ms is over 1 ms after that."""
        held_at[:] = held_at or [time.monotonic()]
        return time.monotonic() > held_at[0] + 0.001

    with StepGate(model) as gate:  # no token is generated before the time is up
        r = gate.through(lambda: http.post("/infill", json={**base, "t_max_predict_ms": 1}).json(),
                         "the infill answered", only_while=time_is_up)
    assert held_at, "the request never reached the engine"
    assert r["content"] == want and r["stop_type"] == "limit" and r["tokens_predicted"] < 200


# ---------------------------------------------------------------------------- models, tokenizer, health, metrics
def test_models(client, http):
    assert [m.id for m in client.models.list().data] == [MODEL]
    [entry] = http.get("/v1/models").json()["data"]
    assert entry["object"] == "model" and entry["max_model_len"] == CONTEXT


def test_tokenize_detokenize_round_trip(http, tiny):
    _, tok = tiny
    text = "def héllo(x):\n\treturn '✓ 世界' + x  # done\n"
    r = http.post("/tokenize", json={"content": text}).json()
    assert r["tokens"] == tok.encode(text, add_bos=False) and r["count"] == len(r["tokens"])
    assert r["max_model_len"] == CONTEXT
    assert http.post("/tokenize", json={"prompt": text}).json()["tokens"] == r["tokens"]  # vLLM's field name
    with_bos = http.post("/tokenize", json={"content": text, "add_special": True}).json()["tokens"]
    assert with_bos == [tok.bos_id] + r["tokens"]
    back = http.post("/detokenize", json={"tokens": r["tokens"]})
    assert back.status_code == 200 and back.json() == {"content": text}
    assert http.post("/tokenize", json={"content": text, "model": MODEL}).status_code == 200


def test_health_when_ready(http):
    r = http.get("/health")
    assert r.status_code == 200 and r.json() == {"status": "ok"}


def test_metrics_count_requests_and_free_blocks(http, client, live):
    before = metrics(http)
    client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=7, temperature=0)
    client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=5, temperature=0)
    settle(live.engine)
    after = metrics(http)
    delta = lambda name, **labels: metric(after, name, **labels) - metric(before, name, **labels)  # noqa: E731
    assert delta("dscoder_generation_tokens_total") == 12
    assert delta("dscoder_request_finished_total", finish_reason="length") == 2
    assert delta("dscoder_time_to_first_token_seconds_count") == 2
    assert delta("dscoder_e2e_request_latency_seconds_count") == 2
    assert delta("dscoder_inter_token_latency_seconds_count") == 6 + 4
    assert metric(after, "dscoder_kv_blocks_total") == 512
    for gauge in ("dscoder_kv_blocks_used", "dscoder_num_requests_running", "dscoder_num_requests_waiting"):
        assert metric(after, gauge) == 0, gauge


def test_loading_server_answers_503_then_serves(tiny):
    model, tok = tiny
    gate = threading.Event()

    def loader() -> Engine:
        assert gate.wait(60), "the test never let the model load"
        return Engine(model, tok, EngineConfig(num_blocks=64))

    try:
        with LiveServer(create_app(ServerState(MODEL), loader=loader)) as server, \
                httpx.Client(base_url=server.url, timeout=60) as c:
            r = c.get("/health")
            assert r.status_code == 503 and r.json()["status"] == "loading" and int(r.headers["retry-after"]) > 0
            for method, path, body in [("POST", "/v1/completions", {"model": MODEL, "prompt": "x"}),
                                       ("POST", "/v1/chat/completions", {"model": MODEL, "messages": MESSAGES}),
                                       ("POST", "/infill", {"input_prefix": "x"}), ("GET", "/v1/models", None),
                                       ("GET", "/metrics", None), ("POST", "/tokenize", {"content": "x"})]:
                r = c.request(method, path, json=body)
                assert_error(r, 503, code="model_loading", type="server_unavailable")
                assert int(r.headers["retry-after"]) > 0
            gate.set()
            wait_for(lambda: c.get("/health").status_code == 200, "the server became ready")
            r = c.post("/v1/completions", json={"model": MODEL, "prompt": PROMPT, "max_tokens": 5, "temperature": 0})
            assert r.status_code == 200 and r.json()["choices"][0]["text"] == direct(tiny, PROMPT, 5)[0]
    finally:
        gate.set()


def test_failed_load_is_reported_not_crashed():
    failures = []

    def loader() -> Engine:
        raise FileNotFoundError("no such model: /nowhere")

    with LiveServer(create_app(ServerState(MODEL), loader=loader, on_load_error=failures.append)) as server, \
            httpx.Client(base_url=server.url, timeout=60) as c:
        health = wait_for(lambda: (r := c.get("/health")).json()["status"] == "error" and r, "the load failed")
        assert health.status_code == 503 and "no such model" in health.json()["error"]
        err = assert_error(c.post("/v1/completions", json={"model": MODEL, "prompt": "x"}), 503, code="model_loading")
        assert "failed to load" in err["message"] and "no such model" in err["message"]
    assert len(failures) == 1 and "FileNotFoundError" in failures[0]


# ---------------------------------------------------------------------------- errors: always the envelope, never a 500
C, CH, I = "/v1/completions", "/v1/chat/completions", "/infill"
OK_C = {"model": MODEL, "prompt": "x", "max_tokens": 4}
OK_CH = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
BAD_REQUESTS = {  # name: (path, body, status, param, code)
    "prompt wrong type": (C, {**OK_C, "prompt": 5}, 400, "prompt", None),
    "prompt empty list": (C, {**OK_C, "prompt": []}, 400, "prompt", None),
    "prompt empty token list": (C, {**OK_C, "prompt": [[1, 2], []]}, 400, "prompt", None),
    "max_tokens wrong type": (C, {**OK_C, "max_tokens": "many"}, 400, "max_tokens", None),
    "temperature wrong type": (C, {**OK_C, "temperature": "hot"}, 400, "temperature", None),
    "stream wrong type": (C, {**OK_C, "stream": "maybe"}, 400, "stream", None),
    "n fractional": (C, {**OK_C, "n": 1.5}, 400, "n", None),
    "missing prompt": (C, {"model": MODEL}, 400, "prompt", None),
    "missing model": (C, {"prompt": "x"}, 400, "model", None),
    "temperature above 2": (C, {**OK_C, "temperature": 2.5}, 400, "temperature", None),
    "temperature negative": (C, {**OK_C, "temperature": -0.1}, 400, "temperature", None),
    "top_p zero": (C, {**OK_C, "top_p": 0}, 400, "top_p", None),
    "top_p above 1": (C, {**OK_C, "top_p": 1.5}, 400, "top_p", None),
    "n zero": (C, {**OK_C, "n": 0}, 400, "n", None),
    "n too many": (C, {**OK_C, "n": 17}, 400, "n", None),
    "max_tokens zero": (C, {**OK_C, "max_tokens": 0}, 400, "max_tokens", None),
    "max_tokens negative": (C, {**OK_C, "max_tokens": -3}, 400, "max_tokens", None),
    "logprobs too many": (C, {**OK_C, "logprobs": 21}, 400, "logprobs", None),
    "logprobs negative": (C, {**OK_C, "logprobs": -1}, 400, "logprobs", None),
    "frequency_penalty out of range": (C, {**OK_C, "frequency_penalty": 3}, 400, "frequency_penalty", None),
    "seed negative": (C, {**OK_C, "seed": -1}, 400, "seed", None),
    "stop empty": (C, {**OK_C, "stop": ""}, 400, "stop", None),
    "stop empty in list": (C, {**OK_C, "stop": ["ok", ""]}, 400, "stop", None),
    "stop too many": (C, {**OK_C, "stop": [str(i) for i in range(17)]}, 400, "stop", None),
    "unknown model": (C, {**OK_C, "model": "gpt-4"}, 404, "model", "model_not_found"),
    "token id above vocabulary": (C, {**OK_C, "prompt": [1, 10**6]}, 400, "prompt", None),
    "token id negative": (C, {**OK_C, "prompt": [-1]}, 400, "prompt", None),
    "token id above vocabulary in a batch": (C, {**OK_C, "prompt": [[1, 2], [3, 32256]]}, 400, "prompt", None),
    "suffix with echo": (C, {**OK_C, "suffix": "y", "echo": True}, 400, "echo", None),
    "suffix with token ids": (C, {**OK_C, "prompt": [1, 2], "suffix": "y"}, 400, "prompt", None),
    "chat missing messages": (CH, {"model": MODEL}, 400, "messages", None),
    "chat empty messages": (CH, {**OK_CH, "messages": []}, 400, "messages", None),
    "chat bad role": (CH, {**OK_CH, "messages": [{"role": "wizard", "content": "x"}]}, 400, "messages.0.role", None),
    "chat message without role": (CH, {**OK_CH, "messages": [{"content": "x"}]}, 400, "messages.0.role", None),
    "chat bad content part": (CH, {**OK_CH, "messages": [{"role": "user", "content": [{"type": "image_url"}]}]}, 400,
                              "messages.0.content", None),
    "chat top_logprobs too many": (CH, {**OK_CH, "logprobs": True, "top_logprobs": 21}, 400, "top_logprobs", None),
    "chat n zero": (CH, {**OK_CH, "n": 0}, 400, "n", None),
    "chat max_completion_tokens zero": (CH, {**OK_CH, "max_completion_tokens": 0}, 400, "max_completion_tokens",
                                        None),
    "chat unknown model": (CH, {**OK_CH, "model": "gpt-4"}, 404, "model", "model_not_found"),
    "chat tool message the template rejects": (CH, {**OK_CH, "messages": [{"role": "tool", "content": "x"}]}, 400,
                                               "messages", None),
    "infill n_predict below -1": (I, {"input_prefix": "x", "n_predict": -2}, 400, "n_predict", None),
    "infill n_indent negative": (I, {"input_prefix": "x", "n_indent": -1}, 400, "n_indent", None),
    "infill input_extra wrong type": (I, {"input_prefix": "x", "input_extra": "util.py"}, 400, "input_extra", None),
    "infill unknown model": (I, {"input_prefix": "x", "model": "gpt-4"}, 404, "model", "model_not_found"),
    "tokenize nothing": ("/tokenize", {}, 400, "content", None),
    "tokenize wrong type": ("/tokenize", {"content": 5}, 400, "content", None),
    "detokenize id above vocabulary": ("/detokenize", {"tokens": [1, 10**6]}, 400, "tokens", None),
    "detokenize wrong type": ("/detokenize", {"tokens": "abc"}, 400, "tokens", None),
    "detokenize unknown model": ("/detokenize", {"tokens": [1], "model": "gpt-4"}, 404, "model", "model_not_found"),
}


@pytest.mark.parametrize("name", list(BAD_REQUESTS))
def test_bad_request_names_the_field(http, name):
    path, body, status, param, code = BAD_REQUESTS[name]
    assert_error(http.post(path, json=body), status, param=param, code=code,
                 type="invalid_request_error" if status == 400 else None)


@pytest.mark.parametrize("path", [C, CH, I, "/tokenize"])
def test_invalid_json_is_a_400(http, path):
    r = http.post(path, content=b'{"model": "x", "prompt": ', headers={"content-type": "application/json"})
    err = assert_error(r, 400, param=None, type="invalid_request_error")
    assert "JSON" in err["message"]


def test_unknown_paths_and_methods_use_the_envelope(http):
    assert_error(http.get("/v2/nothing"), 404, type="not_found_error")
    assert_error(http.post("/v1/embeddings", json={}), 404, type="not_found_error")
    assert_error(http.get("/v1/completions"), 405)


def test_context_too_long_names_both_counts(http, client, tiny):
    _, tok = tiny
    long_text = "x = 1\n" * 200
    n = len(tok.encode(long_text))
    assert n > CONTEXT
    err = assert_error(http.post(C, json={**OK_C, "prompt": long_text, "max_tokens": 16}), 400, param="prompt",
                       code="context_length_exceeded")
    assert str(n) in err["message"] and str(CONTEXT) in err["message"]
    fits = "x = 1\n" * 100  # fits alone, not with the tokens asked for
    m = len(tok.encode(fits))
    assert m + 150 > CONTEXT > m
    err = assert_error(http.post(C, json={**OK_C, "prompt": fits, "max_tokens": 150}), 400, param="prompt",
                       code="context_length_exceeded")
    assert str(m) in err["message"] and "150" in err["message"] and str(CONTEXT) in err["message"]
    assert_error(http.post(C, json={**OK_C, "prompt": ["x", fits], "max_tokens": 150}), 400, param="prompt",
                 code="context_length_exceeded")
    assert_error(http.post(CH, json={**OK_CH, "messages": [{"role": "user", "content": long_text}]}), 400,
                 param="messages", code="context_length_exceeded")
    assert_error(http.post(I, json={"input_prefix": long_text}), 400, param="input_prefix",
                 code="context_length_exceeded")
    # the client library surfaces it as a BadRequestError
    with pytest.raises(openai.BadRequestError) as caught:
        client.completions.create(model=MODEL, prompt=long_text, max_tokens=16)
    assert caught.value.status_code == 400 and caught.value.code == "context_length_exceeded"


def test_api_key(tiny):
    model, tok = tiny
    engine = Engine(model, tok, EngineConfig(num_blocks=64)).start()
    with LiveServer(create_app(ServerState(MODEL, engine=engine), api_key="sekret")) as server, \
            httpx.Client(base_url=server.url, timeout=60) as c:
        for method, path, body in [("POST", C, OK_C), ("POST", CH, OK_CH), ("POST", I, {"input_prefix": "x"}),
                                   ("GET", "/v1/models", None), ("GET", "/metrics", None),
                                   ("POST", "/tokenize", {"content": "x"}), ("GET", "/v2/unknown", None)]:
            for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "sekret"}):
                r = c.request(method, path, json=body, headers=headers)
                assert_error(r, 401, code="invalid_api_key")
                assert r.headers["www-authenticate"] == "Bearer"
        assert c.get("/health").status_code == 200  # open: load balancers probe it without the key
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=f"{server.url}/v1", api_key="wrong", max_retries=0).models.list()
        good = openai.OpenAI(base_url=f"{server.url}/v1", api_key="sekret", max_retries=0)
        r = good.completions.create(model=MODEL, prompt=PROMPT, max_tokens=5, temperature=0)
        assert r.choices[0].text == direct(tiny, PROMPT, 5)[0]
        assert c.get("/metrics", headers={"Authorization": "Bearer sekret"}).status_code == 200


def test_full_queue_is_a_429_with_retry_after(tiny):
    model, tok = tiny
    engine = Engine(model, tok, EngineConfig(num_blocks=128, max_running=1, max_waiting=1)).start()
    with LiveServer(create_app(ServerState(MODEL, engine=engine))) as server, \
            httpx.Client(base_url=server.url, timeout=60) as c:
        long = {"model": MODEL, "prompt": "x = ", "max_tokens": 400, "stream": True}
        with StepGate(model) as gate:  # the first request cannot finish (and free its place) meanwhile
            running = RawRequest(server.port, C, long)
            waiting = None
            try:
                gate.run_until(lambda: running.has(b"data: ") and stats(engine).running == 1,
                               "the first request streaming")
                waiting = RawRequest(server.port, C, long)
                wait_for(lambda: stats(engine).waiting == 1, "the second request queued")
                for path, body in [(C, OK_C), (CH, OK_CH), (I, {"input_prefix": "x"}), (C, {**OK_C, "n": 2})]:
                    r = c.post(path, json=body)
                    assert_error(r, 429, code="server_busy", type="rate_limit_error")
                    assert int(r.headers["retry-after"]) >= 1
                with pytest.raises(openai.RateLimitError):
                    openai.OpenAI(base_url=f"{server.url}/v1", api_key="x", max_retries=0).completions.create(
                        model=MODEL, prompt="x", max_tokens=2)
                assert metric(parse_metrics(c.get("/metrics").text), "dscoder_request_rejections_total") == 5
            finally:
                running.close()
                if waiting is not None:
                    waiting.close()
            gate.run_until(lambda: idle(engine), "both requests cancelled")
        settle(engine)
        r = c.post(C, json={**OK_C, "temperature": 0})  # room again
        assert r.status_code == 200 and r.json()["choices"][0]["finish_reason"] == "length"


def test_a_model_without_fim_tokens_refuses_infilling(smollm2_gguf):
    """The SmolLM2 vocabulary has no FIM tokens: suffix and /infill are a 400 naming that, the rest works."""
    tok = Tokenizer.load(smollm2_gguf)
    with pytest.raises(ValueError):
        fim_tokens(tok)
    cfg = get_preset("tiny-llama").config.replace(vocab_size=tok.vocab_size, bos_token_id=tok.bos_id,
                                                  eos_token_id=tok.eos_id)
    engine = Engine(Transformer(cfg).eval(), tok, EngineConfig(num_blocks=32)).start()
    with LiveServer(create_app(ServerState("smol", engine=engine))) as server, \
            httpx.Client(base_url=server.url, timeout=60) as c:
        err = assert_error(c.post(C, json={"model": "smol", "prompt": "def f(", "suffix": ")"}), 400, param="suffix",
                           code="fim_unsupported")
        assert "fill-in-the-middle" in err["message"]
        assert_error(c.post(I, json={"input_prefix": "def f(", "input_suffix": ")"}), 400, param="input_prefix",
                     code="fim_unsupported")
        assert c.post(C, json={"model": "smol", "prompt": "def f(", "max_tokens": 3}).status_code == 200
        r = c.post(CH, json={"model": "smol", "messages": MESSAGES[:2], "max_tokens": 3})  # its own chat template
        assert r.status_code == 200
        assert r.json()["usage"]["prompt_tokens"] == len(tok.encode(chat_prompt(tok, MESSAGES[:2]), add_bos=False))
        # a prompt that encodes to nothing (this vocabulary adds no BOS) is a 400, not a 500
        assert_error(c.post(C, json={"model": "smol", "prompt": ""}), 400, param="prompt")


# ---------------------------------------------------------------------------- a client going away cancels
HANG_UPS = {"completions": (C, {"model": MODEL, "prompt": "x = ", "max_tokens": 480}),
            "chat": (CH, {"model": MODEL, "messages": [{"role": "user", "content": "Loop."}], "max_tokens": 400}),
            "infill": (I, {"input_prefix": "def f(a):\n", "input_suffix": "\n", "n_predict": 450})}


def hang_up_mid_generation(live, tiny, path: str, body: dict) -> None:
    """Send a request; let the engine run it until it has generated a token (and a stream has sent
    its first event) while the gate holds its next step; hang up; then let steps through one at a
    time until the engine has ended it.  The generation cannot finish on its own meanwhile: it
    gets a step only after the test has looked, and its hundreds of tokens outlast the hang-up."""
    engine = live.engine
    before = counter(engine, "dscoder_generation_tokens_total")
    with StepGate(tiny[0]) as gate:
        req = RawRequest(live.port, path, body)
        try:
            gate.run_until(lambda: stats(engine).running == 1
                           and counter(engine, "dscoder_generation_tokens_total") > before
                           and (not body.get("stream") or req.has(b"data: ")), "the request generating")
        finally:
            req.close()
        gate.run_until(lambda: idle(engine), "the request ended")
    settle(engine)


@pytest.mark.parametrize("streaming", [True, False], ids=["stream", "whole"])
@pytest.mark.parametrize("endpoint", list(HANG_UPS))
def test_client_going_away_cancels_its_generation(http, live, tiny, endpoint, streaming):
    path, body = HANG_UPS[endpoint]
    before = metrics(http)
    hang_up_mid_generation(live, tiny, path, {**body, "stream": streaming})
    after = metrics(http)
    delta = lambda name, **labels: metric(after, name, **labels) - metric(before, name, **labels)  # noqa: E731
    assert delta("dscoder_request_finished_total", finish_reason="cancelled") == 1
    assert delta("dscoder_request_finished_total", finish_reason="length") == 0
    assert 1 <= delta("dscoder_generation_tokens_total") < 400  # cancelled mid-generation


def test_metrics_gauges_return_to_zero_after_the_last_request_is_cancelled(http, live, tiny):
    hang_up_mid_generation(live, tiny, C, {"model": MODEL, "prompt": "x = ", "max_tokens": 480, "stream": True})
    m = metrics(http)
    assert (metric(m, "dscoder_num_requests_running"), metric(m, "dscoder_kv_blocks_used")) == (0, 0)
