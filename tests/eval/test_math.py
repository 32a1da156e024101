"""Math benchmarks (MATH, GSM8K and GSM-Hard, by chain of thought and program-aided): answers are
judged by value, references pass through the whole sandbox path, wrong answers fail.

The comparison table runs `math_equal` in this process: its strings are ours. Model-written
answers are only ever judged in the sandbox, as every test below that builds a problem's program
does (tests/hostile/test_hostile_math.py tries hostile ones).
"""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from dscoder.cli.app import app
from dscoder.execute.programs import Program, execute_many
from dscoder.tasks import BENCHMARKS, gsm8k, gsm_hard, load, math_equal
from dscoder.tasks import math as math_task
from conftest import shared_data

# (answer, reference): equal by value, either way round.
EQUAL = [
    (r"\frac{1}{2}", "0.5"), (r"\dfrac12", r"\frac{1}{2}"), ("0.5", r"\tfrac{1}{2}"), (r"\frac{-1}{2}", r"-\frac12"),
    (r"10\%", "10"), (r"\text{(A)}", "A"), ("(C)", r"\textbf{(C)}"), ("x=3", "3"), ("x = 3", r"\frac{6}{2}"),
    (r"45^\circ", "45"), (r"45^{\circ}", "45"), ("a^{2}", "a^2"), (r"2^{10}", "1024"), ("3.", "3"), ("18.00", "18"),
    (r"162\text{ minutes}", "162"), (r"5\text{ cm}^2", "5"), (r"\$18", "18"), ("18 dollars", "18"),
    (r"\$1,234.50", "1234.5"), ("1,000", "1000"), ("1{,}000", "1000"), (".5", "0.5"), ("-5.0", "-5"),
    (r"6 \frac{3}{4}", r"\frac{27}{4}"), (r"\sqrt2", r"\sqrt{2}"), (r"\frac{\sqrt{2}}{2}", r"\frac{1}{\sqrt{2}}"),
    (r"2\sqrt{3}", r"\sqrt{12}"), (r"\sqrt{5+2\sqrt{6}}", r"\sqrt{2}+\sqrt{3}"), (r"\sqrt[3]{8}", "2"),
    ("6p^4 + 5p^2 - 4", "5p^2+6p^4-4"), ("x^2+2x+1", "(x+1)^2"), (r"\pi r^2", r"r^2\pi"),
    (r"\frac{x+2}{7}", r"\frac{x}{7}+\frac{2}{7}"), (r"\sin^2 x + \cos^2 x", "1"), (r"\log_2 8", "3"),
    (r"\binom{5}{2}", "10"), ("5!", "120"), ("|-3|", "3"), ("1+2i", "2i+1"),
    ("0.3333", r"\frac13"), ("1.4142", r"\sqrt{2}"),  # a decimal against an exact value: relative 1e-4
    (r"\left( \frac{4}{3}, -\frac{1}{3} \right)", r"(\frac43,-\frac13)"), ("(1,2)", "1, 2"),
    ("[0,1)", r"\left[0, 1\right)"), (r"(-\infty, 3]", r"(-\infty,3]"), (r"\infty", "infinity"),
    (r"(-\infty,1)\cup(2,\infty)", r"(-\infty, 1) \cup (2, \infty)"), ("x \\in [1,2]", "[1,2]"),
    (r"-\frac{3}{2}, -1, 7", r"7, -1, -\frac32"), (r"\{1,2\}", r"\{2,1\}"),  # solution lists and sets: any order
    (r"\begin{pmatrix} -3 \\ -2 \\ 9 \end{pmatrix}", r"\begin{pmatrix}-3\\-2\\9\end{pmatrix}"),
    (r"\begin{pmatrix} 1/2 & 0 \\ 0.5 & 1 \end{pmatrix}",
     r"\begin{bmatrix} \frac12 & 0 \\ \frac{1}{2} & 1 \end{bmatrix}"),
    ("y = 2x + 3", "2x+3"), ("2x+3y=6", r"y=-\frac{2}{3}x+2"), (r"\text{Monday}", "Monday"),
]
# (answer, reference): different values, either way round.
DIFFERENT = [
    (r"\frac{1}{2}", "0.6"), ("10000", "10001"), ("3", "-3"), ("3.5", "3"), (r"2\frac{1}{2}", "1"),
    ("0.33", r"\frac13"), ("1.414", r"\sqrt2"), (r"\frac{355}{113}", r"\pi"),  # close is not equal for exact values
    ("x^2", "x^3"), (r"\sqrt{x^2}", "x"), ("x", "y"), ("xyz", "zyx"), ("2x+3y=6", "2x+3y=7"),
    ("(1,2]", "(1,2)"), ("[1,2]", "(1,2)"), ("(1,2)", "(2,1)"), ("1,2", "1,2,3"), ("5", "5,5"),
    (r"\begin{pmatrix}1\\2\end{pmatrix}", r"\begin{pmatrix}2\\1\end{pmatrix}"), ("6", r"\infty"),
    (r"-\infty", r"\infty"), ("A", "B"), ("Monday", "Tuesday"), ("", "0"), ("1000", "1,000,1"),
    (r"9^{9^{9^{9}}}", "1"),  # refused by the parser, not computed
]


