"""A CRUXEval prediction is model text spliced into an assert: predictions that change what the
assert means are failed, while CRUXEval's own splice (`code` + `assert <output> == <prediction>`,
passed when it exits 0) passes every one of them.

Each attack is written as the model's answer line (`assert f(...) == ...`) of a real problem, or
of a tiny problem assembled by `cruxeval.program` itself, and judged by the one verdict function
(`dscoder.execute.programs.execute`) in the sandbox. `naive` is CRUXEval's program for the same
prediction, run as a plain program in the same sandbox, to show each attack is real.
"""

from __future__ import annotations

import json

from typer.testing import CliRunner

from dscoder.cli.app import app
from dscoder.execute import pyharness
from dscoder.execute.programs import Program, execute_many
from dscoder.tasks import cruxeval, load
from conftest import shared_data

ALWAYS_EQUAL = "type('Eq', (), {'__eq__': lambda self, other: True, '__hash__': None})()"


def verdicts(programs: list[Program]):
    got = dict(execute_many(programs, timeout=10.0, workers=2))
    return [got[i] for i in range(len(programs))]


def naive(code: str, output: str, predicted: str) -> Program:
    """CRUXEval's check of a prediction (evaluation/utils_general.py): exit status 0 is a pass."""
    return Program("python", f"{code}\nassert {output} == {predicted}")


def problem(subset: str, task_id: str):
    shared_data("cruxeval", "cruxeval.jsonl")
    return next(p for p in load("cruxeval", subset) if p.task_id == task_id)


# sample_2: f(text) drops '+' from text; f('hbtofdeiequ') == 'hbtofdeiequ'.
OUTPUT_ATTACKS = {
    # Closes the comparison and makes the assert trivially true.
    "or_true": "'' or True",
    # An object equal to everything.
    "always_equal": ALWAYS_EQUAL,
    # Computes the answer by calling f (CRUXEval refuses only the exact text f(<input>)).
    "calls_f_respaced": "f( 'hbtofdeiequ')",
    "calls_f_through_main": "__import__('__main__').f('hbtofdeiequ')",
    # Leaves before the assert is judged.
    "exits_0": "__import__('os')._exit(0)",
}


def test_output_predictions_cannot_change_the_assert():
    target = problem("output", "sample_2")
    code, output = target.extra["code"], target.extra["output"]
    answers = {name: f"assert f('hbtofdeiequ') == {attack}\n" for name, attack in OUTPUT_ATTACKS.items()}
    got = verdicts([Program("python", target.program(a)) for a in answers.values()]
                   + [naive(code, output, cruxeval.prediction(a, "output")) for a in answers.values()]
                   + [Program("python", target.program(target.reference))])
    ours, theirs, right = got[:len(answers)], got[len(answers):-1], got[-1]
    assert [v.status for v in theirs] == ["passed"] * len(answers)  # every attack beats the naive splice
    assert {n: v.status for n, v in zip(answers, ours)} == {n: "failed" for n in answers}
    assert right.status == "passed"
    reasons = dict(zip(answers, (v.stderr for v in ours)))
    assert "not plain data" in reasons["always_equal"]
    assert "NameError" in reasons["calls_f_respaced"] and "AttributeError" in reasons["calls_f_through_main"]


def test_a_prediction_is_one_expression_never_statements():
    """Statements after the value (even the right value), `;`, or a fake harness separator on a
    line of its own: the prediction is a string literal in the program, parsed as one expression
    in the sandbox, so none of them reaches the program's code."""
    target = problem("output", "sample_2")
    right = "'hbtofdeiequ'"
    tails = {"newline_import": f"{right}\nimport os", "semicolon": f"{right}; import os",
             "newline_exit": f"{right}\n__import__('os')._exit(0)",
             "separator": f"{right}\n#<dscoder-checks guard=>\nassert True",
             "quote_escape": "'''\nassert True\n'''"}
    sources = [target.program(f"assert f('hbtofdeiequ') == {tail}") for tail in tails.values()]
    for source in sources:  # the separator line is the harness's alone: the prediction stays on one line
        assert len(pyharness.SEPARATOR_PATTERN.findall(source)) == 1
    got = verdicts([Program("python", s) for s in sources])
    assert {n: v.status for n, v in zip(tails, got)} == {n: "failed" for n in tails}
    reasons = {n: v.stderr for n, v in zip(tails, got)}
    # A triple-quoted string is one expression (a str): compared, and wrong.
    assert "does not give the expected output" in reasons.pop("quote_escape")
    assert all("not one Python expression" in r for r in reasons.values()), reasons


def test_input_predictions_must_be_a_call_of_f_alone():
    target = problem("input", "sample_2")
    code = target.extra["code"]
    attacks = {"or_true": "f('zzz') or True", "compared_twice": "f('a') == f('a')",
               "not_a_call_of_f": "(lambda *a: 'hbtofdeiequ')('x') if f('') is None else 'hbtofdeiequ'"}
    got = verdicts([Program("python", target.program(f"assert {a} == 'hbtofdeiequ'")) for a in attacks.values()]
                   + [naive(code, "'hbtofdeiequ'", attacks["or_true"])])
    ours, theirs = got[:len(attacks)], got[len(attacks)]
    assert theirs.status == "passed"  # f('zzz') or True: CRUXEval's splice passes it
    assert {n: v.status for n, v in zip(attacks, ours)} == {n: "failed" for n in attacks}
    reasons = {n: v.stderr for n, v in zip(attacks, ours)}
    assert "must be a call of f" in reasons["or_true"] and "must be a call of f" in reasons["not_a_call_of_f"]
    # CRUXEval reads the input before the first ==: f('a'), judged (and wrong) on its own.
    assert "does not give the expected output" in reasons["compared_twice"]


