"""The embedded default model (SmolLM2-135M-Instruct, Q4_1 GGUF) through our importer vs transformers.

Tokens come from transformers' tokenizer for the same file: our tokenizer is tested on
its own; here only the network and the GGUF path are under test.
"""

from __future__ import annotations

import pytest
import torch

from conftest import on_device
from dscoder.hub import load_model


@pytest.fixture(scope="module")
def models(smollm2_gguf):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    kw = dict(gguf_file=smollm2_gguf.name)
    ref = AutoModelForCausalLM.from_pretrained(smollm2_gguf.parent, dtype=torch.float32, **kw).eval()
    tok = AutoTokenizer.from_pretrained(smollm2_gguf.parent, **kw)
    return load_model(), ref, tok  # no argument: the embedded default


@torch.no_grad()
def greedy(model, ids: torch.Tensor, steps: int) -> list[int]:
    cache = model.new_cache(1, ids.shape[1] + steps)
    logits, _ = model(ids, 0, cache)
    out, pos = [], ids.shape[1]
    for _ in range(steps):
        out.append(int(logits[0, -1].argmax()))
        logits, _ = model(torch.tensor([out[-1:]]), pos, cache)
        pos += 1
    return out


@torch.no_grad()
def test_logits_agree_with_transformers_loading_the_same_gguf(models):
    ours, ref, tok = models
    ids = torch.tensor([tok.encode("import os\n\ndef list_python_files(root):\n    \"\"\"Yield every .py path.\"\"\"\n")])
    expected = ref(ids).logits
    got, _ = ours(ids)
    assert ((got - expected).abs().max() / expected.abs().max()).item() <= 1e-3


@torch.no_grad()
def test_greedy_code_continuation_is_sensible_and_identical_to_transformers(models, device):
    ours, ref, tok = models
    ours, ref = on_device(ours, device), on_device(ref, device)
    prompt = "def factorial(n):\n    if n == 0:\n        return 1\n    return"
    ids = torch.tensor([tok.encode(prompt)], device=device)
    tokens = greedy(ours, ids, 12)
    assert tokens == ref.generate(ids, max_new_tokens=12, do_sample=False)[0, ids.shape[1]:].tolist()
    assert tok.decode(tokens).startswith(" n * factorial(n - 1)")
