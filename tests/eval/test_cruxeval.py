"""CRUXEval: the prompts are the benchmark's own, the prediction is read from an answer as its
`postprocess_generation` reads it, the reference input and output of each problem pass by
execution and wrong ones fail (a sample here, all 800 in the slow run)."""

from __future__ import annotations

import hashlib

import pytest

from dscoder.execute.programs import Program, execute_many
from dscoder.tasks import cruxeval, load
from conftest import shared_data

# sha256 over the 800 prompts (each followed by a NUL), made with facebookresearch/cruxeval's own
# prompts.py (commit 190faf1: make_direct_output_prompt, make_direct_input_prompt and the two
# make_cot_* functions) on ../shared/data/cruxeval/cruxeval.jsonl: ours must be the same text.
PROMPT_DIGESTS = {
    "output": "08ca6b019618b8da508ba1ab6941c4cfaff8027328f4514e2a9b62e01555c3e5",
    "input": "fad1d095c52e4fc6ef651ba7c9d2939aa18ae99960488d29243b141ca10fff08",
    "output-cot": "85a35ce2eeefb826e78b9074c8ec0cbd767ce6d985d8ebe09d89057f44ab10a3",
    "input-cot": "1205ddf9b6c5c86d454a1fd45cd1c38a3642fee7b950082b1e33e998530eaf87",
}


def verdicts(programs: list[Program], timeout: float = 10.0) -> list[str]:
    got = dict(execute_many(programs, timeout=timeout, workers=2))
    return [got[i].status for i in range(len(programs))]


def problems(subset: str):
    shared_data("cruxeval", "cruxeval.jsonl")
    return load("cruxeval", subset)


@pytest.mark.parametrize("subset", cruxeval.SUBSETS)
def test_prompts_are_cruxevals_own(subset):
    loaded = problems(subset)
    assert len(loaded) == 800 and loaded[0].task_id == "sample_0" and {p.group for p in loaded} == {subset}
    digest = hashlib.sha256()
    for problem in loaded:
        digest.update(problem.prompt.encode() + b"\0")
    assert digest.hexdigest() == PROMPT_DIGESTS[subset]
    first = loaded[0]
    assert first.instruction == first.prompt and first.stops == ("[/ANSWER]",)
    assert first.max_new_tokens == (1024 if subset.endswith("-cot") else 256)
    # The question about sample_0, and where the model takes over.
    asked = ("assert f([1, 1, 3, 1, 3, 1]) == ??" if subset.startswith("output")
             else "assert f(??) == [(4, 1), (4, 1), (4, 1), (4, 1), (2, 3), (2, 3)]")
    assert first.prompt.endswith(f"{asked}\n[/PYTHON]\n" + ("[THOUGHT]\n" if subset.endswith("-cot") else "[ANSWER]\n"))


def test_predictions_are_read_as_cruxeval_reads_them():
    read = cruxeval.prediction
    assert read('assert f("hi") == "bhihia"\n', "output") == '"bhihia"'
    assert read('"bhihia"', "output") == '"bhihia"'  # no assertion: the whole answer
    assert read("assert f(1) == 2 == 3", "output") == "2"  # CRUXEval keeps what lies between the first two ==
    assert read('assert f("ba", "nana") == "banana"', "input") == 'f("ba", "nana")'
    assert read("f(16)", "input") == "f(16)"
    # Chain of thought: what follows [ANSWER]; the reasoning's own "==" is not the answer.
    thought = "We know that f(??) == 17, so ?? is 16.\n[/THOUGHT]\n[ANSWER]\nassert f(16) == 17\n"
    assert read(thought, "input", cot=True) == "f(16)"
    assert read(thought.replace("f(16) == 17\n", "f(16) == 17\n[/ANSWER]\nmore"), "output", cot=True) == "17"
    # An instruct reply: the tags or a fenced block around the assertion.
    chat = cruxeval.chat_prediction
    assert chat("[ANSWER]\nassert f(17) == 17\n[/ANSWER]", "output") == "17"
    assert chat("Sure.\n```python\nassert f(17) == 17\n```\nDone.", "output") == "17"
    assert chat("[ANSWER]\n```python\nassert f(\"ba\", \"nana\") == \"banana\"\n```\n[/ANSWER]", "input") == \
        'f("ba", "nana")'


def _wrong(rows: list, i: int, field: str) -> str:
    """Another problem's value for `field`, different from this one's."""
    others = (rows[j % len(rows)].extra[field] for j in range(i + 1, i + len(rows)))
    return next(value for value in others if value != rows[i].extra[field])


@pytest.mark.parametrize("mode", ["output", "input"])
def test_reference_predictions_pass_and_wrong_ones_fail(mode):
    loaded = problems(mode)
    picked = [0, 400, 258, 344]  # 258 and 344: inputs using a global and a lambda
    programs, expected = [], []
    for i in picked:
        problem, given, output = loaded[i], loaded[i].extra["input"], loaded[i].extra["output"]
        wrong = (f"assert f({given}) == {_wrong(loaded, i, 'output')}" if mode == "output"
                 else f"assert f({_wrong(loaded, i, 'input')}) == {output}")
        programs += [Program("python", problem.program(problem.reference)),
                     Program("python", problem.program(wrong))]
        expected += ["passed", "failed"]
    first = loaded[0]
    programs += [Program("python", first.answer_program(f"[ANSWER]\n{first.reference}[/ANSWER]")),
                 Program("python", first.answer_program(f"```python\n{first.reference}```"))]
    expected += ["passed", "passed"]
    cot = problems(f"{mode}-cot")[0]
    programs += [Program("python", cot.program("Step by step... f returns the list.\n" + cot.reference))]
    expected += ["passed"]
    assert verdicts(programs) == expected


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["output", "input"])
def test_all_800_reference_predictions_pass(mode):
    loaded = problems(mode)
    statuses = verdicts([Program("python", p.program(p.reference)) for p in loaded])
    assert statuses == ["passed"] * 800, [p.task_id for p, s in zip(loaded, statuses) if s != "passed"]
