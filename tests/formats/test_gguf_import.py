"""GGUF import: the embedded SmolLM2 file and synthetic llama / deepseek2 files, written the
way llama.cpp's `convert_hf_to_gguf.py` writes them, must read back as the HF checkpoint."""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace
from typing import Callable

import gguf
import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, DeepseekV2Config, DeepseekV2ForCausalLM, LlamaConfig, LlamaForCausalLM

from dscoder.errors import CheckpointError
from dscoder.formats.gguf import read_gguf, read_gguf_config, read_header
from tiny_gguf import add_tokenizer

Q = gguf.GGMLQuantizationType
# Byte offsets of the f16 super-block scales in the K-quant blocks (ggml-common.h).
F16_SCALE_OFFSETS = {Q.Q4_K: (0, 2), Q.Q5_K: (0, 2), Q.Q6_K: (208,)}


def assert_same_tensors(ours: dict[str, torch.Tensor], expected: dict[str, torch.Tensor], atol: float = 0.0):
    assert sorted(ours) == sorted(expected)
    for key, value in expected.items():
        assert ours[key].shape == value.shape, key
        torch.testing.assert_close(ours[key], value, rtol=0, atol=atol, msg=key)


def transformers_state_dict(path: Path) -> tuple[dict[str, torch.Tensor], object]:
    model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32)
    state = model.state_dict()
    if model.config.tie_word_embeddings:
        del state["lm_head.weight"]
    return state, model.config


# ------------------------------------------------------------------ the embedded real model
def test_smollm2_matches_transformers(smollm2_gguf):
    config, ours = read_gguf(smollm2_gguf)
    theirs, their_config = transformers_state_dict(smollm2_gguf)
    assert_same_tensors(ours, theirs)
    assert config["architectures"] == ["LlamaForCausalLM"]
    for key in ("hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads",
                "intermediate_size", "vocab_size", "max_position_embeddings", "tie_word_embeddings",
                "bos_token_id", "eos_token_id"):
        assert config[key] == getattr(their_config, key), key
    assert config["rope_theta"] == their_config.rope_parameters["rope_theta"] == 100000.0
    assert config["rms_norm_eps"] == 1e-05
    assert config["tie_word_embeddings"] and "lm_head.weight" not in ours
    assert config["rope_scaling"] is None and "head_dim" not in config


# ------------------------------------------------------------------ writing GGUF like llama.cpp
def encode(array: np.ndarray, qtype: Q, rng: np.random.Generator) -> np.ndarray:
    """`array` in `qtype`: quantized by gguf, or random valid blocks for types gguf cannot quantize."""
    if qtype in (Q.F32, Q.F16, Q.BF16, Q.Q8_0, Q.Q4_0, Q.Q4_1):
        return gguf.quants.quantize(array.astype(np.float32), qtype)
    raw = rng.integers(0, 256, gguf.quants.quant_shape_to_byte_shape(array.shape, qtype), dtype=np.uint8)
    blocks = raw.reshape(-1, gguf.GGML_QUANT_SIZES[qtype][1])
    for offset in F16_SCALE_OFFSETS.get(qtype, ()):
        scales = rng.uniform(1e-4, 1e-3, (len(blocks), 1)).astype(np.float16)
        blocks[:, offset:offset + 2] = scales.view(np.uint8)
    return raw


def add_shared_hparams(writer: gguf.GGUFWriter, cfg) -> None:
    """The hyper-parameters both converters write under the same GGUF keys."""
    writer.add_block_count(cfg.num_hidden_layers)
    writer.add_context_length(cfg.max_position_embeddings)
    writer.add_embedding_length(cfg.hidden_size)
    writer.add_feed_forward_length(cfg.intermediate_size)
    writer.add_head_count(cfg.num_attention_heads)
    writer.add_rope_freq_base(cfg.rope_parameters["rope_theta"])
    writer.add_layer_norm_rms_eps(cfg.rms_norm_eps)


def write_gguf(path: Path, writer: gguf.GGUFWriter) -> Path:
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def llama_permute(weights: np.ndarray, n_head: int) -> np.ndarray:
    """llama.cpp's `LlamaModel.permute`: HF rotate-half rows -> ggml's interleaved RoPE rows."""
    return weights.reshape(n_head, 2, weights.shape[0] // n_head // 2, *weights.shape[1:]).swapaxes(1, 2).reshape(
        weights.shape)


