"""The fused decode step (model/fused.py, kernels/decode.cpp) against the layer-by-layer path.

The fused step calls the same kernels in the same order, so every comparison here is exact
(torch.equal), and each test first proves the fused step really ran (the blocks' own
forward is made to raise) or really did not (it is counted).
"""

import pytest
import torch
import torch.nn.functional as F

from conftest import native_kernels_mark, randomize_
from dscoder.kernels import native
from dscoder.model import fused
from dscoder.model.presets import get_preset
from dscoder.model.quant import quantize_model
from dscoder.model.transformer import Block, Linear, Transformer
from dscoder.serve.paged import PagedKV, PagedRows

pytestmark = native_kernels_mark()


def model(quant: str | None = None, bias: bool = False, seed: int = 0) -> Transformer:
    """A 2-layer GQA Llama whose head size (32) the kernels take."""
    cfg = get_preset("tiny-llama-gqa").config.replace(hidden_size=128, intermediate_size=160, attention_bias=bias)
    net = randomize_(Transformer(cfg), seed=seed).eval()
    return quantize_model(net, quant) if quant else net


class Unfused:
    """Within it the blocks' own forward runs (DSCODER_FUSED=0); outside it, it raises."""

    def __init__(self, monkeypatch):
        self.monkeypatch, self.calls = monkeypatch, 0
        self.original = Block.forward

    def forbid(self):
        def refuse(*args, **kwargs):
            raise AssertionError("the layer-by-layer path ran where the fused step should have")
        self.monkeypatch.setattr(Block, "forward", refuse)
        self.monkeypatch.delenv("DSCODER_FUSED", raising=False)

    def allow(self):
        def counted(block, *args, **kwargs):
            self.calls += 1
            return self.original(block, *args, **kwargs)
        self.monkeypatch.setattr(Block, "forward", counted)
        self.monkeypatch.setenv("DSCODER_FUSED", "0")


def run_steps(net, cache_dtype, before_decode=lambda: None, batch=2):
    """A prompt (layer by layer: too many rows for the kernels), then a 3-token verification
    step and a decode step; the logits of both steps and every layer's keys."""
    with torch.no_grad():
        cache = net.new_cache(batch, 40, dtype=cache_dtype)
        net(torch.arange(10, 30).repeat(batch, 1), 0, cache)
        before_decode()
        return [net(torch.tensor([[5, 6, 7]] * batch), 20, cache)[0], net(torch.tensor([[9]] * batch), 23, cache)[0],
                *(c.buffers[0][:, :24].clone() for c in cache)]


