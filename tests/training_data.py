"""A real corpus and model directories for the training tests (tests/train), built once per session.

The corpus is made the way a user makes one: a BPE tokenizer trained by `train_tokenizer` on a
few packages of Python's standard library, then `dscoder data build` over them (FIM on, a
validation split of whole repositories, several shards). Small on purpose: a 512-token
vocabulary and 64-token rows keep every test step in milliseconds.
"""

from __future__ import annotations

import json
import shutil
import sysconfig
from pathlib import Path

import pytest

from dscoder.data.pipeline import BuildConfig, build
from dscoder.model.config import ModelConfig
from dscoder.model.presets import get_preset
from dscoder.tokenizer.tokenizer import Tokenizer
from dscoder.tokenizer.train import train_tokenizer

PACKAGES = ("json", "email", "http", "logging", "urllib", "importlib", "concurrent", "xmlrpc", "wsgiref",
            "sqlite3", "dbm", "html")


@pytest.fixture(scope="session")
def stdlib_sources(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("stdlib")
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    for name in PACKAGES:
        shutil.copytree(stdlib / name, root / name, ignore=shutil.ignore_patterns("__pycache__", "test*"))
    return root


@pytest.fixture(scope="session")
def tiny_tokenizer(stdlib_sources, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("tokenizer")
    train_tokenizer([stdlib_sources], 512, out, show_progress=False)
    return out


@pytest.fixture(scope="session")
def tiny_corpus(stdlib_sources, tiny_tokenizer, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("corpus")
    build(BuildConfig(sources=[str(stdlib_sources)], out=str(out), tokenizer=str(tiny_tokenizer / "tokenizer.json"),
                      split=True, seq_len=64, shard_sequences=256, val_fraction=0.2, decontaminate=False, workers=1),
          progress=None)
    return out


def model_dir(root: Path, preset: str, tokenizer_dir: Path, **changes) -> Path:
    """A directory with a preset's config.json (vocabulary and special ids of the tokenizer) and the tokenizer:
    what `dscoder train pretrain --scratch --model DIR` starts from."""
    tok = Tokenizer.load(tokenizer_dir / "tokenizer.json")
    fields = {"vocab_size": tok.vocab_size, "bos_token_id": tok.bos_id, "eos_token_id": tok.eos_id,
              "rope_scaling": None, **changes}
    cfg: ModelConfig = get_preset(preset).config.replace(**fields)
    root.mkdir(parents=True, exist_ok=True)
    (root / "config.json").write_text(json.dumps(cfg.to_hf()))
    tok.save(root)
    return root


@pytest.fixture(scope="session")
def llama_dir(tiny_tokenizer, tmp_path_factory) -> Path:
    return model_dir(tmp_path_factory.mktemp("llama"), "tiny-llama", tiny_tokenizer)


@pytest.fixture(scope="session")
def v2_dir(tiny_tokenizer, tmp_path_factory) -> Path:
    return model_dir(tmp_path_factory.mktemp("v2"), "tiny-v2-lite", tiny_tokenizer)


def tiny_settings(**changes) -> dict:
    """--set values of a run of a few milliseconds per step."""
    base = {"seq_len": 64, "global_batch": 4, "micro_batch": 2, "steps": 6, "lr": 3e-3, "warmup_steps": 2,
            "warmup_max_fraction": 0.5, "schedule": "v2-cosine", "eval_every": 0, "eval_rows": 8, "fim_eval": 0,
            "save_every": 0}
    base.update(changes)
    return base


def random_model_dir(directory: Path, tok: Tokenizer, std: float, preset: str = "tiny-llama", seed: int = 0,
                     context: int | None = None) -> Path:
    """A randomly initialised `preset` over `tok`'s vocabulary (std `std`), saved with the tokenizer as an HF
    directory that every loader and trainer takes; `context` replaces the preset's max_position_embeddings."""
    import torch

    from dscoder.formats.hf import save_hf_dir
    from dscoder.model.transformer import Transformer

    cfg = get_preset(preset).config.replace(vocab_size=tok.vocab_size, bos_token_id=tok.bos_id,
                                            eos_token_id=tok.eos_id, rope_scaling=None)
    if context is not None:
        cfg = cfg.replace(max_position_embeddings=context)
    directory.mkdir(parents=True, exist_ok=True)
    save_hf_dir(Transformer(cfg).init_weights(std, torch.Generator().manual_seed(seed)), directory)
    tok.save(directory)
    return directory
