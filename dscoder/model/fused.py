"""The fused decode step: every layer of a dense (V1) model in one native call.

A decode step of the embedded 30-layer model did ~4.8 ms of kernel work inside ~8.5 ms:
the rest was Python and the dispatcher walking ~25 small ops per layer. `kernels/decode.cpp`
runs the layer loop in C++ over the same kernels, in the same order, so its hidden states
are bit-identical to the unfused path's (tested); this module describes the model to it
once (`plan`) and describes each step's cache (`step`).

The plan holds raw pointers into the model's weights, so it is rebuilt whenever they may
have moved: it remembers every module and tensor it points into and checks them on each
step (a replaced module, e.g. a LoRA wrapper, a moved or re-quantized weight, a hook, or
`.to()` all show there). Models the kernels do not cover take the ordinary path: V2 (MLA,
MoE), 16-bit activations, biases on the MLP, head sizes that are not a multiple of 32,
other devices, autograd, and prompts (more than `native.MAX_ROWS` rows, where GEMM wins).
"""

from __future__ import annotations

import ctypes
import operator
import os

import torch
from torch import nn

from dscoder.kernels import native
from dscoder.model.cache import DenseCache, RowCache
from dscoder.model.quant import NATIVE_MAX_IN_FEATURES, QuantLinear

_P, _I64 = ctypes.c_void_p, ctypes.c_int64
_KIND = {"f32": 1, "int8": 2, "int4": 3}
_CACHE_TYPE = {torch.float32: 0, torch.bfloat16: 1, torch.float16: 2}
PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


class LinearDesc(ctypes.Structure):
    _fields_ = [("kind", _I64), ("n", _I64), ("k", _I64), ("group", _I64),
                ("weight", _P), ("scales", _P), ("mins", _P), ("bias", _P)]


class LayerDesc(ctypes.Structure):
    _fields_ = [*((name.removesuffix("_proj"), LinearDesc) for name in PROJECTIONS),
                ("input_norm", _P), ("post_norm", _P)]


class ModelDesc(ctypes.Structure):
    _fields_ = [("layers", _I64), ("hidden", _I64), ("heads", _I64), ("kv_heads", _I64), ("head_dim", _I64),
                ("intermediate", _I64), ("cache_type", _I64), ("eps", ctypes.c_float), ("scale", ctypes.c_float),
                ("layer", ctypes.POINTER(LayerDesc))]


class CacheDesc(ctypes.Structure):
    _fields_ = [("k", ctypes.POINTER(_P)), ("v", ctypes.POINTER(_P)), ("max_len", _I64), ("start", _I64),
                ("seq", _P), ("pos", _P), ("max_pos", _I64), ("tables", _P), ("width", _I64), ("block", _I64),
                ("slots", _P)]


class Plan:
    """The model as decode.cpp reads it (`desc`, or None where the model is outside the kernels),
    and what must still hold for that verdict and those pointers to stand (`valid`)."""

    def __init__(self):
        # What was looked at, as parallel columns for `valid`'s mapped comparisons:
        # parent._modules[name] was child; owner[key] was tensor, at address.
        self.parents: list[dict] = []
        self.names: list[str] = []
        self.children: list[nn.Module] = []
        self.hooks: list[dict] = []  # each child's forward and forward-pre hook dicts
        self.owners: list[dict] = []
        self.keys: list[str] = []
        self.tensors: list[torch.Tensor] = []
        self.addresses: list[int] = []
        self.keep: list = []  # what the descriptions point into and nothing else holds
        self.desc: ModelDesc | None = None
        self.caches: dict = {}  # cache addresses -> their ctypes arrays
        self.hooked = False  # declined because of hooks: examined again at every step

    def watch(self, parent: nn.Module, name: str) -> nn.Module:
        """Remember parent.name and the addresses of its own tensors; returns the child."""
        child = parent._modules[name]
        self.parents.append(parent._modules)
        self.names.append(name)
        self.children.append(child)
        self.hooks += [child._forward_hooks, child._forward_pre_hooks]
        for owner in (child._parameters, child._buffers):
            for key, tensor in owner.items():
                if tensor is not None:
                    self.owners.append(owner)
                    self.keys.append(key)
                    self.tensors.append(tensor)
                    self.addresses.append(tensor.data_ptr())
        return child

    def valid(self) -> bool:
        """Whether every module and tensor looked at is still in place, and nothing is hooked.

        Identity and address comparisons, mapped in C (~1,000 entries for 30 layers, ~30 us):
        a module replaced (`parent._modules[name]`), a tensor replaced, moved or its `.data`
        swapped (its address), or a hook added since the plan was built all fail it, and the
        plan is built again.  A model with hooks is thus re-examined at every step and runs
        layer by layer, hooks and all.
        """
        if self.hooked or _global_hooks():
            return False
        return (all(map(operator.is_, map(dict.get, self.parents, self.names), self.children))
                and not any(map(len, self.hooks))
                and all(map(operator.is_, map(dict.get, self.owners, self.keys), self.tensors))
                and list(map(torch.Tensor.data_ptr, self.tensors)) == self.addresses)


