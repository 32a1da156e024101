"""Speculative decoding returns exactly the target's greedy output, whatever the draft proposes."""

from __future__ import annotations

import pytest
import torch

from dscoder.generate import GenerationError
from dscoder.model import Transformer
from dscoder.presets import get_preset
from dscoder.speculative import speculative_generate
from conftest import randomize_


def tiny(name: str, seed: int, **changes) -> Transformer:
    return randomize_(Transformer(get_preset(name).config.replace(**changes)), seed=seed, std=0.3).eval()


@torch.no_grad()
def greedy(model: Transformer, prompt: list[int], steps: int) -> list[int]:
    seq = list(prompt)
    for _ in range(steps):
        seq.append(int(model(torch.tensor([seq]))[0][0, -1].argmax()))
    return seq[len(prompt):]


@pytest.mark.parametrize("target_name", ["tiny-llama-gqa", "tiny-v2"])
@pytest.mark.parametrize("k", [1, 3, 5])
def test_output_is_the_targets_greedy_output(target_name, k):
    target = tiny(target_name, seed=1)
    prompt = torch.randint(0, 256, (12,), generator=torch.Generator().manual_seed(4)).tolist()
    expected = greedy(target, prompt, 40)
    for draft in (tiny("tiny-llama-mqa", seed=2), target):  # a poor draft and a perfect one
        tokens, stats = speculative_generate(target, draft, prompt, 40, k=k)
        assert tokens == expected
        if draft is target:
            assert stats.acceptance == 1.0 and stats.target_passes == -(-40 // (k + 1))


def test_a_draft_that_mostly_agrees_saves_target_passes():
    """A draft sharing the target's weights but one layer fewer still agrees often."""
    target = tiny("tiny-llama-gqa", seed=1)
    draft = Transformer(target.config.replace(num_hidden_layers=1)).eval()
    draft.load_state_dict({k: v for k, v in target.state_dict().items() if not k.startswith("layers.1.")})
    prompt = list(range(10, 22))
    tokens, stats = speculative_generate(target, draft, prompt, 48, k=4)
    assert tokens == greedy(target, prompt, 48)
    assert stats.target_passes < 48 and 0 < stats.acceptance <= 1


def test_stop_token_and_errors():
    target = tiny("tiny-llama-gqa", seed=1)
    prompt = [5, 6, 7]
    expected = greedy(target, prompt, 30)
    stop = expected[9]
    tokens, _ = speculative_generate(target, tiny("tiny-llama", seed=3), prompt, 30, k=3, stop_token_ids=[stop])
    assert tokens == expected[: expected.index(stop)]
    with pytest.raises(GenerationError, match="draft vocabulary \\(300\\) differs from the target's \\(256\\)"):
        speculative_generate(target, tiny("tiny-llama", seed=3, vocab_size=300), prompt, 5)
    with pytest.raises(GenerationError, match="exceeds the target model's context of 512"):
        speculative_generate(target, target, prompt, 600)
