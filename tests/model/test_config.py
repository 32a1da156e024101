"""ModelConfig: published sizes, HF config.json in both RoPE forms, validation."""

from __future__ import annotations

import pytest
import torch

from dscoder.model.config import ModelConfig
from dscoder.errors import ConfigError
from dscoder.model.transformer import Transformer
from dscoder.model.presets import PRESETS, get_preset

# Total and active parameters computed from the models' public config.json files.
PUBLISHED = {
    "deepseek-coder-1.3b-base": (1_346_471_936, 1_346_471_936),
    "deepseek-coder-1.3b-instruct": (1_346_471_936, 1_346_471_936),
    "deepseek-coder-6.7b-base": (6_740_512_768, 6_740_512_768),
    "deepseek-coder-33b-base": (33_342_991_360, 33_342_991_360),
    "deepseek-coder-5.7bmqa-base": (5_700_325_376, 5_700_325_376),
    "deepseek-coder-v2-lite-base": (15_706_484_224, 2_661_150_208),
    "deepseek-coder-v2-base": (235_741_434_880, 21_375_800_320),
}


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_published_parameter_counts(name):
    assert get_preset(name).config.param_counts() == PUBLISHED[name]


@pytest.mark.parametrize("name", ["deepseek-coder-1.3b-base", "deepseek-coder-33b-base",
                                  "deepseek-coder-5.7bmqa-base", "deepseek-coder-v2-lite-base", "tiny-v2"])
def test_analytic_count_equals_the_built_network(name):
    cfg = get_preset(name).config
    with torch.device("meta"):
        model = Transformer(cfg)
    assert sum(p.numel() for p in model.parameters()) == cfg.param_counts()[0]


def test_active_count_equals_parameters_touched_by_one_token():
    cfg = get_preset("tiny-v2").config
    model = Transformer(cfg)
    moe_layers = [i for i in range(cfg.num_hidden_layers) if cfg.is_moe_layer(i)]
    per_expert = sum(p.numel() for p in model.layers[moe_layers[0]].mlp.experts[0].parameters())
    inactive = len(moe_layers) * (cfg.n_routed_experts - cfg.num_experts_per_tok) * per_expert
    assert cfg.param_counts()[1] == cfg.param_counts()[0] - inactive


def test_kv_cache_values_per_token():
    lite = get_preset("deepseek-coder-v2-lite").config
    assert lite.kv_values_per_token() == 27 * (512 + 64)
    assert lite.kv_values_per_token(latent=False) == 27 * 16 * (192 + 128)
    big = get_preset("deepseek-coder-33b").config
    assert big.kv_values_per_token() == 62 * 2 * 8 * 128


@pytest.mark.parametrize("name", sorted(PRESETS))
@pytest.mark.parametrize("rope_format", ["legacy", "parameters"])
def test_hf_config_round_trip(name, rope_format):
    cfg = get_preset(name).config
    assert ModelConfig.from_hf(cfg.to_hf(rope_format)) == cfg


@pytest.mark.parametrize("name", ["tiny-llama", "tiny-v2", "deepseek-coder-6.7b", "deepseek-coder-v2"])
def test_transformers_reads_our_config_and_we_read_its(name, tmp_path):
    from transformers import AutoConfig

    cfg = get_preset(name).config
    hf = cfg.to_hf()
    theirs = AutoConfig.for_model(**{k: v for k, v in hf.items() if k != "architectures"})
    rope = theirs.rope_parameters
    assert rope["rope_theta"] == cfg.rope_theta
    assert rope["rope_type"] == cfg.rope_type
    if cfg.rope_scaling:
        assert rope["factor"] == cfg.rope_scaling["factor"]
    theirs.save_pretrained(tmp_path)  # transformers 5 writes the new `rope_parameters` form
    import json
    assert ModelConfig.from_hf(json.loads((tmp_path / "config.json").read_text())) == cfg