@pytest.mark.parametrize("quant", [None, "int8", "int4"])
@pytest.mark.parametrize("cache_dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_fused_step_is_bit_identical_to_the_layers(quant, cache_dtype, monkeypatch):
    net = model(quant, bias=quant == "int4")
    switch = Unfused(monkeypatch)
    switch.allow()
    expected = run_steps(net, cache_dtype)
    assert switch.calls > 0
    switch.allow()
    got = run_steps(net, cache_dtype, before_decode=switch.forbid)  # decode: only the fused step can answer
    for a, b in zip(got, expected):
        assert torch.equal(a, b)


def steps_with_a_swap(net, other, check=lambda: None):
    """Prompt, one step, then a module and a weight's storage replaced, then one more step."""
    with torch.no_grad():
        cache = net.new_cache(1, 16)
        net(torch.tensor([[3, 4, 5]]), 0, cache)
        net(torch.tensor([[6]]), 3, cache)
        before = fused.plan_for(net)
        net.layers[1].self_attn.q_proj = other.layers[1].self_attn.q_proj  # module swapped
        net.layers[0].mlp.down_proj.weight.data = other.layers[0].mlp.down_proj.weight.data.clone()  # storage
        check()
        return net(torch.tensor([[7]]), 4, cache)[0], before


def test_a_replaced_projection_is_seen_at_the_next_step(monkeypatch):
    """The plan points into the weights; swapping a module (as a LoRA wrapper or re-quantization
    would) or a weight's storage must rebuild it, never read the old memory."""
    switch = Unfused(monkeypatch)
    switch.allow()
    want, _ = steps_with_a_swap(model(seed=1), model(seed=2))
    net = model(seed=1)
    monkeypatch.delenv("DSCODER_FUSED")
    got, before = steps_with_a_swap(net, model(seed=2), check=switch.forbid)
    assert before is not None and fused.plan_for(net) is not before
    assert torch.equal(got, want)


def test_a_hook_added_later_is_called(monkeypatch):
    net = model()
    seen = []
    with torch.no_grad():
        cache = net.new_cache(1, 16)
        net(torch.tensor([[3, 4, 5]]), 0, cache)
        net(torch.tensor([[6]]), 3, cache)
        assert fused.plan_for(net) is not None
        handle = net.layers[0].mlp.up_proj.register_forward_hook(lambda mod, args, out: seen.append(out.shape))
        net(torch.tensor([[7]]), 4, cache)
        handle.remove()
        net(torch.tensor([[8]]), 5, cache)
    assert seen == [torch.Size([1, 1, 160])]
    assert fused.plan_for(net) is not None  # fused again once the hook is gone


def test_models_outside_the_kernels_are_declined():
    assert fused.plan_for(model().to(torch.bfloat16)) is None  # 16-bit activations
    small = randomize_(Transformer(get_preset("tiny-llama").config)).eval()  # head size 16
    assert fused.plan_for(small) is None
    assert fused.plan_for(randomize_(Transformer(get_preset("tiny-v2-lite").config)).eval()) is None  # MLA, MoE
    net = model()
    plain = net.layers[0].self_attn.k_proj
    assert isinstance(plain, Linear)
    net.layers[0].self_attn.k_proj = torch.nn.Linear(128, 64)  # not the model's own Linear
    assert fused.plan_for(net) is None
    net.layers[0].self_attn.k_proj = plain  # and back: the verdict is revisited
    assert fused.plan_for(net) is not None
    bf16 = model().to(torch.bfloat16)
    assert fused.plan_for(bf16) is None
    assert fused.plan_for(bf16.float()) is not None


def test_fused_step_over_the_paged_pools_matches_the_layers(monkeypatch):
    """Continuous batching: rows of three sequences at different positions in one step."""
    net = model("int4")
    cfg = net.config
    block = 4

    def serve_like(before_decode):
        kv = PagedKV(cfg, num_blocks=12, block_size=block, dtype=torch.float32)
        tables = [[0, 1, 2], [3, 4], [5, 6, 7]]
        lengths = [9, 5, 11]
        with torch.no_grad(), native.row_invariant():
            for table, length in zip(tables, lengths):  # the prompts: more rows than the kernels take
                rows = PagedRows([(table, 0, length)], block)
                net(torch.arange(20, 20 + length)[None], cache=kv.views(rows), positions=rows.pos)
            before_decode()
            rows = PagedRows([(t, n, 1) for t, n in zip(tables, lengths)], block)
            return net(torch.tensor([[7, 8, 9]]), cache=kv.views(rows), positions=rows.pos)[0], kv

    switch = Unfused(monkeypatch)
    switch.allow()
    expected, kv_a = serve_like(lambda: None)
    got, kv_b = serve_like(switch.forbid)
    assert torch.equal(got, expected)
    assert all(torch.equal(a, b) for pa, pb in zip(kv_a.layers, kv_b.layers) for a, b in zip(pa, pb))


@pytest.mark.parametrize("n", [1, 7, 8, 160, 163])
def test_silu_mul_matches_pytorch(n):
    g = torch.Generator().manual_seed(n)
    gate = torch.randn(n, generator=g) * 6
    gate[0] = -100.0  # e^-|g| underflows: silu is -0
    up = torch.randn(n, generator=g)
    out = native.silu_mul(gate, up)
    torch.testing.assert_close(out, F.silu(gate) * up, rtol=2e-6, atol=1e-7)
    # A value's bits do not depend on where it sits in the call (the tail runs the vector code).
    assert torch.equal(native.silu_mul(gate[-1:], up[-1:]), out[-1:])


def test_the_plan_keeps_no_cache_alive():
    """It remembers cache addresses, never the caches: a finished request's memory is freed."""
    import gc
    import weakref

    net = model()
    with torch.no_grad():
        cache = net.new_cache(1, 16)
        net(torch.tensor([[3, 4, 5]]), 0, cache)
        net(torch.tensor([[6]]), 3, cache)
    assert fused.plan_for(net).caches  # the step ran and remembered the addresses
    buffer = weakref.ref(cache[0].buffers[0])
    del cache
    gc.collect()
    assert buffer() is None


def test_a_cache_of_another_batch_or_shape_takes_the_layers(monkeypatch):
    net = model()
    switch = Unfused(monkeypatch)
    switch.allow()
    monkeypatch.delenv("DSCODER_FUSED")  # fused allowed; the blocks' forward counted
    with torch.no_grad():
        cache = net.new_cache(2, 16)
        net(torch.tensor([[3, 4, 5]] * 2), 0, cache)
        calls = switch.calls
        net(torch.tensor([[6]]), 3, [c for c in cache])  # batch 1 against a cache of batch 2: not fused
    assert switch.calls > calls
