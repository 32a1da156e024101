"""DeepSeekMoE: routing, sorted dispatch, and the sequence-level balance loss."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from dscoder.model.transformer import MoE, Transformer
from dscoder.model.presets import get_preset
from conftest import randomize_


def moe(name: str, **changes) -> MoE:
    cfg = get_preset(name).config.replace(**changes)
    return randomize_(MoE(cfg), seed=4)


def dense_reference(layer: MoE, x: torch.Tensor) -> torch.Tensor:
    """Every expert on every token, weighted by the router's (sparse) weights."""
    flat = x.reshape(-1, x.shape[-1])
    weights, ids, _ = layer.gate(flat)
    full = torch.zeros(flat.shape[0], len(layer.experts))
    full.scatter_(1, ids, weights)
    outs = torch.stack([e(flat) for e in layer.experts], dim=1)  # (N, E, H)
    y = (outs * full[..., None]).sum(1) + layer.shared_experts(flat)
    return y.view_as(x)


@pytest.mark.parametrize("name", ["tiny-v2-lite", "tiny-v2"])
@torch.no_grad()
def test_sorted_dispatch_equals_dense_computation(name):
    layer = moe(name).eval()
    x = torch.randn(2, 17, layer.gate.weight.shape[1])
    out, aux = layer(x)
    assert aux is None
    assert torch.allclose(out, dense_reference(layer, x), atol=1e-5)


@torch.no_grad()
def test_each_routed_expert_runs_at_most_once_and_only_if_chosen():
    layer = moe("tiny-v2-lite").eval()
    calls = [0] * len(layer.experts)
    for i, e in enumerate(layer.experts):
        e.register_forward_hook(lambda m, a, o, i=i: calls.__setitem__(i, calls[i] + 1))
    x = torch.randn(1, 2, layer.gate.weight.shape[1])  # 2 tokens x top-3 -> at most 6 experts
    _, ids, _ = layer.gate(x.reshape(2, -1))
    layer(x)
    assert calls == [1 if e in set(ids.flatten().tolist()) else 0 for e in range(len(calls))]