def _linear(layer: nn.Module, keep: list) -> LinearDesc | None:
    """The kernel's description of a projection, or None when the fused step cannot run it."""
    if isinstance(layer, QuantLinear):
        if (layer.qweight.device.type != "cpu" or layer.in_features > NATIVE_MAX_IN_FEATURES
                or not layer.use_native or layer.in_features % 32):
            return None
        bias = None
        if layer.bias is not None:
            bias = layer.bias.detach().float().contiguous()
            keep.append(bias)
        mins = layer.mins.data_ptr() if layer.scheme == "int4" else None
        return LinearDesc(_KIND[layer.scheme], layer.out_features, layer.in_features, layer.group_size,
                          layer.qweight.data_ptr(), layer.scales.data_ptr(), mins,
                          None if bias is None else bias.data_ptr())
    from dscoder.model.transformer import Linear  # the model module imports this one

    if type(layer) is not Linear or layer.weight.dtype != torch.float32 or layer.weight.device.type != "cpu":
        return None
    if not layer.weight.is_contiguous() or (layer.bias is not None and layer.bias.dtype != torch.float32):
        return None
    return LinearDesc(_KIND["f32"], layer.out_features, layer.in_features, 0, layer.weight.data_ptr(), None, None,
                      None if layer.bias is None else layer.bias.data_ptr())


def _global_hooks() -> bool:
    from torch.nn.modules import module

    return bool(module._global_forward_hooks or module._global_forward_pre_hooks)


def build_plan(model: nn.Module) -> Plan:
    """Describe a dense fp32-activation model to decode.cpp; `desc` stays None if any part is outside it."""
    from dscoder.model.transformer import MLP, Attention, Block, RMSNorm

    plan, cfg = Plan(), model.config
    embed = plan.watch(model, "embed_tokens")
    if (cfg.is_mla or cfg.attn_head_dim % 32 or cfg.num_attention_heads % cfg.num_key_value_heads
            or embed.weight.dtype != torch.float32 or embed.weight.device.type != "cpu"
            or cfg.hidden_size % 32 or native.loaded() is None):
        return plan
    layers = (LayerDesc * len(model.layers))()
    plan.keep.append(layers)
    for i in range(len(model.layers)):
        block = plan.watch(model.layers, str(i))
        if type(block) is not Block or type(block.self_attn) is not Attention or type(block.mlp) is not MLP:
            return plan
        for parent_name in ("self_attn", "mlp"):
            parent = plan.watch(block, parent_name)
            for name in PROJECTIONS:
                if name in parent._modules:
                    desc = _linear(plan.watch(parent, name), plan.keep)
                    if desc is None:
                        return plan
                    setattr(layers[i], name.removesuffix("_proj"), desc)
        if block.mlp.gate_proj.bias is not None or block.mlp.up_proj.bias is not None:
            return plan  # HF's Llama MLP has no biases; the step leaves them to the ordinary path
        for name, field in (("input_layernorm", "input_norm"), ("post_attention_layernorm", "post_norm")):
            norm = plan.watch(block, name)
            if type(norm) is not RMSNorm or norm.weight.dtype != torch.float32 or not norm.weight.is_contiguous():
                return plan
            setattr(layers[i], field, norm.weight.data_ptr())
    plan.hooked = not plan.valid()  # the ordinary path runs the hooks
    if not plan.hooked:
        plan.desc = ModelDesc(len(model.layers), cfg.hidden_size, cfg.num_attention_heads, cfg.num_key_value_heads,
                              cfg.attn_head_dim, cfg.intermediate_size, 0, cfg.rms_norm_eps,
                              model.layers[0].self_attn.scale, layers)
    return plan


