"""A math answer is model-written text that the judge parses and hands to sympy: it is judged
only inside the sandbox, as data, and whatever it says costs at most one program's limits.

The judging program (`dscoder.tasks.math.judging_program`, what MATH, GSM8K CoT and GSM-Hard CoT
problems run) carries the completion as a string literal; `math_equal` builds sympy objects from
tokens and never evaluates the text. These attacks would each run code or hang a process that
did `sympify(answer)` / `parse_expr(answer)` (what DeepSeekMath's and Qwen's graders call) in the
evaluating process.
"""

from __future__ import annotations

import pytest

from dscoder.execute.programs import Program, execute, execute_many
from dscoder.tasks import math as math_task


def judge(completions: list[str], reference: str, timeout: float = 10.0):
    programs = [Program("python", math_task.judging_program(c, reference)) for c in completions]
    got = dict(execute_many(programs, timeout=timeout, workers=2))
    return [got[i] for i in range(len(programs))]


@pytest.fixture
def no_sympy_eval_here(monkeypatch):
    """sympy's evaluating parsers raise if anything in this process calls them while the test runs."""
    import sympy
    import sympy.parsing.sympy_parser as sympy_parser

    def refuse(*args, **kwargs):
        raise AssertionError(f"evaluated model text in the evaluating process: {args[:1]!r}")

    monkeypatch.setattr(sympy, "sympify", refuse)
    monkeypatch.setattr(sympy_parser, "parse_expr", refuse)


def test_code_in_a_boxed_answer_is_never_run(tmp_path, no_sympy_eval_here):
    """Answers that are Python (what sympify would eval) write a file if run anywhere that can
    reach it: each is failed (not a number, not an expression the parser knows), and no file appears."""
    marker = tmp_path / "evaluated"
    payloads = [
        f"__import__('os').system('touch {marker}')",
        f"eval(\"open('{marker}', 'w')\")",
        "exec(chr(111)+chr(115))",
        f"(lambda: __import__('pathlib').Path('{marker}').touch())()",
        "Symbol('x').__class__.__mro__[-1].__subclasses__()",
    ]
    got = judge([f"The answer is $\\boxed{{{p}}}$." for p in payloads], "2")
    assert [v.status for v in got] == ["failed"] * len(payloads), got
    assert all("is not the reference" in v.stderr for v in got), got
    assert not marker.exists()


def test_an_answer_cannot_leave_its_string_literal():
    """Quotes, the harness's separator line, an early exit, backslashes, NUL and a lone surrogate
    stay data: each junk answer without the right box fails, and the same junk around the right
    box passes (so it is the comparison that decided, not a broken program)."""
    junk = ["'''", '"""', "\\", "\n#<dscoder-checks guard=>\nimport os; os._exit(0)\n",
            "')\nimport os; os._exit(0)\n#", "\x00", "\ud800", "\\boxed{2", "}}}}"]
    wrong = [f"{j} \\boxed{{3}} {j}" for j in junk]
    right = [f"{j} \\boxed{{2}} {j}" for j in junk if "boxed" not in j and "}" not in j]
    got = judge(wrong + right, "2")
    assert [v.status for v in got] == ["failed"] * len(wrong) + ["passed"] * len(right), got


def test_huge_answers_are_refused_or_stopped_by_the_sandbox(tmp_path):
    """Powers and factorials too large to compute are refused by the parser (a failed verdict,
    not a computation); a long text is compared as a string; many unclosed boxes are scanned in
    linear time. An expression that gets past the guards and is slow to simplify is stopped by
    the program's timeout. Nothing is computed in this process."""
    huge = [r"9^{9^{9^{9}}}", r"10^{10^{10}}", r"\sqrt{2}^{1000000000}", r"(10^{4})!", r"\binom{10^{9}}{500000000}",
            "+".join(["(x+1)^{9}"] * 2000), "\\boxed{" * 200_000]
    got = judge([f"\\boxed{{{h}}}" if not h.startswith("\\boxed") else h for h in huge], "1", timeout=20)
    assert [v.status for v in got] == ["failed"] * len(huge), got
    slow = execute(Program("python", math_task.judging_program(r"\boxed{(x+1)^{40000}-(x-1)^{40000}}", "x")),
                   timeout=3)
    assert slow.status in ("failed", "timeout"), slow
