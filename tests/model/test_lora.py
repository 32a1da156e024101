"""LoRA: our adapters are peft's (peft reads ours and computes our logits; we read peft's), an
unmerged adapter generates what its merged weights generate (MLA's absorbed decode and the
serving engine included), and `hub.load(lora=)`, `complete --lora` and `train merge` use it.

The base models are built and saved by transformers itself (`hf_reference`) from the training
fixtures' configs: tiny-llama (dense), tiny-v2-lite (MLA with q_proj, MoE) and tiny-v2 (MLA
with q_a/q_b, group-limited MoE). Every adapter has a random B, so it visibly changes the output.

transformers 5 fuses DeepSeek-V2's routed experts into 3-D parameters, and peft (0.21) loads a
per-expert adapter onto them by converting it (`peft.utils.transformers_weight_conversion`).
That conversion maps every `gate_proj/up_proj/down_proj` target onto the fused routed experts,
so a dense layer's or the shared experts' LoRA of the same names is dropped on peft's side. The
V2 comparisons zero those factors (peft's limitation, not a difference in the format: the routed
experts' factors, which peft does convert, are compared with B random).
"""

from __future__ import annotations

import copy
import json
import re

import pytest
import torch
from typer.testing import CliRunner

from conftest import hf_reference
from dscoder.formats.hf import load_hf_dir, read_config
from dscoder.formats.peft import load_adapter, peft_key, read_adapter, save_adapter
from dscoder.hub import load, load_model
from dscoder.infer.generate import SamplingParams, generate
from dscoder.model.lora import DEFAULT_TARGETS, LoRALinear, LoRATargetError, apply_lora, lora_modules, merge_lora
from dscoder.model.quant import QuantLinear, quantize_model
from dscoder.model.transformer import MLA, MoE, Linear
from dscoder.serve.engine import Engine, EngineConfig
from dscoder.tokenizer.tokenizer import Tokenizer
from training_data import model_dir

ARCHS = ["llama", "v2-lite", "v2"]
PROMPTS = ["def fibonacci(n):\n    ", "import json\n", "class Stack:\n    def push(self, x):"]
# Layers whose factors peft cannot place on transformers 5's DeepSeek-V2 (see the module docstring).
PEFT_DROPS = re.compile(r"(\.shared_experts\.|^layers\.\d+\.mlp\.(gate|up|down)_proj$)")


@pytest.fixture(scope="module")
def bases(llama_dir, v2_dir, tiny_tokenizer, tmp_path_factory) -> dict:
    """arch -> an HF directory written by transformers' save_pretrained (weights, config, tokenizer)."""
    configs = {"llama": llama_dir, "v2-lite": v2_dir,
               "v2": model_dir(tmp_path_factory.mktemp("v2-config"), "tiny-v2", tiny_tokenizer, rope_scaling=None)}
    out = {}
    for arch, config_dir in configs.items():
        directory = tmp_path_factory.mktemp(f"base-{arch}")
        ref = hf_reference(read_config(config_dir), seed=3)
        ref.save_pretrained(directory)
        Tokenizer.load(config_dir).save(directory)
        out[arch] = directory
    return out


def adapted(base_dir, targets=None, seed: int = 0, rank: int = 4, alpha: float = 8.0):
    """Our model of `base_dir` with LoRA on `targets` and a random B (a fresh adapter would change nothing)."""
    net = load_hf_dir(base_dir)
    apply_lora(net, rank, alpha, 0.0, targets, generator=torch.Generator().manual_seed(seed))
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for layer in lora_modules(net).values():
            layer.lora_B.weight.copy_(0.1 * torch.randn(layer.lora_B.weight.shape, generator=gen))
    return net.eval()


@pytest.fixture(scope="module")
def adapters(bases, tmp_path_factory) -> dict:
    """arch -> (our adapted model, its adapter directory)."""
    out = {}
    for arch, base in bases.items():
        net = adapted(base, seed=len(out))
        if arch != "llama":
            with torch.no_grad():
                for name, layer in lora_modules(net).items():
                    if PEFT_DROPS.search(name):
                        layer.lora_B.weight.zero_()
        directory = save_adapter(net, tmp_path_factory.mktemp(f"adapter-{arch}"), str(base))
        out[arch] = net, directory
    return out


def tokens(vocab: int, length: int = 14, seed: int = 5) -> torch.Tensor:
    return torch.randint(3, vocab, (2, length), generator=torch.Generator().manual_seed(seed))


def close(a: torch.Tensor, b: torch.Tensor, rel: float = 1e-5) -> bool:
    return (a - b).abs().max().item() <= rel * (1 + b.abs().max().item())


