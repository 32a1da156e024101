"""generate/stream: exact greedy decoding, sampling controls, stop rules and streaming."""

from __future__ import annotations

from collections import Counter

import pytest
import torch

from dscoder.infer.generate import GenerationError, SamplingParams, generate, next_token_scores, stream
from dscoder.model.transformer import Transformer
from dscoder.model.presets import get_preset
from dscoder.tokenizer.tokenizer import Tokenizer
from conftest import on_device, randomize_

PROMPT = "def fibonacci(n):\n    "


@pytest.fixture(scope="module")
def tokenizer(smollm2_gguf) -> Tokenizer:
    return Tokenizer.load(smollm2_gguf)


@pytest.fixture(scope="module", params=["tiny-llama-gqa", "tiny-v2"])
def model(request, tokenizer) -> Transformer:
    """A random tiny model over the real SmolLM2 vocabulary, so its output is real (if odd) text."""
    cfg = get_preset(request.param).config.replace(vocab_size=tokenizer.vocab_size)
    return randomize_(Transformer(cfg), seed=3, std=0.3).eval()


@torch.no_grad()
def test_greedy_cached_decoding_equals_argmax_of_full_forward(model, tokenizer, device):
    model = on_device(model, device)
    steps = 64
    out = generate(model, tokenizer, PROMPT, SamplingParams(max_new_tokens=steps, logprobs=True))[0]
    assert len(out.token_ids) == steps and out.finish_reason == "length"
    seq = tokenizer.encode(PROMPT)
    for token, logprob in zip(out.token_ids, out.logprobs):
        logits = model(torch.tensor([seq], device=device))[0][0, -1]
        assert token == int(logits.argmax())
        assert logprob == pytest.approx(float(logits.log_softmax(-1)[token]), abs=1e-4)
        seq.append(token)
    assert out.text == tokenizer.decode(out.token_ids, skip_special_tokens=True)


@torch.no_grad()
def test_logits_to_keep_computes_only_the_last_positions(model):
    tokens = torch.randint(0, model.config.vocab_size, (2, 9), generator=torch.Generator().manual_seed(1))
    full = model(tokens)[0]
    last = model(tokens, logits_to_keep=3)[0]
    assert last.shape == (2, 3, model.config.vocab_size)
    torch.testing.assert_close(last, full[:, -3:])


def test_stream_deltas_add_up_to_the_completion(model, tokenizer, device):
    model = on_device(model, device)
    params = SamplingParams(max_new_tokens=48, temperature=1.0, seed=7)
    deltas = list(stream(model, tokenizer, PROMPT, params))
    assert "".join(d.text for d in deltas) == generate(model, tokenizer, PROMPT, params)[0].text
    assert deltas[-1].finish_reason == "length" and all(d.finish_reason is None for d in deltas[:-1])


