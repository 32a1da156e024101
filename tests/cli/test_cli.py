"""The `dscoder` command end to end, as a user runs it (real subprocesses)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import shared_data, wait_for
from dscoder.formats.hf import save_hf_dir
from dscoder.model.transformer import Transformer
from dscoder.model.presets import get_preset


def dscoder(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dscoder.cli.app", *args], capture_output=True, text=True, timeout=300)


def test_info_on_a_published_preset_needs_no_weights():
    out = dscoder("info", "deepseek-coder-v2-lite-instruct", "--json")
    assert out.returncode == 0, out.stderr
    facts = json.loads(out.stdout)
    assert facts["params_total"] == 15_706_484_224 and facts["params_active"] == 2_661_150_208
    assert facts["kv_values_per_token"] == 27 * (512 + 64)
    assert facts["kv_values_per_token_expanded"] == 27 * 16 * (128 + 64 + 128)
    assert facts["weight_bytes"]["bf16"] == 2 * 15_706_484_224
    assert facts["moe"]["routed_experts"] == 64 and facts["attention"]["kind"] == "MLA"


def test_info_table_on_a_model_directory(tmp_path):
    save_hf_dir(Transformer(get_preset("tiny-llama-mqa").config), tmp_path)
    out = dscoder("info", str(tmp_path))
    assert out.returncode == 0, out.stderr
    assert "MQA, 4 heads, 1 kv heads" in out.stdout
    assert f"{get_preset('tiny-llama-mqa').config.param_counts()[0]:,} total" in out.stdout


def test_info_on_the_embedded_default_model(smollm2_gguf):
    out = dscoder("info", "--json")
    assert out.returncode == 0, out.stderr
    facts = json.loads(out.stdout)
    assert facts["source"].endswith("SmolLM2-135M-Instruct.Q4_1.gguf")
    assert facts["arch"] == "llama" and facts["layers"] == 30 and facts["hidden_size"] == 576
    assert facts["attention"] == {"kind": "GQA", "kv_heads": 3, "head_dim": 64}
    assert facts["params_total"] == 134_515_008  # tied embeddings: counted once


def test_info_error_is_one_clear_line(tmp_path):
    out = dscoder("info", str(tmp_path))
    assert out.returncode == 2
    assert "has no config.json" in out.stderr and "Traceback" not in out.stderr


def test_convert_gguf_to_a_directory_transformers_loads(smollm2_gguf, tmp_path):
    import torch
    from transformers import AutoModelForCausalLM

    out = dscoder("convert", str(smollm2_gguf), str(tmp_path / "smol"), "--dtype", "fp32")
    assert out.returncode == 0, out.stderr
    theirs = AutoModelForCausalLM.from_pretrained(tmp_path / "smol", dtype=torch.float32)
    direct = AutoModelForCausalLM.from_pretrained(smollm2_gguf.parent, gguf_file=smollm2_gguf.name,
                                                  dtype=torch.float32)
    ids = torch.tensor([[1, 504, 3937, 288, 260, 1345]])
    with torch.no_grad():
        assert torch.equal(theirs(ids).logits, direct(ids).logits)
    from transformers import AutoTokenizer
    text = "def f(x):\n    return [x] * 3\n"
    assert AutoTokenizer.from_pretrained(tmp_path / "smol").encode(text) == \
        AutoTokenizer.from_pretrained(smollm2_gguf.parent, gguf_file=smollm2_gguf.name).encode(text)


def test_convert_rejects_an_unknown_dtype(tmp_path):
    out = dscoder("convert", "tiny-llama", str(tmp_path), "--dtype", "int3")
    assert out.returncode == 2 and "--dtype must be one of fp32, bf16, fp16" in out.stderr


def coder_vocab() -> str:
    return str(shared_data("tokenizers", "ggml-vocab-deepseek-coder.gguf"))


def test_tokenize_and_detokenize_round_trip():
    out = dscoder("tokenize", "--tokenizer", coder_vocab(), "--text", "Führer", "--no-bos")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == [37, 32009, 71, 6247]
    back = dscoder("detokenize", "--tokenizer", coder_vocab(), "37", "32009", "71", "6247")
    assert back.returncode == 0 and back.stdout == "Führer"
    with_bos = json.loads(dscoder("tokenize", "--tokenizer", coder_vocab(), "--text", "x").stdout)
    assert with_bos[0] == 32013


def test_tokenize_a_file_and_detokenize_json_from_stdin(tmp_path):
    source = tmp_path / "a.py"
    source.write_bytes("print('héllo')\r\n\tx = 1  \n".encode())
    ids = dscoder("tokenize", "--tokenizer", coder_vocab(), "--file", str(source), "--no-bos").stdout
    back = subprocess.run([sys.executable, "-m", "dscoder.cli.app", "detokenize", "--tokenizer", coder_vocab()],
                          input=ids.encode(), capture_output=True, timeout=120)  # bytes: keep the \r\n
    assert back.returncode == 0, back.stderr
    assert back.stdout == source.read_bytes()


def test_tokenize_usage_errors():
    both = dscoder("tokenize", "--tokenizer", coder_vocab(), "--text", "a", "--file", "b")
    assert both.returncode == 2 and "exactly one of --text or --file" in both.stderr
    bad = subprocess.run([sys.executable, "-m", "dscoder.cli.app", "detokenize", "--tokenizer", coder_vocab()],
                         input="[1, 2, 99999999]", capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "out of range" in bad.stderr


def test_tokenizer_train_command(tmp_path):
    import sysconfig

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    for name in ("textwrap.py", "bisect.py", "heapq.py", "fnmatch.py", "shlex.py"):
        (corpus / name).write_text((stdlib / name).read_text())
    out = dscoder("tokenizer", "train", str(corpus), "--vocab-size", "600", "--out", str(tmp_path / "tok"))
    assert out.returncode == 0, out.stderr
    assert "trained on 5 files" in out.stderr and "vocabulary 600" in out.stderr
    ids = json.loads(dscoder("tokenize", "--tokenizer", str(tmp_path / "tok"), "--text", "import heapq").stdout)
    assert 1 < len(ids) < len("import heapq")


def test_complete_prints_only_the_generated_text(smollm2_gguf):
    out = dscoder("complete", "def factorial(n):\n    if n == 0:\n        return 1\n    return", "-n", "12",
                  "--stop", "\n")
    assert out.returncode == 0, out.stderr
    assert out.stdout == " n * factorial(n - 1)"
    assert "tok/s" in out.stderr and "finish: stop" in out.stderr


@pytest.mark.slow  # long (CI time); run with pytest -m slow
@pytest.mark.parametrize("quant", [None, "int4"])
def test_complete_without_native_kernels_prints_the_same_text(smollm2_gguf, quant):
    """DSCODER_NATIVE=0 (a machine without AVX2 or a compiler) runs the PyTorch path of every kernel."""
    import os

    args = [sys.executable, "-m", "dscoder.cli.app", "complete", "def is_even(n):\n    return", "-n", "16"]
    args += ["--quant", quant] if quant else []
    runs = [subprocess.run(args, capture_output=True, text=True, timeout=300, env={**os.environ, "DSCODER_NATIVE": flag})
            for flag in ("1", "0")]
    assert all(run.returncode == 0 for run in runs), runs[1].stderr
    assert runs[0].stdout == runs[1].stdout and runs[0].stdout.strip()


def test_complete_rejects_an_over_long_request(smollm2_gguf):
    out = dscoder("complete", "x = 1", "-n", "100000")
    assert out.returncode == 2 and "exceeds the model's context of 8192 tokens" in out.stderr


def test_kv_cache_type_is_checked_by_name():
    out = dscoder("complete", "x = 1", "--kv-cache", "fp8")
    assert out.returncode == 2 and "--kv-cache must be one of fp32, bf16, fp16, got 'fp8'" in out.stderr


@pytest.mark.slow  # long (CI time); run with pytest -m slow
def test_complete_with_a_draft_prints_the_same_text(smollm2_gguf):
    prompt = "def factorial(n):\n    if n == 0:\n        return 1\n    return"
    plain = dscoder("complete", prompt, "-n", "12", "--stop", "\n")
    spec = dscoder("complete", prompt, "-n", "12", "--stop", "\n", "--draft", str(smollm2_gguf), "--speculate", "3")
    assert spec.returncode == 0, spec.stderr
    assert spec.stdout == plain.stdout == " n * factorial(n - 1)"
    assert "100% of draft tokens accepted" in spec.stderr
    hot = dscoder("complete", prompt, "-n", "4", "--draft", str(smollm2_gguf), "--temperature", "0.5")
    assert hot.returncode == 2 and "use --temperature 0 with --draft" in hot.stderr


@pytest.mark.slow  # long (CI time); run with pytest -m slow
def test_complete_with_lookup_prints_the_same_text_in_fewer_passes(smollm2_gguf):
    prompt = "import os\nimport sys\nimport json\n\n# the same imports, sorted in reverse:\n"  # output copies input
    plain = dscoder("complete", prompt, "-n", "24")
    spec = dscoder("complete", prompt, "-n", "24", "--lookup")
    assert spec.returncode == 0, spec.stderr
    assert spec.stdout == plain.stdout and "import json" in spec.stdout
    passes = int(spec.stderr.split(" target passes")[0].rsplit(" ", 1)[1])
    assert passes <= 12 and "of looked-up tokens accepted" in spec.stderr
    both = dscoder("complete", prompt, "--lookup", "--draft", str(smollm2_gguf))
    assert both.returncode == 2 and "--draft and --lookup" in both.stderr
    hot = dscoder("complete", prompt, "-n", "4", "--lookup", "--temperature", "0.5")
    assert hot.returncode == 2 and "use --temperature 0 with --lookup" in hot.stderr


def test_ctrl_c_in_chat_stops_the_answer_not_the_program(smollm2_gguf, tmp_path):
    """SIGINT while an answer streams: the answer stops, the next question is answered."""
    import signal

    stderr = tmp_path / "stderr"
    with open(stderr, "w") as err:
        # SIGINT's default disposition in the child: a suite started in the background by a shell
        # without job control inherits SIGINT ignored, and Python then never raises KeyboardInterrupt
        proc = subprocess.Popen([sys.executable, "-m", "dscoder.cli.app", "chat", "-n", "400"], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=err, text=True, bufsize=1,
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        proc.stdin.write("Write a long story about a robot who learns to program.\n")
        proc.stdin.flush()
        first = proc.stdout.read(20)  # the answer is streaming now
        assert first.strip()
        proc.send_signal(signal.SIGINT)
        wait_for(lambda: "interrupted" in stderr.read_text(), 120, "the chat to stop the answer")
        proc.stdin.write("What is 2 + 2?\n/exit\n")
        proc.stdin.flush()
        out, _ = proc.communicate(timeout=300)
    finally:
        proc.kill()
    errors = stderr.read_text()
    assert proc.returncode == 0, errors
    assert "interrupted" in errors
    assert "is 4" in out.strip().splitlines()[-1]  # the second question got its (greedy) answer


class _Recorder:
    """A loopback HTTP server standing in for the Hugging Face hub: it records each request and answers 404."""

    def __init__(self):
        import http.server
        import threading

        seen = self.requests = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def _answer(self):
                seen.append(f"{self.command} {self.path}")
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_GET = do_HEAD = do_POST = _answer

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fake_hub(tmp_path):
    import os

    hub = _Recorder()
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "DSCODER_OFFLINE")}
    env.update(HF_ENDPOINT=hub.url, HF_HOME=str(tmp_path / "hf"))  # an empty cache: nothing found locally
    yield hub, env
    hub.close()


def test_offline_mode_touches_no_network(fake_hub):
    """DSCODER_OFFLINE (which huggingface_hub does not know) and HF_HUB_OFFLINE set after import both keep
    `resolve` in the local cache: the stand-in hub hears nothing, and the error says to pass a local path."""
    hub, env = fake_hub
    cli = subprocess.run([sys.executable, "-m", "dscoder.cli.app", "info", "someone/some-model"],
                         env={**env, "DSCODER_OFFLINE": "1"}, capture_output=True, text=True, timeout=300)
    assert cli.returncode == 2 and "DSCODER_OFFLINE is set" in cli.stderr, cli.stderr
    assert "pass its local directory" in cli.stderr
    late = ("import os, huggingface_hub, dscoder.hub as hub\n"
            "os.environ['HF_HUB_OFFLINE'] = '1'  # after huggingface_hub read its environment\n"
            "try:\n    hub.resolve('someone/some-model')\nexcept hub.CheckpointError as e:\n    print(e)\n")
    lib = subprocess.run([sys.executable, "-c", late], env=env, capture_output=True, text=True, timeout=300)
    assert "HF_HUB_OFFLINE is set" in lib.stdout and "pass its local directory" in lib.stdout, lib.stderr
    assert hub.requests == []


def test_online_mode_asks_the_hub(fake_hub):
    """The same command without offline mode does reach the (stand-in) hub: the test above can fail."""
    hub, env = fake_hub
    cli = subprocess.run([sys.executable, "-m", "dscoder.cli.app", "info", "someone/some-model"],
                         env=env, capture_output=True, text=True, timeout=300)
    assert cli.returncode == 2 and "could not download 'someone/some-model'" in cli.stderr, cli.stderr
    assert any("someone/some-model" in r for r in hub.requests), hub.requests


@pytest.mark.parametrize("args, named", [
    (["infill", "{file}", "--line", "99"], "--line 99 is outside the file"),
    (["infill", "{file}"], "exactly one <CURSOR> marker"),
    (["translate", "{file}", "--to", ""], "translate needs a target language (--to)"),
    (["fix", "{file}", "--error", ""], "fix needs the error message (--error)"),
])
def test_bad_input_is_one_line_and_exit_2_before_any_model_loads(tmp_path, args, named):
    """Plain library errors for bad input are UserErrors: the CLI's one handler reports them
    (a ValueError outside that family would show a traceback and exit 1)."""
    from typer.testing import CliRunner

    from dscoder.cli import app

    source = tmp_path / "f.py"
    source.write_text("def f():\n    return 1\n")
    result = CliRunner().invoke(app, [a.format(file=source) for a in args])
    assert result.exit_code == 2, result.output
    assert named in result.output and "Traceback" not in result.output
    assert isinstance(result.exception, SystemExit)
