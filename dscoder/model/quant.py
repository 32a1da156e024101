"""Weight-only quantization: int8 per output channel and int4 in groups of 32 (llama.cpp's Q4_1).

Decode on a CPU reads every weight once per token, so its speed is bytes per weight: fp32
is 4, int8 is 1 (+ one fp32 scale per row), int4 with group 32 is 0.625 (two fp16 numbers,
scale and minimum, per 32 weights: the Q4_1 layout, 5 bits per weight).

Two ways to multiply, by the number of rows:
  - up to NATIVE_MAX_ROWS (decode, speculative verification): the activations are quantized
    in blocks of 32 (to int8 for int4 weights, as llama.cpp's Q4_1 x Q8_1; to int16 for int8
    weights) and each block's dot product with the weights is exact integer arithmetic,
    scaled once: what makes the kernels fast.  The
    PyTorch path (`_integer_matmul`, used where the kernel is unavailable) does the same
    arithmetic.  The perplexity test runs this path on the embedded model.
  - more rows (prompt processing): the weights are dequantized and multiplied in floating
    point, where one dequantization is shared by many rows.

Which layers: every nn.Linear of the network with an input width divisible by 32, except
  - MLA's kv_b_proj, whose weight the absorbed decode path folds into queries and outputs
    (it is a few percent of the parameters and read as a matrix, not multiplied as a layer);
  - the output head, which gets `head` (int8 by default, also under int4): it is the
    single most sensitive matrix, and llama.cpp's Q4 files keep it at 8 bits too.
The MoE router and the norms stay in full precision (tiny, and routing flips are costly).

What `--quant` offers is int8 and int4, each with a perplexity budget on the embedded model
(tests/model/test_quant.py).  The int4 layout also takes groups of 64 and 128 (the kernels and saved
checkpoints read them), but those are refused as choices: re-rounding the embedded model to
them cost +34% / +48% perplexity (int4: +0.2%) for 10% / 15% fewer weight bytes, and choosing
the range that minimises the squared error, as llama.cpp's K-quants do, lowered that error by
a quarter but raised the perplexity further (+42% at 64): the outlying weights it clips matter.

Quantization can happen on a loaded model (`quantize_model`) or tensor by tensor while a
checkpoint is read (`checkpoint.build_model(..., quant=...)`), which is how a model larger
than memory in fp32 is loaded.  A quantized model saves as an HF-style directory whose
config.json carries `quantization_config` ({"quant_method": "dscoder", ...}) and loads back
bit-exactly.

Training on top (QLoRA-style: a frozen quantized base, trainable low-rank adapters from
dscoder.model.lora): when autograd needs the gradient of a QuantLinear's *input*, `forward`
takes a third path, `_DequantLinear`, a custom autograd function that dequantizes the weight
in forward and again in backward (grad_x = grad_y @ W) instead of letting F.linear save the
dequantized matrix for backward (int8 casts its integers and scales the product instead of
the weight, see there).  That is the memory point of QLoRA: between forward and
backward only the packed bytes stay resident (1 or 0.625 bytes a weight), never a 2- or
4-byte copy per layer.  The packed tensors are buffers and get no gradient.  It computes in
the input's dtype, or, under autocast, in the autocast dtype (bf16 on a CPU: weight, input
and output all bf16, as nn.Linear under autocast), and hands back the input's gradient in the
input's own dtype.  With no gradient to compute (inference, or an input that does not require
one), the two paths above run unchanged.  The integer path is not differentiable (it rounds
the activations), which is why a few-row product that needs a gradient takes the floating one.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from dscoder.errors import ConfigError
from dscoder.kernels import native

SCHEMES = ("int8", "int4")
GROUP_SIZES = (32, 64, 128)  # the int4 layouts the kernels and saved checkpoints read
OFFERED = ("int8", "int4")  # the --quant choices
# group -> (perplexity vs fp32, measured as in tests/model/test_quant.py; weight bytes saved vs int4's 5 bits a weight)
REFUSED_GROUPS = {64: ("+34%", "10%"), 128: ("+48%", "15%")}
QUANT_METHOD = "dscoder"
# Rows up to which the integer kernel beats dequantize-then-matmul (native.MAX_ROWS, which also
# covers a prompt-lookup verification of 1 + 8 tokens).
NATIVE_MAX_ROWS = native.MAX_ROWS
NATIVE_MAX_IN_FEATURES = 131072  # the kernel's per-row scale buffer (MAX_BLOCKS * 32)


@dataclass(frozen=True)
class QuantConfig:
    scheme: str  # "int8" or "int4"
    group_size: int = 32  # int4 only
    head: str | None = "int8"  # scheme for lm_head; None keeps it in full precision

    def __post_init__(self):
        if self.scheme not in SCHEMES:
            raise ConfigError(f"quantization must be one of {', '.join(SCHEMES)}, got {self.scheme!r}")
        if self.head not in (*SCHEMES, None):
            raise ConfigError(f"head quantization must be one of {', '.join(SCHEMES)} or none, got {self.head!r}")
        if self.group_size not in GROUP_SIZES:
            raise ConfigError(f"int4 group size must be one of {GROUP_SIZES}, got {self.group_size}")

    @classmethod
    def parse(cls, spec: str) -> "QuantConfig":
        """An offered --quant choice: 'int8' or 'int4' (groups of 32); see the module docstring for why
        'int4-64' and 'int4-128' are refused."""
        scheme, _, group = spec.partition("-")
        if group and not group.isdigit():
            raise ConfigError(f"--quant must be {' or '.join(OFFERED)}, got {spec!r}")
        config = cls(scheme, int(group) if group else 32)
        if config.group_size in REFUSED_GROUPS:
            cost, saving = REFUSED_GROUPS[config.group_size]
            raise ConfigError(f"--quant {spec} is not offered: groups of {config.group_size} cost {cost} perplexity "
                              f"on the embedded model for {saving} fewer weight bytes than int4; use int4 (groups "
                              f"of 32, +0.2%) or int8 (+0.4%)")
        return config

    def to_hf(self) -> dict:
        return {"quant_method": QUANT_METHOD, "scheme": self.scheme, "group_size": self.group_size, "head": self.head}

    @classmethod
    def from_hf(cls, hf: dict) -> "QuantConfig":
        if hf.get("quant_method") != QUANT_METHOD:
            raise ConfigError(f"quantization_config.quant_method {hf.get('quant_method')!r} is not supported; "
                              f"only {QUANT_METHOD!r} checkpoints (written by dscoder) load quantized")
        return cls(hf["scheme"], hf.get("group_size", 32), hf.get("head"))


# ---------------------------------------------------------------------------- tensors
def quantize_weight(w: torch.Tensor, scheme: str, group_size: int = 32) -> dict[str, torch.Tensor]:
    """The packed tensors of one [out, in] weight (see kernels/qmatvec.cpp for the layouts)."""
    w = w.detach().float()
    n, k = w.shape
    if k % 32:
        raise ConfigError(f"cannot quantize a weight with {k} input features: it must be a multiple of 32")
    if scheme == "int8":
        scale = w.abs().amax(dim=1) / 127
        q = torch.round(w / torch.where(scale > 0, scale, 1)[:, None]).clamp(-127, 127).to(torch.int8)
        return {"qweight": q, "scales": scale}
    groups = -(-k // group_size)
    padded = F.pad(w, (0, groups * group_size - k)).view(n, groups, group_size)
    valid = torch.arange(groups * group_size).view(groups, group_size) < k  # a short last group ignores padding
    lo = padded.masked_fill(~valid, float("inf")).amin(dim=2)
    hi = padded.masked_fill(~valid, float("-inf")).amax(dim=2)
    scale, low = ((hi - lo) / 15).half(), lo.half()  # rounded first, so q is chosen for the stored grid
    step = torch.where(scale > 0, scale.float(), 1)[..., None]
    q = torch.round((padded - low.float()[..., None]) / step).clamp(0, 15).to(torch.uint8)
    runs = q.view(n, -1)[:, :k].reshape(n, k // 32, 2, 16)
    packed = runs[:, :, 0] | (runs[:, :, 1] << 4)  # byte i: weight i (low nibble), weight i+16 (high)
    return {"qweight": packed.reshape(n, k // 2).contiguous(), "scales": scale, "mins": low}


def dequantize_weight(tensors: dict[str, torch.Tensor], scheme: str, group_size: int,
                      dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The full-precision weight back from its packed form (the pure-PyTorch reference)."""
    q = tensors["qweight"]
    if scheme == "int8":
        return (q.float() * tensors["scales"][:, None]).to(dtype)
    n, k = q.shape[0], q.shape[1] * 2
    runs = q.view(n, k // 32, 16)
    values = torch.stack((runs & 15, runs >> 4), dim=2).reshape(n, k).float()
    index = torch.arange(k, device=q.device) // group_size
    w = values * tensors["scales"].float()[:, index] + tensors["mins"].float()[:, index]
    return w.to(dtype)


# Activation levels per weight scheme: int4 weights meet 8-bit activations (llama.cpp's Q4_1 x
# Q8_1: one u8 x s8 multiply-add per block), int8 weights 16-bit ones (8 bits would cost the
# int8 model half its perplexity budget).  kernels/qmatvec.cpp says why at more length.
ACTIVATION_LEVELS = {"int8": 32767, "int4": 127}


def quantize_activations(x: torch.Tensor, levels: int = 32767) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """x (M, K) fp32 -> integer blocks (M, K, as int16), block scales (M, K/32), scale * block sums (M, K/32).

    The exact arithmetic of the kernel (scale = max|x| / levels, q = round-half-even(x * (1 / scale))),
    so both paths see the same integers.
    """
    blocks = x.view(x.shape[0], -1, 32)
    scale = blocks.abs().amax(dim=-1) / levels
    inverse = torch.where(scale != 0, 1 / torch.where(scale != 0, scale, 1), 0)
    q = torch.round(blocks * inverse[..., None])
    return q.to(torch.int16).view_as(x), scale, scale * q.sum(dim=-1)


def _integer_matmul(x: torch.Tensor, tensors: dict[str, torch.Tensor], scheme: str, group_size: int) -> torch.Tensor:
    """The kernel's arithmetic in PyTorch: x (M, K) fp32 -> (M, N) fp32, without bias.

    The block dot products are integers below 2**31, exact in a float64 bmm whatever its
    summation order; the scaling is fp32, as in the kernel.
    """
    xq, xd, xs = quantize_activations(x, ACTIVATION_LEVELS[scheme])
    q = tensors["qweight"]
    n, m, nb = q.shape[0], x.shape[0], x.shape[1] // 32
    if scheme == "int8":
        wq = q.double()
    else:
        runs = q.view(n, nb, 16)
        wq = torch.stack((runs & 15, runs >> 4), dim=2).reshape(n, nb * 32).double()
    dots = torch.bmm(xq.double().view(m, nb, 32).transpose(0, 1), wq.view(n, nb, 32).permute(1, 2, 0)).float()
    if scheme == "int8":
        return torch.einsum("bmn,mb->mn", dots, xd) * tensors["scales"][None, :]
    group = torch.arange(nb, device=q.device) * 32 // group_size
    scales, mins = tensors["scales"].float()[:, group], tensors["mins"].float()[:, group]  # (N, nb)
    return torch.einsum("bmn,mb,nb->mn", dots, xd, scales) + xs @ mins.T


def _ptr(t: torch.Tensor | None) -> int | None:
    return None if t is None else t.data_ptr()


def _dequantize(tensors: dict[str, torch.Tensor], scheme: str, group_size: int, dtype: torch.dtype,
                use_native: bool = True) -> torch.Tensor:
    """`dequantize_weight` through the native kernel where it is loaded (CPU), else in PyTorch.

    Both compute q*scale (+min) in fp32, so they agree exactly; the kernel is several times faster,
    which matters to training, where every step dequantizes each layer three times.
    """
    q = tensors["qweight"]
    lib = native.loaded() if use_native and q.device.type == "cpu" else None
    if lib is None:
        return dequantize_weight(tensors, scheme, group_size, dtype)
    n, k = q.shape[0], q.shape[1] * (1 if scheme == "int8" else 2)
    out = torch.empty(n, k, dtype=torch.float32)
    if scheme == "int8":
        lib.dscoder_int8_dequant(_ptr(q), _ptr(tensors["scales"]), n, k, _ptr(out))
    else:
        lib.dscoder_int4_dequant(_ptr(q), _ptr(tensors["scales"]), _ptr(tensors["mins"]), n, k, group_size, _ptr(out))
    return out.to(dtype)


class _DequantLinear(torch.autograd.Function):
    """y = x @ W^T (+ b), W dequantized from frozen packed tensors in forward and again in backward.

    Why not F.linear(x, layer.dequantize()): autograd would save that dequantized matrix for the
    backward pass, so every layer's full-precision copy would stay resident from its forward to
    its backward (with activation checkpointing, one block's worth at a time; without, the
    whole model's, 4 bytes a weight in fp32).  Saving only the packed tensors, which are
    resident anyway, costs no memory; dequantizing twice costs one more pass over the weight
    bytes, small next to the matmul it feeds.  The packed tensors get no gradient (they are
    buffers, integer-valued); the bias gets one only if it asks for it.

    int8 never builds the scaled matrix: its scale is per output row, so
    x @ (diag(s) Q)^T = (x @ Q^T) * s and grad_y @ diag(s) Q = (grad_y * s) @ Q, and Q converts to
    fp32 or bf16 exactly (|q| <= 127).  That is one cheap cast of the weight instead of a
    dequantize-then-cast (the int8 -> bf16 weight pass of a training step is 2.7x faster; in bf16
    it is also more exact, the weight unrounded and the scale applied in fp32 to the product).
    int4's scales and minimums are per group along the input, so it dequantizes (`_dequantize`).
    """

    @staticmethod
    def forward(ctx, x, bias, qweight, scales, mins, how):
        scheme, group_size, use_native = how
        ctx.save_for_backward(qweight, scales, mins)
        ctx.how = how
        if scheme == "int8":
            y = (F.linear(x, qweight.to(x.dtype)) * scales).to(x.dtype)
            return y if bias is None else y + bias
        packed = {"qweight": qweight, "scales": scales, "mins": mins}
        return F.linear(x, _dequantize(packed, scheme, group_size, x.dtype, use_native), bias)

    @staticmethod
    def backward(ctx, grad):
        qweight, scales, mins = ctx.saved_tensors
        scheme, group_size, use_native = ctx.how
        grad_x = grad_bias = None
        if ctx.needs_input_grad[0]:
            if scheme == "int8":
                grad_x = (grad * scales).to(grad.dtype) @ qweight.to(grad.dtype)
            else:
                packed = {"qweight": qweight, "scales": scales, "mins": mins}
                grad_x = grad @ _dequantize(packed, scheme, group_size, grad.dtype, use_native)
        if ctx.needs_input_grad[1]:
            grad_bias = grad.reshape(-1, grad.shape[-1]).sum(0)
        return grad_x, grad_bias, None, None, None, None


class QuantLinear(nn.Module):
    """A linear layer over packed weights: integer kernel for a few rows, else dequantize + matmul;
    when the input needs a gradient, dequantize + matmul without keeping the weight (`_DequantLinear`)."""

    def __init__(self, in_features: int, out_features: int, bias: bool, scheme: str, group_size: int = 32,
                 device=None, dtype: torch.dtype = torch.float32):
        super().__init__()
        self.in_features, self.out_features, self.scheme, self.group_size = in_features, out_features, scheme, group_size
        if scheme == "int8":
            self.register_buffer("qweight", torch.empty(out_features, in_features, dtype=torch.int8, device=device))
            self.register_buffer("scales", torch.empty(out_features, dtype=torch.float32, device=device))
            self.mins = None
        else:
            groups = -(-in_features // group_size)
            self.register_buffer("qweight", torch.empty(out_features, in_features // 2, dtype=torch.uint8, device=device))
            self.register_buffer("scales", torch.empty(out_features, groups, dtype=torch.float16, device=device))
            self.register_buffer("mins", torch.empty(out_features, groups, dtype=torch.float16, device=device))
        self.bias = nn.Parameter(torch.empty(out_features, dtype=dtype, device=device), requires_grad=False) if bias else None
        self.use_native = True  # tests switch this off to compare against the pure-PyTorch path

    @classmethod
    def from_linear(cls, linear: nn.Linear, scheme: str, group_size: int = 32) -> "QuantLinear":
        layer = cls(linear.in_features, linear.out_features, linear.bias is not None, scheme, group_size,
                    device=linear.weight.device, dtype=linear.weight.dtype)
        layer.load_packed(quantize_weight(linear.weight, scheme, group_size))
        if linear.bias is not None:
            layer.bias.data = linear.bias.detach().clone()
        return layer

    def load_packed(self, tensors: dict[str, torch.Tensor]) -> None:
        for name, value in tensors.items():
            setattr(self, name, value.to(self.qweight.device))

    def packed(self) -> dict[str, torch.Tensor]:
        out = {"qweight": self.qweight, "scales": self.scales}
        if self.mins is not None:
            out["mins"] = self.mins
        return out

    def dequantize(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        return _dequantize(self.packed(), self.scheme, self.group_size, dtype, self.use_native)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled() and (x.requires_grad or (self.bias is not None and self.bias.requires_grad)):
            return self._differentiable(x)
        rows = x.numel() // self.in_features
        spans = native.row_chunks(rows, NATIVE_MAX_ROWS)
        if spans is None:
            return F.linear(x, self.dequantize(x.dtype), self.bias)
        # Decode calls this ~200 times a token, so the common case (CPU, kernels loaded) is a
        # few checks and one call with the weights' arguments pre-bound.
        if self.use_native and x.is_cpu and not torch.compiler.is_compiling():
            call = self.__dict__.get("_bound")
            if call is None or call[0] != self._buffers["qweight"].data_ptr():
                call = self._bind()
            if call is not None:
                flat = x if x.dtype is torch.float32 and x.is_contiguous() else x.float().contiguous()
                y = torch.empty(*x.shape[:-1], self.out_features)
                for start, count in spans:
                    call[1](flat.data_ptr() + 4 * start * self.in_features, count,
                            y.data_ptr() + 4 * start * self.out_features)
                return y if x.dtype is torch.float32 else y.to(x.dtype)
        y = _integer_matmul(x.reshape(rows, self.in_features).float(), self.packed(), self.scheme, self.group_size)
        y = y if self.bias is None else y + self.bias.float()
        return y.view(*x.shape[:-1], self.out_features).to(x.dtype)

    def _differentiable(self, x: torch.Tensor) -> torch.Tensor:
        """The forward of a layer whose input needs a gradient (LoRA on a frozen quantized base).

        Under autocast the product runs in the autocast dtype, x cast by a differentiable `.to`
        (so x's gradient comes back in x's dtype) and autocast switched off inside so nothing
        is cast twice; otherwise it runs in x's dtype.
        """
        device = x.device.type
        dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else x.dtype
        bias = None if self.bias is None else self.bias.to(dtype)
        with torch.autocast(device, enabled=False):
            return _DequantLinear.apply(x.to(dtype), bias, self.qweight, self.scales, self.mins,
                                        (self.scheme, self.group_size, self.use_native))

    def _bind(self):
        """(qweight address, fn(x_ptr, rows, y_ptr)) with every other kernel argument fixed, or None.

        The address lets `forward` notice a deepcopy or a move (the bound pointers would be
        stale); replacing a tensor through setattr or `_apply` drops the binding outright.
        """
        lib = native.loaded() if self.qweight.device.type == "cpu" else None
        if lib is None or self.in_features > NATIVE_MAX_IN_FEATURES:
            return None
        bias = None if self.bias is None else self.bias.detach().float().contiguous()
        k, n, q, scales = self.in_features, self.out_features, _ptr(self.qweight), _ptr(self.scales)
        if self.scheme == "int8":
            fn, tail = lib.dscoder_int8_matmul, (q, scales, n, _ptr(bias))
        else:
            fn, tail = lib.dscoder_int4_matmul, (q, scales, _ptr(self.mins), n, self.group_size, _ptr(bias))

        def call(x_ptr: int, rows: int, y_ptr: int, _keep=bias) -> None:
            fn(x_ptr, rows, k, *tail, y_ptr)

        self.__dict__["_bound"] = (q, call)
        return self.__dict__["_bound"]

    def __setattr__(self, name, value):
        self.__dict__.pop("_bound", None)
        super().__setattr__(name, value)

    def _apply(self, fn, recurse=True):
        self.__dict__.pop("_bound", None)
        return super()._apply(fn, recurse)

    def extra_repr(self) -> str:
        group = f", group_size={self.group_size}" if self.scheme == "int4" else ""
        return f"in_features={self.in_features}, out_features={self.out_features}, {self.scheme}{group}"


# ---------------------------------------------------------------------------- models
def _is_adapter(name: str) -> bool:
    """A LoRA adapter's own layer (`...q_proj.lora_A`, PEFT's naming, which dscoder.model.lora keeps)."""
    return any(part.startswith("lora_") for part in name.split("."))


def quant_plan(model: nn.Module, config: QuantConfig) -> dict[str, str]:
    """Module name -> scheme, for every linear layer `config` quantizes (see the module docstring).

    LoRA adapters are never planned: they are the trainable part, and quantizing them would
    freeze them.  Under a LoRA wrapper the frozen base layer (`...q_proj.base`) is planned as
    usual, so a model can be quantized before or after the adapters go on; `head=None` keeps
    the output head in full precision (e.g. to train it too).
    """
    plan = {}
    for name, module in model.named_modules():
        parts = name.split(".")  # a wrapped layer's base is one level down: `lm_head.base`, `kv_b_proj.base`
        if not isinstance(module, (nn.Linear, QuantLinear)) or "kv_b_proj" in parts or _is_adapter(name):
            continue
        if module.in_features % 32:
            continue  # no published DeepSeek shape has this; such a layer simply stays full precision
        scheme = config.head if parts[0] == "lm_head" else config.scheme
        if scheme is not None:
            plan[name] = scheme
    return plan


def install(model: nn.Module, plan: dict[str, str], config: QuantConfig) -> None:
    """Swap the planned nn.Linear modules for empty QuantLinear ones (same device), e.g. on meta."""
    for name, scheme in plan.items():
        parent, _, child = name.rpartition(".")
        owner = model.get_submodule(parent) if parent else model
        old = getattr(owner, child)
        if isinstance(old, nn.Linear):
            setattr(owner, child, QuantLinear(old.in_features, old.out_features, old.bias is not None, scheme,
                                              config.group_size, device=old.weight.device, dtype=old.weight.dtype))
    model.quant_config = config


@torch.no_grad()
def quantize_model(model: nn.Module, config: QuantConfig | str) -> nn.Module:
    """Quantize a loaded model in place, one layer at a time (peak memory: one extra layer).

    For QLoRA, quantize the frozen base and put `dscoder.model.lora.apply_lora` on top (or the
    other way round: `quant_plan` never plans an adapter); `QuantConfig(scheme, head=None)`
    leaves the output head in full precision.
    """
    config = QuantConfig.parse(config) if isinstance(config, str) else config
    if getattr(model, "quant_config", None) is not None:
        raise ConfigError(f"the model is already quantized ({model.quant_config.scheme})")
    for name, scheme in quant_plan(model, config).items():
        parent, _, child = name.rpartition(".")
        owner = model.get_submodule(parent) if parent else model
        setattr(owner, child, QuantLinear.from_linear(getattr(owner, child), scheme, config.group_size))
    model.quant_config = config
    return model


def weight_bytes(model: nn.Module) -> int:
    """Bytes of all parameters and buffers, each tensor counted once (tied weights too)."""
    seen, total = set(), 0
    for t in (*model.parameters(), *model.buffers()):
        if t.data_ptr() not in seen:
            seen.add(t.data_ptr())
            total += t.numel() * t.element_size()
    return total