@pytest.mark.parametrize("answer,reference", EQUAL)
def test_equivalent_answers_are_equal(answer, reference):
    assert math_equal.equal(answer, reference), (math_equal.normalize(answer), math_equal.normalize(reference))
    assert math_equal.equal(reference, answer)


@pytest.mark.parametrize("answer,reference", DIFFERENT)
def test_different_answers_are_not_equal(answer, reference):
    assert not math_equal.equal(answer, reference), (math_equal.normalize(answer), math_equal.normalize(reference))
    assert not math_equal.equal(reference, answer)


def test_the_answer_is_the_last_complete_box():
    assert math_equal.boxed_answers(r"first \boxed{1}, then \fbox{\frac{1}{2}} and \boxed 7$.") == \
        ["1", r"\frac{1}{2}", "7"]
    assert math_equal.last_boxed(r"so $\boxed{\{1,2\}}$ and $\boxed{x^{2}+\frac{1}{2}}$") == r"x^{2}+\frac{1}{2}"
    assert math_equal.last_boxed(r"\boxed{3} then cut short: \boxed{\frac{1}{") == "3"  # an open box is no answer
    assert math_equal.last_boxed("no box, the answer is 18") is None
    assert math_equal.last_boxed(r"\boxedx") is None


def verdicts(programs: list[Program], timeout: float = 10.0) -> list[str]:
    got = dict(execute_many(programs, timeout=timeout, workers=2))
    return [got[i].status for i in range(len(programs))]


def math_problems():
    shared_data("math", "test.json")
    return math_task.problems()


def test_math_is_registered_grouped_by_subject_and_asked_as_v2_asks():
    problems = math_problems()
    assert len(problems) == 5000 and BENCHMARKS["math"].default == "test"
    assert {p.group for p in problems} == {"Algebra", "Counting & Probability", "Geometry", "Intermediate Algebra",
                                           "Number Theory", "Prealgebra", "Precalculus"}
    first = problems[0]  # vertical asymptotes of 2/(x^2+x-6): 2
    assert first.instruction == ("How many vertical asymptotes does the graph of $y=\\frac{2}{x^2+x-6}$ have?\n"
                                 "Please reason step by step, and put your final answer within \\boxed{}.")
    assert first.prompt.startswith("Problem:\n") and first.prompt.endswith("\\boxed{}.\n\nSolution:\n")
    assert first.extra["answer"] == "2" and first.extra["level"] == "Level 3"
    assert {p.extra["answer"] for p in problems[1:3]} == {"10", "\\dfrac{9}{7}"}


def test_math_references_pass_in_the_sandbox_and_wrong_answers_fail():
    """Every 500th problem: its reference solution passes through the whole judging program,
    another problem's different answer fails (as an instruct answer), and so does an answer without a box."""
    problems = math_problems()[::500]
    answers = [p.extra["answer"] for p in problems]
    wrong = [next(a for a in answers[i + 1:] + answers[:i] if not math_equal.equal(a, answers[i]))
             for i in range(len(answers))]
    programs = [Program("python", p.program(p.reference)) for p in problems]
    programs += [Program("python", p.answer_program(f"Step 1 ...\nSo the answer is $\\boxed{{{w}}}$."))
                 for p, w in zip(problems, wrong)]
    programs += [Program("python", problems[0].program("The answer is " + answers[0]))]
    n = len(problems)
    assert verdicts(programs) == ["passed"] * n + ["failed"] * (n + 1)


def test_an_equivalent_form_passes_and_the_failure_names_both_answers():
    problem = next(p for p in math_problems() if p.extra["answer"] == "\\dfrac{9}{7}")
    from dscoder.execute.programs import execute

    assert execute(Program("python", problem.program(r"so $x = \boxed{\frac97}$"))).status == "passed"
    verdict = execute(Program("python", problem.program(r"so $x = \boxed{1.2857}$")))  # 9/7 = 1.285714...
    assert verdict.status == "passed"
    verdict = execute(Program("python", problem.program(r"so $x = \boxed{1.28}$")))
    assert verdict.status == "failed" and "'1.28'" in verdict.stderr and "dfrac{9}{7}" in verdict.stderr


@pytest.mark.slow
def test_all_5000_math_reference_solutions_pass():
    problems = math_problems()
    statuses = verdicts([Program("python", p.program(p.reference)) for p in problems])
    assert statuses == ["passed"] * 5000, [p.task_id for p, s in zip(problems, statuses) if s != "passed"][:10]


