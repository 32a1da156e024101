"""Weight-only quantization: the packed formats, the native kernels against the PyTorch path,
quantized models (tiny V1/V2 and the embedded SmolLM2), saving and loading, and bad input."""

from __future__ import annotations

import json

import pytest
import torch

from dscoder.formats.hf import load_hf_dir, save_hf_dir
from dscoder.errors import CheckpointError, ConfigError
from dscoder.hub import load_model
from dscoder.model.transformer import Transformer
from dscoder.kernels.native import kernels
from dscoder.infer.perplexity import perplexity
from dscoder.model.presets import get_preset
from dscoder.model.quant import (NATIVE_MAX_ROWS, QuantConfig, QuantLinear, dequantize_weight, quantize_model, quantize_weight,
                           quantize_activations, weight_bytes)
from dscoder.tokenizer.tokenizer import Tokenizer
from conftest import randomize_

native = pytest.mark.skipif(kernels() is None, reason="native kernels unavailable (no AVX2 or no C++ compiler)")
SCHEMES = [("int8", 32), ("int4", 32), ("int4", 64), ("int4", 128)]


def _set_native(model: torch.nn.Module, on: bool) -> None:
    for m in model.modules():
        if isinstance(m, QuantLinear):
            m.use_native = on


@pytest.mark.parametrize("scheme,group", SCHEMES)
def test_quantization_error_is_within_half_a_step(scheme, group):
    w = torch.randn(48, 320, generator=torch.Generator().manual_seed(0))  # 320: a short last group at 64/128
    packed = quantize_weight(w, scheme, group)
    err = (dequantize_weight(packed, scheme, group) - w).abs()
    if scheme == "int8":
        assert packed["qweight"].dtype == torch.int8 and packed["qweight"].shape == (48, 320)
        step = packed["scales"][:, None]
    else:
        groups = -(-320 // group)
        assert packed["qweight"].shape == (48, 160) and packed["scales"].shape == (48, groups)
        step = packed["scales"].float().repeat_interleave(group, dim=1)[:, :320]
    assert (err <= step / 2 * 1.01 + 1e-3 * step).all()  # fp16 scales: the grid is the stored one
    assert err.max() > 0  # it really is lossy, so the check above means something


def test_int4_requantizes_a_q4_1_grid_without_loss():
    """Weights already on a 4-bit grid with 32-wide groups (as in a Q4_1 GGUF) come back exactly."""
    gen = torch.Generator().manual_seed(1)
    q = torch.randint(0, 16, (8, 64), generator=gen).float()
    q[:, ::32], q[:, 1::32] = 0, 15  # every group uses its full range, as llama.cpp's quantizer makes it
    scale = torch.rand(8, 2, generator=gen).half().float().repeat_interleave(32, 1)
    low = -torch.rand(8, 2, generator=gen).half().float().repeat_interleave(32, 1)
    w = q * scale + low
    assert torch.equal(dequantize_weight(quantize_weight(w, "int4", 32), "int4", 32), w)


@native
@pytest.mark.parametrize("scheme,group", SCHEMES)
@pytest.mark.parametrize("rows", [1, 2, 3, 5, 8, 16, 17])
def test_native_kernel_matches_the_pytorch_path(scheme, group, rows):
    gen = torch.Generator().manual_seed(rows)
    linear = torch.nn.Linear(320, 96, bias=True)
    with torch.no_grad():
        linear.weight.copy_(torch.randn(96, 320, generator=gen))
        linear.bias.copy_(torch.randn(96, generator=gen))
    layer = QuantLinear.from_linear(linear, scheme, group)
    x = torch.randn(rows, 320, generator=gen)
    fast = layer(x)
    layer.use_native = False
    reference = layer(x)
    weight = dequantize_weight(layer.packed(), scheme, group)
    exact = x @ weight.T + linear.bias
    assert fast.shape == (rows, 96)
    torch.testing.assert_close(fast, reference, rtol=1e-5, atol=1e-4)
    if rows > NATIVE_MAX_ROWS:  # prompt processing: float activations, the dequantized product
        torch.testing.assert_close(reference, exact, rtol=1e-5, atol=1e-4)
    else:  # decode: int16 activations, off by at most half a step of each activation block
        _, block_scale, _ = quantize_activations(x)
        bound = (weight.abs() @ (block_scale.repeat_interleave(32, dim=1) / 2).T).T
        assert ((reference - exact).abs() <= bound * 1.001 + 1e-4).all()
        assert (reference - exact).abs().max() > 1e-6  # the activations really were quantized
    layer.use_native = True
    torch.testing.assert_close(layer.dequantize(), dequantize_weight(layer.packed(), scheme, group))


def test_activation_quantization_rounds_each_block_to_its_own_grid():
    x = torch.cat([torch.linspace(-2, 2, 32), torch.zeros(32), torch.full((32,), 0.5)])[None]
    q, scale, scaled_sum = quantize_activations(x)
    torch.testing.assert_close(scale, torch.tensor([[2 / 32767, 0.0, 0.5 / 32767]]))
    assert q.dtype == torch.int16 and q[0, :32].abs().max() == 32767 and (q[0, 32:64] == 0).all()
    assert (q[0, 64:] == 32767).all()
    torch.testing.assert_close(q.float().view(3, 32) * scale.view(3, 1), x.view(3, 32), atol=1 / 32767, rtol=0)
    torch.testing.assert_close(scaled_sum, (q.float().view(1, 3, 32).sum(-1) * scale))


@pytest.fixture(scope="module", params=["tiny-llama-gqa", "tiny-v2-lite", "tiny-v2"])
def tiny(request) -> Transformer:
    return randomize_(Transformer(get_preset(request.param).config), seed=5, std=0.1).eval()


def _quantized(model: Transformer, spec: str) -> Transformer:
    copy = Transformer(model.config).eval()
    copy.load_state_dict(model.state_dict())
    return quantize_model(copy, spec)


@torch.no_grad()
@pytest.mark.parametrize("spec", ["int8", "int4", "int4-128"])
def test_quantized_tiny_models_compute_the_dequantized_network_and_decode_exactly(tiny, spec, monkeypatch):
    """With float activations a quantized model is exactly the network with each weight
    replaced by its dequantized value; with int16 activations (the decode arithmetic) cached
    decoding equals the uncached argmax.  How close either is to fp32 is measured on a real
    model: the perplexity test."""
    q = _quantized(tiny, spec)
    kinds = {type(m).__name__ for n, m in q.named_modules() if n.endswith(("q_proj", "o_proj", "up_proj"))}
    assert kinds == {"QuantLinear"} and isinstance(q.lm_head, QuantLinear) and q.lm_head.scheme == "int8"
    if tiny.config.is_mla:
        assert isinstance(q.layers[0].self_attn.kv_b_proj, torch.nn.Linear)  # absorbed decode reads it as a matrix
    twin = Transformer(tiny.config).eval()
    twin.load_state_dict(tiny.state_dict())
    for name, module in q.named_modules():
        if isinstance(module, QuantLinear):
            twin.get_submodule(name).weight = torch.nn.Parameter(module.dequantize())
    tokens = torch.randint(0, tiny.config.vocab_size, (1, 24), generator=torch.Generator().manual_seed(0))
    monkeypatch.setattr("dscoder.model.quant.NATIVE_MAX_ROWS", 0)  # every product in float: the dequantized network
    torch.testing.assert_close(q(tokens)[0], twin(tokens)[0], rtol=1e-4, atol=1e-4)
    monkeypatch.setattr("dscoder.model.quant.NATIVE_MAX_ROWS", 10**6)  # every product with int16 activations
    seq, cache = tokens[0, :8].tolist(), q.new_cache(1, 64)
    logits = q(torch.tensor([seq]), 0, cache)[0][0, -1]
    for _ in range(24):
        token = int(logits.argmax())
        assert token == int(q(torch.tensor([seq]))[0][0, -1].argmax())
        seq.append(token)
        logits = q(torch.tensor([[token]]), len(seq) - 1, cache)[0][0, -1]


@torch.no_grad()
@pytest.mark.parametrize("spec", ["int8", "int4-64"])
def test_quantized_checkpoint_round_trip_is_bit_exact(tiny, spec, tmp_path):
    q = _quantized(tiny, spec)
    save_hf_dir(q, tmp_path)
    hf = json.loads((tmp_path / "config.json").read_text())
    assert hf["quantization_config"] == QuantConfig.parse(spec).to_hf()
    back = load_hf_dir(tmp_path)
    assert back.quant_config == q.quant_config
    for (name, a), (_, b) in zip(sorted(q.state_dict().items()), sorted(back.state_dict().items())):
        assert a.dtype == b.dtype and torch.equal(a, b), name
    tokens = torch.arange(16)[None] % tiny.config.vocab_size
    assert torch.equal(q(tokens)[0], back(tokens)[0])
    with pytest.raises(CheckpointError, match="already quantized"):
        load_hf_dir(tmp_path, quant=QuantConfig("int8"))


@torch.no_grad()
def test_quantizing_while_loading_equals_quantizing_after(tiny, tmp_path):
    save_hf_dir(tiny, tmp_path)
    while_loading = load_hf_dir(tmp_path, quant=QuantConfig("int4"))
    after = quantize_model(load_hf_dir(tmp_path), "int4")
    for (name, a), (_, b) in zip(sorted(while_loading.state_dict().items()), sorted(after.state_dict().items())):
        assert torch.equal(a, b), name


@pytest.mark.parametrize("spec,message", [
    ("int3", "int8, int4"), ("int4-48", "group size"), ("int4-x", "--quant must be"),
])
def test_bad_quantization_specs_are_named(spec, message):
    with pytest.raises(ConfigError, match=message):
        QuantConfig.parse(spec)


def test_bad_quantized_inputs_are_named(tiny, tmp_path):
    with pytest.raises(ConfigError, match="multiple of 32"):
        quantize_weight(torch.randn(4, 40), "int8")
    q = _quantized(tiny, "int8")
    with pytest.raises(ConfigError, match="already quantized"):
        quantize_model(q, "int4")
    save_hf_dir(tiny, tmp_path)
    hf = json.loads((tmp_path / "config.json").read_text())
    hf["quantization_config"] = {"quant_method": "gptq", "bits": 4}
    (tmp_path / "config.json").write_text(json.dumps(hf))
    with pytest.raises(ValueError, match="gptq"):
        load_hf_dir(tmp_path)


@pytest.fixture(scope="module")
def held_out_ids(smollm2_gguf) -> list[int]:
    """Code written after SmolLM2 was trained: this project's own sources."""
    import dscoder.formats.hf
    import dscoder.infer.generate

    text = "".join(open(m.__file__, encoding="utf-8").read() for m in (dscoder.infer.generate, dscoder.formats.hf))
    return Tokenizer.load(smollm2_gguf).encode(text)[:1024]


@pytest.fixture(scope="module")
def fp32_perplexity(smollm2_gguf, held_out_ids) -> float:
    return perplexity(load_model(smollm2_gguf), held_out_ids)


@pytest.mark.parametrize("spec,budget", [("int8", 0.01), ("int4", 0.05)])
@pytest.mark.parametrize("arithmetic", ["prompt", "decode"])
def test_embedded_model_perplexity_budget(smollm2_gguf, held_out_ids, fp32_perplexity, spec, budget, arithmetic):
    """Both ways a quantized layer multiplies stay within budget: float activations over a
    whole window (prompt processing) and int16 activations, NATIVE_MAX_ROWS tokens a step."""
    model = load_model(smollm2_gguf, quant=spec)
    assert weight_bytes(model) < 0.5 * 4 * model.config.param_counts()[0]
    ppl = perplexity(model, held_out_ids, step=NATIVE_MAX_ROWS if arithmetic == "decode" else None)
    assert 1 < fp32_perplexity < 30  # real code is predictable to a real model: the yardstick works
    assert ppl / fp32_perplexity - 1 < budget, (spec, ppl, fp32_perplexity)
