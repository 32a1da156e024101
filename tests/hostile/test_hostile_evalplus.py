"""HumanEval+ / MBPP+ checks against model code that attacks the comparison instead of solving the task.

The expected outputs are literals of the checks, built after each call returns, and the comparison
uses no name a sample could rebind (`dscoder.tasks.evalplus_oracle`). Each sample below is wrong and
tries to pass anyway: by patching what a comparison would use (`builtins`, `math`, numpy, the
`Counter.__eq__` machinery), by rebinding the checks' own helpers from inside the call, by lying
about equality or its type, by mutating its input so a root test becomes trivial, by defusing the
time limit, or by printing a fake end-of-checks line. Each must fail, through the real problems and
the one verdict function; the right answer passes in the same batch.
"""

from __future__ import annotations

import pytest

from dscoder.execute import harness
from dscoder.execute.programs import Program, execute_many
from dscoder.tasks import evalplus
from conftest import shared_data

# HumanEval/53 add(x, y); HumanEval/2 truncate_number (atol 1e-6); HumanEval/32 find_zero (|poly(x)| <= atol);
# Mbpp/88 freq_count (the canonical returns a Counter); Mbpp/737 check_str (judged only as None / not None).
TASKS = {"humaneval": ["HumanEval/53", "HumanEval/2", "HumanEval/32"], "mbpp": ["Mbpp/88", "Mbpp/737"]}

PATCH_EVERYTHING = (
    "import builtins, math, operator\n"
    "builtins.abs = lambda x: 0\nbuiltins.len = lambda x: 0\nbuiltins.isinstance = lambda *a: True\n"
    "builtins.type = lambda *a: int\nbuiltins.all = lambda *a: True\nbuiltins.any = lambda *a: True\n"
    "math.isclose = lambda *a, **k: True\noperator.eq = lambda *a: True\n"
    "try:\n    import numpy\n    numpy.allclose = numpy.isclose = lambda *a, **k: True\nexcept ImportError:\n    pass\n")

ATTACKS = {
    # name: (task, completion after the prompt)
    "eq_always_true": ("HumanEval/53", "    class E:\n        def __eq__(self, o):\n            return True\n"
                                       "    return E()\n"),
    # At module level, before the checks start: they reach nothing through these names.
    "patched_builtins_math_numpy": ("HumanEval/2", "    return 0.5\n" + PATCH_EVERYTHING),
    # During the call, rebind by name everything the checks define (they are locals: nothing changes).
    "rebind_the_checks_helpers": ("HumanEval/53", "    g = globals()\n    for name in ('check', 'same', 'close', 'plain', "
                                  "'run', 'root', 'digest', 'wrong', '_dscoder_evalplus', 'atol', 'fn'):\n"
                                  "        g[name] = lambda *a, **k: 0\n    return 0\n"),
    # A root test evaluates poly(xs, x) on xs as given: zeroing the caller's list would make any x a root.
    "zero_the_polynomial_in_place": ("HumanEval/32", "    xs[:] = [0] * len(xs)\n    return 0.0\n"),
    "print_a_fake_end_of_checks": ("HumanEval/53", f"    print({harness.MARKER + '0' * 32!r})\n    import os\n    os._exit(0)\n"),
    # Counter.__eq__ is Python code calling `isinstance` and `all`; patched, any Counter equals any dict.
    "counter_with_patched_isinstance_and_all": ("Mbpp/88", "\nimport builtins, collections\nWRONG = collections.Counter([0])\n"
                                                "builtins.isinstance = lambda *a: True\nbuiltins.all = lambda *a: True\n"
                                                "def freq_count(list1):\n    return WRONG\n"),
    # Not held to plain data (a re.Match is the right answer): an object claiming to be a bool that
    # equals everything. EvalPlus's own `isinstance(out, bool)` believes `__class__`; `type` does not.
    "not_none_task_fake_bool": ("Mbpp/737", "\nclass Liar:\n    __class__ = property(lambda self: bool)\n"
                                "    def __eq__(self, other):\n        return True\n    __hash__ = object.__hash__\n"
                                "def check_str(string):\n    return Liar()\n"),
}


@pytest.fixture(scope="module")
def problems():
    shared_data("humanevalplus", "HumanEvalPlus-v0.1.10.jsonl.gz")
    shared_data("mbppplus", "MbppPlus-v0.2.0.jsonl.gz")
    return {p.task_id: p for dataset, ids in TASKS.items() for p in evalplus.problems(dataset, task_ids=ids)}


def test_attacks_on_the_comparison_fail_and_right_answers_pass(problems):
    names = list(ATTACKS)
    programs = [Program("python", problems[task].program(completion)) for task, completion in ATTACKS.values()]
    programs += [Program("python", p.program(p.reference)) for p in problems.values()]
    got = dict(execute_many(programs, timeout=8, workers=2))
    verdicts = [got[i] for i in range(len(programs))]
    attacked = {name: v.status for name, v in zip(names, verdicts)}
    assert attacked == {name: "failed" for name in names}, \
        {name: v.stderr[-300:] for name, v in zip(names, verdicts) if v.status == "passed"}
    assert [v.status for v in verdicts[len(names):]] == ["passed"] * len(problems)
    by_name = dict(zip(names, verdicts))
    assert "not plain data" in by_name["eq_always_true"].stderr
    assert "poly(xs, 0.0)" in by_name["zero_the_polynomial_in_place"].stderr


def test_the_base_check_is_as_hard_to_fool(problems):
    """`checks["base"]` is the same comparison on the base inputs alone."""
    task, completion = ATTACKS["patched_builtins_math_numpy"]
    problem = problems[task]
    got = dict(execute_many([Program("python", problem.source(completion, "base", "base")),
                             Program("python", problem.source(problem.reference, "base", "base"))], timeout=8, workers=2))
    assert [got[0].status, got[1].status] == ["failed", "passed"]


def test_defusing_the_time_limit_only_meets_the_sandbox_clock(problems):
    """A sample that ignores SIGALRM and stubs `setitimer` loops on: the sandbox's wall clock ends it
    (timeout, never a pass)."""
    problem = problems["HumanEval/53"]
    loop = ("    import signal\n    signal.signal(signal.SIGALRM, signal.SIG_IGN)\n"
            "    signal.setitimer = lambda *a: None\n    while True:\n        pass\n")
    got = dict(execute_many([Program("python", problem.program(loop))], timeout=2, workers=1))
    assert got[0].status == "timeout"