# A tiny problem assembled exactly as the benchmark's: f sorts its argument; the output is [1, 2].
SORTS = "def f(xs):\n    return sorted(xs)"
INPUT_ATTACKS = {
    # Replace f's code while its arguments are evaluated.
    "replaces_f_code": "f(setattr(f, '__code__', (lambda xs: [1, 2]).__code__) or [5])",
    # Patch a builtin f uses.
    "patches_builtins": "f(__import__('builtins').__setattr__('sorted', lambda xs: [1, 2]) or [5])",
    # Rebind a name in f's own namespace.
    "rebinds_f_globals": "f(f.__globals__.__setitem__('sorted', lambda xs: [1, 2]) or [5])",
    # Rebind through globals(): the arguments see a copy of the namespace, so f is untouched (and wrong).
    "rebinds_globals_copy": "f(globals().__setitem__('sorted', lambda xs: [1, 2]) or [5])",
    # An argument f returns as it is, equal to everything (a list subclass).
    "always_equal_list": "f.__call__(type('L', (list,), {'__eq__': lambda s, o: True})())",
    # Leaves while the arguments are evaluated.
    "exits_0": "f(__import__('os')._exit(0))",
}


def test_input_predictions_cannot_alter_f_or_what_it_sees():
    programs = [Program("python", cruxeval.program(SORTS, "[1, 2]", attack, "input"))
                for attack in INPUT_ATTACKS.values()]
    programs += [naive(SORTS, "[1, 2]", attack) for attack in INPUT_ATTACKS.values()]
    identity = "def f(x):\n    return x"  # returning the argument: only the plain-data guard stands in the way
    sneaky = f"f({ALWAYS_EQUAL})"
    programs += [Program("python", cruxeval.program(identity, "[1, 2]", sneaky, "input")),
                 naive(identity, "[1, 2]", sneaky)]
    programs += [Program("python", cruxeval.program(SORTS, "[1, 2]", "f([2, 1])", "input")),  # right answers still pass
                 Program("python", cruxeval.program(SORTS, "[1, 2]", "f(xs=(lambda: [2, 1])())", "input"))]
    got = verdicts(programs)
    n = len(INPUT_ATTACKS)
    ours, theirs = got[:n], got[n:2 * n]
    assert {name: v.status for name, v in zip(INPUT_ATTACKS, ours)} == {name: "failed" for name in INPUT_ATTACKS}
    beaten = {name for name, v in zip(INPUT_ATTACKS, theirs) if v.status == "passed"}
    assert beaten >= {"replaces_f_code", "patches_builtins", "rebinds_f_globals", "rebinds_globals_copy", "exits_0"}
    reasons = dict(zip(INPUT_ATTACKS, (v.stderr for v in ours)))
    assert "changed f" in reasons["replaces_f_code"]
    assert "changed the builtins" in reasons["patches_builtins"]
    assert "changed the program's names" in reasons["rebinds_f_globals"]
    assert "must be a call of f" in reasons["always_equal_list"]
    assert [v.status for v in got[2 * n:]] == ["failed", "passed", "passed", "passed"]  # ours, CRUXEval's, right, right
    assert "not plain data" in got[2 * n].stderr


def test_attacks_score_zero_through_dscoder_eval(tmp_path):
    """The same predictions as a completions file, through `dscoder eval cruxeval`: each attack is
    failed; beside them, a right answer passes (pass@1 = 1/4)."""
    shared_data("cruxeval", "cruxeval.jsonl")
    lines = {"sample_2": "assert f('hbtofdeiequ') == '' or True\n",
             "sample_3": f"assert f('bcksrut', 'q') == {ALWAYS_EQUAL}\n",
             "sample_4": "assert f([' ', '  ', '    ', '   ']) == '           '\nimport os\n",
             "sample_5": "assert f('DSUWeqExTQdCMGpqur', 'a', 'x') == (0, 'xxxxxxxxxxxxxxxxxx')\n"}
    completions = tmp_path / "completions.jsonl"
    completions.write_text("".join(json.dumps({"task_id": t, "completion": c}) + "\n" for t, c in lines.items()))
    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["eval", "cruxeval", "--split", "output", "--completions", str(completions),
                                      "--out", str(out), "--no-progress"])
    assert result.exit_code == 0, result.output
    rows = {r["task_id"]: r["status"] for r in map(json.loads, (out / "samples.jsonl").read_text().splitlines())}
    assert rows == {"sample_2": "failed", "sample_3": "failed", "sample_4": "failed", "sample_5": "passed"}
    assert json.loads((out / "summary.json").read_text())["pass@1"] == 0.25
