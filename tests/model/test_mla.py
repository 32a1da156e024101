"""MLA: the absorbed and expanded attention forms agree, and the cache holds only the latent."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from dscoder.model.quant import QuantLinear, quantize_model
from dscoder.model.transformer import MLA, Transformer
from dscoder.model.presets import get_preset
from conftest import randomize_


@pytest.fixture(scope="module", params=["tiny-v2-lite", "tiny-v2"])
def model(request) -> Transformer:
    return randomize_(Transformer(get_preset(request.param).config), seed=9).eval()


def set_absorb(model: Transformer, value: bool | None) -> None:
    for layer in model.layers:
        assert isinstance(layer.self_attn, MLA)
        layer.self_attn.absorb = value


@torch.no_grad()
def test_absorbed_equals_expanded_for_full_forward_and_decode(model):
    x = torch.randint(0, model.config.vocab_size, (2, 40), generator=torch.Generator().manual_seed(2))
    outs = {}
    for absorb in (False, True):
        set_absorb(model, absorb)
        full = model(x)[0]
        cache = model.new_cache(2, 64)
        steps = [model(x[:, :25], 0, cache)[0]] + [model(x[:, i:i + 1], i, cache)[0] for i in range(25, 40)]
        outs[absorb] = (full, torch.cat(steps, dim=1))
    set_absorb(model, None)
    assert (outs[True][0] - outs[False][0]).abs().max().item() <= 1e-4
    assert (outs[True][1] - outs[False][1]).abs().max().item() <= 1e-4
    assert (outs[True][1] - outs[False][0]).abs().max().item() <= 1e-4


def prefill_after_cached_prefix(model: Transformer, absorb: bool, prefix: int = 20, chunk: int = 12) -> torch.Tensor:
    """Logits of a `chunk`-token prompt chunk written after `prefix` cached tokens, the chunk in one form.

    The prefix always runs expanded, so the two forms see the same cache.
    """
    x = torch.randint(0, model.config.vocab_size, (2, prefix + chunk), generator=torch.Generator().manual_seed(5))
    cache = model.new_cache(2, 64)
    with torch.no_grad():
        set_absorb(model, False)
        model(x[:, :prefix], 0, cache)
        set_absorb(model, absorb)
        out = model(x[:, prefix:], prefix, cache)[0]
    set_absorb(model, None)
    return out


def quantized_kv_b_proj(model: Transformer, scheme: str) -> Transformer:
    """A copy whose kv_b_proj layers (which `quantize_model` leaves alone) are QuantLinear too.

    A QuantLinear has no `.weight`, and its effective weight (the dequantized one) differs
    from the weight it was made from: the absorbed form can only agree with the expanded one
    by reading kv_b_proj through its effective weight.
    """
    model = copy.deepcopy(model)
    for layer in model.layers:
        layer.self_attn.kv_b_proj = QuantLinear.from_linear(layer.self_attn.kv_b_proj, scheme)
    return model


# int8 layers quantize their input activations (int16 blocks): the forms' float-rounding
# differences can move an activation by one quantization step, so the bound is looser there.
@pytest.mark.parametrize("precision, tolerance", [("fp32", 1e-4), ("int8", 1e-3)])
def test_absorbed_equals_expanded_for_a_prefill_over_a_cached_prefix(model, precision, tolerance):
    if precision == "int8":
        model = quantize_model(copy.deepcopy(model), "int8")
        assert any(isinstance(m, QuantLinear) for m in model.modules())
    expanded = prefill_after_cached_prefix(model, absorb=False)
    absorbed = prefill_after_cached_prefix(model, absorb=True)
    assert (absorbed - expanded).abs().max().item() <= tolerance


@pytest.mark.parametrize("scheme", ["int8", "int4"])
def test_absorbed_reads_kv_b_proj_through_its_effective_weight(model, scheme):
    quantized = quantized_kv_b_proj(model, scheme)
    for original, layer in zip(model.layers, quantized.layers):
        w_uk, w_uv = layer.self_attn.absorbed_weights(torch.float32)
        effective = layer.self_attn.kv_b_proj.dequantize()
        assert torch.equal(torch.cat((w_uk, w_uv), dim=1).reshape(effective.shape), effective)
        assert not torch.equal(effective, original.self_attn.kv_b_proj.weight)  # so a stale weight would show
    expanded = prefill_after_cached_prefix(quantized, absorb=False)
    absorbed = prefill_after_cached_prefix(quantized, absorb=True)
    assert (absorbed - expanded).abs().max().item() <= 1e-4
    # The same comparison over the original kv_b_proj weights is far off: the check can fail.
    assert (prefill_after_cached_prefix(model, absorb=True) - absorbed).abs().max().item() > 1e-3


class LowRankUpdate(nn.Module):
    """A LoRA-style wrapper: applies weight + b @ a, while its `.weight` is still the base weight."""

    def __init__(self, base: nn.Linear):
        super().__init__()
        self.weight = base.weight
        self.a = nn.Parameter(torch.randn(2, base.in_features, generator=torch.Generator().manual_seed(1)))
        self.b = nn.Parameter(torch.randn(base.out_features, 2, generator=torch.Generator().manual_seed(2)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.linear(x, self.weight + self.b @ self.a)


def test_absorbed_refuses_a_layer_whose_effective_weight_it_cannot_read(model):
    """Reading `.weight` of this wrapper would silently drop its update; the accessor refuses instead."""
    wrapped = copy.deepcopy(model)
    for layer in wrapped.layers:
        layer.self_attn.kv_b_proj = LowRankUpdate(layer.self_attn.kv_b_proj)
    prefill_after_cached_prefix(wrapped, absorb=False)  # the expanded form just calls the layer
    with pytest.raises(TypeError, match="kv_b_proj is a LowRankUpdate"):
        prefill_after_cached_prefix(wrapped, absorb=True)


def test_decode_uses_the_absorbed_form_and_never_expands_the_cache(model):
    """With absorb=None a decode step must not run kv_b_proj over the cached positions."""
    cache = model.new_cache(1, 32)
    x = torch.randint(0, model.config.vocab_size, (1, 20))
    rows = []
    hooks = [layer.self_attn.kv_b_proj.register_forward_hook(lambda m, a, o: rows.append(a[0].shape[1]))
             for layer in model.layers]
    with torch.no_grad():
        model(x[:, :19], 0, cache)
        prefill_rows, rows[:] = list(rows), []
        model(x[:, 19:], 19, cache)
    for h in hooks:
        h.remove()
    assert prefill_rows == [19] * model.config.num_hidden_layers and rows == []


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_latent_cache_bytes_per_token_match_theory(model, dtype):
    cfg = model.config
    cache = model.new_cache(1, 8, dtype=dtype)
    measured = sum(layer.nbytes_per_token for layer in cache)
    element = torch.finfo(dtype).bits // 8
    assert measured == (cfg.kv_lora_rank + cfg.qk_rope_head_dim) * cfg.num_hidden_layers * element
    assert measured == cfg.kv_values_per_token(latent=True) * element


def test_dense_cache_stores_only_the_kv_heads():
    cfg = get_preset("tiny-llama-mqa").config
    cache = Transformer(cfg).new_cache(1, 8, dtype=torch.bfloat16)
    assert sum(layer.nbytes_per_token for layer in cache) == cfg.num_hidden_layers * 2 * 1 * cfg.attn_head_dim * 2
