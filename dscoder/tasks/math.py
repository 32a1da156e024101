"""MATH, zero-shot chain of thought, judged by value in the sandbox (DeepSeek-Coder-V2's protocol).

The V2 paper evaluates math as DeepSeekMath does: the problem, then "Please reason step by
step, and put your final answer within \\boxed{}." as the user message of the chat template,
greedy decoding, and the last `\\boxed{...}` of the answer compared with the reference answer by
value (`math_equal`). A base model gets the same words as plain text ending in a line
"Solution:", so that it writes a solution (`prompt`), and stops when it starts another problem.

The full test set (5000 problems, one subset `test`) is used: the shared data has no field
identifying the MATH-500 subset (PRM800K's `unique_id` paths), so that subset cannot be chosen
honestly from it. Problems are grouped by subject (`type`), so the report and chart show the
accuracy per subject; the level is kept in `extra`.

The comparison parses model-written text and asks sympy about it, so it never runs in this
process: each sample's judging program carries `math_equal`'s source (compressed), the
completion and the reference answer as string literals, and passes (exits 0 with the harness's
end marker) only when they are equal. GSM8K and GSM-Hard's chain-of-thought subsets are judged the same way
(`cot_problem`).
"""

from __future__ import annotations

import functools
import inspect
import zlib
from pathlib import Path

from dscoder.errors import UserError
from dscoder.execute import harness
from dscoder.tasks import math_equal
from dscoder.tasks.problem import Problem, data_file, json_lines

INSTRUCTION = "Please reason step by step, and put your final answer within \\boxed{}."
STOPS = ("\nProblem:",)  # a base model that starts the next problem has finished this one
SUBSETS = ("test",)  # the whole MATH test set (MATH-500's ids are not in this data)
MAX_NEW_TOKENS = 1024


@functools.cache
def judge_source() -> str:
    """`math_equal`'s source: the comparison the judging program runs (the sandbox cannot import dscoder)."""
    return inspect.getsource(math_equal)


@functools.cache
def _judge_loader() -> str:
    """The statement that defines `math_equal`'s functions in the judging program, its source
    carried zlib-compressed in one hex literal: 9 KB of one word instead of 30 KB of 4000 words in
    each of the 7600 programs that decontamination (`data.decontam`, which reads every problem's
    program) would otherwise split into n-grams (minutes and gigabytes for nothing)."""
    packed = zlib.compress(judge_source().encode("utf-8"), 9).hex()
    return (f"# the judge: dscoder/tasks/math_equal.py, zlib-compressed\n"
            f"import zlib as _zlib\n"
            f"exec(compile(_zlib.decompress(bytes.fromhex('{packed}')).decode('utf-8'), 'math_equal.py', 'exec'))\n")


def judging_program(completion: str, reference: str) -> str:
    """The whole program that passes when the last boxed answer of `completion` equals `reference`.

    Both texts enter as Python string literals (`repr`), so they are data to the program; the
    program's solution part is empty and its checks are `math_equal` plus one `check` call."""
    checks = f"{_judge_loader()}\ncheck({completion!r}, {reference!r})\n"
    return harness.program("python", "", checks)


def instruction(question: str) -> str:
    """The chat message (DeepSeekMath's and V2's zero-shot CoT form)."""
    return f"{question.strip()}\n{INSTRUCTION}"


def prompt(question: str) -> str:
    """The base form: the same request as plain text, ending on the line where a solution starts
    (after a bare "Solution:" a small model may end its text at once)."""
    return f"Problem:\n{question.strip()}\n{INSTRUCTION}\n\nSolution:\n"


def cot_problem(task_id: str, question: str, answer: str, *, group: str, reference: str | None = None,
                extra: dict | None = None) -> Problem:
    """A chain-of-thought problem judged by `math_equal` in the sandbox, the same in both forms
    (the answer is the text's last box, whether it continues `prompt` or answers `instruction`)."""

    def program(completion: str) -> str:
        return judging_program(completion, answer)

    return Problem(task_id, "python", prompt(question), program, STOPS, instruction(question), program,
                   reference=reference, max_new_tokens=MAX_NEW_TOKENS, group=group,
                   extra={"answer": answer, **(extra or {})})


def problems(subset: str = "test", data: Path | None = None) -> list[Problem]:
    if subset not in SUBSETS:
        raise UserError(f"math has no subset {subset!r}; choose from {', '.join(SUBSETS)}")
    path = data_file("math", "test.json", data=data)  # JSON lines
    problems = []
    for number, row in json_lines(path):
        answer = math_equal.last_boxed(row["solution"])
        if answer is None:
            raise UserError(f"{path}:{number}: the solution has no \\boxed{{}} answer")
        problems.append(cot_problem(f"MATH/{row.get('idx', number - 1)}", row["problem"], answer,
                                    group=row["type"], reference=row["solution"], extra={"level": row["level"]}))
    return problems