def test_stop_string_is_cut_and_never_streamed(model, tokenizer):
    full = generate(model, tokenizer, PROMPT, SamplingParams(max_new_tokens=48))[0].text
    stop = full[len(full) // 2: len(full) // 2 + 3]
    deltas = list(stream(model, tokenizer, PROMPT, SamplingParams(max_new_tokens=48, stop=(stop, "never-there"))))
    text = "".join(d.text for d in deltas)
    assert text == full[: full.index(stop)]
    assert deltas[-1].finish_reason == "stop"
    released = ""
    for d in deltas:  # at no point did the released text run into the stop string
        released += d.text
        assert stop not in released and released == full[: len(released)]


def test_stop_token_ends_the_output_without_emitting_it(model, tokenizer):
    greedy = generate(model, tokenizer, PROMPT, SamplingParams(max_new_tokens=20))[0]
    stop_id = greedy.token_ids[5]
    out = generate(model, tokenizer, PROMPT, SamplingParams(max_new_tokens=20, stop_token_ids=(stop_id,)))[0]
    first = greedy.token_ids.index(stop_id)
    assert out.token_ids == greedy.token_ids[:first] and out.finish_reason == "stop"
    assert out.text == tokenizer.decode(greedy.token_ids[:first], skip_special_tokens=True)


def test_seeded_sampling_is_reproducible_and_truncation_to_one_token_is_greedy(model, tokenizer):
    def run(**kw):
        return generate(model, tokenizer, PROMPT, SamplingParams(max_new_tokens=16, **kw))[0].token_ids

    assert run(temperature=1.0, seed=1) == run(temperature=1.0, seed=1)
    assert run(temperature=1.0, seed=1) != run(temperature=1.0, seed=2)
    greedy = run()
    assert run(temperature=1.5, top_k=1, seed=3) == greedy
    assert run(temperature=1.5, top_p=1e-6, seed=3) == greedy
    assert run(temperature=1.5, min_p=1.0, seed=3) == greedy


def test_penalties_follow_their_definitions():
    logits = torch.tensor([2.0, -1.0, 0.5, 3.0])
    rep = next_token_scores(logits, [0, 1], Counter(), SamplingParams(repetition_penalty=2.0))
    assert rep.tolist() == [1.0, -2.0, 0.5, 3.0]  # positive divided, negative multiplied
    freq = next_token_scores(logits, [3, 3], Counter({3: 2}),
                             SamplingParams(frequency_penalty=0.5, presence_penalty=0.25))
    assert freq.tolist() == [2.0, -1.0, 0.5, 3.0 - 2 * 0.5 - 0.25]
    top_p = next_token_scores(logits, [], Counter(), SamplingParams(temperature=1.0, top_p=0.7))
    assert torch.isfinite(top_p).tolist() == [True, False, False, True]  # 0.68 < 0.7: the next one is kept too


@pytest.mark.parametrize("params, message", [
    (SamplingParams(temperature=-1), "temperature must be >= 0"),
    (SamplingParams(top_p=0), "top_p must be in"),
    (SamplingParams(stop=("",)), "stop strings must not be empty"),
    (SamplingParams(max_new_tokens=5000), r"prompt of \d+ tokens \+ max_new_tokens=5000 exceeds the model.s context of (512|2048)"),
])
def test_bad_requests_are_named(model, tokenizer, params, message):
    with pytest.raises(GenerationError, match=message):
        generate(model, tokenizer, PROMPT, params)


def test_real_model_completes_code(tokenizer):
    from dscoder.hub import load_model

    model = load_model()
    out = generate(model, tokenizer, "def factorial(n):\n    if n == 0:\n        return 1\n    return",
                   SamplingParams(max_new_tokens=12, stop=("\n",)))[0]
    assert out.text == " n * factorial(n - 1)" and out.finish_reason == "stop"


@torch.no_grad()
@pytest.mark.parametrize("cache_dtype", [torch.float16, torch.bfloat16])
def test_a_16_bit_cache_halves_its_memory_and_decodes_close_to_full_precision(model, cache_dtype):
    """Transformer.cache_dtype: keys/values (or the MLA latent) are rounded once when cached."""
    tokens = torch.randint(0, model.config.vocab_size, (1, 40), generator=torch.Generator().manual_seed(2))
    full = model(tokens)[0][0]
    model.cache_dtype = cache_dtype
    try:
        cache = model.new_cache(1, 40)
        assert cache[0].buffers[0].dtype == cache_dtype
        fp32 = model.new_cache(1, 1, torch.float32)
        assert sum(c.nbytes_per_token for c in cache) * 2 == sum(c.nbytes_per_token for c in fp32)
        logits = [model(tokens[:, :20], 0, cache)[0][0]]  # a prompt, then one token at a time (native decode path)
        logits += [model(tokens[:, i:i + 1], i, cache)[0][0] for i in range(20, 40)]
    finally:
        model.cache_dtype = None
    error = (torch.cat(logits) - full).abs().max() / full.abs().max()
    assert 0 < error < 10 * torch.finfo(cache_dtype).eps  # rounding once, amplified a little by the layers


# ---------------------------------------------------------------------------- against transformers' warpers
def _transformers_filtered(logits: torch.Tensor, params: SamplingParams) -> torch.Tensor:
    """transformers' warpers for `params`, chosen and ordered as its `generate` chooses them."""
    from transformers import MinPLogitsWarper, TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper

    warpers = [TemperatureLogitsWarper(params.temperature), TopKLogitsWarper(params.top_k) if params.top_k else None,
               TopPLogitsWarper(params.top_p), MinPLogitsWarper(params.min_p)]  # top_p 1.0 and min_p 0 applied too
    scores = logits[None].clone()
    for warper in filter(None, warpers):
        scores = warper(None, scores)
    return scores[0]


def _logit_rows() -> list[tuple[str, torch.Tensor]]:
    gen = torch.Generator().manual_seed(0)
    rows = [(f"randn*{spread} over {vocab}", torch.randn(vocab, generator=gen) * spread)
            for vocab in (7, 64, 2048) for spread in (0.3, 2.0, 8.0)]
    rows.append(("a peaked row whose tail underflows to probability 0", torch.cat([torch.tensor([200.0]),
                                                                                  torch.randn(63, generator=gen)])))
    rows.append(("extreme values", torch.tensor([3e4, -3e4, 0.0, 1e-30, -1e-30, 88.0, -88.0, 1.0])))
    rows.append(("ties, rounded", torch.round(torch.randn(256, generator=gen) * 2)))
    rows.append(("all tied", torch.zeros(16)))
    rows.append(("two tied at the top", torch.tensor([4.0, 4.0, 1.0, 0.5, 0.0, -2.0])))
    return rows


SETTINGS = [dict(temperature=t, top_k=k, top_p=p, min_p=m)
            for t in (0.6, 1.0, 1.7) for k in (0, 1, 3, 40, 5000) for p in (1.0, 0.95, 0.5, 0.1) for m in (0.0, 0.05, 0.5)]


@pytest.mark.parametrize("name,logits", _logit_rows(), ids=lambda v: v if isinstance(v, str) else "")
def test_filters_keep_the_candidates_of_transformers_warpers(name, logits):
    """Same logits, same candidates (tokens left with a probability above 0) and the same
    renormalised probabilities, bit for bit; the one deliberate difference is ties at top-p's
    cut, where transformers keeps whichever of the tied tokens its sort puts last and we keep
    them all (next_token_scores explains why): there ours keeps a superset, the extra tokens
    all tied with the least likely token both keep."""
    ties_at_cut = 0
    for setting in SETTINGS:
        params = SamplingParams(**setting)
        ours = next_token_scores(logits, [], Counter(), params)
        theirs = _transformers_filtered(logits, params)
        ours_p, theirs_p = ours.softmax(-1), theirs.softmax(-1)
        kept, kept_theirs = ours_p > 0, theirs_p > 0
        if torch.equal(kept, kept_theirs):
            assert torch.equal(ours_p, theirs_p), setting
            continue
        assert (kept | ~kept_theirs).all(), setting  # transformers keeps nothing we drop
        lowest = theirs[kept_theirs].min()
        assert (ours[kept & ~kept_theirs] == lowest).all(), setting  # ours adds only tokens tied at the cut
        assert setting["top_p"] < 1 and (theirs[kept_theirs] == lowest).sum() < (ours == lowest).sum()
        ties_at_cut += 1
    if "tie" not in name:
        assert ties_at_cut == 0  # without ties the sets are equal for every setting
    if name == "ties, rounded":
        assert ties_at_cut > 0  # the rows meant to reach the tie rule do reach it


def test_the_filters_do_not_depend_on_token_ids():
    """Permuting the vocabulary permutes the result: ties are kept or dropped together."""
    logits = torch.round(torch.randn(300, generator=torch.Generator().manual_seed(1)) * 2)
    order = torch.randperm(300, generator=torch.Generator().manual_seed(2))
    for setting in SETTINGS:
        params = SamplingParams(**setting)
        assert torch.equal(next_token_scores(logits, [], Counter(), params)[order],
                           next_token_scores(logits[order], [], Counter(), params)), setting


def test_min_p_applies_after_top_p_as_in_transformers_and_llama_cpp():
    """The order matters when both are set: top-p measures mass over what top-k left, then
    min-p drops tokens below min_p times the likeliest (a ratio renormalising does not change)."""
    logits = torch.tensor([0.4, 0.3, 0.1, 0.1, 0.1]).log()
    scores = next_token_scores(logits, [], Counter(), SamplingParams(temperature=1.0, top_p=0.5, min_p=0.3))
    assert torch.isfinite(scores).tolist() == [True, True, False, False, False]  # min-p first would keep one