# ---------------------------------------------------------------------------- the transform
def test_a_fresh_adapter_changes_nothing_and_trains_only_its_factors(bases):
    base = load_hf_dir(bases["v2"]).eval()
    net = copy.deepcopy(base)
    names = apply_lora(net, 4, 8.0, 0.1, generator=torch.Generator().manual_seed(0))
    attrs = {n.rpartition(".")[2] for n in names}
    assert attrs == set(DEFAULT_TARGETS) - {"q_proj", "k_proj", "v_proj"}  # MLA with q_a/q_b: no q/k/v_proj
    assert any(".experts." in n for n in names) and any(".shared_experts." in n for n in names)
    assert not any(n.startswith("lm_head") or n.endswith(".gate") for n in names)
    trainable = {n for n, p in net.named_parameters() if p.requires_grad}
    assert trainable == {f"{n}.lora_{f}.weight" for n in names for f in "AB"}
    x = tokens(net.config.vocab_size)
    with torch.no_grad():
        assert torch.equal(net(x)[0], base(x)[0])  # B is zero: exactly the base
    layer = lora_modules(net)["layers.0.self_attn.q_a_proj"]
    bound = 1 / layer.in_features ** 0.5  # kaiming_uniform(a=sqrt(5)) on [r, in]: U(-1/sqrt(in), 1/sqrt(in))
    assert 0.5 * bound < layer.lora_A.weight.abs().max().item() <= bound and layer.scaling == 2.0
    assert not hasattr(layer, "weight")  # a reader of `.weight` fails instead of dropping the adapter


def test_gradients_reach_only_the_factors_and_moe_takes_the_loop_over_adapted_experts(bases):
    net = adapted(bases["v2-lite"]).train()
    moe = next(layer.mlp for layer in net.layers if isinstance(layer.mlp, MoE))
    x = tokens(net.config.vocab_size)
    with torch.enable_grad():
        assert moe.grouped_dtype(torch.randn(4, net.config.hidden_size, requires_grad=True)) is None
        logits, aux = net(x)
        (torch.nn.functional.cross_entropy(logits.flatten(0, 1), x.flatten()) + aux).backward()
    grads = {n for n, p in net.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    assert grads and all(".lora_" in n for n in grads)
    assert any(".experts." in n and "lora_B" in n for n in grads)


@pytest.mark.parametrize("targets, named", [(["q_proj", "qkv_proj"], "'qkv_proj'"), (["lm_head"], "output head"),
                                            (["gate"], "router"), (["k_proj"], "'k_proj'")])
def test_a_target_the_network_lacks_is_named_and_nothing_changes(bases, targets, named):
    net = load_hf_dir(bases["v2-lite"])
    before = {k: v.clone() for k, v in net.state_dict().items()}
    with pytest.raises(LoRATargetError, match=re.escape(named)):
        apply_lora(net, 4, 8.0, targets=targets)
    assert not lora_modules(net) and all(p.requires_grad for p in net.parameters())
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())


@pytest.mark.parametrize("scheme", ["int8", "int4"])
def test_lora_over_a_quantized_base_applies_the_dequantized_weight_plus_the_adapter(scheme):
    gen = torch.Generator().manual_seed(0)
    dense = Linear(64, 48, bias=True)
    with torch.no_grad():
        dense.weight.normal_(0, 0.1, generator=gen)
        dense.bias.normal_(0, 0.1, generator=gen)
    layer = LoRALinear(QuantLinear.from_linear(dense, scheme), 8, 16.0, generator=gen)
    with torch.no_grad():
        layer.lora_B.weight.normal_(0, 0.1, generator=gen)
    w = layer.base.dequantize() + 2.0 * layer.lora_B.weight @ layer.lora_A.weight
    assert torch.allclose(layer.effective_weight(), w, atol=1e-6)
    x = torch.randn(20, 64, generator=gen)  # more rows than the integer kernel takes: dequantize + matmul
    with torch.no_grad():
        assert torch.allclose(layer(x), x @ w.T + dense.bias, atol=1e-4)
        merged = layer.merged()
        assert type(merged) is Linear and torch.allclose(merged(x), layer(x), atol=1e-4)