@torch.no_grad()
def test_group_limited_routing_stays_inside_the_best_groups():
    layer = moe("tiny-v2")
    g = layer.gate
    x = torch.randn(64, g.weight.shape[1])
    weights, ids, scores = g(x)
    group_size = g.n_experts // g.n_group
    best_groups = scores.view(64, g.n_group, group_size).amax(-1).topk(g.topk_group, dim=-1).indices
    for row in range(64):
        assert set((ids[row] // group_size).tolist()) <= set(best_groups[row].tolist())
    picked = scores.gather(1, ids)
    assert torch.allclose(weights, picked * g.scaling)  # routed_scaling_factor 16, no renormalisation


@torch.no_grad()
def test_norm_topk_prob_renormalises_the_chosen_weights():
    g = moe("tiny-v2-lite", norm_topk_prob=True).gate
    weights, _, _ = g(torch.randn(10, g.weight.shape[1]))
    assert torch.allclose(weights.sum(-1), torch.ones(10))


def test_balance_loss_is_alpha_for_a_uniform_router_and_trains_the_gate():
    cfg = get_preset("tiny-v2-lite").config
    model = randomize_(Transformer(cfg), seed=2).train()
    n_moe = sum(cfg.is_moe_layer(i) for i in range(cfg.num_hidden_layers))
    with torch.no_grad():
        for layer in model.layers:
            if isinstance(layer.mlp, MoE):
                layer.mlp.gate.weight.zero_()  # uniform scores: f_i sums to E, P_i = 1/E
    _, aux = model(torch.randint(0, cfg.vocab_size, (3, 20)))
    assert aux.item() == pytest.approx(cfg.aux_loss_alpha * n_moe, rel=1e-5)

    model = randomize_(Transformer(cfg), seed=2).train()
    logits, aux = model(torch.randint(0, cfg.vocab_size, (3, 20)))
    assert aux.item() > cfg.aux_loss_alpha * n_moe  # a skewed random router is penalised
    aux.backward()
    gate = next(l.mlp.gate for l in model.layers if isinstance(l.mlp, MoE))
    assert gate.weight.grad is not None and gate.weight.grad.abs().sum() > 0


def test_training_forward_backpropagates_to_every_parameter_that_was_used():
    cfg = get_preset("tiny-llama-gqa").config
    model = randomize_(Transformer(cfg)).train()
    tokens = torch.randint(0, cfg.vocab_size, (2, 16))
    logits, aux = model(tokens)
    loss = F.cross_entropy(logits[:, :-1].reshape(-1, cfg.vocab_size), tokens[:, 1:].reshape(-1)) + aux
    loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


def close(got: torch.Tensor, expected: torch.Tensor, rel: float) -> bool:
    """Equal to `rel` of the expected tensor's largest magnitude (sums in another order differ by rounding)."""
    return bool((got - expected).abs().max() <= rel * expected.abs().max())


def routed_forward_backward(layer: MoE, x: torch.Tensor, dispatch: str, autocast: bool = False):
    """Output, input gradient and every parameter's gradient of a training step through `dispatch`."""
    layer.zero_grad(set_to_none=True)
    x = x.detach().requires_grad_()
    if dispatch == "loop":
        layer.dispatch = layer.dispatch_loop  # the instance attribute shadows MoE.dispatch
    try:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            if dispatch == "grouped":  # training takes the grouped dispatch on its own
                expected = torch.bfloat16 if autocast else torch.float32
                assert layer.grouped_dtype(x.reshape(-1, x.shape[-1])) == expected
            out, aux = layer(x)
        upstream = torch.randn(out.shape, generator=torch.Generator().manual_seed(9))
        ((out.float() * upstream).sum() + aux).backward()
    finally:
        layer.__dict__.pop("dispatch", None)
    return out.detach().float(), x.grad, {n: p.grad for n, p in layer.named_parameters()}


@pytest.mark.parametrize("name", ["tiny-v2-lite", "tiny-v2"])
@pytest.mark.parametrize("few_tokens", [True, False])
def test_grouped_training_dispatch_equals_the_loop_in_output_and_every_gradient(name, few_tokens):
    layer = moe(name, aux_loss_alpha=0.01).train()
    n_experts = len(layer.experts)
    # few: fewer routed slots than experts, so some experts certainly receive no token
    shape = (1, (n_experts - 1) // layer.gate.top_k) if few_tokens else (2, 17)
    x = torch.randn(*shape, layer.gate.weight.shape[1], generator=torch.Generator().manual_seed(7))
    _, ids, _ = layer.gate(x.reshape(-1, x.shape[-1]))
    idle = set(range(n_experts)) - set(ids.flatten().tolist())
    assert idle or not few_tokens

    out_loop, dx_loop, grads_loop = routed_forward_backward(layer, x, "loop")
    out, dx, grads = routed_forward_backward(layer, x, "grouped")
    assert close(out, out_loop, 1e-5) and close(dx, dx_loop, 1e-5)
    assert grads.keys() == grads_loop.keys()
    for key, expected in grads_loop.items():
        expert = int(key.split(".")[1]) if key.startswith("experts.") else None
        if expected is None:  # the loop never ran this expert; the grouped dispatch gives it zeros
            assert expert in idle and grads[key] is not None and not grads[key].any(), key
        else:
            assert expert not in idle, key
            assert close(grads[key], expected, 1e-5), key


def test_training_takes_the_grouped_dispatch_and_inference_the_loop():
    layer = moe("tiny-v2-lite").train()
    x = torch.randn(4, layer.gate.weight.shape[1], requires_grad=True)
    assert layer.grouped_dtype(x) == torch.float32
    with torch.no_grad():
        assert layer.grouped_dtype(x) is None  # inference, decode included, keeps the loop
    layer.cpu_grouped_max_bytes = 3 * len(layer.experts) * layer.experts[0].gate_proj.weight.numel() * 4 - 1
    assert layer.grouped_dtype(x) is None  # on a CPU, experts too large to pay for stacking


def test_grouped_dispatch_under_bf16_autocast_matches_the_loop_to_bf16_rounding():
    layer = moe("tiny-v2").train()
    x = torch.randn(2, 17, layer.gate.weight.shape[1], generator=torch.Generator().manual_seed(3))
    out_loop, dx_loop, grads_loop = routed_forward_backward(layer, x, "loop", autocast=True)
    out, dx, grads = routed_forward_backward(layer, x, "grouped", autocast=True)
    assert close(out, out_loop, 1e-2) and close(dx, dx_loop, 2e-2)
    for key, expected in grads_loop.items():
        if expected is not None:
            assert grads[key].dtype == torch.float32
            assert close(grads[key], expected, 2e-2), key
