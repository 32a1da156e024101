"""The problems GRPO learns from: a prompt to ask and tests to reward the answer with.

`--prompts` names a built-in split (`mbpp-train`, `mbpp-validation`; comma-separated to join
them; never MBPP's test split, which evaluation scores) or a JSONL file, one problem a line:

    {"task_id": "add", "language": "python",
     "instruction": "Write add(a, b) returning the sum.",        # what a chat model is asked
     "prompt": "def add(a, b):\n",                               # what a base model continues
     "tests": ["assert add(1, 2) == 3", "assert add(0, 0) == 0"],  # each test scored on its own
     "setup": "",                  # run before the tests (Python), optional
     "entry_points": ["add"],      # Python functions whose returns must be plain data, optional
     "reference": "def add(a, b):\n    return a + b\n",   # checked once up front, optional
     "stops": ["\ndef "], "code": "prompt+completion"}   # base form: stops, how code is formed

In a language other than Python each test is a whole check block in MultiPL-E's form for that
language (a `main` with asserts for C++, `test();` last for JavaScript...), as `dscoder eval`
runs them. A row without tests is refused with its line; a problem whose reference fails its
own tests is dropped (with a count), because its reward would punish correct answers.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from dscoder.errors import UserError
from dscoder.execute import harness
from dscoder.execute.toolchains import available
from dscoder.infer.assist import extract_code
from dscoder.tasks.problem import Problem

_FENCE = re.compile(r"```")


class PromptsError(UserError):
    """The GRPO prompt set is missing, malformed, or names a split that must not be trained on."""


@dataclass
class Task:
    """One RL problem: how it is asked (`problem`, both forms, as evaluation asks it) and its tests."""

    problem: Problem
    tests: tuple[str, ...]
    setup: str = ""
    guard: tuple[str, ...] = ()
    code_from: str = "completion"  # base form: the code is the completion, or prompt + completion
    stats: dict = field(default_factory=dict)

    @property
    def task_id(self) -> str:
        return self.problem.task_id

    @property
    def language(self) -> str:
        return self.problem.language

    def code(self, completion: str, form: str) -> str | None:
        """The code an answer proposes; None when an instruct answer has no fenced block."""
        if form == "instruct":
            if not _FENCE.search(completion):
                return None
            return extract_code(completion, self.language)
        if self.code_from == "prompt+completion":
            return self.problem.prompt + completion
        return completion.strip() + "\n"

    def program(self, code: str, tests: Sequence[str]) -> str:
        """The whole checked program: `code`, then the setup and `tests` (each must run to its end)."""
        if self.language == "python":
            return harness.program("python", code, f"\n{self.setup}\n" + "\n".join(tests) + "\n", self.guard)
        if len(tests) != 1:
            raise ValueError("outside Python each test is a whole check block, run one at a time")
        return harness.program(self.language, code, tests[0])


def _mbpp(split: str, data: Path | None, shots: int) -> list[Task]:
    from dscoder.tasks import mbpp

    if split == "test":
        raise PromptsError("mbpp-test is MBPP's evaluation split (task ids 11-510): GRPO must not train on it; "
                           "use mbpp-train and/or mbpp-validation")
    if split not in mbpp.SPLITS:
        raise PromptsError(f"no MBPP split {split!r}; GRPO may use mbpp-train (601-974) and mbpp-validation (511-600)")
    problems = mbpp.problems(data=data, ids=mbpp.SPLITS[split])
    if shots == 0:
        problems = [dataclasses.replace(p, instruction=p.extra["zero_shot"]) for p in problems]
    return [Task(p, p.extra["tests"], p.extra["setup"], p.extra["guard"]) for p in problems]


@functools.cache
def _languages() -> dict[str, str | None]:
    return available()


def _row_task(row: object, line: int, path: Path, need_tests: bool) -> Task:
    where = f"{path}:{line}"
    if not isinstance(row, dict):
        raise PromptsError(f"{where}: a problem is a JSON object, got {type(row).__name__}")
    tests = row.get("tests")
    if isinstance(tests, str):
        tests = [tests]
    if tests is None and not need_tests:
        tests = []
    elif not tests or not isinstance(tests, list) or not all(isinstance(t, str) and t.strip() for t in tests):
        raise PromptsError(f"{where}: no tests (\"tests\": a non-empty list of strings): a problem without tests "
                           "has no reward")
    language = row.get("language", "python")
    languages = _languages()
    if language not in languages:
        raise PromptsError(f"{where}: language {language!r} is not one the sandbox runs ({', '.join(languages)})")
    if languages[language] is not None:
        raise PromptsError(f"{where}: language {language!r} cannot run here: {languages[language]}")
    prompt, instruction = row.get("prompt"), row.get("instruction")
    if not isinstance(prompt, str) and not isinstance(instruction, str):
        raise PromptsError(f"{where}: needs \"instruction\" (chat models) or \"prompt\" (base models), as a string")
    code_from = row.get("code", "prompt+completion")
    if code_from not in ("prompt+completion", "completion"):
        raise PromptsError(f"{where}: \"code\" must be prompt+completion or completion, got {code_from!r}")
    setup, guard = str(row.get("setup", "")), tuple(row.get("entry_points", ()))
    task_id = str(row.get("task_id", f"{path.stem}/{line}"))
    task = Task(Problem(task_id, language, prompt or "", program=lambda c: c, stops=tuple(row.get("stops", ())),
                        instruction=instruction, reference=row.get("reference"),
                        max_new_tokens=int(row.get("max_new_tokens", 512)), group=language),
                tuple(tests), setup, guard, code_from)
    try:  # a malformed check block (no `int main(` in C++...) is the file's fault: say so now
        if task.tests:
            task.program("", task.tests[:1])
    except ValueError as e:
        raise PromptsError(f"{where}: its tests cannot be assembled into a checked program: {e}") from None
    return task


def _file(path: Path, need_tests: bool) -> list[Task]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise PromptsError(f"cannot read the prompt file {path}: {e}") from None
    tasks, seen = [], set()
    for number, text in enumerate(lines, 1):
        if not text.strip():
            continue
        try:
            row = json.loads(text)
        except json.JSONDecodeError as e:
            raise PromptsError(f"{path}:{number}: not JSON ({e.msg}); nothing was read") from None
        task = _row_task(row, number, path, need_tests)
        if task.task_id in seen:
            raise PromptsError(f"{path}:{number}: task_id {task.task_id!r} appears twice")
        seen.add(task.task_id)
        tasks.append(task)
    if not tasks:
        raise PromptsError(f"{path} holds no problems")
    return tasks


def load(spec: str, data: Path | None = None, need_tests: bool = True, shots: int = 3) -> list[Task]:
    """The tasks `spec` names: mbpp-train, mbpp-validation (comma-separated to join) or a JSONL file
    (`need_tests=False`: rows may lack tests, for a reward that does not run them). `shots`: 3 asks MBPP's
    instruct form as evaluation does, 0 without its worked examples."""
    tasks: list[Task] = []
    for part in (p.strip() for p in spec.split(",") if p.strip()):
        if part.startswith("mbpp-"):
            tasks += _mbpp(part[5:], data, shots)
        elif Path(part).is_file():
            tasks += _file(Path(part), need_tests)
        else:
            raise PromptsError(f"--prompts {part!r}: neither a built-in split (mbpp-train, mbpp-validation) nor a "
                               "file")
    return tasks


def synthetic(n: int, instruction: str = "Say something.") -> list[Task]:
    """Problems with no tests, for a `contains:TEXT` reward (the synthetic check of the loop)."""
    return [Task(Problem(f"synthetic/{i}", "python", f"{instruction}\n", program=lambda c: c,
                         instruction=instruction), ()) for i in range(n)]


__all__ = ["Task", "PromptsError", "load", "synthetic"]
