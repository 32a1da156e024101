"""The everyday uses of a code chat model, each one documented prompt.

DeepSeek-Coder's instruct models are used to explain, test, document, translate, fix and
review code.  Writing those prompts once, here, keeps them consistent and reviewable;
answers that are code are taken from the model's fenced block, so the command's output
can be written straight to a file.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from dscoder.errors import UserError

LANGUAGES = {
    ".py": "Python", ".js": "JavaScript", ".mjs": "JavaScript", ".ts": "TypeScript", ".tsx": "TypeScript",
    ".java": "Java", ".c": "C", ".h": "C", ".cc": "C++", ".cpp": "C++", ".hpp": "C++", ".cs": "C#", ".go": "Go",
    ".rs": "Rust", ".rb": "Ruby", ".php": "PHP", ".sh": "Bash", ".kt": "Kotlin", ".swift": "Swift",
    ".scala": "Scala", ".lua": "Lua", ".r": "R", ".jl": "Julia", ".sql": "SQL", ".hs": "Haskell",
}
TEST_FRAMEWORKS = {"Python": "pytest", "JavaScript": "Jest", "TypeScript": "Jest", "Java": "JUnit 5",
                   "Go": "the testing package", "Rust": "#[test] functions", "C#": "xUnit", "C++": "GoogleTest"}


@dataclass(frozen=True)
class Task:
    instruction: str  # str.format fields: language, code, target, error, framework
    returns_code: bool


_ONE_BLOCK = "Answer with the complete code in a single fenced code block."
TASKS = {
    "explain": Task("Explain what the following {language} code does: its purpose, then how it works step by "
                    "step, then any pitfalls.\n\n```\n{code}\n```", returns_code=False),
    "tests": Task("Write thorough unit tests with {framework} for the following {language} code, covering normal "
                  "cases, edge cases and errors. " + _ONE_BLOCK + "\n\n```\n{code}\n```", returns_code=True),
    "doc": Task("Add clear docstrings and comments to the following {language} code without changing its "
                "behaviour. " + _ONE_BLOCK + "\n\n```\n{code}\n```", returns_code=True),
    "translate": Task("Translate the following {language} code to idiomatic {target}, keeping its behaviour. "
                      + _ONE_BLOCK + "\n\n```\n{code}\n```", returns_code=True),
    "fix": Task("The following {language} code fails with this error:\n\n{error}\n\nFind the cause and fix it. "
                + _ONE_BLOCK + "\n\n```\n{code}\n```", returns_code=True),
    "review": Task("Review this change as a careful senior engineer: point out bugs, risky edge cases, security "
                   "issues and unclear code, each with the line it concerns, most important first.\n\n"
                   "```diff\n{code}\n```", returns_code=False),
}


def language_of(path: str | Path | None) -> str:
    return LANGUAGES.get(Path(path).suffix.lower(), "source") if path else "source"


def task_prompt(name: str, code: str, path: str | Path | None = None, target: str = "", error: str = "") -> str:
    if name not in TASKS:
        raise UserError(f"unknown task {name!r} (known: {', '.join(TASKS)})")
    if name == "translate" and not target:
        raise UserError("translate needs a target language (--to)")
    if name == "fix" and not error:
        raise UserError("fix needs the error message (--error)")
    language = language_of(path)
    return TASKS[name].instruction.format(language=language, code=code.rstrip("\n"), target=target, error=error,
                                          framework=TEST_FRAMEWORKS.get(language, "the usual test framework"))


_FENCE = re.compile(r"^(`{3,}|~{3,})[ \t]*([\w+#.-]*)[^\n]*\n(.*?)(?:^\1[ \t]*$|\Z)", re.S | re.M)


def extract_code(answer: str, language: str | None = None) -> str:
    """The code in a model's answer: its longest fenced block (among those tagged `language`,
    if any are), an unterminated last fence included; the whole answer when it has none."""
    blocks = [(m.group(2).lower(), m.group(3)) for m in _FENCE.finditer(answer)]
    if not blocks:
        return answer.strip() + "\n"
    wanted = (language or "").lower()
    tagged = [code for tag, code in blocks if wanted and tag in (wanted, {"c++": "cpp", "c#": "csharp"}.get(wanted))]
    code = max(tagged or [code for _, code in blocks], key=len)
    return code.rstrip("\n") + "\n"
