"""What a model is and what it costs, computed from its config alone (no weights allocated)."""

from __future__ import annotations

from typing import Any

from dscoder.model.config import ModelConfig

DTYPE_BYTES = {"fp32": 4, "bf16": 2, "fp16": 2, "int8": 1, "int4": 0.5}


def model_facts(cfg: ModelConfig) -> dict[str, Any]:
    total, active = cfg.param_counts()
    facts: dict[str, Any] = {
        "arch": cfg.arch,
        "layers": cfg.num_hidden_layers,
        "hidden_size": cfg.hidden_size,
        "vocab_size": cfg.vocab_size,
        "attention_heads": cfg.num_attention_heads,
        "max_position_embeddings": cfg.max_position_embeddings,
        "rope": {"theta": cfg.rope_theta, **(cfg.rope_scaling or {"type": "default"})},
        "params_total": total,
        "params_active": active,
        # int8/int4 count matrix weights only at that width; real formats add small per-group scales.
        "weight_bytes": {name: int(total * size) for name, size in DTYPE_BYTES.items()},
        "kv_values_per_token": cfg.kv_values_per_token(latent=True),
    }
    if cfg.is_mla:
        facts["attention"] = {"kind": "MLA", "q_lora_rank": cfg.q_lora_rank, "kv_lora_rank": cfg.kv_lora_rank,
                              "qk_nope_head_dim": cfg.qk_nope_head_dim, "qk_rope_head_dim": cfg.qk_rope_head_dim,
                              "v_head_dim": cfg.v_head_dim}
        facts["kv_values_per_token_expanded"] = cfg.kv_values_per_token(latent=False)
    else:
        kind = ("MHA" if cfg.num_key_value_heads == cfg.num_attention_heads
                else "MQA" if cfg.num_key_value_heads == 1 else "GQA")
        facts["attention"] = {"kind": kind, "kv_heads": cfg.num_key_value_heads, "head_dim": cfg.attn_head_dim}
    if cfg.n_routed_experts:
        facts["moe"] = {"routed_experts": cfg.n_routed_experts, "shared_experts": cfg.n_shared_experts,
                        "experts_per_token": cfg.num_experts_per_tok, "topk_method": cfg.topk_method,
                        "routed_scaling_factor": cfg.routed_scaling_factor,
                        "first_k_dense_replace": cfg.first_k_dense_replace,
                        "moe_layers": sum(cfg.is_moe_layer(i) for i in range(cfg.num_hidden_layers))}
    else:
        facts["ffn"] = {"kind": "SwiGLU", "intermediate_size": cfg.intermediate_size}
    return facts


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:,.1f} {unit}" if unit != "B" else f"{int(n):,} B"
        n /= 1024
    raise AssertionError("unreachable")
