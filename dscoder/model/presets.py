"""Named configurations of every published DeepSeek-Coder model, and tiny ones for tests.

The published numbers are copied from each model's `config.json` on the Hugging Face hub
(the `hf_repo` beside each preset), so a preset can describe a model (`dscoder info`)
without downloading it, and `resolve` knows where to fetch its weights.
"""

from __future__ import annotations

from dataclasses import dataclass

from dscoder.model.config import DEEPSEEK_V2, LLAMA, ModelConfig
from dscoder.errors import ConfigError


@dataclass(frozen=True)
class Preset:
    config: ModelConfig
    hf_repo: str | None = None  # None for the tiny test configurations


def _v1(hidden: int, intermediate: int, layers: int, heads: int, kv_heads: int, eos: int = 32014) -> ModelConfig:
    return ModelConfig(arch=LLAMA, vocab_size=32256, hidden_size=hidden, intermediate_size=intermediate,
                       num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=kv_heads,
                       max_position_embeddings=16384, rope_theta=100000.0,
                       rope_scaling={"type": "linear", "factor": 4.0}, bos_token_id=32013, eos_token_id=eos)


_V2_YARN = {"type": "yarn", "factor": 40.0, "original_max_position_embeddings": 4096, "beta_fast": 32,
            "beta_slow": 1, "mscale": 0.707, "mscale_all_dim": 0.707}


def _v2_lite() -> ModelConfig:
    return ModelConfig(arch=DEEPSEEK_V2, vocab_size=102400, hidden_size=2048, intermediate_size=10944,
                       num_hidden_layers=27, num_attention_heads=16, num_key_value_heads=16,
                       max_position_embeddings=163840, rope_theta=10000.0, rope_scaling=dict(_V2_YARN),
                       bos_token_id=100000, eos_token_id=100001, q_lora_rank=None, kv_lora_rank=512,
                       qk_nope_head_dim=128, qk_rope_head_dim=64, v_head_dim=128, n_routed_experts=64,
                       n_shared_experts=2, num_experts_per_tok=6, moe_intermediate_size=1408,
                       first_k_dense_replace=1, moe_layer_freq=1, routed_scaling_factor=1.0,
                       topk_method="greedy", aux_loss_alpha=0.001)


def _v2() -> ModelConfig:
    return _v2_lite().replace(hidden_size=5120, intermediate_size=12288, num_hidden_layers=60,
                              num_attention_heads=128, num_key_value_heads=128, q_lora_rank=1536,
                              n_routed_experts=160, moe_intermediate_size=1536, routed_scaling_factor=16.0,
                              topk_method="group_limited_greedy", n_group=8, topk_group=3, aux_loss_alpha=0.003)


def _tiny_llama(kv_heads: int) -> ModelConfig:
    return ModelConfig(arch=LLAMA, vocab_size=256, hidden_size=64, intermediate_size=160, num_hidden_layers=2,
                       num_attention_heads=4, num_key_value_heads=kv_heads, max_position_embeddings=512,
                       rope_theta=100000.0, rope_scaling={"type": "linear", "factor": 4.0},
                       bos_token_id=1, eos_token_id=2)


def _tiny_v2_lite() -> ModelConfig:
    return ModelConfig(arch=DEEPSEEK_V2, vocab_size=256, hidden_size=64, intermediate_size=160,
                       num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=4,
                       max_position_embeddings=512, rope_theta=10000.0, bos_token_id=1, eos_token_id=2,
                       q_lora_rank=None, kv_lora_rank=32, qk_nope_head_dim=16, qk_rope_head_dim=8, v_head_dim=16,
                       n_routed_experts=8, n_shared_experts=2, num_experts_per_tok=3, moe_intermediate_size=32,
                       first_k_dense_replace=1, topk_method="greedy", aux_loss_alpha=0.001)


def _tiny_v2() -> ModelConfig:
    return _tiny_v2_lite().replace(
        q_lora_rank=24, n_routed_experts=16, topk_method="group_limited_greedy", n_group=4, topk_group=2,
        num_experts_per_tok=4, routed_scaling_factor=16.0, max_position_embeddings=2048,
        rope_scaling={"type": "yarn", "factor": 8.0, "original_max_position_embeddings": 256, "beta_fast": 32,
                      "beta_slow": 1, "mscale": 0.707, "mscale_all_dim": 0.707})


PRESETS: dict[str, Preset] = {
    "deepseek-coder-1.3b-base": Preset(_v1(2048, 5504, 24, 16, 16), "deepseek-ai/deepseek-coder-1.3b-base"),
    "deepseek-coder-1.3b-instruct": Preset(_v1(2048, 5504, 24, 16, 16, eos=32021),
                                           "deepseek-ai/deepseek-coder-1.3b-instruct"),
    "deepseek-coder-6.7b-base": Preset(_v1(4096, 11008, 32, 32, 32), "deepseek-ai/deepseek-coder-6.7b-base"),
    "deepseek-coder-6.7b-instruct": Preset(_v1(4096, 11008, 32, 32, 32, eos=32021),
                                           "deepseek-ai/deepseek-coder-6.7b-instruct"),
    "deepseek-coder-33b-base": Preset(_v1(7168, 19200, 62, 56, 8), "deepseek-ai/deepseek-coder-33b-base"),
    "deepseek-coder-33b-instruct": Preset(_v1(7168, 19200, 62, 56, 8, eos=32021),
                                          "deepseek-ai/deepseek-coder-33b-instruct"),
    "deepseek-coder-5.7bmqa-base": Preset(_v1(4096, 11008, 32, 32, 1), "deepseek-ai/deepseek-coder-5.7bmqa-base"),
    "deepseek-coder-v2-lite-base": Preset(_v2_lite(), "deepseek-ai/DeepSeek-Coder-V2-Lite-Base"),
    "deepseek-coder-v2-lite-instruct": Preset(_v2_lite(), "deepseek-ai/DeepSeek-Coder-V2-Lite-Instruct"),
    "deepseek-coder-v2-base": Preset(_v2(), "deepseek-ai/DeepSeek-Coder-V2-Base"),
    "deepseek-coder-v2-instruct": Preset(_v2(), "deepseek-ai/DeepSeek-Coder-V2-Instruct"),
    "tiny-llama": Preset(_tiny_llama(4)),
    "tiny-llama-gqa": Preset(_tiny_llama(2)),
    "tiny-llama-mqa": Preset(_tiny_llama(1)),
    "tiny-v2-lite": Preset(_tiny_v2_lite()),
    "tiny-v2": Preset(_tiny_v2()),
}

# Short names: a size alone means the base model.
ALIASES = {
    "deepseek-coder-1.3b": "deepseek-coder-1.3b-base",
    "deepseek-coder-6.7b": "deepseek-coder-6.7b-base",
    "deepseek-coder-33b": "deepseek-coder-33b-base",
    "deepseek-coder-5.7bmqa": "deepseek-coder-5.7bmqa-base",
    "deepseek-coder-v2-lite": "deepseek-coder-v2-lite-base",
    "deepseek-coder-v2": "deepseek-coder-v2-base",
}


def find_preset(name: str) -> Preset | None:
    key = name.lower()
    return PRESETS.get(ALIASES.get(key, key))


def get_preset(name: str) -> Preset:
    preset = find_preset(name)
    if preset is None:
        raise ConfigError(f"unknown preset {name!r}; known: {', '.join(sorted(PRESETS) + sorted(ALIASES))}")
    return preset
