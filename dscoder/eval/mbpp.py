"""MBPP with DeepSeek-Coder's protocol.

Base models: 3-shot, the shots being task_ids 2, 3 and 4, each written as the task, its
three asserts and the solution between `[BEGIN]` and `[DONE]` (the format of the MBPP
paper); the test set is task_ids 11-510 and generation stops at `[DONE]`. Instruct
models get the task and its asserts as one message and answer with a fenced block.
The program is the code, the problem's setup code, then its asserts.
"""

from __future__ import annotations

import json
from pathlib import Path

from .problem import Problem, code_from, data_file

SHOTS = (2, 3, 4)
TEST_IDS = range(11, 511)


def _task(row: dict) -> str:
    tests = "\n".join(row["test_list"])
    return (f"You are an expert Python programmer, and here is your task: {row['text']} "
            f"Your code should pass these tests:\n\n{tests}\n")


def _shot(row: dict) -> str:
    code = row["code"].replace("\r\n", "\n").replace("\t", "    ").strip()
    return f"{_task(row)}[BEGIN]\n{code}\n[DONE]\n"


def problems(data: Path | None = None) -> list[Problem]:
    rows = {row["task_id"]: row for row in map(json.loads, data_file("mbpp", "mbpp.jsonl", data=data)
                                                .read_text(encoding="utf-8").splitlines())}
    missing = [i for i in (*SHOTS, *TEST_IDS) if i not in rows]
    if missing:
        raise ValueError(f"mbpp.jsonl lacks task_ids {missing[:5]}...; it should hold all 974 problems")
    header = "\n".join(_shot(rows[i]) for i in SHOTS) + "\n"
    problems = []
    for task_id in TEST_IDS:
        row = rows[task_id]
        tests = f"\n{row['test_setup_code']}\n" + "\n".join(row["test_list"]) + "\n"

        def program(completion: str, tests=tests) -> str:
            return completion + "\n" + tests

        def answer_program(answer: str, tests=tests) -> str:
            return code_from(answer, "python") + "\n" + tests

        problems.append(Problem(f"MBPP/{task_id}", "python", header + _task(row) + "[BEGIN]\n", program,
                                ("[DONE]",), _task(row).strip(), answer_program,
                                reference=row["code"].replace("\r\n", "\n"), max_new_tokens=512, group="python"))
    return problems
