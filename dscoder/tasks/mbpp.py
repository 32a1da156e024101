"""MBPP with DeepSeek-Coder's protocol (`Evaluation/MBPP`).

Base models: 3-shot, the shots being task_ids 2, 3 and 4, each the task, its three
asserts and the solution between `[BEGIN]` and `[DONE]` (the format of the MBPP paper),
written back to back; the test set is task_ids 11-510, the prompt ends at `[BEGIN]` and
generation stops at `[DONE]`, the code being what lies between, stripped. Instruct
models get the same three examples as "Problem / Test Cases / Code" blocks in one chat
message and answer with a fenced block. The program is the code, the problem's setup
code, then its asserts, assembled by `execute.harness.program`: a pass needs the asserts to
run to their end, and the functions they call (`entry_points`) to return plain data.
"""

from __future__ import annotations

import ast
import json
import warnings
from pathlib import Path

from dscoder.execute import harness
from dscoder.tasks.problem import Problem, code_from, data_file
from dscoder.errors import UserError

SHOTS = (2, 3, 4)
TEST_IDS = range(11, 511)
# The splits of the MBPP paper (Austin et al. 2021, section 2.1): 1-10 prompt (our shots), 11-510 test,
# 511-600 validation, 601-974 train. Only validation and train may be trained on (`dscoder train grpo`).
SPLITS = {"test": TEST_IDS, "validation": range(511, 601), "train": range(601, 975)}


def entry_points(row: dict) -> tuple[str, ...]:
    """The functions MBPP's asserts call that the reference solution defines: the entry points
    whose returns must be plain data. MBPP names none; the asserts call them by name."""
    with warnings.catch_warnings():  # the dataset's code has invalid escape sequences ("\\w" in a plain string)
        warnings.simplefilter("ignore")
        defined = {node.name for node in ast.walk(ast.parse(_code(row))) if isinstance(node, ast.FunctionDef)}
        called = {node.func.id for test in row["test_list"] for node in ast.walk(ast.parse(test))
                  if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)}
    return tuple(sorted(defined & called))


def _code(row: dict) -> str:
    return row["code"].replace("\r", "").replace("\t", "    ")


def _task(row: dict) -> str:
    tests = "\n".join(row["test_list"])
    return (f"You are an expert Python programmer, and here is your task: {row['text']} "
            f"Your code should pass these tests:\n\n{tests}\n[BEGIN]")


def _chat_block(row: dict, with_code: bool) -> str:
    block = f">>> Problem:\n{row['text'].strip()}\n>>> Test Cases:\n" + "\n".join(row["test_list"]) + "\n"
    return block + (f"\n>>> Code:\n```python\n{_code(row)}\n```" if with_code else "")


def _instruction(shots: list[dict], row: dict) -> str:
    examples = "\n\n".join(f"- Example {i}:\n{_chat_block(shot, True)}" for i, shot in enumerate(shots, 1))
    return ("Please refer the given examples and generate a python function for my problem.\n"
            f"Examples are listed as follows:\n{examples}\n\nHere is my problem:\n{_chat_block(row, False)}").strip()


def zero_shot_instruction(row: dict) -> str:
    """The instruct form without the three worked examples (ours, for GRPO: ~100 prompt tokens instead
    of ~600; the examples teach the answer's format, which the reward teaches too)."""
    return ("Write a python function for my problem, in a ```python code block.\n"
            f"Here is my problem:\n{_chat_block(row, False)}").strip()


def problems(subset: str = "", data: Path | None = None, ids: range | tuple[int, ...] = TEST_IDS) -> list[Problem]:
    """The problems `ids` (default the test split) in both prompt forms. `extra` holds their
    individual asserts, setup code and entry points, so GRPO can score the fraction passed."""
    rows = {row["task_id"]: row for row in map(json.loads, data_file("mbpp", "mbpp.jsonl", data=data)
                                                .read_text(encoding="utf-8").splitlines())}
    missing = [i for i in (*SHOTS, *ids) if i not in rows]
    if missing:
        raise UserError(f"mbpp.jsonl lacks task_ids {missing[:5]}...; it should hold all 974 problems")
    shots = [rows[i] for i in SHOTS]
    header = "".join(f"{_task(shot)}\n{_code(shot)}\n[DONE]\n" for shot in shots)
    problems = []
    for task_id in ids:
        row = rows[task_id]
        tests = f"\n{row['test_setup_code']}\n" + "\n".join(row["test_list"]) + "\n"
        guard = entry_points(row)

        def program(completion: str, tests=tests, guard=guard) -> str:
            return harness.program("python", completion.strip(), tests, guard)

        def answer_program(answer: str, tests=tests, guard=guard) -> str:
            return harness.program("python", code_from(answer, "python"), tests, guard)

        problems.append(Problem(f"MBPP/{task_id}", "python", header + _task(row), program, ("[DONE]",),
                                _instruction(shots, row), answer_program, reference=_code(row),
                                max_new_tokens=512, group="python",
                                extra={"tests": tuple(row["test_list"]), "setup": row["test_setup_code"],
                                       "guard": guard, "zero_shot": zero_shot_instruction(row)}))
    return problems