LLAMA_NAMES = {
    "model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight",
    "lm_head.weight": "output.weight", "input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm",
    "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down",
}


def write_llama_gguf(path: Path, model: LlamaForCausalLM, qtype: Q, *, cfg: LlamaConfig | SimpleNamespace | None = None,
                     arch: str = "llama", qtypes: dict[str, Q] | None = None,
                     customize: Callable[[gguf.GGUFWriter], None] | None = None) -> Path:
    """What `convert_hf_to_gguf.py` (LlamaModel) writes: q/k rows permuted, norms in F32.

    `cfg` (default: the model's) gives the metadata; `qtypes` overrides some tensors' types;
    `customize` adds keys or tensors."""
    cfg = cfg or model.config
    rng = np.random.default_rng(0)
    writer = gguf.GGUFWriter(path, arch)
    writer.add_name("tiny llama")
    add_shared_hparams(writer, cfg)
    writer.add_head_count_kv(cfg.num_key_value_heads)
    writer.add_vocab_size(cfg.vocab_size)
    writer.add_rope_dimension_count(cfg.hidden_size // cfg.num_attention_heads)
    add_tokenizer(writer, cfg.vocab_size)
    hf = model.state_dict()
    for name, array in llama_tensors(hf, model.config.num_attention_heads, model.config.num_key_value_heads):
        tensor_type = (qtypes or {}).get(name, qtype if array.ndim > 1 else Q.F32)
        writer.add_tensor(name, encode(array, tensor_type, rng), raw_dtype=tensor_type)
    if customize is not None:
        customize(writer)
    return write_gguf(path, writer)


def llama_tensors(hf: dict[str, torch.Tensor], n_head: int, n_head_kv: int):
    """(GGUF name, array) pairs as `LlamaModel.modify_tensors` makes them: renamed, q/k rows permuted."""
    for hf_name, tensor in hf.items():
        array = tensor.numpy()
        if hf_name.endswith("q_proj.weight"):
            array = llama_permute(array, n_head)
        elif hf_name.endswith("k_proj.weight"):
            array = llama_permute(array, n_head_kv)
        yield to_gguf_name(hf_name, LLAMA_NAMES), array


def to_gguf_name(hf_name: str, names: dict[str, str]) -> str:
    """`model.layers.3.self_attn.q_proj.weight` -> `blk.3.attn_q.weight`, via `names` for the module part."""
    if hf_name in names:
        return names[hf_name]
    block, rest = hf_name.removeprefix("model.layers.").split(".", 1)
    module, _, suffix = rest.rpartition(".")
    return f"blk.{block}.{names[module]}.{suffix}"


@pytest.fixture(scope="module")
def tiny_llama() -> LlamaForCausalLM:
    # K-quants need rows that are multiples of 256 values.
    cfg = LlamaConfig(vocab_size=256, hidden_size=256, intermediate_size=512, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                      rms_norm_eps=1e-5, rope_theta=50000.0, tie_word_embeddings=False)
    torch.manual_seed(0)
    return LlamaForCausalLM(cfg).eval()


# ------------------------------------------------------------------ synthetic llama files
@pytest.mark.parametrize("qtype", [Q.F32, Q.F16, Q.BF16, Q.Q8_0, Q.Q4_0, Q.Q4_1, Q.Q4_K, Q.Q5_K, Q.Q6_K],
                         ids=lambda q: q.name)
def test_llama_matches_transformers(qtype, tiny_llama, tmp_path):
    path = write_llama_gguf(tmp_path / "tiny.gguf", tiny_llama, qtype)
    config, ours = read_gguf(path)
    theirs, their_config = transformers_state_dict(path)
    assert_same_tensors(ours, theirs)
    assert all(t.isfinite().all() and t.abs().max() > 0 for t in ours.values())
    cfg = tiny_llama.config
    assert config["tie_word_embeddings"] is False and "lm_head.weight" in ours
    for key in ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                "num_key_value_heads", "max_position_embeddings", "rms_norm_eps"):
        assert config[key] == getattr(cfg, key) == pytest.approx(getattr(their_config, key)), key
    assert config["rope_theta"] == cfg.rope_parameters["rope_theta"]
    if qtype == Q.F32:  # exact: proves the q/k un-permute
        assert_same_tensors(ours, tiny_llama.state_dict())


