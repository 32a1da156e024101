"""`dscoder eval ... --api URL`: the model under test behind an OpenAI-compatible server.

Our real server (`dscoder serve` as a subprocess, a tiny random model over DeepSeek-Coder's
vocabulary, with an API key) answers the evaluation's requests; the same model evaluated
locally (`dscoder eval --model DIR`) is the reference. Greedy and seeded samples through the
API must be the local engine's own completions, in the base form (stop strings, HumanEval's
stripped and rejoined newline), the instruct form (the chat template) and fill-in-the-middle
(OpenAI's `suffix` and llama.cpp's /infill), so the same completions get the same verdicts.
How the harness survives a misbehaving server is in tests/hostile/test_hostile_eval_api.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from dscoder import eval as evaluation
from dscoder.eval import api
from dscoder.eval.config import EvalConfig, EvalError, default_out
from dscoder.tokenizer.tokenizer import Tokenizer
from conftest import ROOT, code_like_model_dir, shared_data
from serve_live import dscoder_serve

pytest.importorskip("uvicorn")

KEY = "eval-api-test-key-7f3a"
MODEL = "tiny-coder"


@pytest.fixture(scope="module")
def coder_dir(tmp_path_factory) -> Path:
    """A random tiny Llama over DeepSeek-Coder's vocabulary (FIM tokens, chat template) whose head lets
    only code-like pieces win, among them newlines, "#", "if" and "print": some HumanEval samples
    end at a stop string, the others run to the token budget."""
    tok = Tokenizer.load(shared_data("tokenizers", "ggml-vocab-deepseek-coder.gguf"))
    pieces = ["\n", "\n", "    ", "#", "print", "if", " x", " =", " 1", "return", "(", ")"]
    return code_like_model_dir(tmp_path_factory.mktemp("coder-model"), tok, pieces, seed=1, head_seed=1)


@pytest.fixture(scope="module")
def server(coder_dir, tmp_path_factory) -> str:
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    with dscoder_serve(["--model", str(coder_dir), "--served-model-name", MODEL, "--api-key", KEY,
                        "--kv-cache-gib", "0.25"], log) as (_, url):
        yield url


def samples(out: Path) -> dict[tuple[str, int], dict]:
    rows = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    return {(row["task_id"], row["sample"]): row for row in rows}


def local(model_dir: Path, out: Path, **settings) -> dict[tuple[str, int], dict]:
    """The reference: the same model evaluated in this process through the serving engine."""
    evaluation.run(EvalConfig(model=str(model_dir), out=out, progress=False, **settings))
    return samples(out)


def through_api(url: str, out: Path, **settings) -> dict[tuple[str, int], dict]:
    evaluation.run(EvalConfig(api=url, api_key=KEY, out=out, progress=False, **settings))
    return samples(out)


def same_samples(remote: dict, reference: dict) -> None:
    """Every sample's completion and verdict is the local one's; the sample's row says nothing went wrong."""
    assert remote.keys() == reference.keys()
    for key, row in remote.items():
        assert row["stage"] != "generate", f"{key}: {row['stderr']}"
        assert (row["completion"], row["status"]) == (reference[key]["completion"], reference[key]["status"]), key
        # At most 4 stop strings are sent (OpenAI's limit), the rest applied to the answer: never fewer tokens.
        assert row["gen_tokens"] >= reference[key]["gen_tokens"] > 0


def test_base_form_through_the_command_line_is_the_local_engines(server, coder_dir, tmp_path):
    """`dscoder eval humaneval --api URL/v1 --limit 4`: the model is found from /v1/models, the key
    from $DSCODER_API_KEY; completions (stop strings, the rejoined newline) and verdicts are the
    local run's; the results name the server and its model, and never the key."""
    out = tmp_path / "api"
    cli = subprocess.run([sys.executable, "-m", "dscoder.cli.app", "eval", "humaneval", "--api", f"{server}/v1",
                          "--limit", "4", "--max-tokens", "24", "--concurrency", "3", "--out", str(out),
                          "--no-progress"], cwd=ROOT, capture_output=True, text=True, timeout=300,
                         env={**os.environ, "DSCODER_API_KEY": KEY})
    assert cli.returncode == 0, cli.stderr
    assert "failed at the server" not in cli.stderr and f"{MODEL} at {server}" in cli.stdout
    reference = local(coder_dir, tmp_path / "local", benchmark="humaneval", limit=4, max_new_tokens=24)
    remote = samples(out)
    same_samples(remote, reference)
    assert all(row["completion"].startswith("\n") for row in remote.values())  # DeepSeek's rejoin
    assert any(row["gen_tokens"] < 24 for row in reference.values())  # a stop string ended some sample
    config = json.loads((out / "config.json").read_text())
    assert (config["api"], config["api_model"], config["model"]) == (server, MODEL, "")
    for path in out.iterdir():
        assert KEY not in path.read_bytes().decode("utf-8", "replace"), path