# ---------------------------------------------------------------------------- peft's format
@pytest.mark.parametrize("arch", ARCHS)
def test_peft_loads_our_adapter_and_computes_our_logits(arch, bases, adapters):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    net, directory = adapters[arch]
    config = json.loads((directory / "adapter_config.json").read_text())
    assert config["peft_type"] == "LORA" and config["r"] == 4 and config["lora_alpha"] == 8
    assert config["base_model_name_or_path"] == str(bases[arch])
    base = AutoModelForCausalLM.from_pretrained(bases[arch], dtype=torch.float32).eval()
    x = tokens(net.config.vocab_size)
    with torch.no_grad():
        theirs_base = base(x).logits
        theirs = PeftModel.from_pretrained(base, directory).eval()(x).logits
        ours = net(x)[0]
    assert (ours - theirs_base).abs().max().item() > 0.1  # the adapter matters
    assert close(ours, theirs, 2e-5), (ours - theirs).abs().max().item()


def test_our_tensor_names_are_the_ones_peft_writes(bases, adapters):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    net, directory = adapters["llama"]
    config, tensors = read_adapter(directory)
    hf = AutoModelForCausalLM.from_pretrained(bases["llama"], dtype=torch.float32)
    theirs = get_peft_model(hf, LoraConfig(r=4, lora_alpha=8, target_modules=list(config.targets)))
    with torch.no_grad():
        for name, p in theirs.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.1, generator=torch.Generator().manual_seed(7))
    peft_dir = directory.parent / "written-by-peft"
    theirs.save_pretrained(peft_dir)
    from safetensors import safe_open
    with safe_open(str(peft_dir / "adapter_model.safetensors"), framework="pt") as f:
        assert set(f.keys()) == set(tensors)
    assert peft_key("layers.0.self_attn.q_proj", "lora_A") in tensors
    assert tensors[peft_key("layers.0.self_attn.q_proj", "lora_A")].shape == (4, net.config.hidden_size)

    # ... and an adapter peft wrote loads here and computes what peft computes
    ours = load_hf_dir(bases["llama"])
    load_adapter(ours, peft_dir)
    x = tokens(ours.config.vocab_size)
    with torch.no_grad():
        assert close(ours.eval()(x)[0], theirs.eval()(input_ids=x).logits, 2e-5)


def test_a_saved_and_loaded_adapter_is_the_same_adapter(bases, adapters):
    net, directory = adapters["v2"]
    loaded = load_hf_dir(bases["v2"])
    names = load_adapter(loaded, directory)
    assert names == list(lora_modules(net))
    for name, layer in lora_modules(loaded).items():
        assert torch.equal(layer.lora_A.weight, lora_modules(net)[name].lora_A.weight)
        assert torch.equal(layer.lora_B.weight, lora_modules(net)[name].lora_B.weight)


# ---------------------------------------------------------------------------- inference with an adapter
def merged_copy(net):
    return merge_lora(copy.deepcopy(net))


def set_absorb(net, value) -> None:
    for layer in net.layers:
        if isinstance(layer.self_attn, MLA):
            layer.self_attn.absorb = value


@pytest.mark.parametrize("arch", ["v2-lite", "v2"])
def test_mla_absorbed_decode_sees_the_adapter_on_kv_b_proj(arch, adapters):
    net, _ = adapters[arch]
    assert isinstance(net.layers[0].self_attn.kv_b_proj, LoRALinear)
    assert net.layers[0].self_attn.kv_b_proj.lora_B.weight.abs().sum() > 0
    merged = merged_copy(net)
    x = tokens(net.config.vocab_size, 20)
    outs = {}
    with torch.no_grad():
        for label, model in (("unmerged", net), ("merged", merged)):
            for absorb in (False, True):
                set_absorb(model, absorb)
                cache = model.new_cache(2, 32)
                steps = [model(x[:, :12], 0, cache)[0]] + [model(x[:, i:i + 1], i, cache)[0] for i in range(12, 20)]
                outs[label, absorb] = torch.cat(steps, dim=1)
            set_absorb(model, None)
    reference = outs["merged", False]
    for key, out in outs.items():
        assert close(out, reference, 1e-4), (key, (out - reference).abs().max().item())


@pytest.mark.parametrize("arch", ARCHS)
def test_unmerged_generation_equals_merged_generation_alone_and_in_the_engine(arch, bases, adapters):
    net, _ = adapters[arch]
    tok = Tokenizer.load(bases[arch])
    merged = merged_copy(net)
    assert not lora_modules(merged) and isinstance(merged.layers[0].self_attn.o_proj, Linear)
    params = SamplingParams(max_new_tokens=12)
    completions = generate(net, tok, PROMPTS, params)
    unmerged = [c.token_ids for c in completions]
    assert unmerged == [c.token_ids for c in generate(merged, tok, PROMPTS, params)]
    assert unmerged != [c.token_ids for c in generate(load_hf_dir(bases[arch]), tok, PROMPTS, params)]
    texts = [c.text for c in completions]
    for model in (net, merged):
        with Engine(model, tok, EngineConfig(num_blocks=64, prefill_chunk=8, prefill_budget=8)) as engine:
            assert engine.generate(PROMPTS, params) == texts