def test_gsm8k_has_pal_by_default_and_cot_beside_it():
    shared_data("gsm8k", "test.json")
    assert (BENCHMARKS["gsm8k"].subsets, BENCHMARKS["gsm8k"].default) == (("pal", "cot"), "pal")
    pal, cot = gsm8k.problems(), load("gsm8k", "cot")
    assert [p.task_id for p in pal] == [p.task_id for p in cot] and len(cot) == 1319
    assert {p.group for p in pal} == {"pal"} and {p.group for p in cot} == {"cot"}
    assert pal[0].prompt.endswith('"""\n') and "def solution():" in pal[0].prompt
    first = cot[0]  # Janet's ducks: 18 dollars
    assert first.instruction.endswith("\nPlease reason step by step, and put your final answer within \\boxed{}.")
    assert first.extra["answer"] == "18" and "<<" not in first.reference and first.reference.endswith("\\boxed{18}$.")


def test_gsm8k_cot_is_judged_by_the_boxed_number():
    shared_data("gsm8k", "test.json")
    problems = gsm8k.problems("cot")
    sample = problems[::200]
    right = [r"She makes $\boxed{\$18.00}$ a day.", r"\boxed{18 \text{ dollars}}", r"$\boxed{18}$ dollars",
             r"\boxed{\frac{36}{2}}"]
    wrong = [r"\boxed{19}", "She makes 18 dollars.", r"\boxed{18} at first, but then \boxed{20}", r"\boxed{1.8}"]
    programs = [Program("python", p.program(p.reference)) for p in sample]
    programs += [Program("python", problems[0].answer_program(text)) for text in right + wrong]
    assert verdicts(programs) == ["passed"] * (len(sample) + len(right)) + ["failed"] * len(wrong)


def gsm_hard_problems(subset: str):
    shared_data("gsm-hard", "test.json")
    return gsm_hard.problems(subset)


def test_gsm_hard_pal_reference_programs_pass_and_wrong_numbers_fail():
    """The data's own PAL program (`code`) is the reference completion; a program off by one fails,
    a float-rounding difference passes, and a CoT reference passes."""
    problems = gsm_hard_problems("pal")
    assert len(problems) == 1319 and (BENCHMARKS["gsm-hard"].subsets, BENCHMARKS["gsm-hard"].default) == (
        ("pal", "cot"), "pal")
    sample = problems[::200]
    first = problems[0]  # Janet's ducks with 4933828 eggs baked: -9867630.0 dollars
    assert "Q: Janet" in first.prompt and first.prompt.endswith('4933828. She sells the remainder at the farmers\' '
                                                               'market daily for $2 per fresh duck egg. How much in '
                                                               'dollars does she make every day at the farmers\' '
                                                               'market?"""\n')
    programs = [Program("python", p.program(p.reference)) for p in sample]
    programs += [Program("python", first.program("    return (16 - 3 - 4933828) * 2\n")),
                 Program("python", first.program("    return (16 - 3 - 4933828) * 2 * (1 + 1e-12)\n")),
                 Program("python", first.answer_program("```python\ndef solution():\n    return -9867630\n```")),
                 Program("python", first.program("    return (16 - 3 - 4933828) * 2 + 1\n")),
                 Program("python", first.program("    return (16 - 4933828) * 2\n"))]
    cot = gsm_hard_problems("cot")
    programs += [Program("python", cot[0].program(cot[0].reference)),
                 Program("python", cot[0].program(r"\boxed{-9,867,630}")),
                 Program("python", cot[0].program(r"\boxed{9867630}"))]
    assert verdicts(programs) == ["passed"] * (len(sample) + 3) + ["failed"] * 2 + ["passed"] * 2 + ["failed"]


@pytest.mark.slow
def test_all_1319_gsm_hard_reference_programs_pass():
    problems = gsm_hard_problems("pal")
    statuses = verdicts([Program("python", p.program(p.reference)) for p in problems])
    assert statuses == ["passed"] * 1319, [p.task_id for p, s in zip(problems, statuses) if s != "passed"][:10]


@pytest.mark.slow
def test_all_1319_gsm8k_cot_references_pass():
    shared_data("gsm8k", "test.json")
    problems = gsm8k.problems("cot")
    statuses = verdicts([Program("python", p.program(p.reference)) for p in problems])
    assert statuses == ["passed"] * 1319, [p.task_id for p, s in zip(problems, statuses) if s != "passed"][:10]


def test_dscoder_eval_math_reports_accuracy_per_subject(tmp_path):
    """A completions file (no language field) over three subjects: one row per subject in the report."""
    problems = math_problems()
    picked = {p.group: p for p in problems[::37]}
    chosen = [picked["Algebra"], picked["Geometry"], picked["Number Theory"]]
    lines = [{"task_id": chosen[0].task_id, "completion": chosen[0].reference},
             {"task_id": chosen[1].task_id, "completion": chosen[1].reference},
             {"task_id": chosen[2].task_id, "completion": "I think it is \\boxed{-12345}."}]
    completions = tmp_path / "samples.jsonl"
    completions.write_text("".join(json.dumps(line) + "\n" for line in lines))
    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["eval", "math", "--completions", str(completions), "--out", str(out),
                                      "--no-progress"])
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    assert {group: block["pass@1"] for group, block in summary["groups"].items()} == {
        "Algebra": 1.0, "Geometry": 1.0, "Number Theory": 0.0}
