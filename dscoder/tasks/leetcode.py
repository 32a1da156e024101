"""LeetCode Contest: DeepSeek-Coder's own benchmark (`Evaluation/LeetCode`), pass@1 by difficulty.

180 problems from LeetCode's weekly and biweekly contests of July 2023 to January 2024 (after
the models' training data), 45 Easy / 91 Medium / 44 Hard, each with 100 asserts; statements
in English (`en`) or Chinese (`zh`). The paper's protocol is the instruct one:
- the user message is the row's `prompt_sft` (the statement, then "Please complete the code
  below..." and the `class Solution` stub in a ```python fence); the `-cot` subsets append
  DeepSeek's chain-of-thought sentence (`COT`) to it, as `vllm_inference.py --cot` does, for
  both languages; greedy, at most 1024 new tokens;
- the code is DeepSeek's `extract_python_code` of the answer (`extract_code`): `[PYTHON]` tags
  read as a ```python fence, the first ```python block, else the text before the first
  top-level `def`/`class`/`if`/`#`/`print`, else (a fence never closed) the raw answer; an answer
  that just continues the method body ("\\n        ...") is appended to the stub;
- the program is DeepSeek's imports (`IMPORTS`, `typing` for the stubs' `List`/`Optional`),
  the code, then the row's `test`; a pass is every one of the 100 asserts passing.
The base form (ours; DeepSeek evaluates LeetCode with instruct models only) continues the row's
`prompt` (the statement as a docstring, then the stub) like HumanEval: the prompt's trailing
indentation is stripped for the model, the completion is recorded relative to the original
prompt and stopped at the same top-level lines `extract_code` cuts at.

Programs are assembled by `execute.harness.program`, so a pass needs the asserts to run to their
end. Every assert compares one expression, `my_solution.<method>(**test_input)` on one `Solution`
instance (the two linked-list problems wrap it in the tests' own `_f2`, which turns the returned
list into a Python list), with an expected value. The asserts compare it through a module-level
function (`ENTRY`) that evaluates that same expression, and the harness guards that function's
return: plain data only, so an object whose `__eq__` always says True fails. The report groups
by `meta.difficulty`. The data has no reference solutions.
"""

from __future__ import annotations

import re
from pathlib import Path

from dscoder.errors import UserError
from dscoder.execute import harness
from dscoder.tasks.problem import Problem, data_file, json_lines

FILES = {"en": "20240121-Jul.jsonl", "zh": "20240121-Jul-zh.jsonl"}
SUBSETS = ("en", "zh", "en-cot", "zh-cot")
DIFFICULTIES = ("Easy", "Medium", "Hard")
# DeepSeek's chain-of-thought request, appended to the instruct prompt (English for both languages).
COT = "\nYou need first write a step-by-step outline and then write the code."
# DeepSeek's IMPORT_HELPER["python"], written before every program.
IMPORTS = ("import math", "import re", "import sys", "import copy", "import datetime", "import itertools",
           "import collections", "import heapq", "import functools", "import hashlib", "import numpy",
           "import numpy as np", "import string", "from typing import *", "from collections import *",
           "from functools import *")
STOPS = ("\ndef", "\nclass", "\nif", "\n#", "\nprint")
MAX_NEW_TOKENS = 1024
# The guarded module-level stand-in for `my_solution.<method>` (a name no solution would use).
ENTRY = "dscoder_leetcode_entry"

_FENCE = re.compile(r"```python\n(.*?)\n```", re.S)
_CUT = re.compile(r"\ndef|\nclass|\nif|\n#|\nprint")


def extract_code(answer: str) -> str:
    """The code in an answer, as DeepSeek's `extract_python_code` finds it: `[PYTHON]`...`[/PYTHON]`
    read as a ```python fence; the first ```python block; without one, the text before the first
    top-level def/class/if/#/print. A ```python fence never closed gives the raw answer (DeepSeek's
    `except` fallback)."""
    text = answer.replace("[PYTHON]", "```python").replace("[/PYTHON]", "```")
    if "```python" in text:
        block = _FENCE.search(text)
        return block.group(1) if block else answer
    return _CUT.split(text)[0]


def answer_code(answer: str, prompt_sft: str) -> str:
    """The program's code for an instruct answer: one that carries straight on with the method's
    body (its first line the body's indentation) is appended to the prompt's stub, as DeepSeek does."""
    if answer.startswith("\n        "):
        return extract_code(prompt_sft).strip() + "\n" + answer
    return extract_code(answer)


def compared(test: str) -> str | None:
    """The expression every assert compares with its expected value, when it is one and the same in
    all of them and calls one method of `my_solution` on `test_input` (the dataset's shape); else None."""
    asserts = [line for line in test.splitlines() if line.startswith("assert ")]
    if not asserts or any(" == " not in line for line in asserts):
        return None
    lefts = {line[len("assert "):].split(" == ")[0] for line in asserts}
    left = lefts.pop() if len(lefts) == 1 else ""
    return left if re.search(r"\bmy_solution\.\w+\(\*\*test_input\)", left) else None


def program(code: str, test: str) -> str:
    """DeepSeek's imports, the code, then the tests, assembled by the harness. The asserts compare
    `ENTRY(**test_input)`, a function evaluating their own expression (the same instance, the same
    arguments, the tests' own conversion of a linked list), whose return the harness requires to be
    plain data."""
    solution = "\n".join(IMPORTS) + "\n" + code
    left = compared(test)
    if left is None:  # not the dataset's shape: run the tests as they are, unguarded
        return harness.program("python", solution, "\n" + test + "\n")
    forward = f"\n\n\ndef {ENTRY}(**test_input):\n    return {left}\n"
    checks = test.replace(f"assert {left} == ", f"assert {ENTRY}(**test_input) == ")
    return harness.program("python", solution + forward, "\n" + checks + "\n", guard=(ENTRY,))


def _rows(language: str, data: Path | None) -> list[dict]:
    path = data_file("leetcode", FILES[language], data=data)
    rows = []
    for number, row in json_lines(path):
        missing = [k for k in ("task_id", "prompt", "prompt_sft", "test") if not isinstance(row.get(k), str)]
        meta = row.get("meta")
        difficulty = meta.get("difficulty") if isinstance(meta, dict) else None
        if missing or difficulty not in DIFFICULTIES:
            raise UserError(f"{path}:{number}: a LeetCode problem needs task_id, prompt, prompt_sft, test and "
                            f"meta.difficulty in {DIFFICULTIES}; missing or wrong: {missing or ['meta.difficulty']}")
        rows.append(row)
    return rows


def problems(subset: str = "en", data: Path | None = None) -> list[Problem]:
    if subset not in SUBSETS:
        raise UserError(f"LeetCode has no subset {subset!r}; choose from {', '.join(SUBSETS)}")
    language, _, cot = subset.partition("-")
    problems = []
    for row in _rows(language, data):
        prompt, test = row["prompt"], row["test"]
        instruction = row["prompt_sft"] + (COT if cot else "")

        def base_program(completion: str, prompt=prompt, test=test) -> str:
            return program(prompt + completion, test)

        def answer_program(answer: str, instruction=instruction, test=test) -> str:
            return program(answer_code(answer, instruction), test)

        difficulty = row["meta"]["difficulty"]
        problems.append(Problem(row["task_id"], "python", prompt, base_program, STOPS, instruction, answer_program,
                                max_new_tokens=MAX_NEW_TOKENS, group=difficulty, strip_prompt=True,
                                extra={"difficulty": difficulty, "guarded": compared(test) is not None,
                                       "url": row.get("url", "")}))
    return problems
