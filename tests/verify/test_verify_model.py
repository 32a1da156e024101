"""Candidates from a real model through the real serving engine, judged in the real sandbox.

The model is the suite's tiny random model over DeepSeek-Coder's vocabulary: its text is noise,
so the prompts here make any text valid code (the completion continues a comment and stops at
the line's end) and the tests decide by something the host can compute for each candidate (the
parity of its program's length), so which candidates pass is known before they run."""

from __future__ import annotations

from dataclasses import replace

import pytest

from dscoder.infer.generate import SamplingParams, generate
from dscoder.verify import candidates, model_tests, run, select
from dscoder.verify.program import program
from dscoder.verify.settings import VerifySettings
from dscoder.verify.tests import TestsError, from_asserts
from serve_live import settle
from verify_helpers import drive, engine, pool, tiny  # noqa: F401  (fixtures)

PROMPT = "def f():\n    return 1\n# "  # every completion is a comment: the code always parses


def base(tok, max_tokens: int = 12) -> SamplingParams:
    return SamplingParams(max_new_tokens=max_tokens, stop=("\n", "\r"), stop_token_ids=(tok.eos_id,))


def test_the_first_candidate_is_greedy_decoding_and_a_candidate_does_not_depend_on_n(tiny, engine):
    model, tok = tiny
    ids = tok.encode(PROMPT)
    settings = VerifySettings(n=6)
    many = drive(_collect(engine, ids, candidates.params_for(settings, base(tok))))
    few = drive(_collect(engine, ids, candidates.params_for(replace(settings, n=3), base(tok))))
    [greedy] = generate(model, tok, PROMPT, base(tok))
    assert many[0].text == greedy.text, "candidate 0 is plain greedy decoding"
    assert [c.text for c in few] == [c.text for c in many[:3]], "candidate i is the same whatever N is"
    assert len({c.text for c in many}) > 1, "the sampled candidates differ from each other"
    assert all(c.code == PROMPT + c.text for c in many)


async def _collect(engine, ids, params):
    for c in await candidates.collect(engine, ids, params, lambda text: PROMPT + text):
        yield c


PARITY = "assert len(open('program.py').read()) % 2 == 0"  # a check the host can predict per candidate


def predicted(codes: list[str], suite) -> list[bool]:
    return [len(program(code, suite).source) % 2 == 0 for code in codes]


def test_a_verified_generation_chooses_the_first_candidate_that_passes(tiny, engine, pool):
    _, tok = tiny
    suite = from_asserts([PARITY], "parity")
    settings = VerifySettings(n=8, timeout=10.0)
    judge = select.Judge(pool, suite, settings.timeout)
    events = drive(run.generate(engine, tok.encode(PROMPT), base(tok), settings, lambda t: PROMPT + t, judge,
                                stop_at_first=False))
    result = events[-1]
    assert isinstance(result, select.Result) and all(isinstance(e, select.Judged) for e in events[:-1])
    assert sorted(e.index for e in events[:-1]) == list(range(8)), "every candidate's verdict, each once"
    expected = predicted([j.candidate.code for j in result.judged], suite)
    assert [j.outcome.passed for j in result.judged] == expected
    assert 0 < sum(expected) < 8, "the candidates of this seed are a mix of passes and failures"
    assert result.passed and result.chosen.index == expected.index(True)
    assert result.summary() == f"{sum(expected)}/8 passed; chose candidate {expected.index(True) + 1}"

    early = drive(run.generate(engine, tok.encode(PROMPT), base(tok), settings, lambda t: PROMPT + t, judge))[-1]
    assert early.chosen.index == result.chosen.index, "stopping at the first pass changes nothing chosen"
    assert {j.index for j in early.judged} >= set(range(early.chosen.index + 1)), "every earlier one was judged"


def test_when_none_passes_the_best_comes_back_with_its_failures(tiny, engine, pool):
    _, tok = tiny
    suite = from_asserts(["assert f() == 1", "assert f() == 2"], "listed")
    settings = VerifySettings(n=4)
    judge = select.Judge(pool, suite, settings.timeout)
    result = drive(run.generate(engine, tok.encode(PROMPT), base(tok), settings, lambda t: PROMPT + t, judge))[-1]
    assert not result.passed and len(result.judged) == 4
    assert result.chosen.index == 0 and result.chosen.outcome.passed_checks == 1, "ties go to the earliest (greedy)"
    assert result.chosen.outcome.failures == ["FAILED assert f() == 2 (listed:2): AssertionError"]
    assert result.summary() == "0/4 passed; none passed: chose candidate 1, the most checks passed (1/2)"


def test_stopping_at_the_first_pass_frees_the_engine(tiny, engine, pool):
    _, tok = tiny
    suite = from_asserts(["assert f() == 1"], "listed")
    settings = VerifySettings(n=8)
    judge = select.Judge(pool, suite, settings.timeout)
    result = drive(run.generate(engine, tok.encode(PROMPT), base(tok, max_tokens=200), settings,
                                lambda t: PROMPT + t, judge))[-1]
    assert result.passed and result.chosen.index == 0
    assert len(result.judged) < 8, "the run stopped before every candidate was judged"
    settle(engine)  # the candidates still decoding were cancelled: nothing runs, no KV block is held


def test_model_tests_are_written_before_and_apart_from_the_candidates(tiny, engine):
    """The tiny model writes no usable assert: that is said, naming the function, not guessed around."""
    _, tok = tiny
    code = 'def add(a, b):\n    """Sum."""'
    with pytest.raises(TestsError, match="the model wrote no usable assert for add in 4 tries"):
        drive(_one(model_tests.write(engine, tok, code, VerifySettings(), base(tok, 16))))


async def _one(coroutine):
    yield await coroutine


def test_tests_for_says_how_to_give_tests_when_none_are_found(tiny, engine):
    _, tok = tiny
    with pytest.raises(TestsError, match=r"give a test file \(--tests\).*--model-tests"):
        drive(_one(run.tests_for(engine, "write me a function", VerifySettings(), base(tok))))


def test_a_candidate_that_meets_until_ends_there_with_the_text_it_would_have_begun_with(tiny, engine):
    """`until` (a chat answer's closed code block, in use) cancels the candidate's decoding: its text is
    the start of what it would have written, decoding being causal."""
    _, tok = tiny
    ids = tok.encode(PROMPT)
    params = candidates.params_for(VerifySettings(n=3), base(tok, max_tokens=40))
    params = [replace(p, stop=()) for p in params]
    whole = drive(_collect(engine, ids, params))
    cut = drive(_until(engine, ids, params, lambda text: len(text) >= 12))
    for full, short in zip(whole, cut):
        assert len(short.text) >= 12 and full.text.startswith(short.text) and short.tokens < full.tokens
    settle(engine)


async def _until(engine, ids, params, until):
    for c in await candidates.collect(engine, ids, params, lambda text: PROMPT + text, until=until):
        yield c
