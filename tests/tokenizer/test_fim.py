"""FIM prompts with the real DeepSeek-Coder vocabularies, and a clear refusal without FIM tokens."""

from __future__ import annotations

import json
import pytest

from conftest import shared_data
from dscoder.tokenizer.fim import DEEPSEEK_FIM, FimUnsupportedError, fim_prompt, fim_tokens
from dscoder.tokenizer.tokenizer import Tokenizer

PREFIX = "def mean(xs):\n    total = "
SUFFIX = "\n    return total / len(xs)\n"


def vocab(name: str) -> Tokenizer:
    return Tokenizer.load(shared_data("tokenizers", f"ggml-vocab-{name}.gguf"))


@pytest.fixture(scope="module")
def coder() -> Tokenizer:
    return vocab("deepseek-coder")


@pytest.fixture(scope="module")
def coder_v2(tmp_path_factory) -> Tokenizer:
    """The V2 layout: the DeepSeek LLM vocabulary with Coder-V2's FIM tokens at 100002-100004."""
    directory = vocab("deepseek-llm").save(tmp_path_factory.mktemp("v2"))
    spec = json.loads((directory / "tokenizer.json").read_text())
    fim = {100002: "<｜fim▁hole｜>", 100003: "<｜fim▁begin｜>", 100004: "<｜fim▁end｜>"}
    bpe_vocab = spec["model"]["vocab"]
    for token in [t for t, i in bpe_vocab.items() if i in fim]:
        del bpe_vocab[token]
    bpe_vocab.update({content: i for i, content in fim.items()})
    for added in spec["added_tokens"]:
        if added["id"] in fim:
            added.update(content=fim[added["id"]], special=True)
    (directory / "tokenizer.json").write_text(json.dumps(spec, ensure_ascii=False))
    return Tokenizer.load(directory)


def test_psm_prompt_text_is_exact():
    assert fim_prompt("a", "b") == "<｜fim▁begin｜>a<｜fim▁hole｜>b<｜fim▁end｜>"
    assert fim_prompt("a", "b", mode="spm") == "<｜fim▁hole｜>b<｜fim▁begin｜>a<｜fim▁end｜>"
    with pytest.raises(ValueError, match="FIM mode must be one of psm, spm"):
        fim_prompt("a", "b", mode="pms")


@pytest.mark.parametrize("mode", ["psm", "spm"])
def test_v1_fim_ids(coder, mode):
    assert fim_tokens(coder) == DEEPSEEK_FIM
    ids = coder.encode(fim_prompt(PREFIX, SUFFIX, mode=mode))
    body_prefix, body_suffix = coder.encode(PREFIX, add_bos=False), coder.encode(SUFFIX, add_bos=False)
    if mode == "psm":
        assert ids == [32013, 32016, *body_prefix, 32015, *body_suffix, 32017]
    else:
        assert ids == [32013, 32015, *body_suffix, 32016, *body_prefix, 32017]


def test_v2_fim_ids(coder_v2):
    ids = coder_v2.encode(fim_prompt(PREFIX, SUFFIX))
    assert ids[:2] == [100000, 100003] and ids[-1] == 100004 and 100002 in ids
    assert coder_v2.bos_id == 100000 and coder_v2.eos_id == 100001


def test_model_without_fim_tokens_is_told_so(smollm2_gguf):
    smol = Tokenizer.load(smollm2_gguf)
    with pytest.raises(FimUnsupportedError, match="SmolLM2 has no fill-in-the-middle tokens"):
        fim_tokens(smol, "SmolLM2")
