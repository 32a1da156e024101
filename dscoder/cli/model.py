"""`dscoder info` and `dscoder convert`: what a model is, and the same model written as an HF directory."""

from __future__ import annotations

import json
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from dscoder.cli.common import MODEL_ARGUMENT, MODEL_REQUIRED_ARGUMENT, err


def info(
    model: Optional[str] = MODEL_ARGUMENT,
    as_json: bool = typer.Option(False, "--json", help="Print the facts as JSON."),
) -> None:
    """Architecture, parameter counts, weight bytes and KV-cache bytes per token, without loading weights."""
    from dscoder.hub import describe
    from dscoder.model.facts import model_facts

    source, cfg = describe(model)
    facts = model_facts(cfg)
    if as_json:
        typer.echo(json.dumps({"source": source, **facts}, indent=2))
    else:
        Console().print(_facts_table(source, cfg, facts))


def _facts_table(source: str, cfg, facts: dict) -> Table:
    from dscoder.model.facts import human_bytes

    t = Table(show_header=False, box=None, pad_edge=False)
    t.add_column(no_wrap=True)
    t.add_column(overflow="fold")  # paths must stay whole, never end in an ellipsis
    t.add_row("model", source)
    t.add_row("architecture", f"{cfg.arch} ({'DeepseekV2ForCausalLM' if cfg.is_mla else 'LlamaForCausalLM'})")
    t.add_row("shape", f"{cfg.num_hidden_layers} layers, hidden {cfg.hidden_size}, vocab {cfg.vocab_size:,}")
    t.add_row("attention", _attention(cfg, facts["attention"]))
    t.add_row("ffn", _ffn(cfg, facts.get("moe")))
    rope = facts["rope"]
    extra = f" ×{rope['factor']:g}" if rope["type"] != "default" else ""
    t.add_row("rope", f"{rope['type']}{extra}, θ={rope['theta']:g}, max positions {cfg.max_position_embeddings:,}")
    t.add_row("parameters", f"{facts['params_total']:,} total, {facts['params_active']:,} active per token")
    t.add_row("weights", ", ".join(f"{k} {human_bytes(v)}" for k, v in facts["weight_bytes"].items()))
    values = facts["kv_values_per_token"]
    if cfg.is_mla:
        full = facts["kv_values_per_token_expanded"]
        kv = (f"latent {cfg.num_hidden_layers} × ({cfg.kv_lora_rank}+{cfg.qk_rope_head_dim}) = {values:,} values "
              f"= {human_bytes(2 * values)} bf16; expanded K/V would be {full:,} values = {human_bytes(2 * full)} "
              f"({full / values:.1f}×)")
    else:
        kv = (f"{cfg.num_hidden_layers} × 2 × {cfg.num_key_value_heads} × {cfg.attn_head_dim} = {values:,} values "
              f"= {human_bytes(2 * values)} bf16")
    t.add_row("kv cache/token", kv)
    t.add_row("kv at max ctx", f"{human_bytes(2 * values * cfg.max_position_embeddings)} bf16 per sequence")
    return t


def _attention(cfg, a: dict) -> str:
    if cfg.is_mla:
        q = f"q_lora {a['q_lora_rank']}" if a["q_lora_rank"] else "no q_lora"
        return (f"MLA, {cfg.num_attention_heads} heads, kv_lora {a['kv_lora_rank']}, {q}, "
                f"qk {a['qk_nope_head_dim']}+{a['qk_rope_head_dim']} (rope), v {a['v_head_dim']}")
    return f"{a['kind']}, {cfg.num_attention_heads} heads, {a['kv_heads']} kv heads, head_dim {a['head_dim']}"


def _ffn(cfg, m: dict | None) -> str:
    if m is None:
        return f"SwiGLU, intermediate {cfg.intermediate_size}"
    return (f"DeepSeekMoE in {m['moe_layers']} layers: {m['shared_experts']} shared + {m['routed_experts']} routed "
            f"experts (inter {cfg.moe_intermediate_size}), top-{m['experts_per_token']} {m['topk_method']}, "
            f"scale {m['routed_scaling_factor']:g}; {m['first_k_dense_replace']} dense layer(s) "
            f"(inter {cfg.intermediate_size})")


def convert(
    model: str = MODEL_REQUIRED_ARGUMENT,
    out: str = typer.Argument(..., help="Output directory (Hugging Face layout)."),
    dtype: str = typer.Option("bf16", help="Weight dtype to write: fp32, bf16 or fp16."),
    max_shard_gb: float = typer.Option(5.0, help="Largest safetensors shard, in GiB."),
    quant: Optional[str] = typer.Option(None, "--quant", "-q", help="Save quantized (int8 or int4): "
                                        "dscoder loads it back as is; other tools need the unquantized form."),
    force: bool = typer.Option(False, "--force", help="Replace OUT if it exists; the old one stays whole until "
                               "the new one is complete."),
) -> None:
    """Write any model we can load (a GGUF file included, dequantized) as an HF directory, tokenizer too.

    The directory is built under a temporary name beside OUT and renamed into place when complete:
    a kill at any moment leaves no OUT (or the old one) or a complete one, never half of one."""
    from dscoder.hub import convert as convert_model

    done = convert_model(model, out, dtype, int(max_shard_gb * 1024**3), quant, force=force)
    scheme = f", {done.scheme} weights" if done.scheme else ""
    err.print(f"wrote {done.path} ({done.parameters:,} parameters, {dtype}{scheme}; {done.tokenizer})")