def test_llama_bfloat16_and_linear_rope_scaling(tiny_llama, tmp_path):
    def linear_rope(writer: gguf.GGUFWriter) -> None:
        writer.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        writer.add_rope_scaling_factor(4.0)

    path = write_llama_gguf(tmp_path / "tiny.gguf", tiny_llama, Q.F32, customize=linear_rope)
    config, ours = read_gguf(path, dtype=torch.bfloat16)
    assert config["rope_scaling"] == {"type": "linear", "factor": 4.0}
    expected = {k: v.to(torch.bfloat16) for k, v in tiny_llama.state_dict().items()}
    assert all(t.dtype == torch.bfloat16 for t in ours.values())
    assert_same_tensors(ours, expected)


# ------------------------------------------------------------------ synthetic deepseek2 files
DEEPSEEK2_NAMES = {
    **LLAMA_NAMES,
    "self_attn.q_a_proj": "attn_q_a", "self_attn.q_a_layernorm": "attn_q_a_norm", "self_attn.q_b_proj": "attn_q_b",
    "self_attn.kv_a_proj_with_mqa": "attn_kv_a_mqa", "self_attn.kv_a_layernorm": "attn_kv_a_norm",
    "self_attn.kv_b_proj": "attn_kv_b", "mlp.gate": "ffn_gate_inp", "mlp.shared_experts.gate_proj": "ffn_gate_shexp",
    "mlp.shared_experts.up_proj": "ffn_up_shexp", "mlp.shared_experts.down_proj": "ffn_down_shexp",
}


EXPERT = re.compile(r"model\.layers\.(\d+)\.mlp\.experts\.(\d+)\.(gate|up|down)_proj\.weight")


def deepseek2_tensors(cfg: DeepseekV2Config, hf: dict[str, torch.Tensor], mla_split: bool):
    """(GGUF name, array) pairs as `DeepseekV2Model.modify_tensors` in convert_hf_to_gguf.py makes
    them: the experts' weights stacked into one [experts, out, in] tensor per projection and, in
    newer files (`mla_split`), kv_b_proj split per head into attn_k_b (transposed) and attn_v_b."""
    experts: dict[tuple[str, str], dict[int, np.ndarray]] = {}
    for hf_name, tensor in hf.items():
        array = tensor.numpy()
        if match := EXPERT.fullmatch(hf_name):
            block, expert, proj = match.groups()
            experts.setdefault((block, proj), {})[int(expert)] = array
        elif hf_name.endswith("kv_b_proj.weight") and mla_split:
            block, nope = hf_name.split(".")[2], cfg.qk_nope_head_dim
            kv_b = array.reshape(cfg.num_attention_heads, nope + cfg.v_head_dim, cfg.kv_lora_rank)
            yield f"blk.{block}.attn_k_b.weight", kv_b[:, :nope].transpose(0, 2, 1)
            yield f"blk.{block}.attn_v_b.weight", kv_b[:, nope:]
        else:
            yield to_gguf_name(hf_name, DEEPSEEK2_NAMES), array
    for (block, proj), by_expert in experts.items():
        yield f"blk.{block}.ffn_{proj}_exps.weight", np.stack([by_expert[e] for e in range(len(by_expert))])


