"""The native decode kernels against PyTorch: dense matmuls against F.linear, attention against SDPA."""

import pytest
import torch
import torch.nn.functional as F

from conftest import native_kernels_mark
from dscoder.kernels import native

pytestmark = native_kernels_mark()


def sdpa_reference(q, k, v, scale):
    t, s, groups = q.shape[1], k.shape[1], q.shape[2] // k.shape[2]
    k, v = (z.repeat_interleave(groups, dim=2) for z in (k, v))
    mask = torch.arange(s)[None, :] <= torch.arange(s - t, s)[:, None]
    out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                                         attn_mask=mask, scale=scale)
    return out.transpose(1, 2)


@pytest.mark.parametrize("batch, queries, heads, kv_heads, head_dim, length", [
    (1, 1, 9, 3, 64, 600),  # SmolLM2 decode: GQA, several key chunks
    (2, 3, 8, 8, 32, 130),  # MHA, a batch, speculative verification across a chunk edge
    (1, 8, 16, 1, 128, 9),  # MQA, every key seen by a different number of queries
    (3, 1, 4, 2, 64, 1),  # the very first position
])
@pytest.mark.parametrize("head_major", [False, True])
def test_native_attention_matches_sdpa(batch, queries, heads, kv_heads, head_dim, length, head_major):
    g = torch.Generator().manual_seed(length)
    if head_major:  # (B, KV, S_max, D) storage viewed as (B, S, KV, D)
        cache_k, cache_v = (torch.randn(batch, kv_heads, length + 17, head_dim, generator=g) for _ in range(2))
        k, v = cache_k[:, :, :length].transpose(1, 2), cache_v[:, :, :length].transpose(1, 2)
    else:
        cache_k, cache_v = (torch.randn(batch, length + 17, kv_heads, head_dim, generator=g) for _ in range(2))
        k, v = cache_k[:, :length], cache_v[:, :length]  # a slice of a longer cache, as decode passes it
    q = torch.randn(batch, queries, heads, head_dim, generator=g) * 3  # peaked softmax: exp's range matters
    out = native.attend(q, k, v, head_dim ** -0.5)
    assert out is not None and out.shape == q.shape
    # Against SDPA in float64, the exact answer: SDPA's own float32 result strays by up to 3e-6 here on some
    # CPUs (its summation order is the CPU's vector width's), more than the kernel does.
    exact = sdpa_reference(q.double(), k.double(), v.double(), head_dim ** -0.5)
    torch.testing.assert_close(out.double(), exact, rtol=1e-5, atol=2e-6)


def test_unsupported_inputs_fall_back():
    q, k = torch.randn(1, 1, 4, 64), torch.randn(1, 10, 2, 64)
    assert native.attend(q.double(), k.double(), k.double(), 0.1) is None  # not fp32
    assert native.attend(torch.randn(1, 1, 4, 48), torch.randn(1, 10, 2, 48), torch.randn(1, 10, 2, 48), 0.1) is None
    assert native.attend(torch.randn(1, 17, 4, 64), torch.randn(1, 20, 2, 64), torch.randn(1, 20, 2, 64), 0.1) is None
    assert native.attend(q, k.transpose(1, 2).contiguous().transpose(1, 2), k, 0.1) is None  # k, v laid out apart
    strided = k.transpose(2, 3).contiguous().transpose(2, 3)
    assert native.attend(q, strided, strided, 0.1) is None  # head dimension not contiguous


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("rows, in_features, bias", [(1, 576, False), (3, 200, True), (5, 24, True), (16, 64, False)])
def test_native_linear_matches_f_linear(dtype, rows, in_features, bias):
    g = torch.Generator().manual_seed(rows)
    weight = torch.randn(40, in_features, generator=g).to(dtype)
    b = torch.randn(40, generator=g).to(dtype) if bias else None
    x = torch.randn(2, rows, in_features, generator=g).to(dtype)[:1]  # also a non-contiguous-free slice
    out = native.linear(x, weight, b)
    assert out is not None and out.dtype == dtype and out.shape == (1, rows, 40)
    reference = torch.nn.functional.linear(x.float(), weight.float(), None if b is None else b.float())
    torch.testing.assert_close(out.float(), reference, rtol=1e-5 if dtype == torch.float32 else 1e-2, atol=1e-4)


def test_native_linear_declines_what_it_does_not_do():
    w = torch.randn(8, 32)
    assert native.linear(torch.randn(17, 32), w, None) is None  # prompt-sized: F.linear's GEMM is better
    assert native.linear(torch.randn(1, 32).double(), w.double(), None) is None
    assert native.linear(torch.randn(1, 32), w.t().contiguous().t(), None) is None  # a transposed view