def test_instruct_form_is_the_chat_route(server, coder_dir, tmp_path):
    settings = dict(benchmark="humaneval", form="instruct", limit=2, max_new_tokens=16)
    same_samples(through_api(server, tmp_path / "api", **settings),
                 local(coder_dir, tmp_path / "local", **settings))


@pytest.mark.parametrize("route", ["suffix", "infill"])
def test_fill_in_the_middle_through_suffix_or_infill(server, coder_dir, tmp_path, route):
    shared_data("infilling")
    settings = dict(benchmark="humaneval-infilling", subset="single-line", limit=2, max_new_tokens=6)
    remote = through_api(server, tmp_path / "api", api_fim=route, **settings)
    same_samples(remote, local(coder_dir, tmp_path / "local", **settings))


def test_seeded_sampling_sends_seed_plus_index(server, coder_dir, tmp_path):
    """Sample i asks with seed + i, as the local path samples: the same draws, and they differ."""
    settings = dict(benchmark="humaneval", limit=1, samples=3, temperature=1.5, seed=5, max_new_tokens=10)
    remote = through_api(server, tmp_path / "api", **settings)
    same_samples(remote, local(coder_dir, tmp_path / "local", **settings))
    assert len({row["completion"] for row in remote.values()}) > 1  # one problem, three different draws


def test_the_server_refuses_a_wrong_key_or_an_unknown_model_before_any_sample(server, tmp_path, monkeypatch):
    monkeypatch.delenv("DSCODER_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    base = dict(limit=1, out=tmp_path / "x", progress=False)
    with pytest.raises(EvalError, match="give the key with --api-key"):
        evaluation.run(EvalConfig("humaneval", api=server, **base))
    with pytest.raises(EvalError, match="is not one it accepts"):
        evaluation.run(EvalConfig("humaneval", api=server, api_key="wrong", **base))
    monkeypatch.setenv("OPENAI_API_KEY", KEY)  # the fallback is read
    with pytest.raises(EvalError, match=f"does not serve --api-model 'other'; it serves '{MODEL}'"):
        evaluation.run(EvalConfig("humaneval", api=server, api_model="other", **base))
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("settings, message", [
    (dict(model="some/model"), "--api and --model"),
    (dict(completions=Path("done.jsonl")), "--api and --completions"),
    (dict(quant="int8"), "--quant quantizes a local model"),
    (dict(concurrency=0), "--concurrency must be at least 1"),
    (dict(api_timeout=0), "--api-timeout must be more than 0"),
    (dict(api_params="[1]"), "--api-params must be a JSON object, got list"),
    (dict(api_params='{"temperature": 1}'), "--api-params cannot set temperature"),
    (dict(api="localhost:8000"), "--api must be an http:// or https:// URL"),
])
def test_settings_that_cannot_go_with_api_are_refused(settings, message, tmp_path):
    cfg = EvalConfig("humaneval", **{"api": "http://127.0.0.1:9", "out": tmp_path / "x", **settings})
    with pytest.raises(EvalError, match=message):
        evaluation.run(cfg)
    with pytest.raises(EvalError, match="--api-model needs --api"):
        EvalConfig("humaneval", api_model="m").check()


def test_url_forms_and_the_default_folder():
    assert {api.base_url(u) for u in ("http://127.0.0.1:8000", "http://127.0.0.1:8000/", "http://127.0.0.1:8000/v1",
                                      "http://127.0.0.1:8000/v1/")} == {"http://127.0.0.1:8000"}
    assert api.base_url("https://host.example/openai/v1") == "https://host.example/openai"
    cfg = EvalConfig("humaneval", subset="python", api="http://127.0.0.1:8000", api_model="org/coder-6.7b")
    assert default_out(cfg) == Path("eval-results/humaneval-python-base-coder-6.7b-at-127.0.0.1-8000")
    assert "key-in-repr" not in repr(EvalConfig("humaneval", api_key="key-in-repr"))