def write_deepseek2_gguf(path: Path, cfg: DeepseekV2Config, hf: dict[str, torch.Tensor], mla_split: bool,
                         qtype: Q = Q.F32) -> Path:
    """The metadata of `DeepseekV2Model.set_gguf_parameters`: older files give the real head sizes
    in key/value_length; newer ones (`mla_split`) describe MLA as MQA over the latent
    (head_count_kv 1, key_length kv_lora_rank + rope dims) and add key/value_length_mla.
    Tensors with a row length that is not a multiple of the `qtype` block stay F32."""
    writer = gguf.GGUFWriter(path, "deepseek2")
    writer.add_name("tiny deepseek2")
    add_shared_hparams(writer, cfg)
    writer.add_expert_count(cfg.n_routed_experts)
    writer.add_expert_used_count(cfg.num_experts_per_tok)
    if cfg.n_group is not None:
        writer.add_expert_group_count(cfg.n_group)
        writer.add_expert_group_used_count(cfg.topk_group)
    writer.add_leading_dense_block_count(cfg.first_k_dense_replace)
    writer.add_vocab_size(cfg.vocab_size)
    if cfg.q_lora_rank is not None:
        writer.add_q_lora_rank(cfg.q_lora_rank)
    writer.add_kv_lora_rank(cfg.kv_lora_rank)
    if mla_split:
        writer.add_head_count_kv(1)
        writer.add_key_length(cfg.kv_lora_rank + cfg.qk_rope_head_dim)
        writer.add_value_length(cfg.kv_lora_rank)
        writer.add_key_length_mla(cfg.qk_nope_head_dim + cfg.qk_rope_head_dim)
        writer.add_value_length_mla(cfg.v_head_dim)
        writer.add_expert_gating_func(gguf.ExpertGatingFuncType.SOFTMAX)
    else:
        writer.add_head_count_kv(cfg.num_key_value_heads)
        writer.add_key_length(cfg.qk_nope_head_dim + cfg.qk_rope_head_dim)
        writer.add_value_length(cfg.v_head_dim)
    writer.add_expert_feed_forward_length(cfg.moe_intermediate_size)
    writer.add_expert_shared_count(cfg.n_shared_experts)
    writer.add_expert_weights_scale(cfg.routed_scaling_factor)
    if cfg.norm_topk_prob:
        writer.add_expert_weights_norm(True)
    writer.add_rope_dimension_count(cfg.qk_rope_head_dim)
    rope = cfg.rope_parameters
    if rope["rope_type"] == "yarn":
        writer.add_rope_scaling_type(gguf.RopeScalingType.YARN)
        writer.add_rope_scaling_factor(rope["factor"])
        writer.add_rope_scaling_orig_ctx_len(rope["original_max_position_embeddings"])
        writer.add_rope_scaling_yarn_log_mul(0.1 * rope["mscale_all_dim"])
    add_tokenizer(writer, cfg.vocab_size)
    block = gguf.GGML_QUANT_SIZES[qtype][0]
    for name, array in deepseek2_tensors(cfg, hf, mla_split):
        tensor_type = qtype if array.ndim > 1 and array.shape[-1] % block == 0 else Q.F32
        writer.add_tensor(name, gguf.quants.quantize(np.ascontiguousarray(array), tensor_type), raw_dtype=tensor_type)
    return write_gguf(path, writer)


YARN = {"rope_type": "yarn", "rope_theta": 10000.0, "factor": 40.0, "original_max_position_embeddings": 64,
        "beta_fast": 32, "beta_slow": 1, "mscale": 0.707, "mscale_all_dim": 0.707}
DEEPSEEK2_CASES = {
    # name: (config changes, mla_split, qtype, atol)
    "legacy-kv_b": ({}, False, Q.F32, 0.0),
    "mla-split-q_lora-tied-groups": (dict(q_lora_rank=24, tie_word_embeddings=True, topk_method="group_limited_greedy",
                                          n_group=2, topk_group=1, norm_topk_prob=True, routed_scaling_factor=2.5),
                                     True, Q.F32, 0.0),
    "yarn": (dict(rope_parameters=YARN, max_position_embeddings=2560), True, Q.F32, 0.0),
    "q8_0": (dict(q_lora_rank=32, kv_lora_rank=64), True, Q.Q8_0, 2e-3),
}


def deepseek2_case(case: str, tmp_path: Path) -> tuple[DeepseekV2Config, dict[str, torch.Tensor], Path]:
    """A random tiny DeepSeek-V2 (config, HF tensors) and the GGUF that DEEPSEEK2_CASES[case] converts it to."""
    changes, mla_split, qtype, _ = DEEPSEEK2_CASES[case]
    cfg = DeepseekV2Config(**{**dict(
        vocab_size=96, hidden_size=64, intermediate_size=96, moe_intermediate_size=32, num_hidden_layers=3,
        num_attention_heads=4, n_routed_experts=4, n_shared_experts=1, num_experts_per_tok=2,
        first_k_dense_replace=1, q_lora_rank=None, kv_lora_rank=40, qk_nope_head_dim=32, qk_rope_head_dim=16,
        v_head_dim=16, max_position_embeddings=256, rms_norm_eps=1e-6), **changes})
    torch.manual_seed(0)
    DeepseekV2ForCausalLM(cfg).save_pretrained(tmp_path / "hf")
    hf = load_file(tmp_path / "hf" / "model.safetensors")  # per-expert keys, as on the Hub
    return cfg, hf, write_deepseek2_gguf(tmp_path / "tiny.gguf", cfg, hf, mla_split, qtype)