@pytest.mark.parametrize("rows, dim", [(1, 576), (40, 100), (3, 7)])
def test_native_rms_norm_matches_the_formula(rows, dim):
    g = torch.Generator().manual_seed(dim)
    x, weight = torch.randn(rows, dim, generator=g) * 3, torch.randn(dim, generator=g)
    reference = weight * x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-5)
    torch.testing.assert_close(native.rms_norm(x, weight, 1e-5), reference, rtol=1e-5, atol=1e-6)
    assert native.rms_norm(x.double(), weight.double(), 1e-5) is None


@pytest.mark.parametrize("interleaved", [False, True])
def test_native_rope_matches_the_pytorch_rotation(interleaved, monkeypatch):
    from dscoder.model.transformer import apply_rope, rope_tables

    g = torch.Generator().manual_seed(int(interleaved))
    angles = torch.rand(5, 8, generator=g) * 6
    cos, sin = rope_tables(angles.cos(), angles.sin(), interleaved)
    x = torch.randn(2, 5, 3, 16, generator=g)
    fast = native.rope(x, cos, sin, interleaved)
    monkeypatch.setattr(native, "rope", lambda *args: None)
    torch.testing.assert_close(fast, apply_rope(x, cos, sin, interleaved), rtol=1e-6, atol=1e-6)
    # rotation preserves the norm of every pair: a check independent of both implementations
    pairs = (lambda t: t.unflatten(-1, (-1, 2))) if interleaved else (lambda t: torch.stack(t.chunk(2, -1), -1))
    torch.testing.assert_close(pairs(fast).norm(dim=-1), pairs(x).norm(dim=-1))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_native_attention_over_a_16_bit_cache_computes_in_fp32(dtype):
    g = torch.Generator().manual_seed(7)
    k, v = (torch.randn(1, 40, 2, 64, generator=g).to(dtype) for _ in range(2))
    q = torch.randn(1, 2, 6, 64, generator=g).to(dtype)
    out = native.attend(q, k, v, 0.125)
    assert out.dtype == dtype
    reference = sdpa_reference(q.float(), k.float(), v.float(), 0.125)  # the same bf16 values, fp32 arithmetic
    torch.testing.assert_close(out.float(), reference, rtol=1e-2, atol=1e-2)


def test_native_rms_norm_without_weight_and_rope_on_bf16():
    from dscoder.model.transformer import apply_rope, rope_tables

    x = torch.randn(4, 96)
    torch.testing.assert_close(native.rms_norm(x, None, 1e-6), x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6))
    angles = torch.rand(3, 16) * 6
    cos, sin = rope_tables(angles.cos(), angles.sin(), False)
    xb = torch.randn(1, 3, 2, 32).bfloat16()
    fast = native.rope(xb, cos, sin, False)
    assert fast.dtype == torch.bfloat16
    torch.testing.assert_close(fast, apply_rope(xb.float(), cos, sin, False).bfloat16())


def test_every_instruction_set_variant_computes_the_same_bits():
    """The VNNI build (one vpdpbusd per int4 block) and the AVX2 build (maddubs + madd) must
    give identical products: the sums are exact integers either way, and the serving engine's
    promise that a request's tokens do not depend on the machine's load rests on it."""
    import ctypes

    from dscoder.model.quant import QuantLinear

    best = native.cpu_isa()
    if best == "avx2":
        pytest.skip("this CPU has no VNNI: only the AVX2 variant runs here")
    g = torch.Generator().manual_seed(3)
    layer = QuantLinear.from_linear(torch.nn.Linear(576, 200, bias=True), "int4")
    x = torch.randn(5, 576, generator=g) * 4
    outs = []
    for isa in ("avx2", best):
        lib = ctypes.CDLL(str(native.build(isa=isa)))
        p, i64 = ctypes.c_void_p, ctypes.c_int64
        lib.dscoder_int4_matmul.argtypes = [p, i64, i64, p, p, p, i64, i64, p, p]
        y = torch.empty(5, 200)
        lib.dscoder_int4_matmul(x.data_ptr(), 5, 576, layer.qweight.data_ptr(), layer.scales.data_ptr(),
                                layer.mins.data_ptr(), 200, 32, layer.bias.data_ptr(), y.data_ptr())
        outs.append(y)
    assert torch.equal(outs[0], outs[1])
    assert outs[0].abs().sum() > 0
