"""The DeepSeek-Coder network: V1 (dense Llama) and V2 (MLA + DeepSeekMoE) in one file.

Module names mirror the Hugging Face checkpoints (`layers.N.self_attn.q_proj`, ...) minus
the leading `model.`, so loading is a one-line key rename and any reader who knows the HF
layout finds every tensor where they expect it.

One `forward(tokens, start_pos, cache)` serves training (no cache: full causal sequence,
returns the MoE auxiliary loss) and inference (a cache: the tokens are written at
`start_pos`, which may be anywhere, so prefill can run in chunks and decode can take one or
several tokens per step).  Numerics follow transformers where sources disagree: RMSNorm and
the router in fp32, YaRN's mscale² softmax factor, no top-k renormalisation unless
`norm_topk_prob`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from dscoder.kernels import native
from dscoder.model import fused
from dscoder.model.cache import DenseCache, LatentCache, LayerCache, RowCache
from dscoder.model.config import ModelConfig, yarn_mscale
from dscoder.model.quant import QuantLinear


class Linear(nn.Linear):
    """nn.Linear whose decode-sized products (a few rows, no autograd) run on the native kernel."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not torch.is_grad_enabled() and (y := native.linear(x, self.weight, self.bias)) is not None:
            return y
        return F.linear(x, self.weight, self.bias)


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not torch.is_grad_enabled():
            if x.dtype == torch.float32 and (y := native.rms_norm(x, self.weight, self.eps)) is not None:
                return y
            if x.dtype != torch.float32 and (y := native.rms_norm(x.float(), None, self.eps)) is not None:
                return self.weight * y.to(x.dtype)  # normalised in fp32, weighted in x's dtype, as below
        xf = x.float()
        xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * xf.to(x.dtype)