@pytest.mark.parametrize("case", DEEPSEEK2_CASES)
def test_deepseek2_matches_hf_checkpoint(case, tmp_path):
    atol = DEEPSEEK2_CASES[case][3]
    cfg, hf, path = deepseek2_case(case, tmp_path)

    config, ours = read_gguf(path)
    assert_same_tensors(ours, hf, atol=atol)
    assert config["architectures"] == ["DeepseekV2ForCausalLM"] and config["model_type"] == "deepseek_v2"
    for key in ("vocab_size", "hidden_size", "intermediate_size", "moe_intermediate_size", "num_hidden_layers",
                "num_attention_heads", "num_key_value_heads", "n_routed_experts", "n_shared_experts",
                "num_experts_per_tok", "first_k_dense_replace", "q_lora_rank", "kv_lora_rank", "qk_nope_head_dim",
                "qk_rope_head_dim", "v_head_dim", "routed_scaling_factor", "norm_topk_prob", "topk_method",
                "n_group", "topk_group", "rms_norm_eps", "max_position_embeddings", "tie_word_embeddings"):
        assert config[key] == getattr(cfg, key), key
    assert config["num_key_value_heads"] == cfg.num_attention_heads
    assert config["rope_theta"] == cfg.rope_parameters["rope_theta"]
    if cfg.rope_parameters["rope_type"] == "yarn":
        assert config["rope_scaling"] == {"type": "yarn", "factor": 40.0, "original_max_position_embeddings": 64,
                                          "beta_fast": 32, "beta_slow": 1, "mscale": 0.707, "mscale_all_dim": 0.707}
    else:
        assert config["rope_scaling"] is None


# ------------------------------------------------------------------ the same bits as gguf's own reader
def gguf_reader_tensors(path: Path, dtype: torch.dtype) -> dict[str, np.ndarray]:
    """The peer: every tensor as `gguf.GGUFReader` finds it, dequantized by `gguf.quants`, rounded to `dtype`."""
    return {t.name: torch.from_numpy(np.array(gguf.quants.dequantize(t.data, t.tensor_type))).to(dtype).float().numpy()
            for t in gguf.GGUFReader(path).tensors}


def assert_reads_like_gguf_reader(path: Path, dtype: torch.dtype = torch.float32) -> None:
    """read_gguf's state dict, converted back to GGUF tensors the way llama.cpp converts, holds exactly the
    bits of the peer: the tensors were found at the right bytes and nothing was lost in the conversions."""
    expected = gguf_reader_tensors(path, dtype)
    config, state = read_gguf(path, dtype=dtype)
    assert all(t.dtype == dtype for t in state.values())
    state = {name: t.float() for name, t in state.items()}  # exact: every dtype here is a subset of float32
    if config["model_type"] == "llama":
        ours = dict(llama_tensors(state, config["num_attention_heads"], config["num_key_value_heads"]))
    else:
        mla_split = any(name.endswith("attn_k_b.weight") for name in expected)
        ours = dict(deepseek2_tensors(SimpleNamespace(**config), state, mla_split))
    assert sorted(ours) == sorted(expected)
    for name, reference in expected.items():
        assert ours[name].dtype == reference.dtype == np.float32 and ours[name].shape == reference.shape, name
        assert np.array_equal(np.ascontiguousarray(ours[name]).view(np.uint32), reference.view(np.uint32)), name


def test_smollm2_reads_like_gguf_reader(smollm2_gguf):
    assert_reads_like_gguf_reader(smollm2_gguf)


def custom_alignment(alignment: int) -> Callable[[gguf.GGUFWriter], None]:
    return lambda writer: writer.add_custom_alignment(alignment)


@pytest.mark.parametrize("qtype, alignment, dtype", [
    *[pytest.param(qtype, None, torch.float32, id=qtype.name)
      for qtype in (Q.F32, Q.F16, Q.BF16, Q.Q8_0, Q.Q4_0, Q.Q4_1, Q.Q4_K, Q.Q5_K, Q.Q6_K)],
    pytest.param(Q.Q4_1, 256, torch.float32, id="Q4_1-aligned-256"),
    pytest.param(Q.F32, 64, torch.float32, id="F32-aligned-64"),
    pytest.param(Q.Q4_K, None, torch.bfloat16, id="Q4_K-as-bfloat16"),
])
def test_llama_reads_like_gguf_reader(qtype, alignment, dtype, tiny_llama, tmp_path):
    path = write_llama_gguf(tmp_path / "tiny.gguf", tiny_llama, qtype,
                            customize=alignment and custom_alignment(alignment))
    if alignment:  # the data section starts at the next multiple of it, not of the default 32
        assert read_header(path).metadata["general.alignment"] == alignment
        assert gguf.GGUFReader(path).data_offset % alignment == 0
    assert_reads_like_gguf_reader(path, dtype)


