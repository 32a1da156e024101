"""--device {auto,cpu,cuda} and --dtype {auto,bf16,fp16,fp32} on every path that runs a model.

Declared once (`dscoder.hub.ModelChoice`), resolved once (`dscoder.hub.place`): auto is CUDA when
torch sees a GPU, else the CPU; dtype auto is fp32 on the CPU and bf16 on CUDA. A GPU that is not
here is one line naming the option, never a traceback; --quant (packed weights for the CPU's
native kernels) is refused off the CPU, and a model saved quantized is dequantized there.
Training names its compute dtype --compute-dtype (`train merge --dtype` is the saved weights').
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
import torch
from typer.testing import CliRunner

from dscoder.errors import ConfigError
from dscoder.hub import convert, dequantized, load_model, place
from dscoder.model.quant import QuantLinear
from tiny_gguf import write_tiny_gguf

runner = CliRunner()
NO_GPU = pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is here: --device cuda is valid")
DEVICE_CHOICES, DTYPE_CHOICES = "[auto|cpu|cuda]", "[auto|fp32|bf16|fp16]"
OPTION_DTYPE = re.compile(r"│\s+(\*\s+)?--dtype\s")  # an option named --dtype in a help table (not a mention)


def help_of(*args: str) -> str:
    from dscoder.cli.app import app

    result = runner.invoke(app, [*args, "--help"], env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    return result.output


@pytest.mark.parametrize("command", [["complete"], ["infill"], ["chat"], ["explain"], ["tests"], ["doc"],
                                     ["translate"], ["fix"], ["review"], ["eval", "humaneval"], ["eval", "all"],
                                     ["eval", "repo-completion"], ["eval", "loss-by-position"], ["serve"]],
                         ids=" ".join)
def test_every_command_that_runs_a_model_offers_device_and_dtype(command):
    text = help_of(*command)
    assert "--device" in text and DEVICE_CHOICES in text
    assert OPTION_DTYPE.search(text) and DTYPE_CHOICES in text


@pytest.mark.parametrize("command", ["pretrain", "extend", "sft", "grpo"])
def test_training_offers_device_and_a_compute_dtype(command):
    text = help_of("train", command)
    assert "--device" in text and DEVICE_CHOICES in text
    assert "--compute-dtype" in text and "[auto|bf16|fp16|fp32]" in text and not OPTION_DTYPE.search(text)
    assert OPTION_DTYPE.search(help_of("train", "merge"))  # the saved weights' type keeps its name there


def test_auto_is_cuda_in_bf16_where_there_is_a_gpu_else_the_cpu_in_fp32():
    device, dtype = place("auto", "auto")
    if torch.cuda.is_available():
        assert device.type == "cuda" and dtype == (torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16)
    else:
        assert (device, dtype) == (torch.device("cpu"), torch.float32)
    assert place("cpu", "bf16") == (torch.device("cpu"), torch.bfloat16)
    assert place("cpu", "fp16") == (torch.device("cpu"), torch.float16)


@NO_GPU
@pytest.mark.parametrize("args", [["complete", "def f(", "-n", "1"], ["chat", "-m", "hi"], ["serve"],
                                  ["eval", "loss-by-position"], ["train", "pretrain", "--data", "d", "--out", "o"]],
                         ids=lambda a: a[0] if a[0] != "train" else "train")
def test_cuda_without_a_gpu_is_one_line_naming_the_option(tmp_path, monkeypatch, args):
    """Said before anything loads (the server does not start, the trainer writes nothing)."""
    from dscoder.cli.app import app

    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, [*args, "--device", "cuda"])
    assert result.exit_code == 2, result.output
    assert "--device cuda: CUDA is not available here" in result.output and "Traceback" not in result.output
    assert os.listdir(tmp_path) == []


@NO_GPU
def test_cuda_without_a_gpu_from_a_real_process():
    run = subprocess.run([sys.executable, "-m", "dscoder.cli", "complete", "def f(", "--device", "cuda"],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 2 and run.stdout == ""
    assert run.stderr.startswith("error: --device cuda: CUDA is not available here"), run.stderr
    assert len(run.stderr.strip().splitlines()) == 1


def test_bf16_on_the_cpu_computes_in_bf16(tmp_path):
    gguf = write_tiny_gguf(tmp_path / "tiny.gguf")
    where, dtype = place("cpu", "bf16")
    net = load_model(gguf, dtype=dtype, device=where, cache=False)
    assert {p.dtype for p in net.parameters()} == {torch.bfloat16}
    logits, _ = net(torch.tensor([[1, 2, 3]]))
    assert logits.dtype == torch.bfloat16 and torch.isfinite(logits.float()).all()


def test_dtype_bf16_runs_the_embedded_model_from_the_command_line(smollm2_gguf):
    run = subprocess.run([sys.executable, "-m", "dscoder.cli", "complete", "def add(a, b):\n    return", "-n", "4",
                          "--device", "cpu", "--dtype", "bf16"], capture_output=True, text=True, timeout=300,
                         env={**os.environ, "DSCODER_WEIGHTS_CACHE": "0"})
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() and "4 tokens" in run.stderr


def test_quant_is_refused_off_the_cpu(tmp_path):
    gguf = write_tiny_gguf(tmp_path / "tiny.gguf")
    with pytest.raises(ConfigError, match="--quant int4 packs the weights for the CPU's native kernels"):
        load_model(gguf, device=torch.device("meta"), quant="int4", cache=False)
    with pytest.raises(ConfigError, match="--quant int8"):
        place(torch.device("meta"), "auto", "int8")
    assert place("cpu", "auto", "int4") == (torch.device("cpu"), torch.float32)


@pytest.fixture(scope="module")
def saved_int4(tmp_path_factory):
    """A tiny model saved quantized (`convert --quant int4`): its packed weights are all there is of it."""
    where = tmp_path_factory.mktemp("saved-int4")
    convert(write_tiny_gguf(where / "tiny.gguf"), where / "int4", dtype="fp32", quant="int4")
    return where / "int4"


def test_dequantized_holds_the_packed_weights_values(saved_int4):
    quantized = load_model(saved_int4)
    expected = {name: m.dequantize(torch.float32) for name, m in quantized.named_modules()
                if isinstance(m, QuantLinear)}
    assert expected
    plain = dequantized(load_model(saved_int4), torch.float32)
    assert plain.quant_config is None and not any(isinstance(m, QuantLinear) for m in plain.modules())
    for name, weight in expected.items():
        assert torch.equal(plain.get_submodule(name).weight, weight), name


def test_a_model_saved_quantized_runs_dequantized_off_the_cpu(saved_int4, device):
    where, dtype = place(device, "fp32")
    net = load_model(saved_int4, dtype=dtype, device=where)
    reference = load_model(saved_int4)
    tokens = torch.tensor([[1, 5, 9, 13, 2]])
    with torch.no_grad():
        got = net(tokens.to(device))[0].cpu()
        expected = reference(tokens)[0]
    if device.type == "cpu":
        assert any(isinstance(m, QuantLinear) for m in net.modules())
        assert torch.equal(got, expected)
    else:  # the integer kernel rounds activations; the dequantized weights do not
        assert not any(isinstance(m, QuantLinear) for m in net.modules())
        assert ((got - expected).abs().max() / expected.abs().max()).item() < 2e-2


def test_the_command_line_refuses_fp16_training():
    from dscoder.cli.app import app

    result = runner.invoke(app, ["train", "sft", "--data", "none.jsonl", "--out", "none", "--compute-dtype", "fp16"])
    assert result.exit_code == 2 and "fp16 needs loss scaling" in result.output.replace("\n", " ").replace("  ", " ")


def test_an_evaluation_resumes_across_the_dtype_option_and_names_an_explicit_one():
    from dscoder.eval.config import EvalConfig, EvalError

    plain = EvalConfig("humaneval").identity()
    assert "dtype" not in plain and "device" not in plain  # as runs written before --dtype: they still resume
    assert EvalConfig("humaneval", dtype="bf16").identity()["dtype"] == "bf16"
    assert EvalConfig("humaneval", device="cpu").identity() == plain  # where it runs is not what it computes
    with pytest.raises(EvalError, match="--device places a local model"):
        EvalConfig("humaneval", api="http://127.0.0.1:1", device="cpu").check()