def test_legacy_deepseek_coder_config_json():
    """The shape of deepseek-coder-6.7b-instruct's config.json as published (legacy rope_scaling)."""
    published = {
        "architectures": ["LlamaForCausalLM"], "bos_token_id": 32013, "eos_token_id": 32021,
        "hidden_act": "silu", "hidden_size": 4096, "initializer_range": 0.02, "intermediate_size": 11008,
        "max_position_embeddings": 16384, "model_type": "llama", "num_attention_heads": 32,
        "num_hidden_layers": 32, "num_key_value_heads": 32, "pretraining_tp": 1, "rms_norm_eps": 1e-06,
        "rope_scaling": {"factor": 4.0, "type": "linear"}, "rope_theta": 100000, "tie_word_embeddings": False,
        "torch_dtype": "bfloat16", "transformers_version": "4.33.1", "use_cache": True, "vocab_size": 32256,
    }
    cfg = ModelConfig.from_hf(published)
    assert cfg == get_preset("deepseek-coder-6.7b-instruct").config
    back = cfg.to_hf()
    assert back["pretraining_tp"] == 1 and back["torch_dtype"] == "bfloat16"  # unknown keys survive


def test_remote_code_era_deepseek_coder_v2_lite_config_json():
    """The shape of DeepSeek-Coder-V2-Lite-Instruct's config.json (written for trust_remote_code)."""
    published = {
        "architectures": ["DeepseekV2ForCausalLM"], "attention_bias": False, "attention_dropout": 0.0,
        "auto_map": {"AutoConfig": "configuration_deepseek.DeepseekV2Config",
                     "AutoModelForCausalLM": "modeling_deepseek.DeepseekV2ForCausalLM"},
        "aux_loss_alpha": 0.001, "bos_token_id": 100000, "eos_token_id": 100001, "ep_size": 1,
        "first_k_dense_replace": 1, "hidden_act": "silu", "hidden_size": 2048, "initializer_range": 0.02,
        "intermediate_size": 10944, "kv_lora_rank": 512, "max_position_embeddings": 163840,
        "model_type": "deepseek_v2", "moe_intermediate_size": 1408, "moe_layer_freq": 1, "n_group": 1,
        "n_routed_experts": 64, "n_shared_experts": 2, "norm_topk_prob": False, "num_attention_heads": 16,
        "num_experts_per_tok": 6, "num_hidden_layers": 27, "num_key_value_heads": 16, "pretraining_tp": 1,
        "q_lora_rank": None, "qk_nope_head_dim": 128, "qk_rope_head_dim": 64, "rms_norm_eps": 1e-06,
        "rope_scaling": {"beta_fast": 32, "beta_slow": 1, "factor": 40, "mscale": 0.707, "mscale_all_dim": 0.707,
                         "original_max_position_embeddings": 4096, "type": "yarn"},
        "rope_theta": 10000, "routed_scaling_factor": 1.0, "scoring_func": "softmax", "seq_aux": True,
        "tie_word_embeddings": False, "topk_group": 1, "topk_method": "greedy", "torch_dtype": "bfloat16",
        "transformers_version": "4.39.3", "use_cache": True, "v_head_dim": 128, "vocab_size": 102400,
    }
    cfg = ModelConfig.from_hf(published)
    assert cfg.param_counts() == PUBLISHED["deepseek-coder-v2-lite-base"]
    assert cfg.replace(n_group=None, topk_group=None) == get_preset("deepseek-coder-v2-lite-instruct").config
    written = cfg.to_hf()
    assert written["ep_size"] == 1 and "auto_map" not in written  # we write no remote code to point at


@pytest.mark.parametrize("change, message", [
    ({"num_key_value_heads": 3}, "num_key_value_heads=3"),
    ({"hidden_act": "gelu"}, "hidden_act 'gelu'"),
    ({"rope_scaling": {"type": "dynamic", "factor": 2.0}}, "rope type 'dynamic'"),
    ({"rope_scaling": {"type": "linear"}}, "needs a 'factor'"),
])
def test_invalid_llama_configs_name_the_field(change, message):
    with pytest.raises(ConfigError, match=message):
        get_preset("tiny-llama").config.replace(**change)


@pytest.mark.parametrize("change, message", [
    ({"topk_method": "noaux_tc"}, "topk_method 'noaux_tc'"),
    ({"n_group": 3}, "n_group dividing"),
    ({"num_experts_per_tok": 99}, "num_experts_per_tok=99"),
    ({"scoring_func": "sigmoid"}, "scoring_func 'sigmoid'"),
])
def test_invalid_v2_configs_name_the_field(change, message):
    with pytest.raises(ConfigError, match=message):
        get_preset("tiny-v2").config.replace(**change)


def test_unknown_architecture_is_named():
    with pytest.raises(ConfigError, match="model_type='mamba'"):
        ModelConfig.from_hf({"model_type": "mamba", "architectures": ["MambaForCausalLM"]})
