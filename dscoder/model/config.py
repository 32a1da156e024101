"""One configuration for both DeepSeek-Coder architectures.

V1 is a dense Llama decoder and V2 is MLA attention over DeepSeekMoE; they share the
embedding/norm/head skeleton, so one dataclass with `arch` selecting the attention and
FFN kind keeps every consumer (model, checkpoint I/O, `dscoder info`, the inference
engine) on one code path.  Field names follow Hugging Face `config.json` so that reading
and writing it is a rename-free copy.

Parameter and KV-cache sizes are computed here from the config alone, so `dscoder info`
can describe a 236B model without allocating it.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from dscoder.errors import ConfigError

LLAMA = "llama"
DEEPSEEK_V2 = "deepseek_v2"
ARCHITECTURES = {LLAMA: "LlamaForCausalLM", DEEPSEEK_V2: "DeepseekV2ForCausalLM"}
ROPE_TYPES = ("default", "linear", "yarn")
TOPK_METHODS = ("greedy", "group_limited_greedy")


@dataclass
class ModelConfig:
    arch: str = LLAMA
    vocab_size: int = 32256
    hidden_size: int = 2048
    intermediate_size: int = 5504
    num_hidden_layers: int = 24
    num_attention_heads: int = 16
    num_key_value_heads: int | None = None  # None: MHA (= num_attention_heads)
    head_dim: int | None = None  # None: hidden_size // num_attention_heads (V1 only)
    hidden_act: str = "silu"
    rms_norm_eps: float = 1e-6
    max_position_embeddings: int = 16384
    rope_theta: float = 100000.0
    # None or {"type": "linear", "factor": f} or {"type": "yarn", "factor", "original_max_position_embeddings",
    # "beta_fast", "beta_slow", "mscale", "mscale_all_dim"}; normalised to use the key "type".
    rope_scaling: dict[str, Any] | None = None
    attention_bias: bool = False
    tie_word_embeddings: bool = False
    bos_token_id: int | None = 32013
    eos_token_id: int | list[int] | None = 32014
    pad_token_id: int | None = None
    # --- V2: multi-head latent attention ---
    q_lora_rank: int | None = None
    kv_lora_rank: int = 512
    qk_nope_head_dim: int = 128
    qk_rope_head_dim: int = 64
    v_head_dim: int = 128
    # --- V2: DeepSeekMoE ---
    n_routed_experts: int | None = None
    n_shared_experts: int | None = None
    num_experts_per_tok: int | None = None
    moe_intermediate_size: int = 1407
    first_k_dense_replace: int = 0
    moe_layer_freq: int = 1
    routed_scaling_factor: float = 1.0
    topk_method: str = "greedy"
    n_group: int | None = None
    topk_group: int | None = None
    norm_topk_prob: bool = False
    scoring_func: str = "softmax"
    aux_loss_alpha: float = 0.0
    seq_aux: bool = True
    # Keys of config.json we do not interpret, kept so that a load/save round trip loses nothing.
    extra: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.num_key_value_heads is None:
            self.num_key_value_heads = self.num_attention_heads
        if self.rope_scaling is not None:
            self.rope_scaling = _normalise_rope_scaling(self.rope_scaling)
        if self.head_dim is not None and self.head_dim * self.num_attention_heads == self.hidden_size:
            self.head_dim = None  # the default spelled out (transformers writes it): one canonical form
        self.validate()

    # ------------------------------------------------------------------ derived
    @property
    def is_mla(self) -> bool:
        return self.arch == DEEPSEEK_V2

    @property
    def attn_head_dim(self) -> int:
        """Per-head width of V1 attention (queries, keys and values alike)."""
        return self.head_dim or self.hidden_size // self.num_attention_heads

    @property
    def qk_head_dim(self) -> int:
        return self.qk_nope_head_dim + self.qk_rope_head_dim

    @property
    def rope_dim(self) -> int:
        return self.qk_rope_head_dim if self.is_mla else self.attn_head_dim

    @property
    def rope_type(self) -> str:
        return (self.rope_scaling or {}).get("type", "default")

    def is_moe_layer(self, layer: int) -> bool:
        return bool(self.n_routed_experts) and layer >= self.first_k_dense_replace and layer % self.moe_layer_freq == 0

    def validate(self) -> None:
        def bad(msg: str) -> None:
            raise ConfigError(f"invalid model config: {msg}")

        if self.arch not in ARCHITECTURES:
            bad(f"arch {self.arch!r} is not supported (supported: {', '.join(ARCHITECTURES)})")
        for name in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size"):
            if getattr(self, name) <= 0:
                bad(f"{name} must be positive, got {getattr(self, name)}")
        if self.hidden_act != "silu":
            bad(f"hidden_act {self.hidden_act!r} is not supported (only 'silu')")
        if self.rope_type not in ROPE_TYPES:
            bad(f"rope type {self.rope_type!r} is not supported (supported: {', '.join(ROPE_TYPES)})")
        if self.arch == LLAMA:
            if self.num_attention_heads % self.num_key_value_heads:
                bad(f"num_attention_heads={self.num_attention_heads} is not a multiple of "
                    f"num_key_value_heads={self.num_key_value_heads}")
            if self.head_dim is None and self.hidden_size % self.num_attention_heads:
                bad(f"hidden_size={self.hidden_size} is not divisible by num_attention_heads={self.num_attention_heads}")
            if self.attn_head_dim % 2:
                bad(f"head_dim={self.attn_head_dim} must be even for RoPE")
        else:
            if self.qk_rope_head_dim % 2:
                bad(f"qk_rope_head_dim={self.qk_rope_head_dim} must be even for RoPE")
            if self.n_routed_experts:
                if not self.num_experts_per_tok or self.num_experts_per_tok > self.n_routed_experts:
                    bad(f"num_experts_per_tok={self.num_experts_per_tok} must be in 1..n_routed_experts="
                        f"{self.n_routed_experts}")
                if self.topk_method not in TOPK_METHODS:
                    bad(f"topk_method {self.topk_method!r} is not supported (supported: {', '.join(TOPK_METHODS)})")
                if self.scoring_func != "softmax":
                    bad(f"scoring_func {self.scoring_func!r} is not supported (only 'softmax', as in DeepSeek-V2)")
                if self.topk_method == "group_limited_greedy":
                    if not self.n_group or not self.topk_group or self.n_routed_experts % self.n_group:
                        bad(f"group_limited_greedy needs n_group dividing n_routed_experts={self.n_routed_experts} "
                            f"and topk_group, got n_group={self.n_group}, topk_group={self.topk_group}")
                    if self.topk_group > self.n_group:
                        bad(f"topk_group={self.topk_group} exceeds n_group={self.n_group}")
                if self.moe_layer_freq < 1:
                    bad(f"moe_layer_freq must be >= 1, got {self.moe_layer_freq}")

    # ------------------------------------------------------------------ sizes
    def _attention_params(self) -> int:
        h = self.hidden_size
        if not self.is_mla:
            d, nh, nkv = self.attn_head_dim, self.num_attention_heads, self.num_key_value_heads
            bias = (nh + 2 * nkv) * d + h if self.attention_bias else 0
            return h * nh * d + 2 * h * nkv * d + nh * d * h + bias
        nh = self.num_attention_heads
        if self.q_lora_rank:
            q = h * self.q_lora_rank + self.q_lora_rank + self.q_lora_rank * nh * self.qk_head_dim
        else:
            q = h * nh * self.qk_head_dim
        kv_a = h * (self.kv_lora_rank + self.qk_rope_head_dim) + self.kv_lora_rank
        kv_b = self.kv_lora_rank * nh * (self.qk_nope_head_dim + self.v_head_dim)
        return q + kv_a + kv_b + nh * self.v_head_dim * h

    def _mlp_params(self, intermediate: int) -> int:
        return 3 * self.hidden_size * intermediate

    def _ffn_params(self, layer: int) -> tuple[int, int]:
        """(total, active per token) parameters of one layer's feed-forward block."""
        if not self.is_moe_layer(layer):
            p = self._mlp_params(self.intermediate_size)
            return p, p
        expert = self._mlp_params(self.moe_intermediate_size)
        router = self.n_routed_experts * self.hidden_size
        shared = self._mlp_params(self.moe_intermediate_size * (self.n_shared_experts or 0))
        total = router + shared + self.n_routed_experts * expert
        active = router + shared + self.num_experts_per_tok * expert
        return total, active

    def param_counts(self) -> tuple[int, int]:
        """(total, active per token), embedding and output head included."""
        embed = self.vocab_size * self.hidden_size
        total = active = embed * (1 if self.tie_word_embeddings else 2) + self.hidden_size
        per_layer_fixed = self._attention_params() + 2 * self.hidden_size
        for layer in range(self.num_hidden_layers):
            ffn_total, ffn_active = self._ffn_params(layer)
            total += per_layer_fixed + ffn_total
            active += per_layer_fixed + ffn_active
        return total, active

    def kv_values_per_token(self, latent: bool = True) -> int:
        """Cached values per token over all layers.

        V1 caches K and V for the kv heads only (GQA/MQA).  V2 caches the compressed
        latent c_KV plus the shared RoPE key (`latent=True`); `latent=False` gives the
        size of the expanded per-head K/V a naive MLA cache would hold, for comparison.
        """
        n = self.num_hidden_layers
        if not self.is_mla:
            return n * 2 * self.num_key_value_heads * self.attn_head_dim
        if latent:
            return n * (self.kv_lora_rank + self.qk_rope_head_dim)
        return n * self.num_attention_heads * (self.qk_head_dim + self.v_head_dim)

    # ------------------------------------------------------------------ HF config.json
    @classmethod
    def from_hf(cls, hf: dict[str, Any]) -> "ModelConfig":
        """Build from a Hugging Face config.json dict (legacy `rope_scaling` or new `rope_parameters`)."""
        hf = dict(hf)
        model_type = hf.get("model_type")
        archs = hf.get("architectures") or []
        arch = {"llama": LLAMA, "deepseek_v2": DEEPSEEK_V2}.get(model_type)
        if arch is None:
            arch = {v: k for k, v in ARCHITECTURES.items()}.get(archs[0] if archs else None)
        if arch is None:
            raise ConfigError(
                f"unsupported architecture: model_type={model_type!r}, architectures={archs}; supported: "
                + ", ".join(f"{k} ({v})" for k, v in ARCHITECTURES.items()))
        rope_params = hf.pop("rope_parameters", None)
        rope_scaling = hf.pop("rope_scaling", None)
        rope_theta = hf.pop("rope_theta", None)
        if rope_params:  # transformers >= 5: one dict holds theta and the scaling
            rope_params = dict(rope_params)
            rope_theta = rope_params.pop("rope_theta", rope_theta)
            if rope_params.get("rope_type", rope_params.get("type", "default")) != "default":
                rope_scaling = rope_params
        if rope_scaling and rope_scaling.get("rope_type", rope_scaling.get("type")) in (None, "default"):
            rope_scaling = None
        names = {f.name for f in dataclasses.fields(cls)} - {"arch", "extra", "rope_scaling", "rope_theta"}
        if arch == DEEPSEEK_V2:
            names.discard("head_dim")  # transformers writes qk_rope_head_dim there; it is derived for MLA
        kwargs = {k: hf.pop(k) for k in list(hf) if k in names}
        kwargs = {k: v for k, v in kwargs.items() if v is not None or k in ("num_key_value_heads", "head_dim",
                                                                            "q_lora_rank", "pad_token_id")}
        for ignored in ("architectures", "model_type", "head_dim", "qk_head_dim"):
            hf.pop(ignored, None)
        if arch == DEEPSEEK_V2:
            kwargs.setdefault("bos_token_id", 100000)
            kwargs.setdefault("eos_token_id", 100001)
        return cls(arch=arch, rope_theta=float(rope_theta if rope_theta is not None else 10000.0),
                   rope_scaling=rope_scaling, extra=hf, **kwargs)

    def to_hf(self, rope_format: str = "legacy") -> dict[str, Any]:
        """A config.json dict that transformers, vLLM and llama.cpp's converter read.

        `rope_format="legacy"` writes `rope_theta` + `rope_scaling` (read by every tool
        released so far); `"parameters"` writes transformers 5's `rope_parameters`.
        """
        # auto_map points at trust_remote_code modules we do not write; transformers' native classes load us.
        out: dict[str, Any] = {k: v for k, v in self.extra.items() if k != "auto_map"}
        out.update(architectures=[ARCHITECTURES[self.arch]], model_type=self.arch)
        common = ["vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                  "num_key_value_heads", "hidden_act", "rms_norm_eps", "max_position_embeddings",
                  "attention_bias", "tie_word_embeddings", "bos_token_id", "eos_token_id", "pad_token_id"]
        v2 = ["q_lora_rank", "kv_lora_rank", "qk_nope_head_dim", "qk_rope_head_dim", "v_head_dim",
              "n_routed_experts", "n_shared_experts", "num_experts_per_tok", "moe_intermediate_size",
              "first_k_dense_replace", "moe_layer_freq", "routed_scaling_factor", "topk_method", "n_group",
              "topk_group", "norm_topk_prob", "scoring_func", "aux_loss_alpha", "seq_aux"]
        for name in common + (v2 if self.is_mla else []):
            out[name] = getattr(self, name)
        if not self.is_mla and self.head_dim is not None:
            out["head_dim"] = self.head_dim
        if rope_format == "parameters":
            params = {"rope_type": "default", "rope_theta": self.rope_theta}
            if self.rope_scaling:
                params.update({k: v for k, v in self.rope_scaling.items() if k != "type"}, rope_type=self.rope_type)
            out["rope_parameters"] = params
        elif rope_format == "legacy":
            out["rope_theta"] = self.rope_theta
            out["rope_scaling"] = dict(self.rope_scaling, rope_type=self.rope_type) if self.rope_scaling else None
        else:
            raise ConfigError(f"rope_format must be 'legacy' or 'parameters', got {rope_format!r}")
        return out

    def replace(self, **changes: Any) -> "ModelConfig":
        return dataclasses.replace(self, **changes)


def _normalise_rope_scaling(scaling: dict[str, Any]) -> dict[str, Any]:
    """Accept both spellings of the scaling kind (`type`, `rope_type`) and store it as `type`."""
    scaling = dict(scaling)
    kind = scaling.pop("rope_type", None) or scaling.pop("type", None) or "default"
    scaling.pop("type", None)
    if kind != "default" and "factor" not in scaling:
        raise ConfigError(f"rope_scaling of type {kind!r} needs a 'factor': {scaling}")
    return {"type": kind, **scaling}


def yarn_mscale(scale: float, mscale: float = 1.0) -> float:
    """YaRN's attention temperature correction, 0.1*m*ln(s)+1 (1 when not extrapolating)."""
    return 1.0 if scale <= 1 else 0.1 * mscale * math.log(scale) + 1.0
