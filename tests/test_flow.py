"""The whole flow on tiny inputs, through the command line as a user runs it: a repository ->
`dscoder tokenizer train` -> `dscoder data build` -> a tiny model saved as an HF directory ->
`dscoder complete`, `dscoder eval humaneval` and `dscoder serve` answering a completion.

Everything but the evaluation needs nothing outside this file: the tokenizer is trained on
the fixture repository and the model is a randomly initialised tiny preset.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from conftest import SHARED_DATA as DATA
from dscoder.formats.hf import save_hf_dir
from dscoder.model.presets import get_preset
from dscoder.model.transformer import Transformer
from dscoder.tokenizer.tokenizer import Tokenizer

FILES = {
    "shapes/area.py": ('"""Areas of simple shapes."""\n\nimport math\n\n\ndef circle(radius):\n'
                       '    return math.pi * radius * radius\n\n\ndef square(side):\n    return side * side\n'),
    "shapes/report.py": ('"""Print the areas."""\n\nfrom shapes.area import circle, square\n\n\ndef main():\n'
                         '    for size in range(1, 4):\n        print(size, circle(size), square(size))\n\n\n'
                         'if __name__ == "__main__":\n    main()\n'),
    "shapes/words.py": ('def count_words(text):\n    counts = {}\n    for word in text.split():\n'
                        '        counts[word] = counts.get(word, 0) + 1\n    return counts\n'),
}


def dscoder(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dscoder.cli", *args], capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture(scope="module")
def flow(tmp_path_factory) -> dict:
    """The repository, its tokenizer, its corpus and a tiny model that uses the tokenizer."""
    root = tmp_path_factory.mktemp("flow")
    for rel, text in FILES.items():
        (root / "src" / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / "src" / rel).write_text(text * 3)  # long enough for BPE merges to be seen twice
    trained = dscoder("tokenizer", "train", str(root / "src"), "--vocab-size", "400", "--out", str(root / "tok"))
    assert trained.returncode == 0, trained.stderr
    built = dscoder("data", "build", str(root / "src"), "--out", str(root / "corpus"), "--tokenizer",
                    str(root / "tok" / "tokenizer.json"), "--seq-len", "32", "--shard-sequences", "4",
                    "--val-fraction", "0", "--workers", "1", "--no-decontaminate")
    assert built.returncode == 0, built.stderr
    tok = Tokenizer.load(root / "tok")
    cfg = get_preset("tiny-llama").config.replace(vocab_size=tok.vocab_size, bos_token_id=tok.bos_id,
                                                  eos_token_id=tok.eos_id)
    model_dir = save_hf_dir(Transformer(cfg), root / "model")
    tok.save(model_dir)
    return {"root": root, "model": str(model_dir), "tokenizer": tok}


def test_data_build_writes_shards_and_its_resolved_settings(flow):
    manifest = json.loads((flow["root"] / "corpus" / "manifest.json").read_text())
    assert manifest["settings"]["tokenizer"] == str(flow["root"] / "tok" / "tokenizer.json")
    assert manifest["settings"]["seq_len"] == 32 and manifest["settings"]["decontaminate"] is False
    assert manifest["files"]["kept"] == len(FILES) and manifest["splits"]["train"]["shards"]


def test_complete_runs_the_saved_model(flow):
    out = dscoder("complete", "def circle(radius):", "--model", flow["model"], "-n", "6")
    assert out.returncode == 0, out.stderr
    assert "tokens in" in out.stderr and "model loaded in" in out.stderr


@pytest.mark.skipif(not (DATA / "humaneval").is_dir(), reason="needs the benchmark data (shared/data/humaneval)")
def test_eval_humaneval_scores_two_problems(flow, tmp_path):
    out = dscoder("eval", "humaneval", "--limit", "2", "--model", flow["model"], "--max-tokens", "8",
                  "--out", str(tmp_path / "eval"), "--workers", "1", "--no-progress")
    assert out.returncode == 0, out.stderr
    summary = json.loads((tmp_path / "eval" / "summary.json").read_text())
    assert summary["samples"] == 2  # a random model fails both; that they ran and were judged is the point


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
    except OSError:
        return 0  # not listening yet


def test_serve_answers_a_completion(flow, tmp_path):
    port = _free_port()
    log = tmp_path / "serve.log"
    with open(log, "w") as sink:
        proc = subprocess.Popen([sys.executable, "-m", "dscoder.cli", "serve", "--model", flow["model"], "--port",
                                 str(port), "--kv-cache-gib", "0.01", "--log-level", "warning"],
                                stdout=sink, stderr=subprocess.STDOUT, env={**os.environ, "DSCODER_API_KEY": ""})
    try:
        deadline = time.monotonic() + 120
        while _get(f"http://127.0.0.1:{port}/health") != 200:
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, f"the server did not become ready:\n{log.read_text()[-4000:]}"
            time.sleep(0.2)
        body = json.dumps({"model": "model", "prompt": "def square(side):", "max_tokens": 5}).encode()
        request = urllib.request.Request(f"http://127.0.0.1:{port}/v1/completions", data=body,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=60) as r:
            answer = json.loads(r.read())
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert answer["model"] == "model" and answer["object"] == "text_completion"
    assert answer["usage"]["completion_tokens"] >= 1 and isinstance(answer["choices"][0]["text"], str)
    assert "ready:" in log.read_text()
