"""Speculative decoding returns exactly the target's greedy output, whatever the draft proposes."""

from __future__ import annotations

import pytest
import torch

from dscoder.infer.generate import GenerationError
from dscoder.model.transformer import Transformer
from dscoder.model.presets import get_preset
from dscoder.infer.speculative import prompt_lookup_generate, speculative_generate
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


@pytest.mark.parametrize("target_name", ["tiny-llama-gqa", "tiny-v2"])
@pytest.mark.parametrize("k", [1, 3, 8])
def test_prompt_lookup_output_is_the_targets_greedy_output(target_name, k):
    target = tiny(target_name, seed=1)
    for seed in (4, 5):
        prompt = torch.randint(0, 256, (12,), generator=torch.Generator().manual_seed(seed)).tolist()
        prompt = prompt + prompt[:6]  # something to look up, right or wrong
        for ngram_max in (1, 3):
            tokens, stats = prompt_lookup_generate(target, prompt, 40, k=k, ngram_max=ngram_max)
            assert tokens == greedy(target, prompt, 40)
            assert stats.target_passes <= 40 and stats.proposed > 0


def attends_to_nothing(name: str) -> Transformer:
    """A target whose next token depends on the current token only (attention writes nothing), so
    its greedy continuation of a token that appeared earlier is what followed it there."""
    model = tiny(name, seed=1)
    with torch.no_grad():
        for layer in model.layers:
            layer.self_attn.o_proj.weight.zero_()
    return model


@pytest.mark.parametrize("target_name, first", [("tiny-llama-gqa", 3), ("tiny-v2", 2)])
@pytest.mark.parametrize("k", [1, 4, 8])
def test_prompt_lookup_accepts_a_span_copied_from_the_prompt(target_name, first, k):
    target = attends_to_nothing(target_name)
    span = [first] + greedy(target, [first], 15)
    assert len(set(span)) == len(span)  # no token repeats, so every lookup lands in the one copy
    prompt = span + [first]  # the model will copy the rest of the span
    tokens, stats = prompt_lookup_generate(target, prompt, 15, k=k)
    assert tokens == greedy(target, prompt, 15) == span[1:]
    assert stats.acceptance == 1.0 and stats.target_passes == -(-15 // (k + 1))
    # the model falls into a loop: one token per pass until a token repeats, then k + 1 per pass
    # (the loop is shorter than k; a match overlapping the tail repeats its period)
    chain = [first] + greedy(target, [first], 60)
    fresh = next(i for i, token in enumerate(chain) if token in chain[:i])
    tokens, stats = prompt_lookup_generate(target, [first], 60, k=k)
    assert tokens == chain[1:]
    assert stats.acceptance == 1.0 and stats.target_passes == fresh + -(-(60 - fresh) // (k + 1))


@pytest.mark.parametrize("target_name", ["tiny-llama-gqa", "tiny-v2"])
def test_prompt_lookup_without_a_match_is_one_token_per_pass(target_name):
    target = tiny(target_name, seed=1)
    prompt = list(range(10, 22))
    expected = greedy(target, prompt, 30)
    seq = prompt + expected[:-1]  # the sequence any lookup sees
    assert len({tuple(seq[i:i + 3]) for i in range(len(seq) - 2)}) == len(seq) - 2  # no trigram repeats
    tokens, stats = prompt_lookup_generate(target, prompt, 30, k=4, ngram_min=3)
    assert tokens == expected
    assert stats.target_passes == 30 and stats.proposed == stats.accepted == 0


def test_prompt_lookup_stop_token_and_errors():
    target = attends_to_nothing("tiny-llama-gqa")
    span = [3] + greedy(target, [3], 15)
    tokens, stats = prompt_lookup_generate(target, span + [3], 15, k=8, stop_token_ids=[span[6]])
    assert tokens == span[1:6] and stats.target_passes == 1  # the stop came inside an accepted proposal
    target = tiny("tiny-llama-gqa", seed=1)
    expected = greedy(target, [5, 6, 7], 30)
    tokens, _ = prompt_lookup_generate(target, [5, 6, 7], 30, k=3, stop_token_ids=[expected[9]])
    assert tokens == expected[: expected.index(expected[9])]
    with pytest.raises(GenerationError, match="the prompt is empty"):
        prompt_lookup_generate(target, [], 5)
    with pytest.raises(GenerationError, match="k and max_new_tokens must be at least 1"):
        prompt_lookup_generate(target, [5], 5, k=0)
    with pytest.raises(GenerationError, match="k=16 proposed tokens is too many: at most 15"):
        prompt_lookup_generate(target, [5], 5, k=16)
    with pytest.raises(GenerationError, match="need 1 <= ngram_min <= ngram_max"):
        prompt_lookup_generate(target, [5], 5, ngram_max=2, ngram_min=3)
    with pytest.raises(GenerationError, match="exceeds the target model's context of 512"):
        prompt_lookup_generate(target, [5], 600)


@torch.no_grad()
def test_a_quantized_target_with_a_different_real_draft_returns_its_own_greedy_output(smollm2_gguf):
    """The embedded model as int4 target; as draft, its first 6 of 30 layers in int8 (same
    tokenizer, different network): a draft that is often wrong, so verification must reject.
    The output is still exactly what the target alone decodes greedily (`generate`)."""
    from dscoder.hub import load_model
    from dscoder.infer.generate import SamplingParams, generate
    from dscoder.model.quant import quantize_model
    from dscoder.tokenizer.tokenizer import Tokenizer

    tokenizer = Tokenizer.load(smollm2_gguf)
    target = load_model(smollm2_gguf, quant="int4")
    full = load_model(smollm2_gguf)
    draft = Transformer(full.config.replace(num_hidden_layers=6)).eval()
    draft.load_state_dict({k: v for k, v in full.state_dict().items()
                           if not k.startswith("layers.") or int(k.split(".")[1]) < 6})
    draft = quantize_model(draft, "int8")
    prompt = "def is_prime(n):\n    if n < 2:\n        return False\n"
    expected = generate(target, tokenizer, prompt, SamplingParams(max_new_tokens=40))[0].token_ids
    tokens, stats = speculative_generate(target, draft, tokenizer.encode(prompt), 40, k=4)
    assert tokens == expected
    assert 0 < stats.accepted < stats.proposed  # the draft was right sometimes and rejected at least once
    assert stats.target_passes < 40  # and the accepted guesses saved target passes