@pytest.mark.parametrize("case", DEEPSEEK2_CASES)
def test_deepseek2_reads_like_gguf_reader(case, tmp_path):
    assert_reads_like_gguf_reader(deepseek2_case(case, tmp_path)[2])


# ------------------------------------------------------------------ files we must refuse
@pytest.fixture(scope="module")
def good_gguf(tiny_llama, tmp_path_factory) -> Path:
    return write_llama_gguf(tmp_path_factory.mktemp("good") / "tiny.gguf", tiny_llama, Q.Q8_0)


@pytest.mark.parametrize("read", [read_gguf, read_gguf_config], ids=["weights", "config-only"])
@pytest.mark.parametrize("keep", [0.5, 0.001], ids=["data-cut", "header-cut"])
def test_truncated_file(keep, read, good_gguf, tmp_path):
    path = tmp_path / "cut.gguf"
    data = good_gguf.read_bytes()
    path.write_bytes(data[:int(len(data) * keep)])
    with pytest.raises(CheckpointError, match=re.escape(str(path))):
        read(path)


def test_config_alone_is_the_config_read_with_the_weights(good_gguf):
    """read_gguf_config walks only the header; it must give what read_gguf gives."""
    assert read_gguf_config(good_gguf) == read_gguf(good_gguf)[0]


@pytest.mark.parametrize("content", [b"", b"{\"model_type\": \"llama\"}\n" * 8], ids=["empty", "json"])
def test_not_a_gguf_file(content, tmp_path):
    path = tmp_path / "model.gguf"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=re.escape(str(path))):
        read_gguf(path)


def test_unknown_architecture(tiny_llama, tmp_path):
    path = write_llama_gguf(tmp_path / "mamba.gguf", tiny_llama, Q.F32, arch="mamba")
    with pytest.raises(CheckpointError, match=r"'mamba'.*supported: llama, deepseek2"):
        read_gguf(path)


@pytest.mark.parametrize("qtype", [Q.Q8_1, Q.I32], ids=lambda q: q.name)
def test_type_gguf_cannot_dequantize(qtype, tiny_llama, tmp_path):
    path = write_llama_gguf(tmp_path / "odd.gguf", tiny_llama, Q.F16, qtypes={"blk.1.attn_v.weight": qtype})
    with pytest.raises(CheckpointError, match=rf"'blk\.1\.attn_v\.weight'.*{qtype.name}"):
        read_gguf(path)


def test_tensor_without_hf_counterpart(tiny_llama, tmp_path):
    # llama.cpp writes rope_freqs for Llama 3.1-style RoPE scaling, which has no HF weight.
    path = write_llama_gguf(tmp_path / "llama3.gguf", tiny_llama, Q.F32,
                            customize=lambda w: w.add_tensor("rope_freqs.weight", np.ones(32, dtype=np.float32)))
    with pytest.raises(CheckpointError, match="'rope_freqs.weight'"):
        read_gguf(path)


def test_one_part_of_a_split_file(tiny_llama, tmp_path):
    path = write_llama_gguf(tmp_path / "model-00001-of-00002.gguf", tiny_llama, Q.F32,
                            customize=lambda w: w.add_uint16(gguf.Keys.Split.LLM_KV_SPLIT_COUNT, 2))
    with pytest.raises(CheckpointError, match="split GGUF"):
        read_gguf(path)


def test_metadata_that_does_not_fit_the_tensors(tiny_llama, tmp_path):
    # 256 q rows do not split into 3 heads of rotary pairs (LlamaConfig itself would refuse 3 heads).
    cfg = SimpleNamespace(**{**tiny_llama.config.to_dict(), "num_attention_heads": 3})
    path = write_llama_gguf(tmp_path / "bad.gguf", tiny_llama, Q.F32, cfg=cfg)
    with pytest.raises(CheckpointError, match=r"'blk\.0\.attn_q\.weight' \[256, 256\] does not fit"):
        read_gguf(path)
