"""MLA: the absorbed and expanded attention forms agree, and the cache holds only the latent."""

from __future__ import annotations

import pytest
import torch

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
