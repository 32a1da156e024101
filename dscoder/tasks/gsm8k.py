"""GSM8K, program-aided (PAL, the default subset) or by chain of thought (`cot`).

PAL: the model writes `def solution():`, we run it and compare numbers.

DeepSeek-Coder reports math reasoning this way: the arithmetic is done by Python, so the
score measures whether the model can turn a word problem into a correct program. The
few-shot examples below are our own (written for this project, not taken from GSM8K's
training split), in the PAL format: the question, then a commented function. The program
(`execute.harness.program`) passes only when its check ran to the end and `solution()`
returned plain data (a float subclass with a lying `__float__` is refused).

CoT is DeepSeek-Coder-V2's math protocol (`dscoder.tasks.math`): zero-shot, "Please reason step
by step, and put your final answer within \\boxed{}.", the last box compared by value with the
`####` number, in the sandbox. Its reference completion is GSM8K's own worked solution (the
calculator annotations `<<3*4=12>>` removed) ending in the boxed number.
"""

from __future__ import annotations

import re
from pathlib import Path

from dscoder.errors import UserError
from dscoder.execute import harness
from dscoder.tasks.math import cot_problem
from dscoder.tasks.problem import Problem, code_from, data_file, json_lines

EXAMPLES = '''Q: A baker makes 24 muffins. She sells three quarters of them in the morning and half of the rest in the afternoon. How many muffins are left at the end of the day?

# solution in Python:


def solution():
    """A baker makes 24 muffins. She sells three quarters of them in the morning and half of the rest in the afternoon. How many muffins are left at the end of the day?"""
    muffins = 24
    sold_morning = muffins * 3 / 4
    left_after_morning = muffins - sold_morning
    sold_afternoon = left_after_morning / 2
    result = left_after_morning - sold_afternoon
    return result


Q: Tom reads 15 pages on Monday and twice as many on Tuesday. His book has 120 pages. How many pages does he still have to read?

# solution in Python:


def solution():
    """Tom reads 15 pages on Monday and twice as many on Tuesday. His book has 120 pages. How many pages does he still have to read?"""
    monday = 15
    tuesday = monday * 2
    total_pages = 120
    result = total_pages - monday - tuesday
    return result


Q: A shop sells pencils at $0.25 each and notebooks at $3 each. Maya buys 8 pencils and 2 notebooks and pays with a $10 bill. How much change does she get?

# solution in Python:


def solution():
    """A shop sells pencils at $0.25 each and notebooks at $3 each. Maya buys 8 pencils and 2 notebooks and pays with a $10 bill. How much change does she get?"""
    pencils = 8 * 0.25
    notebooks = 2 * 3
    paid = 10
    result = paid - pencils - notebooks
    return result


'''
STOPS = ("\nQ:", "\n\n\n", "\ndef ", "\nprint")
SUBSETS = ("pal", "cot")


def answer_of(text: str) -> float:
    """The number after GSM8K's `####` marker (thousands separators removed)."""
    match = re.search(r"####\s*(-?[\d,]*\.?\d+)", text)
    if match is None:
        raise ValueError(f"no '#### <number>' in GSM8K answer {text[-80:]!r}")
    return float(match.group(1).replace(",", ""))


def number_text(value: float) -> str:
    """A reference number as the answer string judged against: 18.0 -> "18", 2.5 -> "2.5"."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def worked_solution(text: str, answer: float) -> str:
    """GSM8K's solution as a CoT reference completion: without calculator annotations, ending in the box."""
    steps = re.sub(r"<<[^<>]*>>", "", text.split("####")[0]).strip()
    return f"{steps}\nThe answer is $\\boxed{{{number_text(answer)}}}$."


def _checker(answer: float) -> str:
    return (f"\n\n_result = solution()\n"
            f"assert abs(float(_result) - {answer!r}) < 1e-4, f'solution() returned {{_result!r}}, expected {answer!r}'\n")


def pal_problem(task_id: str, question: str, check: str, reference: str, group: str) -> Problem:
    """The PAL problem for `question`: the few-shot prompt ending in `def solution():` and its
    docstring, and `check` (the comparison of `solution()`'s return) after the model's code."""
    head = f'def solution():\n    """{question}"""\n'

    def program(completion: str) -> str:
        return harness.program("python", head + completion, check, guard=("solution",))

    def answer_program(text: str) -> str:
        return harness.program("python", code_from(text, "python"), check, guard=("solution",))

    ask = (f"Write a Python function `solution()` that solves the following problem and returns the final "
           f"number. Answer with the code in a single fenced block.\n\n{question}")
    prompt = EXAMPLES + f"Q: {question}\n\n# solution in Python:\n\n\n" + head
    return Problem(task_id, "python", prompt, program, STOPS, ask, answer_program, reference=reference,
                   max_new_tokens=384, group=group)


def problems(subset: str = "pal", data: Path | None = None) -> list[Problem]:
    subset = subset or "pal"  # before the subsets had names, the one subset was ""
    if subset not in SUBSETS:
        raise UserError(f"gsm8k has no subset {subset!r}; choose from {', '.join(SUBSETS)}")
    path = data_file("gsm8k", "test.json", data=data)  # JSON lines, despite the name
    problems = []
    for index, (_, row) in enumerate(json_lines(path)):
        task_id, question, answer = f"GSM8K/{row.get('idx', index)}", row["question"].strip(), answer_of(row["answer"])
        if subset == "cot":
            problems.append(cot_problem(task_id, question, number_text(answer), group=subset,
                                        reference=worked_solution(row["answer"], answer)))
        else:
            problems.append(pal_problem(task_id, question, _checker(answer), f"    return {answer!r}\n", subset))
    return problems
