"""Training through a frozen quantized base (QLoRA-style): QuantLinear's input gradient, what
autograd keeps of it, and LoRA adapters on an int8 model learning while the base stays put."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from dscoder.model import lora
from dscoder.model.presets import get_preset
from dscoder.model.quant import NATIVE_MAX_ROWS, QuantConfig, QuantLinear, quant_plan, quantize_model
from dscoder.model.transformer import Transformer
from dscoder.train.objective import next_token_loss
from conftest import randomize_

LAYERS = [("int8", 32), ("int4", 32), ("int4", 64)]
# 1 and NATIVE_MAX_ROWS rows would take the integer kernel without autograd; more take the GEMM.
ROWS = [1, NATIVE_MAX_ROWS, 3 * NATIVE_MAX_ROWS + 5]


def _layer(scheme: str, group: int, bias: bool = True, seed: int = 0) -> QuantLinear:
    linear = torch.nn.Linear(320, 96, bias=bias)  # 320: a short last int4 group at 64
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        linear.weight.copy_(0.1 * torch.randn(linear.weight.shape, generator=gen))
        if bias:
            linear.bias.copy_(torch.randn(96, generator=gen))
    return QuantLinear.from_linear(linear, scheme, group)


# ---------------------------------------------------------------------------- one layer
@pytest.mark.parametrize("use_native", [True, False])
@pytest.mark.parametrize("rows", ROWS)
@pytest.mark.parametrize("scheme,group", LAYERS)
def test_input_gradient_is_f_linear_s_with_the_dequantized_weight(scheme, group, rows, use_native):
    layer = _layer(scheme, group)
    layer.use_native = use_native
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(2, rows, 320, generator=gen, requires_grad=True)
    grad_y = torch.randn(2, rows, 96, generator=gen)

    y = layer(x)
    y.backward(grad_y)

    ref_x = x.detach().clone().requires_grad_()
    ref = F.linear(ref_x, layer.dequantize(), layer.bias)
    ref.backward(grad_y)
    # int4 multiplies dequantize()'s very matrix (exact); int8 applies its row scale to the product
    # instead of the weight, which only moves fp32 rounding (values here are O(1)-O(10)).
    torch.testing.assert_close(y, ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(x.grad, ref_x.grad, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("scheme,group", LAYERS)
def test_no_gradient_reaches_the_packed_buffers_and_no_float_weight_is_kept(scheme, group):
    """The point of QLoRA: between forward and backward only the packed bytes stay resident."""
    layer = _layer(scheme, group)
    before = {name: t.clone() for name, t in layer.packed().items()}
    saved = []

    def pack(t):
        saved.append(t)
        return t

    x = torch.randn(40, 320, requires_grad=True)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        y = layer(x)
    y.square().sum().backward()

    assert x.grad is not None and torch.isfinite(x.grad).all()
    for name, t in layer.packed().items():
        assert not t.requires_grad and t.grad is None, name
        assert torch.equal(t, before[name]), name
    assert not layer.bias.requires_grad and layer.bias.grad is None  # frozen, like the weight
    assert [n for n, _ in layer.named_parameters() if _.requires_grad] == []
    floats = [t for t in saved if t.is_floating_point() and t.shape == (96, 320)]
    assert floats == [], "autograd kept a dequantized weight for backward"
    kept = {t.data_ptr() for t in saved}
    assert layer.qweight.data_ptr() in kept  # what backward dequantizes again


def test_a_bias_that_asks_for_a_gradient_gets_f_linear_s():
    layer = _layer("int8", 32)
    layer.bias.requires_grad_(True)
    x = torch.randn(5, 320)  # the input itself needs nothing: the bias alone makes the layer differentiable
    grad_y = torch.randn(5, 96)
    layer(x).backward(grad_y)
    torch.testing.assert_close(layer.bias.grad, grad_y.sum(0), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("rows", [1, 3 * NATIVE_MAX_ROWS + 5])
def test_without_a_gradient_to_compute_the_inference_paths_are_unchanged(rows):
    """An input that does not require grad (a frozen embedding's) gets exactly the no_grad result."""
    layer = _layer("int4", 32)
    x = torch.randn(rows, 320, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        ref = layer(x)
    y = layer(x)
    assert y.grad_fn is None
    assert torch.equal(y, ref)


@pytest.mark.parametrize("scheme,group", LAYERS[:2])
def test_under_bf16_autocast_it_computes_in_bf16_and_returns_the_input_s_dtype_gradient(scheme, group):
    layer = _layer(scheme, group)
    x = torch.randn(40, 320, generator=torch.Generator().manual_seed(3), requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = layer(x)
    assert y.dtype == torch.bfloat16
    y.float().square().sum().backward()
    assert x.grad.dtype == torch.float32

    ref_x = x.detach().clone().requires_grad_()
    ref = F.linear(ref_x, layer.dequantize(), layer.bias)  # fp32 throughout
    ref.square().sum().backward()
    torch.testing.assert_close(y.float(), ref, rtol=2e-2, atol=2e-2)  # bf16: 8 bits of mantissa
    torch.testing.assert_close(x.grad, ref_x.grad, rtol=3e-2, atol=3e-2 * ref_x.grad.abs().max().item())
    if scheme == "int4":  # the bf16 product of dequantize(bf16)'s matrix, step for step
        ref_x.grad = None
        ref = F.linear(ref_x.to(torch.bfloat16), layer.dequantize(torch.bfloat16), layer.bias.to(torch.bfloat16))
        assert torch.equal(y, ref)


# ---------------------------------------------------------------------------- LoRA on an int8 model
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def _tiny_int8(head: str | None = "int8") -> Transformer:
    net = randomize_(Transformer(get_preset("tiny-llama").config), seed=0, std=0.1)
    return quantize_model(net, QuantConfig("int8", head=head)).eval()


def _tokens(seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 256, (2, 24), generator=torch.Generator().manual_seed(seed))


def _lora_params(net: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: p for n, p in net.named_parameters() if p.requires_grad}


def test_lora_on_int8_with_b_zero_gives_the_int8_model_s_logits():
    net = _tiny_int8()
    tokens = _tokens()
    with torch.no_grad():
        before, _ = net(tokens)
    wrapped = lora.apply_lora(net, 4, 8.0, 0.0, TARGETS, generator=torch.Generator().manual_seed(0))
    assert len(wrapped) == len(TARGETS) * net.config.num_hidden_layers
    with torch.no_grad():
        after, _ = net(tokens)
    torch.testing.assert_close(after, before, rtol=0, atol=0)
    # and with autograd on (the training path, where the base takes `_DequantLinear`)
    logits, _ = net(tokens)
    torch.testing.assert_close(logits, before, rtol=1e-5, atol=1e-5)


def test_adamw_on_lora_over_int8_lowers_the_loss_and_moves_only_the_adapters():
    net = _tiny_int8()
    lora.apply_lora(net, 4, 8.0, 0.0, TARGETS, generator=torch.Generator().manual_seed(0))
    net.train()
    trainable = _lora_params(net)
    assert trainable and all(".lora_" in n for n in trainable)
    frozen = {n: t.detach().clone() for n, t in [*net.named_parameters(), *net.named_buffers()]
              if n not in trainable}
    start = {n: p.detach().clone() for n, p in trainable.items()}
    assert any(isinstance(m, QuantLinear) for m in net.modules())

    tokens = _tokens(1)
    optimizer = torch.optim.AdamW(trainable.values(), lr=1e-2)
    losses = []
    for _ in range(6):
        logits, _ = net(tokens)
        loss = next_token_loss(logits, tokens)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())

    assert losses[-1] < losses[0] - 0.05, losses
    for n, t in [*net.named_parameters(), *net.named_buffers()]:
        if n in frozen:
            assert torch.equal(t, frozen[n]), f"{n} moved"
            assert getattr(t, "grad", None) is None, f"{n} got a gradient"
    assert any(not torch.equal(p, start[n]) for n, p in trainable.items() if ".lora_B" in n)
    assert any(not torch.equal(p, start[n]) for n, p in trainable.items() if ".lora_A" in n)


@pytest.mark.parametrize("preset", ["tiny-llama", "tiny-v2-lite"])
def test_quantizing_after_lora_plans_the_same_base_layers_never_the_adapters(preset):
    """LoRA-then-quantize plans what quantize-then-LoRA quantizes: the frozen bases (`....base`),
    the head under `head` (None: kept in full precision), never an adapter, never MLA's kv_b_proj."""
    plain = randomize_(Transformer(get_preset(preset).config), seed=0, std=0.1)
    net = randomize_(Transformer(get_preset(preset).config), seed=0, std=0.1)
    wrapped = lora.apply_lora(net, 4, 8.0, 0.0, generator=torch.Generator().manual_seed(0))
    for config in (QuantConfig("int8", head=None), QuantConfig("int4", head="int8")):
        expected = {(f"{n}.base" if n in wrapped else n): s for n, s in quant_plan(plain, config).items()}
        assert quant_plan(net, config) == expected
    assert not any(".lora_" in n or "kv_b_proj" in n for n in quant_plan(net, QuantConfig("int8")))
    assert "lm_head" not in quant_plan(net, QuantConfig("int8", head=None))

    quantize_model(net, QuantConfig("int8", head=None))
    trainable = [n for n, p in net.named_parameters() if p.requires_grad]
    assert trainable and all(".lora_" in n for n in trainable)
    for name, module in lora.lora_modules(net).items():
        assert isinstance(module.base, QuantLinear) == ("kv_b_proj" not in name), name
    tokens = _tokens()
    logits, _ = net(tokens)
    next_token_loss(logits, tokens).backward()
    grads = [p.grad for n, p in net.named_parameters() if n.endswith("lora_B.weight")]
    assert grads and any(g is not None and g.abs().sum() > 0 for g in grads)


def test_activation_checkpointing_gives_the_same_lora_gradients_over_int8():
    """What benchmarks/qlora.py runs: each block recomputed in backward (the loop's `_checkpointed`),
    the int8 weights dequantized a third time there; the adapters' gradients do not change."""
    from dscoder.train.loop import _checkpointed

    grads = []
    for checkpointed in (False, True):
        net = _tiny_int8()
        lora.apply_lora(net, 4, 8.0, 0.0, TARGETS, generator=torch.Generator().manual_seed(0))
        with torch.no_grad():  # B != 0, so A's gradient is not zero either
            for name, p in net.named_parameters():
                if name.endswith("lora_B.weight"):
                    p.normal_(0, 0.1, generator=torch.Generator().manual_seed(len(name)))
        if checkpointed:
            for block in net.layers:
                block.forward = _checkpointed(block)
        tokens = _tokens(2)
        logits, _ = net(tokens)
        next_token_loss(logits, tokens).backward()
        grads.append({n: p.grad for n, p in net.named_parameters() if p.requires_grad})
    assert grads[0].keys() == grads[1].keys() and all(g is not None for g in grads[0].values())
    for name in grads[0]:
        torch.testing.assert_close(grads[1][name], grads[0][name], rtol=1e-5, atol=1e-7, msg=name)