# ---------------------------------------------------------------------------- RoPE
def rope_frequencies(cfg: ModelConfig) -> tuple[torch.Tensor, float]:
    """Inverse frequencies (fp32, CPU) and the cos/sin magnitude for the config's RoPE kind.

    Built on the CPU explicitly so a model constructed under `torch.device("meta")` still
    has real frequencies.
    """
    dim, base, scaling = cfg.rope_dim, cfg.rope_theta, cfg.rope_scaling or {"type": "default"}
    inv_freq = 1.0 / base ** (torch.arange(0, dim, 2, dtype=torch.float32, device="cpu") / dim)
    kind = scaling["type"]
    if kind == "default":
        return inv_freq, 1.0
    factor = float(scaling["factor"])
    if kind == "linear":
        return inv_freq / factor, 1.0
    # YaRN: interpolate the low frequencies, keep the high ones, blend linearly in between.
    original = scaling.get("original_max_position_embeddings", cfg.max_position_embeddings)
    beta_fast, beta_slow = scaling.get("beta_fast") or 32, scaling.get("beta_slow") or 1

    def correction_dim(rotations: float) -> float:
        return dim * math.log(original / (rotations * 2 * math.pi)) / (2 * math.log(base))

    low = max(math.floor(correction_dim(beta_fast)), 0)
    high = min(math.ceil(correction_dim(beta_slow)), dim - 1)
    ramp = (torch.arange(dim // 2, dtype=torch.float32, device="cpu") - low) / max(high - low, 0.001)
    extrapolate = 1 - ramp.clamp(0, 1)
    inv_freq = inv_freq / factor * (1 - extrapolate) + inv_freq * extrapolate
    mscale, mscale_all = scaling.get("mscale"), scaling.get("mscale_all_dim")
    if scaling.get("attention_factor") is not None:
        magnitude = float(scaling["attention_factor"])
    elif mscale and mscale_all:
        magnitude = yarn_mscale(factor, mscale) / yarn_mscale(factor, mscale_all)
    else:
        magnitude = yarn_mscale(factor)
    return inv_freq, magnitude


def rope_tables(cos: torch.Tensor, sin: torch.Tensor, interleaved: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Full-width (T, D) cos and signed sin for `apply_rope`, built once per forward for all layers.

    V1 (Llama) pairs dimension i with i + D/2 ("rotate half"); V2 pairs adjacent
    dimensions (2i, 2i+1), as DeepSeek-V2 was trained.  Either way a pair (a, b) becomes
    (a cos - b sin, b cos + a sin) = (a, b) * cos + (b, a) * (-sin, sin).
    """
    if interleaved:
        return cos.repeat_interleave(2, dim=-1), torch.stack((-sin, sin), dim=-1).flatten(-2)
    return torch.cat((cos, cos), dim=-1), torch.cat((-sin, sin), dim=-1)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, interleaved: bool) -> torch.Tensor:
    """Rotate x (B, T, H, D) by the (T, D) tables of `rope_tables`, in fp32."""
    if not torch.is_grad_enabled() and (out := native.rope(x, cos, sin, interleaved)) is not None:
        return out
    xf = x.float()
    if interleaved:
        swapped = xf.unflatten(-1, (-1, 2)).flip(-1).flatten(-2)
    else:
        x1, x2 = xf.chunk(2, dim=-1)
        swapped = torch.cat((x2, x1), dim=-1)
    return torch.addcmul(xf * cos[:, None, :], swapped, sin[:, None, :]).type_as(x)


def causal_mask(start_pos: int, q_len: int, kv_len: int, device: torch.device) -> torch.Tensor | None:
    """Boolean mask (q_len, kv_len): query i (at start_pos+i) sees keys 0..start_pos+i.

    None when plain `is_causal` is already right (no cached prefix), or when one query sees
    every key (a decode step): building a mask per layer per step costs more than attending.
    """
    if (start_pos == 0 and q_len == kv_len) or (q_len == 1 and kv_len == start_pos + 1):
        return None
    q_pos = torch.arange(start_pos, start_pos + q_len, device=device)
    return torch.arange(kv_len, device=device)[None, :] <= q_pos[:, None]


# SDPA shares each kv head across its query group itself since torch 2.5; before, the kv heads
# are repeated (a copy of the whole cache per layer per step: the largest decode cost for GQA).
_NATIVE_GQA = "enable_gqa" in F.scaled_dot_product_attention.__doc__


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None, scale: float) -> torch.Tensor:
    """Causal attention over (B, T, H, D) tensors, k/v possibly with fewer (kv) heads; returns (B, T, H, Dv).

    `mask` is `causal_mask(S - T, T, S)` (queries are the last T of S positions), or a (B, 1, T, T)
    mask confining packed samples to themselves (`Transformer.forward`'s `segments`).  A few
    queries over an fp32 or bf16 cache (decode) go to the native kernel, the rest to SDPA.
    """
    packed = mask is not None and mask.dim() == 4  # the native kernel knows only the causal mask
    if not packed and not torch.is_grad_enabled() and (out := native.attend(q, k, v, scale)) is not None:
        return out
    if k.dtype != q.dtype:  # a cache kept in another precision (Transformer.cache_dtype)
        k, v = k.to(q.dtype), v.to(q.dtype)
    groups = q.shape[2] // k.shape[2]
    extra = {}
    if groups > 1 and _NATIVE_GQA:
        extra["enable_gqa"] = True
    elif groups > 1:
        k, v = (z.repeat_interleave(groups, dim=2) for z in (k, v))
    q, k, v = (t.transpose(1, 2) for t in (q, k, v))
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=mask is None and q.shape[2] > 1,
                                         scale=scale, **extra)
    return out.transpose(1, 2)


# ---------------------------------------------------------------------------- attention
class Attention(nn.Module):
    """V1 attention: MHA, GQA or MQA; the cache holds only the kv heads."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        h, d = cfg.hidden_size, cfg.attn_head_dim
        self.n_heads, self.n_kv_heads, self.head_dim = cfg.num_attention_heads, cfg.num_key_value_heads, d
        self.q_proj = Linear(h, self.n_heads * d, bias=cfg.attention_bias)
        self.k_proj = Linear(h, self.n_kv_heads * d, bias=cfg.attention_bias)
        self.v_proj = Linear(h, self.n_kv_heads * d, bias=cfg.attention_bias)
        self.o_proj = Linear(self.n_heads * d, h, bias=cfg.attention_bias)
        self.scale = d ** -0.5

    def forward(self, x, cos, sin, start_pos: int, cache: DenseCache | RowCache | None,
                mask: torch.Tensor | None = None) -> torch.Tensor:
        b, t, _ = x.shape
        q = apply_rope(self.q_proj(x).view(b, t, self.n_heads, self.head_dim), cos, sin, interleaved=False)
        k = apply_rope(self.k_proj(x).view(b, t, self.n_kv_heads, self.head_dim), cos, sin, interleaved=False)
        v = self.v_proj(x).view(b, t, self.n_kv_heads, self.head_dim)
        if isinstance(cache, RowCache):  # continuous batching: rows of many sequences
            return self.o_proj(cache.attend(q, k, v, self.scale).reshape(b, t, -1))
        if cache is not None:
            k, v = cache.update(start_pos, k, v)
        if mask is None:
            mask = causal_mask(start_pos, t, k.shape[1], x.device)
        out = attend(q, k, v, mask, self.scale)
        return self.o_proj(out.reshape(b, t, -1))


class MLA(nn.Module):
    """V2 multi-head latent attention.

    Keys and values come from a shared low-rank latent c_KV (kv_lora_rank) plus one RoPE
    key shared by all heads; the cache stores only those (512+64 values per token for the
    published models).  Attention runs in one of two equal forms: "expanded" turns the
    latent into per-head K/V (cheapest for a prompt, where every position is new), and
    "absorbed" folds W_UK into the query and applies W_UV after attention, so a decode step
    attends over the cached latent directly instead of re-expanding it for every position.
    `absorb=None` picks absorbed exactly when earlier positions are cached.  The absorbed form
    reads kv_b_proj's weight only through `absorbed_weights`, never its `.weight` directly.
    """

    absorb: bool | None = None

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        h, nh = cfg.hidden_size, cfg.num_attention_heads
        self.n_heads, self.q_lora_rank, self.kv_lora_rank = nh, cfg.q_lora_rank, cfg.kv_lora_rank
        self.nope_dim, self.rope_dim, self.v_dim = cfg.qk_nope_head_dim, cfg.qk_rope_head_dim, cfg.v_head_dim
        qk_dim = cfg.qk_head_dim
        if cfg.q_lora_rank:
            self.q_a_proj = Linear(h, cfg.q_lora_rank, bias=cfg.attention_bias)
            self.q_a_layernorm = RMSNorm(cfg.q_lora_rank, cfg.rms_norm_eps)
            self.q_b_proj = Linear(cfg.q_lora_rank, nh * qk_dim, bias=False)
        else:
            self.q_proj = Linear(h, nh * qk_dim, bias=False)
        self.kv_a_proj_with_mqa = Linear(h, cfg.kv_lora_rank + cfg.qk_rope_head_dim, bias=cfg.attention_bias)
        self.kv_a_layernorm = RMSNorm(cfg.kv_lora_rank, cfg.rms_norm_eps)
        self.kv_b_proj = Linear(cfg.kv_lora_rank, nh * (cfg.qk_nope_head_dim + cfg.v_head_dim), bias=False)
        self.o_proj = Linear(nh * cfg.v_head_dim, h, bias=cfg.attention_bias)
        self.scale = qk_dim ** -0.5
        scaling = cfg.rope_scaling or {}
        if scaling.get("type", "default") != "default" and scaling.get("mscale_all_dim"):
            self.scale *= yarn_mscale(scaling["factor"], scaling["mscale_all_dim"]) ** 2

    def forward(self, x, cos, sin, start_pos: int, cache: LatentCache | RowCache | None,
                mask: torch.Tensor | None = None) -> torch.Tensor:
        b, t, _ = x.shape
        q = self.q_b_proj(self.q_a_layernorm(self.q_a_proj(x))) if self.q_lora_rank else self.q_proj(x)
        q_nope, q_pe = q.view(b, t, self.n_heads, -1).split([self.nope_dim, self.rope_dim], dim=-1)
        q_pe = apply_rope(q_pe, cos, sin, interleaved=True)
        latent, k_pe = self.kv_a_proj_with_mqa(x).split([self.kv_lora_rank, self.rope_dim], dim=-1)
        latent = self.kv_a_layernorm(latent)
        k_pe = apply_rope(k_pe.unsqueeze(2), cos, sin, interleaved=True).squeeze(2)
        if isinstance(cache, RowCache):  # continuous batching: each sequence attends over its own latents
            return self.o_proj(cache.attend_latent(self, q_nope, q_pe, latent, k_pe).reshape(b, t, -1))
        if cache is not None:
            latent, k_pe = (t.to(x.dtype) for t in cache.update(start_pos, latent, k_pe))
        if mask is None:
            mask = causal_mask(start_pos, t, latent.shape[1], x.device)
        absorb = self.absorb if self.absorb is not None else (cache is not None and start_pos > 0)
        attend_fn = self.attend_absorbed if absorb else self.attend_expanded
        out = attend_fn(q_nope, q_pe, latent, k_pe, mask)
        return self.o_proj(out.reshape(b, t, -1))

    def attend_expanded(self, q_nope, q_pe, latent, k_pe, mask) -> torch.Tensor:
        b, s = latent.shape[:2]
        k_nope, v = self.kv_b_proj(latent).view(b, s, self.n_heads, -1).split([self.nope_dim, self.v_dim], dim=-1)
        k = torch.cat((k_nope, k_pe[:, :, None, :].expand(b, s, self.n_heads, self.rope_dim)), dim=-1)
        return attend(torch.cat((q_nope, q_pe), dim=-1), k, v, mask, self.scale)

    def absorbed_weights(self, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """(W_UK [heads, nope, rank], W_UV [heads, v, rank]) in `dtype`: kv_b_proj's effective weight per head.

        The only place the absorbed form reads kv_b_proj, so it folds in exactly the matrix
        `attend_expanded` multiplies by: `.weight` of a plain linear layer, the dequantized
        weight of a `QuantLinear` (which has no `.weight`).  Any other layer is refused rather
        than guessed at: a wrapper whose `.weight` is not what it applies (LoRA adds a low-rank
        product to it) would otherwise make the two forms disagree without a sound.
        """
        layer = self.kv_b_proj
        if isinstance(layer, QuantLinear):
            w = layer.dequantize(dtype)
        elif hasattr(layer, "effective_weight"):  # a wrapper that says what it applies (LoRA: W + s·B·A)
            w = layer.effective_weight(dtype)
        elif type(layer) in (Linear, nn.Linear):
            w = layer.weight.to(dtype)
        else:
            raise TypeError(f"MLA.kv_b_proj is a {type(layer).__name__}, whose effective weight the absorbed form "
                            "cannot read (it knows Linear, nn.Linear, QuantLinear and layers with an "
                            "effective_weight method); teach "
                            "MLA.absorbed_weights to read it")
        w = w.view(self.n_heads, self.nope_dim + self.v_dim, self.kv_lora_rank)
        return w[:, :self.nope_dim], w[:, self.nope_dim:]

    def attend_absorbed(self, q_nope, q_pe, latent, k_pe, mask) -> torch.Tensor:
        w_uk, w_uv = self.absorbed_weights(q_nope.dtype)
        q_latent = torch.einsum("bthd,hdr->bthr", q_nope, w_uk)  # queries in the latent space
        scores = (torch.einsum("bthr,bsr->bhts", q_latent, latent)
                  + torch.einsum("bthd,bsd->bhts", q_pe, k_pe)).float() * self.scale
        if mask is None:  # no cached prefix: plain causal
            t = scores.shape[-2]
            mask = torch.ones(t, t, dtype=torch.bool, device=scores.device).tril()
        probs = scores.masked_fill(~mask, float("-inf")).softmax(dim=-1).type_as(latent)
        return torch.einsum("bthr,hvr->bthv", torch.einsum("bhts,bsr->bthr", probs, latent), w_uv)


# ---------------------------------------------------------------------------- feed-forward
class MLP(nn.Module):
    """SwiGLU feed-forward: down(silu(gate(x)) * up(x))."""

    def __init__(self, hidden: int, intermediate: int):
        super().__init__()
        self.gate_proj = Linear(hidden, intermediate, bias=False)
        self.up_proj = Linear(hidden, intermediate, bias=False)
        self.down_proj = Linear(intermediate, hidden, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.gate_proj(x), self.up_proj(x)
        if not torch.is_grad_enabled() and (h := native.silu_mul(gate, up)) is not None:
            return self.down_proj(h)  # the fused decode step's arithmetic (kernels/activation.cpp)
        return self.down_proj(F.silu(gate) * up)


class Gate(nn.Module):
    """DeepSeekMoE router: fp32 softmax scores, greedy or group-limited greedy top-k."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.top_k, self.n_experts = cfg.num_experts_per_tok, cfg.n_routed_experts
        self.method, self.n_group, self.topk_group = cfg.topk_method, cfg.n_group, cfg.topk_group
        self.norm_topk_prob, self.scaling = cfg.norm_topk_prob, cfg.routed_scaling_factor
        self.weight = nn.Parameter(torch.empty(cfg.n_routed_experts, cfg.hidden_size))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x (N, H) -> (weights (N, k) fp32, expert ids (N, k), all scores (N, E))."""
        scores = F.linear(x.float(), self.weight.float()).softmax(dim=-1)
        selectable = scores
        if self.method == "group_limited_greedy":  # keep only experts in the topk_group best groups
            group_best = scores.view(-1, self.n_group, self.n_experts // self.n_group).amax(dim=-1)
            keep = torch.zeros_like(group_best).scatter_(1, group_best.topk(self.topk_group, dim=-1)[1], 1.0)
            keep = keep.repeat_interleave(self.n_experts // self.n_group, dim=1).bool()
            selectable = scores.masked_fill(~keep, 0.0)
        weights, ids = selectable.topk(self.top_k, dim=-1, sorted=False)
        if self.top_k > 1 and self.norm_topk_prob:  # DeepSeek-V2 scales only when it does not renormalise
            weights = weights / (weights.sum(dim=-1, keepdim=True) + 1e-20)
        else:
            weights = weights * self.scaling
        return weights, ids, scores


class MoE(nn.Module):
    """Shared experts for every token plus top-k of many fine-grained routed experts.

    Two dispatches, equal to fp32 rounding in the output and in every expert's gradient
    (tests/model/test_moe.py): `dispatch_loop` runs each chosen expert once on its tokens,
    a Python loop over the experts; `dispatch_grouped` runs them all at once as grouped
    matmuls over the experts' stacked weights (`GroupedExperts`), no loop.  Training
    (autograd on) takes the grouped one (on a CPU up to a size, below); inference keeps
    the loop, whose few-row products take the native decode kernel, whose experts may be
    quantized, and which copies no weights.

    Forward + backward of one MoE layer on 2,048 tokens, this repository's 2-core CPU
    (torch 2.13), median of 10 runs alternating the two, loop vs grouped (loop/grouped, so
    above 1 the grouped dispatch is the faster):
      tiny-v2 (16 experts of 32, top-4, hidden 64):  fp32 21.0 vs 19.3 ms (1.10x),
                                                      bf16 autocast 33.6 vs 27.5 ms (1.27x);
      64 experts, top-6, 2 shared, hidden x expert width:
        256 x 64:   fp32 140 vs 115 ms (1.21x),  bf16 123 vs 104 ms (1.17x);
        512 x 128:  fp32 311 vs 286 ms (1.10x),  bf16 210 vs 193 ms (1.09x);
        768 x 256:  fp32 635 vs 738 ms (0.87x),  bf16 465 vs 458 ms (0.97x).
    On a CPU a grouped matmul is the same per-expert GEMMs run from C++: it saves the
    Python and autograd work per expert, but stacking the weights (forward and again in
    backward) and streaming every expert's rows through memory at once cost bytes, which
    win from about 64 MiB of stacked weights up (512 x 256 fp32: 0.83x, 1024 x 256 fp32:
    0.75x).  So on a CPU the grouped dispatch is taken up to `cpu_grouped_max_bytes`, and
    the loop beyond; on a GPU it is one kernel per projection with no host sync for the
    token counts, and is always taken.
    """

    class GroupedExperts(torch.autograd.Function):
        """down(silu(gate(x)) * up(x)) of every (token, expert) row, rows sorted by expert.

        Forward is two grouped matmuls (gate and up together, then down) over the experts'
        weights stacked into (E, 2I, H) and (E, H, I) tensors; backward is four (the rows'
        gradient through each, and the stacked weights' gradients, handed back to each
        expert's own `gate_proj/up_proj/down_proj.weight` as slices).  The stacks are rebuilt
        in backward rather than saved, so training keeps no second copy of the experts alive
        between forward and backward: saved are the sorted rows, the gate/up products and
        references to the weights.  An expert no row reached gets a zero gradient (the loop
        gives it none; the trainer zero-fills those anyway, as transformers' fused experts do).
        """

        @staticmethod
        def stacked(weights: tuple[torch.Tensor, ...], dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
            e = len(weights) // 3
            gate, up, down = weights[:e], weights[e:2 * e], weights[2 * e:]
            (i, h), dev = gate[0].shape, gate[0].device
            gate_up = torch.stack([w for pair in zip(gate, up) for w in pair],  # expert n: rows [gate_n; up_n]
                                  out=torch.empty(2 * e, i, h, device=dev, dtype=dtype)).view(e, 2 * i, h)
            return gate_up, torch.stack(down, out=torch.empty(e, h, i, device=dev, dtype=dtype))

        @staticmethod
        def forward(ctx, rows: torch.Tensor, offs: torch.Tensor, *weights: torch.Tensor) -> torch.Tensor:
            """rows (S, H) sorted by expert, offs (E,) int32 cumulative row counts, weights: E gate,
            E up, E down projection matrices, in expert order -> (S, H) in rows' dtype."""
            gate_up, down = MoE.GroupedExperts.stacked(weights, rows.dtype)
            with torch.autocast(rows.device.type, enabled=False):
                gu = MoE.grouped_mm(rows, gate_up.transpose(1, 2), offs=offs)
                g, u = gu.chunk(2, dim=-1)
                out = MoE.grouped_mm(F.silu(g) * u, down.transpose(1, 2), offs=offs)
            ctx.save_for_backward(rows, offs, gu, *weights)
            return out

        @staticmethod
        @torch.autograd.function.once_differentiable
        def backward(ctx, grad: torch.Tensor):
            rows, offs, gu, *weights = ctx.saved_tensors
            gate_up, down = MoE.GroupedExperts.stacked(weights, rows.dtype)
            with torch.autocast(rows.device.type, enabled=False):
                grad = grad.to(rows.dtype).contiguous()
                if grad.data_ptr() % 16:  # the grouped kernels want 16-byte aligned operands
                    grad = grad.clone()
                g, u = gu.chunk(2, dim=-1)
                act = F.silu(g)
                d_h = MoE.grouped_mm(grad, down, offs=offs)  # (S, I)
                d_gu = torch.cat([torch.ops.aten.silu_backward(d_h * u, g), d_h * act], dim=-1)  # (S, 2I)
                d_rows = MoE.grouped_mm(d_gu, gate_up, offs=offs) if ctx.needs_input_grad[0] else None
                if not any(ctx.needs_input_grad[2:]):
                    return d_rows, None, *([None] * len(weights))
                d_gate_up = MoE.grouped_mm(d_gu.t(), rows, offs=offs).to(weights[0].dtype)  # (E, 2I, H)
                d_down = MoE.grouped_mm(grad.t(), act * u, offs=offs).to(weights[-1].dtype)  # (E, H, I)
            i = d_gate_up.shape[1] // 2
            return (d_rows, None, *d_gate_up[:, :i].unbind(0), *d_gate_up[:, i:].unbind(0), *d_down.unbind(0))

    # torch.nn.functional.grouped_mm (torch >= 2.10; torch._grouped_mm before): one call for
    # every expert's rows.  Whether it runs on a (device type, dtype) is tried once.
    grouped_mm = staticmethod(getattr(F, "grouped_mm", None) or getattr(torch, "_grouped_mm", None))
    _grouped_mm_works: dict[tuple[str, torch.dtype], bool] = {}

    @staticmethod
    def grouped_mm_works(device: torch.device, dtype: torch.dtype) -> bool:
        """Whether this torch runs `GroupedExperts`' grouped matmuls on this device and dtype."""
        key = (device.type, dtype)
        if key not in MoE._grouped_mm_works:
            try:
                a = torch.ones(8, 8, device=device, dtype=dtype)
                offs = torch.tensor([3, 3, 8], device=device, dtype=torch.int32)
                three = MoE.grouped_mm(a, torch.ones(3, 8, 8, device=device, dtype=dtype).transpose(1, 2), offs=offs)
                two = MoE.grouped_mm(a.t(), a, offs=offs)  # the weight gradients' form; group 1 is empty
                MoE._grouped_mm_works[key] = bool(three[0, 0] == 8 and two[1].abs().sum() == 0 and two[2, 0, 0] == 5)
            except (RuntimeError, NotImplementedError, TypeError):
                MoE._grouped_mm_works[key] = False
        return MoE._grouped_mm_works[key]

    # On a CPU the grouped dispatch stops paying once the stacked routed-expert weights (in
    # the compute dtype) outgrow this (see above); any other device takes it whatever the size.
    cpu_grouped_max_bytes = 64 * 2**20

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.gate = Gate(cfg)
        self.experts = nn.ModuleList(MLP(cfg.hidden_size, cfg.moe_intermediate_size)
                                     for _ in range(cfg.n_routed_experts))
        self.shared_experts = (MLP(cfg.hidden_size, cfg.moe_intermediate_size * cfg.n_shared_experts)
                               if cfg.n_shared_experts else None)
        self.aux_loss_alpha, self.seq_aux = cfg.aux_loss_alpha, cfg.seq_aux

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        b, t, h = x.shape
        flat = x.reshape(-1, h)
        weights, ids, scores = self.gate(flat)
        out = self.dispatch(flat, weights, ids).view(b, t, h)
        if self.shared_experts is not None:
            out = out + self.shared_experts(x)
        aux = self.balance_loss(ids.view(b, -1), scores.view(b, t, -1)) if self.training and self.aux_loss_alpha else None
        return out, aux

    def dispatch(self, x: torch.Tensor, weights: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        """x (N, H), router weights and expert ids (N, k) -> the routed experts' weighted sum (N, H)."""
        dtype = self.grouped_dtype(x)
        if dtype is not None:
            return self.dispatch_grouped(x, weights, ids, dtype)
        return self.dispatch_loop(x, weights, ids)

    def grouped_dtype(self, x: torch.Tensor) -> torch.dtype | None:
        """The compute dtype of `dispatch_grouped` when training can take it, else None (the loop)."""
        if not torch.is_grad_enabled() or torch.compiler.is_compiling() or MoE.grouped_mm is None or not len(x):
            return None
        first = self.experts[0]
        projections = (first.gate_proj, first.up_proj, first.down_proj)
        if not all(type(p) in (Linear, nn.Linear) and p.bias is None for p in projections):
            return None  # quantized or otherwise replaced experts
        if not (x.requires_grad or first.gate_proj.weight.requires_grad):
            return None
        i, h = first.gate_proj.weight.shape
        if i % 8 or h % 8:  # the grouped kernels want every row stride a multiple of 16 bytes
            return None
        device = x.device
        dtype = first.gate_proj.weight.dtype
        if torch.is_autocast_enabled(device.type):
            dtype = torch.get_autocast_dtype(device.type)
        if device.type == "cpu" and 3 * len(self.experts) * i * h * dtype.itemsize > self.cpu_grouped_max_bytes:
            return None
        return dtype if MoE.grouped_mm_works(device, dtype) else None

    def dispatch_grouped(self, x: torch.Tensor, weights: torch.Tensor, ids: torch.Tensor,
                         dtype: torch.dtype | None = None) -> torch.Tensor:
        """Every expert at once: rows sorted by expert, grouped matmuls, no loop over experts."""
        k = ids.shape[1]
        flat_ids = ids.flatten()
        order = flat_ids.argsort(stable=True)
        offs = torch.bincount(flat_ids, minlength=len(self.experts)).cumsum(0).to(torch.int32)
        token_of = order // k
        rows = x[token_of].to(dtype or self.experts[0].gate_proj.weight.dtype)
        params = [getattr(e, name).weight for name in ("gate_proj", "up_proj", "down_proj") for e in self.experts]
        y = MoE.GroupedExperts.apply(rows, offs, *params) * weights.flatten()[order, None]
        return torch.zeros_like(x).index_add_(0, token_of, y.to(x.dtype))

    def dispatch_loop(self, x: torch.Tensor, weights: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        """Run each expert once on the tokens routed to it (sorted by expert id)."""
        k = ids.shape[1]
        order = ids.flatten().argsort(stable=True)
        counts = torch.bincount(ids.flatten(), minlength=len(self.experts)).tolist()
        token_of = order // k
        out = torch.zeros_like(x)
        start = 0
        for expert, count in zip(self.experts, counts):
            if count:
                rows = order[start:start + count]
                tokens = token_of[start:start + count]
                y = expert(x[tokens]) * weights.flatten()[rows, None]
                out.index_add_(0, tokens, y.to(out.dtype))
                start += count
        return out

    def balance_loss(self, ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        """DeepSeek-V2's expert-level balance loss, alpha * sum_i f_i * P_i.

        f_i is expert i's share of routed slots scaled by n_experts/k (1 when uniform) and
        P_i its mean router probability; per sequence when `seq_aux`, else over the batch.
        """
        n_experts = scores.shape[-1]
        if not self.seq_aux:
            ids, scores = ids.reshape(1, -1), scores.reshape(1, -1, n_experts)
        slots = ids.shape[1]
        load = torch.zeros(ids.shape[0], n_experts, device=ids.device)
        load.scatter_add_(1, ids, torch.ones_like(ids, dtype=load.dtype)).div_(slots / n_experts)
        return (load * scores.mean(dim=1)).sum(dim=1).mean() * self.aux_loss_alpha


# ---------------------------------------------------------------------------- the network
class Block(nn.Module):
    def __init__(self, cfg: ModelConfig, layer: int):
        super().__init__()
        self.self_attn = MLA(cfg) if cfg.is_mla else Attention(cfg)
        self.mlp = MoE(cfg) if cfg.is_moe_layer(layer) else MLP(cfg.hidden_size, cfg.intermediate_size)
        self.input_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.post_attention_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)

    def forward(self, x, cos, sin, start_pos, cache, mask=None) -> tuple[torch.Tensor, torch.Tensor | None]:
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, start_pos, cache, mask)
        y = self.mlp(self.post_attention_layernorm(x))
        y, aux = y if isinstance(y, tuple) else (y, None)
        return x + y, aux


class Transformer(nn.Module):
    # Element type of new caches; None: the model's own dtype.  A 16-bit cache halves the
    # memory of long contexts and the bytes a decode step's attention reads (llama.cpp's
    # default is fp16), at the cost of rounding cached keys/values; attention math stays fp32.
    cache_dtype: torch.dtype | None = None

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.config = cfg
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.layers = nn.ModuleList(Block(cfg, i) for i in range(cfg.num_hidden_layers))
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.lm_head = Linear(cfg.hidden_size, cfg.vocab_size, bias=False)
        if cfg.tie_word_embeddings:
            self.lm_head.weight = self.embed_tokens.weight
        self.inv_freq, self.rope_magnitude = rope_frequencies(cfg)

    def rope(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The `apply_rope` tables (fp32, (len(positions), rope_dim)) for the given positions."""
        device = positions.device
        freqs = positions.float()[:, None] * self.inv_freq.to(device)[None, :]
        return rope_tables(freqs.cos() * self.rope_magnitude, freqs.sin() * self.rope_magnitude, self.config.is_mla)

    def forward(self, tokens: torch.Tensor, start_pos: int = 0, cache: list[LayerCache] | None = None,
                logits_to_keep: int = 0, positions: torch.Tensor | None = None,
                segments: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """tokens (B, T) at positions start_pos.. -> (logits (B, T, V), MoE aux loss (scalar)).

        Without a cache the sequence must start at 0 (training, scoring).  With one, the
        new keys/values are written at start_pos and attention covers everything before.
        `logits_to_keep=n` computes the output head for the last n positions only (as in
        transformers): a prompt needs just its last, and the head is a fifth of a small
        model's prefill.

        Continuous batching passes `positions` (T,) instead of `start_pos`: tokens (1, T) are
        rows of several sequences, each at its own position, and `cache` is a list of
        `RowCache` views that know which row belongs to which sequence.

        Packed fine-tuning passes `segments` (B, T): which sample of the row each token belongs
        to. Attention is then confined to the token's own sample (causal within it), so a packed
        row computes what its samples would alone. Positions are not restarted per sample: RoPE
        makes a score depend only on the distance between query and key, so a sample's offset
        in the row changes nothing but rounding (the test compares packed with unpacked).
        """
        b, t = tokens.shape
        if cache is None and start_pos:
            raise ValueError("start_pos > 0 needs a cache holding the earlier positions")
        if positions is None:
            positions, end = torch.arange(start_pos, start_pos + t, device=tokens.device), start_pos + t
        else:
            end = int(positions.max()) + 1
        if end > self.config.max_position_embeddings:
            raise ValueError(f"positions up to {end} exceed max_position_embeddings="
                             f"{self.config.max_position_embeddings}")
        mask = None
        if segments is not None:
            if cache is not None or segments.shape != tokens.shape:
                raise ValueError("segments (B, T) go with tokens of the same shape and no cache")
            causal = torch.ones(t, t, dtype=torch.bool, device=tokens.device).tril()
            mask = (causal & (segments[:, :, None] == segments[:, None, :]))[:, None]  # (B, 1, T, T)
        x = self.embed_tokens(tokens)
        cos, sin = self.rope(positions)
        aux_total = torch.zeros((), device=tokens.device)
        if mask is not None or not fused.step(self, x, cos, sin, start_pos, cache):  # all layers in one native call
            for i, layer in enumerate(self.layers):
                x, aux = layer(x, cos, sin, start_pos, cache[i] if cache is not None else None, mask)
                if aux is not None:
                    aux_total = aux_total + aux
        if logits_to_keep:
            x = x[:, -logits_to_keep:]
        return self.lm_head(self.norm(x)), aux_total

    @property
    def kv_dtype(self) -> torch.dtype:
        """The element type of new KV caches: `cache_dtype` when set (by `hub.load`), else the weights'."""
        return self.cache_dtype or self.embed_tokens.weight.dtype

    def new_cache(self, batch: int, max_len: int, dtype: torch.dtype | None = None,
                  device: torch.device | str | None = None) -> list[LayerCache]:
        """Per-layer caches: kv heads for V1, the latent c_KV + RoPE key for V2."""
        cfg = self.config
        dtype = dtype or self.kv_dtype
        device = device or self.embed_tokens.weight.device
        if max_len > cfg.max_position_embeddings:
            raise ValueError(f"cache length {max_len} exceeds max_position_embeddings={cfg.max_position_embeddings}")
        if cfg.is_mla:
            return [LatentCache(batch, max_len, cfg.kv_lora_rank, cfg.qk_rope_head_dim, dtype, device)
                    for _ in range(cfg.num_hidden_layers)]
        return [DenseCache(batch, max_len, cfg.num_key_value_heads, cfg.attn_head_dim, dtype, device)
                for _ in range(cfg.num_hidden_layers)]

    @torch.no_grad()
    def init_weights(self, std: float = 0.02, generator: torch.Generator | None = None) -> "Transformer":
        """Fresh weights for training from scratch: N(0, std) matrices, unit norms, zero biases."""
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                module.weight.normal_(0.0, std, generator=generator)
                if getattr(module, "bias", None) is not None:
                    module.bias.zero_()
            elif isinstance(module, RMSNorm):
                module.weight.fill_(1.0)
            elif isinstance(module, Gate):
                module.weight.normal_(0.0, std, generator=generator)
        return self
