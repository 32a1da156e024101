"""LoRA as a model transform: wrap chosen linear layers, train the low-rank factors, merge them back.

A `LoRALinear` keeps its wrapped layer (`base`) frozen and adds `lora_B(lora_A(dropout(x))) *
alpha / r`, with A drawn as peft draws it (Kaiming-uniform, a=sqrt(5)) and B zero, so a fresh
adapter changes nothing. `apply_lora` wraps every linear layer whose attribute name is a
target (the attention and MLP projections; MoE experts are MLPs, so theirs match too; never the
output head, never the router) and freezes everything else; `merge_lora` folds each adapter
into a plain `Linear` again, after which the network is exactly a base network.

Why our own wrapper and not peft's injection:
  1. the frozen base may be our int8/int4 `QuantLinear` (QLoRA on our kernels); peft wraps only
     nn.Linear and the bitsandbytes/GPTQ-style layers it knows;
  2. some code reads a layer's matrix instead of calling it: MLA's absorbed decode folds
     kv_b_proj's weight into the queries (`MLA.absorbed_weights`), and must see W + s·B·A.
     `LoRALinear.effective_weight` says what the layer applies; a LoRALinear deliberately has
     no `.weight`, so any reader that would take the base matrix alone fails loudly instead of
     silently dropping the adapter (the MoE grouped dispatch checks the type and takes its
     per-expert loop, which calls the layers);
  3. peft stays a dev-only peer: adapters are written and read in its format by
     `dscoder.formats.peft`, and the tests check peft reads ours, but nothing at run time
     imports it.

The LoRA factors are our `Linear`, so a decode step's few-row products take the native kernel
like every other layer (and the serving engine's batch-invariance holds for them too).
Whoever wants no extra matmul at inference merges (`hub.load(..., lora=...)` does).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterable, Iterator

import torch
from torch import nn

from dscoder.errors import ConfigError
from dscoder.model.quant import QuantLinear
from dscoder.model.transformer import Linear

# Attribute names of the layers LoRA may wrap: V1 attention, MLA (V2) attention, the SwiGLU MLP
# (dense layers, shared and routed experts alike). The output head and the router are not here.
DEFAULT_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj",
                   "q_a_proj", "q_b_proj", "kv_a_proj_with_mqa", "kv_b_proj")
FACTORS = ("lora_A", "lora_B")
# Layers never wrapped, and why (the error says so when a target names one).
NEVER = {"lm_head": "the output head is often tied to the embedding and is kept as trained",
         "gate": "the MoE router decides which experts run; it is kept as trained"}


class LoRATargetError(ConfigError):
    """LoRA was asked to wrap layers the network does not have (or must not be wrapped)."""


class LoRALinear(nn.Module):
    """base(x) + lora_B(lora_A(dropout(x))) * alpha / rank, `base` frozen (see the module docstring)."""

    def __init__(self, base: nn.Module, rank: int, alpha: float, dropout: float = 0.0,
                 generator: torch.Generator | None = None):
        super().__init__()
        if not isinstance(base, (nn.Linear, QuantLinear)):
            raise TypeError(f"LoRALinear wraps a linear layer (Linear, nn.Linear or QuantLinear), "
                            f"not a {type(base).__name__}")
        if rank < 1:
            raise ConfigError(f"LoRA rank must be at least 1, got {rank}")
        if not 0.0 <= dropout < 1.0:
            raise ConfigError(f"LoRA dropout must be in [0, 1), got {dropout}")
        self.base = base
        self.in_features, self.out_features = base.in_features, base.out_features
        self.rank, self.alpha, self.scaling = rank, float(alpha), float(alpha) / rank
        device, dtype = _device_dtype(base)
        self.lora_A = Linear(self.in_features, rank, bias=False, device=device, dtype=dtype)
        self.lora_B = Linear(rank, self.out_features, bias=False, device=device, dtype=dtype)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.enabled = True  # False: the base alone (GRPO's reference policy, see `adapters_disabled`)
        for p in base.parameters():
            p.requires_grad_(False)
        self.reset_parameters(generator)

    @torch.no_grad()
    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """peft's default start: A Kaiming-uniform (a=sqrt(5), nn.Linear's own init), B zero: no change yet."""
        if self.lora_A.weight.device.type != "meta":
            nn.init.kaiming_uniform_(self.lora_A.weight, a=math.sqrt(5), generator=generator)
        nn.init.zeros_(self.lora_B.weight)

    @property
    def dropout_p(self) -> float:
        return self.dropout.p if isinstance(self.dropout, nn.Dropout) else 0.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.base(x)
        if not self.enabled:
            return y
        factor_dtype = self.lora_A.weight.dtype
        delta = self.lora_B(self.lora_A(self.dropout(x.to(factor_dtype)))) * self.scaling
        return y + delta.to(y.dtype)

    def delta_weight(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """scaling * B @ A, the [out, in] matrix the adapter adds (computed in fp32, returned in `dtype`)."""
        return (self.lora_B.weight.float() @ self.lora_A.weight.float() * self.scaling).to(dtype)

    def base_weight(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """The wrapped layer's matrix: `.weight`, or the dequantized one of a QuantLinear."""
        if isinstance(self.base, QuantLinear):
            return self.base.dequantize(dtype)
        return self.base.weight.to(dtype)

    def effective_weight(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """The matrix this layer applies, W + scaling * B @ A, in `dtype` (what MLA's absorbed form folds in)."""
        if not self.enabled:
            return self.base_weight(dtype)
        return (self.base_weight(torch.float32) + self.delta_weight(torch.float32)).to(dtype)

    @torch.no_grad()
    def merged(self) -> Linear:
        """A plain `Linear` applying the same map (bias kept): no adapter, no extra matmul."""
        device, dtype = _device_dtype(self.base)
        bias = self.base.bias
        layer = Linear(self.in_features, self.out_features, bias=bias is not None, device=device, dtype=dtype)
        layer.weight.copy_(self.effective_weight(dtype))
        if bias is not None:
            layer.bias.copy_(bias.to(dtype))
        return layer.requires_grad_(False)  # frozen, as the base was

    def __setattr__(self, name: str, value) -> None:
        """The factors stay full-precision `Linear`s: `quantize_model` on an unmerged network would
        otherwise swap them for QuantLinear (it takes every nn.Linear), rounding the adapter and
        hiding the `.weight` that `effective_weight` and `merged` read. The base may be replaced."""
        if name in FACTORS and name in self.__dict__.get("_modules", {}) and not isinstance(value, nn.Linear):
            raise ConfigError(f"a LoRA adapter's {name} must stay a full-precision linear layer, not a "
                              f"{type(value).__name__}: merge the adapters (merge_lora) before quantizing, or "
                              "quantize the base before applying LoRA")
        super().__setattr__(name, value)

    def extra_repr(self) -> str:
        return f"rank={self.rank}, alpha={self.alpha:g}, dropout={self.dropout_p:g}"


def _device_dtype(base: nn.Module) -> tuple[torch.device, torch.dtype]:
    """Where and in what precision the factors live: the base's weight's; a QuantLinear's bias dtype or fp32."""
    if isinstance(base, QuantLinear):
        return base.qweight.device, base.bias.dtype if base.bias is not None else torch.float32
    return base.weight.device, base.weight.dtype


# ---------------------------------------------------------------------------- the transform
def lora_modules(net: nn.Module) -> dict[str, LoRALinear]:
    """Every LoRALinear of `net`, by module name."""
    return {name: m for name, m in net.named_modules() if isinstance(m, LoRALinear)}


@contextlib.contextmanager
def adapters_disabled(net: nn.Module) -> Iterator[None]:
    """Inside, every adapter of `net` is off and it computes its frozen base: GRPO's reference
    policy with LoRA, with no second copy of the model."""
    modules = list(lora_modules(net).values())
    states = [m.enabled for m in modules]
    for m in modules:
        m.enabled = False
    try:
        yield
    finally:
        for m, state in zip(modules, states):
            m.enabled = state


def layer_names(net: nn.Module) -> list[str]:
    """Names of the linear layers LoRA may wrap (an already wrapped one counts as its layer), in order."""
    names, inside = [], ()
    for name, m in net.named_modules():
        if inside and name.startswith(inside):
            continue  # base / lora_A / lora_B of a LoRALinear
        if isinstance(m, LoRALinear):
            inside = tuple({*inside, name + "."})
        if name and isinstance(m, (nn.Linear, QuantLinear, LoRALinear)) and name.rpartition(".")[2] not in NEVER:
            names.append(name)
    return names


def _matches(name: str, target: str) -> bool:
    """peft's rule for a list of targets: the module's name is the target or ends with '.' + target
    ('q_proj' matches every layers.N.self_attn.q_proj; 'self_attn.q_proj' works too)."""
    return name == target or name.endswith("." + target)


def lora_plan(net: nn.Module, targets: Iterable[str] | None = None) -> list[str]:
    """Names of the modules `apply_lora(net, ..., targets)` would wrap, without changing `net`.

    A target is a layer's attribute name ('q_proj'), or a dotted tail of module names
    ('self_attn.q_proj'), as in peft's lists. `targets` None means DEFAULT_TARGETS, those this
    architecture has (V1 has no q_a_proj, MLA no k_proj). Given explicitly, every name must
    match at least one layer: a misspelt or foreign target is an error that names it, not an
    adapter that silently trains less.
    """
    if lora_modules(net):
        raise LoRATargetError("the network already has LoRA adapters; merge them (merge_lora) before adding others")
    explicit = targets is not None
    if isinstance(targets, str):
        raise LoRATargetError(f"LoRA targets are a list of layer names, got the string {targets!r}")
    wanted = list(dict.fromkeys(targets if explicit else DEFAULT_TARGETS))
    for name in wanted:
        if name.rpartition(".")[2] in NEVER:
            raise LoRATargetError(f"LoRA target {name!r} is not offered: {NEVER[name.rpartition('.')[2]]}")
    if explicit and not wanted:
        raise LoRATargetError("no LoRA targets given")
    layers = layer_names(net)
    found = [name for name in layers if any(_matches(name, t) for t in wanted)]
    unknown = [t for t in wanted if not any(_matches(name, t) for name in found)] if explicit else \
        ([] if found else wanted)
    if unknown:
        raise LoRATargetError(f"LoRA target(s) {', '.join(map(repr, unknown))} match no layer of this network; "
                              f"its linear layers are named "
                              f"{', '.join(sorted({n.rpartition('.')[2] for n in layers}))}")
    return found


def adapter_targets(net: nn.Module) -> list[str]:
    """A target list that wraps exactly `net`'s adapted layers again: their attribute names when
    those pick out exactly them (the usual case), else their full module names."""
    wrapped = list(lora_modules(net))
    short = sorted({name.rpartition(".")[2] for name in wrapped})
    return short if matching_layers(net, short) == wrapped else wrapped


def matching_layers(net: nn.Module, targets: Iterable[str]) -> list[str]:
    """The layers (`layer_names`) that `targets` pick out, by peft's matching rule."""
    targets = list(targets)
    return [n for n in layer_names(net) if any(_matches(n, t) for t in targets)]


def apply_lora(net: nn.Module, rank: int, alpha: float, dropout: float = 0.0, targets: Iterable[str] | None = None,
               generator: torch.Generator | None = None) -> list[str]:
    """Wrap every linear layer named in `targets` (default: DEFAULT_TARGETS) in a LoRALinear, in place,
    and freeze every other parameter; returns the wrapped modules' names.

    Every target is checked before anything changes, so an error leaves `net` as it was.
    """
    names = lora_plan(net, targets)
    if rank < 1:
        raise ConfigError(f"LoRA rank must be at least 1, got {rank}")
    if not 0.0 <= dropout < 1.0:
        raise ConfigError(f"LoRA dropout must be in [0, 1), got {dropout}")
    for p in net.parameters():
        p.requires_grad_(False)
    for name in names:
        owner, _, child = name.rpartition(".")
        parent = net.get_submodule(owner) if owner else net
        setattr(parent, child, LoRALinear(getattr(parent, child), rank, alpha, dropout, generator))
    return names


def merge_lora(net: nn.Module) -> nn.Module:
    """Replace every LoRALinear by its merged `Linear`, in place; returns `net`."""
    for name, layer in lora_modules(net).items():
        owner, _, child = name.rpartition(".")
        setattr(net.get_submodule(owner) if owner else net, child, layer.merged())
    return net