def enabled() -> bool:
    return os.environ.get("DSCODER_FUSED", "1") != "0"


def plan_for(model: nn.Module) -> Plan | None:
    """The model's current plan (built on first use, rebuilt when the model changed), or None
    where the fused step cannot run it."""
    plan = model.__dict__.get("_fused_plan")
    if plan is None or not plan.valid():
        plan = build_plan(model)
        model.__dict__["_fused_plan"] = plan
    return plan if plan.desc is not None else None


def _pointer_arrays(plan: Plan, tensors_k: list[torch.Tensor], tensors_v: list[torch.Tensor]):
    """ctypes arrays of the per-layer cache addresses, made once per set of addresses.

    Keyed by the addresses themselves, not by the cache object, so the plan keeps no cache
    alive (a finished request's memory is freed as before) and a new cache at the same
    addresses reuses the arrays correctly."""
    addresses = (*map(torch.Tensor.data_ptr, tensors_k), *map(torch.Tensor.data_ptr, tensors_v))
    entry = plan.caches.get(addresses)
    if entry is None:
        if len(plan.caches) > 8:  # finished requests' caches: forget them
            plan.caches.clear()
        n = len(tensors_k)
        entry = plan.caches[addresses] = ((_P * n)(*addresses[:n]), (_P * n)(*addresses[n:]))
    return entry


def step(model: nn.Module, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, start_pos: int, cache) -> bool:
    """Run every layer on the residual stream x (B, T, hidden) in place, if the fused step applies.

    Returns False (x untouched) when it does not: the caller then runs the layers itself.
    """
    if not enabled() or torch.is_grad_enabled() or cache is None or not x.is_cpu or torch.compiler.is_compiling():
        return False
    b, t, _ = x.shape
    # Where the unfused path would hand these rows to a GEMM, so does the fused one (it does not run):
    # the two paths then always compute with the same kernels.
    if x.dtype != torch.float32 or not x.is_contiguous() or native.row_chunks(b * t) is None:
        return False
    plan = plan_for(model)
    if plan is None:
        return False
    first = cache[0]
    if isinstance(first, RowCache):
        paged = first.paged_pools()
        if paged is None or b != 1:
            return False
        k_pools, v_pools, rows = paged
        dtype = k_pools[0].dtype
        k_ptrs, v_ptrs = _pointer_arrays(plan, k_pools, v_pools)
        desc = CacheDesc(k_ptrs, v_ptrs, 0, 0, rows.seq.data_ptr(), rows.pos.data_ptr(), rows.max_pos,
                         rows.tables.data_ptr(), rows.tables.shape[1], k_pools[0].shape[1], rows.slots.data_ptr())
    else:
        if t > native.MAX_ROWS or not isinstance(first, DenseCache):
            return False
        dtype, cfg = first.buffers[0].dtype, model.config
        shape = (b, first.max_len, cfg.num_key_value_heads, cfg.attn_head_dim)
        if len(cache) != len(model.layers) or not all(
                isinstance(c, DenseCache) and all(z.dtype == dtype and z.shape == shape and z.is_contiguous()
                                                  for z in c.buffers) for c in cache):
            return False
        max_len = first.max_len
        if start_pos + t > max_len:
            raise ValueError(f"cache holds {max_len} positions; writing {start_pos}..{start_pos + t} does not fit")
        k_ptrs, v_ptrs = _pointer_arrays(plan, [c.buffers[0] for c in cache], [c.buffers[1] for c in cache])
        desc = CacheDesc(k_ptrs, v_ptrs, max_len, start_pos, None, None, 0, None, 0, 0, None)
        if b > 1:  # one table row per row of x
            cos, sin = cos.repeat(b, 1), sin.repeat(b, 1)
    if dtype not in _CACHE_TYPE:
        return False
    plan.desc.cache_type = _CACHE_TYPE[dtype]
    cos, sin = cos.contiguous(), sin.contiguous()
    native.loaded().dscoder_decode_layers(ctypes.addressof(plan.desc), x.data_ptr(), b, t, cos.data_ptr(),
                                          sin.data_ptr(), ctypes.addressof(desc))
    return True