def test_hub_load_merges_the_adapter_then_quantizes_and_leaves_its_files_alone(bases, adapters):
    net, directory = adapters["v2"]
    files = {p.name: p.read_bytes() for p in directory.iterdir()}
    loaded, tok = load(bases["v2"], lora=directory)
    assert not lora_modules(loaded) and tok.vocab_size == net.config.vocab_size
    x = tokens(net.config.vocab_size)
    with torch.no_grad():
        assert close(loaded(x)[0], net(x)[0], 1e-5)
        quantized = load_model(bases["v2"], quant="int8", lora=directory)
        assert isinstance(quantized.layers[0].self_attn.o_proj, QuantLinear)
        want = quantize_model(merged_copy(net), "int8")
        assert torch.equal(quantized(x)[0], want(x)[0])
    assert {p.name: p.read_bytes() for p in directory.iterdir()} == files


def test_an_adapter_stays_unmerged_beside_weights_saved_quantized(bases, adapters, tmp_path):
    from dscoder.formats.hf import save_hf_dir

    net, directory = adapters["llama"]
    saved = tmp_path / "int8"
    save_hf_dir(load_model(bases["llama"], quant="int8"), saved)
    loaded = load_model(saved, lora=directory)
    layer = lora_modules(loaded)["layers.0.self_attn.q_proj"]
    assert isinstance(layer.base, QuantLinear)
    x = tokens(net.config.vocab_size)
    with torch.no_grad():
        assert close(loaded(x)[0], net(x)[0], 0.05)  # int8 weights, the same adapter


# ---------------------------------------------------------------------------- the command line
@pytest.fixture(scope="module")
def merged_dir(bases, adapters, tmp_path_factory):
    from dscoder.cli import app

    out = tmp_path_factory.mktemp("merged") / "llama-merged"
    result = CliRunner().invoke(app, ["train", "merge", "--model", str(bases["llama"]),
                                      "--adapter", str(adapters["llama"][1]), "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out


@pytest.mark.parametrize("arch", ["llama", "v2"])
def test_train_merge_writes_a_checkpoint_transformers_loads_with_the_adapted_logits(arch, bases, adapters,
                                                                                   merged_dir, tmp_path):
    from transformers import AutoModelForCausalLM

    from dscoder.cli import app

    out = merged_dir
    if arch != "llama":
        out = tmp_path / "merged"
        result = CliRunner().invoke(app, ["train", "merge", "-m", str(bases[arch]),
                                          "--adapter", str(adapters[arch][1]), "-o", str(out)])
        assert result.exit_code == 0, result.output
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= {p.name for p in out.iterdir()}
    assert not list(out.glob("adapter_*"))
    net = adapters[arch][0]
    x = tokens(net.config.vocab_size)
    with torch.no_grad():
        theirs = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32).eval()(x).logits
        assert close(net(x)[0], theirs, 2e-5)


def test_complete_with_lora_uses_the_adapter(bases, adapters, merged_dir):
    from dscoder.cli import app

    def complete(*args: str) -> str:
        result = CliRunner().invoke(app, ["complete", "def add(a, b):\n", "--max-tokens", "12", *args])
        assert result.exit_code == 0, result.output
        return result.stdout

    with_lora = complete("--model", str(bases["llama"]), "--lora", str(adapters["llama"][1]))
    assert with_lora == complete("--model", str(merged_dir))
    assert with_lora != complete("--model", str(bases["llama"]))


def test_serve_with_lora_serves_the_adapted_model(bases, adapters, merged_dir, tmp_path):
    """`dscoder serve --lora`: over HTTP, the same completion as the merged checkpoint."""
    import httpx

    from serve_live import dscoder_serve

    def served(*args: str) -> str:
        with dscoder_serve([*args, "--log-level", "warning"], tmp_path / "serve.log", bound=180) as (_, url):
            body = {"model": httpx.get(url + "/v1/models", timeout=10).json()["data"][0]["id"],
                    "prompt": "def add(a, b):\n", "max_tokens": 12, "temperature": 0}
            return httpx.post(url + "/v1/completions", json=body, timeout=60).json()["choices"][0]["text"]

    # The merged checkpoint's output differs from the base's (test_complete_with_lora_uses_the_adapter).
    assert served("--model", str(bases["llama"]), "--lora", str(adapters["llama"][1])) == \
        served("--model", str(merged_dir))
