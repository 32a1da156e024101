"""GSM-Hard: GSM8K's problems with large, awkward numbers, program-aided (PAL) or by chain of thought.

DeepSeek-Coder reports it beside GSM8K under PAL (its `Evaluation/PAL-Math` runs both from the
same few-shot program prompt), so the `pal` subset asks exactly as `gsm8k` does (our own
few-shot examples, then `def solution():` with the question as its docstring) and runs the
function in the sandbox. The data's `target` is what its own PAL program (`code`) returns, often
a float (3244047.0999999996, or a negative number of eggs: the numbers were substituted without
regard to sense), so the check allows float rounding: |result - target| <= max(1e-4, 1e-9·|target|).
That is stricter than DeepSeek's grader (relative 1e-4, and also target×100 or ÷100), which would
pass an answer 300 off a target of 3 million. The reference completion is the data's `code`: it
defines `solution()` again after the prompt's docstring-only head, and must pass.

`cot` is DeepSeek-Coder-V2's zero-shot chain of thought (`dscoder.tasks.math`), the last box
compared by value with the target (a non-integer decimal within a relative 1e-4).
"""

from __future__ import annotations

from pathlib import Path

from dscoder.errors import UserError
from dscoder.tasks.gsm8k import number_text, pal_problem
from dscoder.tasks.math import cot_problem
from dscoder.tasks.problem import Problem, data_file, json_lines

SUBSETS = ("pal", "cot")


def _checker(target: float) -> str:
    return (f"\n\n_result = float(solution())\n"
            f"assert abs(_result - {target!r}) <= max(1e-4, 1e-9 * abs({target!r})), "
            f"f'solution() returned {{_result!r}}, expected {target!r}'\n")


def problems(subset: str = "pal", data: Path | None = None) -> list[Problem]:
    if subset not in SUBSETS:
        raise UserError(f"gsm-hard has no subset {subset!r}; choose from {', '.join(SUBSETS)}")
    problems = []
    for index, (_, row) in enumerate(json_lines(data_file("gsm-hard", "test.json", data=data))):  # JSON lines
        task_id, question, target = f"GSM-Hard/{row.get('idx', index)}", row["input"].strip(), float(row["target"])
        if subset == "cot":
            problems.append(cot_problem(task_id, question, number_text(target), group=subset,
                                        reference=f"The answer is $\\boxed{{{number_text(target)}}}$."))
        else:
            problems.append(pal_problem(task_id, question, _checker(target), row["code"], subset))
    return problems
