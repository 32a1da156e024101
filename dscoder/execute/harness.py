"""Checked programs: a pass needs the checks to run to their end, said through a channel that
exiting early cannot forge.

Exit status 0 is not proof that a benchmark's checks passed. A sample can leave before they
finish and still exit 0: `os._exit(0)` in the function body, `atexit.register(lambda:
os._exit(0))` after a wrong answer, `sys.excepthook = lambda *a: os._exit(0)`, `sys.exit(0)`,
`exit(0)` in C++ or PHP, `System.exit(0)` in Java, `process.exit(0)` in JavaScript. So every
benchmark program is assembled here (`program`) with an end-of-checks marker: after its last
check, in the process that ran them, it prints `MARKER` followed by a random token that
`execute` draws for that one run (`new_token`) and gives the program at run time (`launch`),
never in its source. The verdict (`dscoder.execute.programs.execute`) needs exit status 0 and
that line (`reached_end`), and strips the line from the recorded output.

How each language gets the token and says it is done:
- Python: the program is solution + a separator line + checks; `pyharness` runs it, reading
  the token from stdin before any sample code (never from the environment, which stays
  readable in /proc/self/environ) and guarding the entry points' returns (plain data only).
- C++, Java, C#, Rust: a print of `$DSCODER_CHECKS_TOKEN` before the closing brace of the test
  `main`; JavaScript, TypeScript, PHP, Bash: after the tests' last top-level call.
- Go: `go test` hides a passing test's output and forwards no stdin, and a Go sample cannot
  import `os` (its imports are the prompt's), so the token is linked into a variable of the
  test file (`-ldflags=-X`, through GOFLAGS, which also sets `-v` so the output is shown) and
  printed at the end of the `Test` function. `os.Exit(0)` during a test already fails there,
  but `syscall.Exit(0)` and `os.Exit(0)` in `init` passed before this.

Alongside, checks that a sample could empty from the inside are pinned to the real thing:
C++ re-includes <assert.h> with NDEBUG undefined (a sample's `#define assert(x)` is undone),
Rust calls `::std::assert_eq!` (a sample's `macro_rules! assert_eq` shadowed the prelude's),
C# throws on a failed check instead of calling `Debug.Assert`, which a nested class `Debug`
in the sample shadowed and `Trace.Listeners.Clear()` silenced.

Residual risks, stated rather than hidden: outside Python the token is in the process
environment (Go: in its binary), so a sample written to read the harness's variable, or its
own source file to learn its name, can print the marker itself; in Python, code that walks
frames or memory to the harness's locals can (see `pyharness`). Neither is an accident of
exiting early: both need knowledge of this harness. Values with overridden equality are
refused only in Python (a Java `ArrayList` subclass with `equals` always true, or a C++
`operator==` overload, still pass), and a JavaScript sample can still patch
`require('node:assert')`. Those need the tests to run in a process the sample does not share.
"""

from __future__ import annotations

import functools
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from dscoder.execute import pyharness

TOKEN_VARIABLE = "DSCODER_CHECKS_TOKEN"
MARKER = pyharness.MARKER
PROGRAM_FILE = pyharness.PROGRAM_FILE


def new_token() -> str:
    """A fresh secret for one run: 128 random bits, hex (safe in every language's string syntax)."""
    return secrets.token_hex(16)


@functools.cache
def python_harness_source() -> str:
    """The text of `pyharness`, read once: every checked Python run writes it as main.py."""
    return Path(pyharness.__file__).read_text(encoding="utf-8")


# ---- assembling programs -------------------------------------------------------------------------

def _before_closing_brace(checks: str, nth_from_end: int, insert: str, language: str) -> str:
    """`checks` with `insert` placed before its `nth_from_end` closing brace (1: the last)."""
    at = len(checks)
    for _ in range(nth_from_end):
        at = checks.rfind("}", 0, at)
        if at == -1:
            raise ValueError(f"{language} checks do not end with the closing brace of their main: {checks[-200:]!r}")
    line_start = checks.rfind("\n", 0, at) + 1
    return checks[:line_start] + insert + checks[line_start:]


def _ends_with_call(checks: str, call: str, language: str) -> None:
    if not checks.rstrip().endswith(call):
        raise ValueError(f"{language} checks do not end with {call!r}: {checks[-200:]!r}")


def _print_line(language: str) -> str:
    """The statement that prints the marker line (on a line of its own) in `language`."""
    var, marker = TOKEN_VARIABLE, MARKER
    return {
        "cpp": f'    {{ const char *dscoder_token = std::getenv("{var}"); '
               f'std::printf("\\n{marker}%s\\n", dscoder_token ? dscoder_token : ""); std::fflush(stdout); }}\n',
        "java": f'        java.lang.System.out.print("\\n{marker}" + java.lang.System.getenv("{var}") + "\\n"); '
                f'java.lang.System.out.flush();\n',
        "cs": f'        global::System.Console.Out.Write("\\n{marker}" + '
              f'global::System.Environment.GetEnvironmentVariable("{var}") + "\\n"); global::System.Console.Out.Flush();\n',
        "rs": f'    ::std::println!("\\n{marker}{{}}", ::std::env::var("{var}").unwrap_or_default());\n',
        "go": f'\tfmt.Printf("\\n{marker}%s\\n", {var})\n',
        "js": f"require('node:process').stdout.write('\\n{marker}' + (require('node:process').env.{var} || '') + '\\n');\n",
        "ts": f"require('node:process').stdout.write('\\n{marker}' + (require('node:process').env.{var} || '') + '\\n');\n",
        "php": f'echo "\\n{marker}" . getenv("{var}") . "\\n";\n',
        "sh": f"printf '\\n{marker}%s\\n' \"${var}\"\n",
    }[language]


_CS_ASSERT = re.compile(r"^(\s*)Debug\.Assert\((.*)\);[ \t]*$", re.M)
_RS_ASSERT = re.compile(r"(?<![\w:])(assert(?:_eq|_ne)?)!\(")


def _instrument(language: str, checks: str) -> str:
    """MultiPL-E checks with the marker print at their end and the pinned assertions."""
    line = _print_line(language)
    if language == "cpp":
        main = checks.find("int main(")
        if main == -1:
            raise ValueError(f"cpp checks without `int main(`: {checks[:200]!r}")
        pinned = "#include <cstdio>\n#include <cstdlib>\n#undef NDEBUG\n#include <assert.h>\n"
        checks = checks[:main] + pinned + checks[main:]
        return _before_closing_brace(checks, 1, line, language)
    if language == "rs":
        return _before_closing_brace(_RS_ASSERT.sub(r"::std::\1!(", checks), 1, line, language)
    if language == "java":
        return _before_closing_brace(checks, 2, line, language)
    if language == "cs":
        checks = _CS_ASSERT.sub(r'\1if (!(\2)) throw new global::System.Exception("dscoder: a check failed");', checks)
        if "Debug.Assert" in checks:
            raise ValueError(f"cs checks with a Debug.Assert not on a line of its own: {checks[:300]!r}")
        return _before_closing_brace(checks, 2, line, language)
    if language == "go":
        return _before_closing_brace(checks, 1, line, language).rstrip("\n") + f"\n\nvar {TOKEN_VARIABLE} string\n"
    if language in ("js", "ts", "php"):
        _ends_with_call(checks, "test();", language)
        return checks.rstrip("\n") + "\n" + line
    if language == "sh":
        _ends_with_call(checks, "run_test", language)
        return checks.rstrip("\n") + "\n" + line
    raise ValueError(f"no end-of-checks marker for language {language!r}")


def python_program(solution: str, checks: str, guard: Sequence[str] = ()) -> str:
    """solution, the separator naming the entry points whose returns must be plain data, checks."""
    names = ",".join(guard)
    if not re.fullmatch(r"[A-Za-z_0-9,]*", names):
        raise ValueError(f"entry point names must be identifiers: {list(guard)}")
    if pyharness.SEPARATOR_PATTERN.search(checks):
        raise ValueError("the checks contain the harness separator")
    return solution + "\n" + pyharness.SEPARATOR.format(names=names) + "\n" + checks


def program(language: str, solution: str, checks: str, guard: Sequence[str] = ()) -> str:
    """The whole program for `solution` followed by a benchmark's `checks`, carrying the
    end-of-checks marker; `guard` (Python) names the entry points that must return plain data."""
    if language == "python":
        return python_program(solution, checks, guard)
    return solution + "\n" + _instrument(language, checks)


# ---- running them --------------------------------------------------------------------------------

def checked(language: str, source: str) -> bool:
    """Whether `source` was assembled by `program` and so passes only with the marker. A plain
    program (the sandbox's own tests, a user's script) is judged by its exit status alone; a
    sample cannot take the harness out of a benchmark program, only add text to it."""
    if language == "python":
        return pyharness.split(source) is not None
    return TOKEN_VARIABLE in source


@dataclass
class Launch:
    """What `execute` hands the sandbox for one checked run: files, stdin and environment."""

    files: dict[str, str] = field(default_factory=dict)
    stdin: str | None = None
    env: dict[str, str] = field(default_factory=dict)


def launch(language: str, source: str, filename: str, token: str) -> Launch:
    """How the program in `source` (to be written as `filename`) receives `token`."""
    if language == "python":
        return Launch({filename: python_harness_source(), PROGRAM_FILE: source}, stdin=token + "\n")
    if language == "go":
        package = re.search(r"^package\s+(\w+)", source, re.M)
        path = "command-line-arguments_test" if package and package.group(1).endswith("_test") \
            else "command-line-arguments"
        return Launch({filename: source}, env={"GOFLAGS": f"-v -ldflags=-X={path}.{TOKEN_VARIABLE}={token}"})
    return Launch({filename: source}, env={TOKEN_VARIABLE: token})


def reached_end(stdout: str, token: str) -> tuple[bool, str]:
    """(whether a line of `stdout` is the marker with `token`, stdout without that line)."""
    line = MARKER + token
    lines = stdout.split("\n")
    if line not in lines:
        return False, stdout
    at = len(lines) - 1 - lines[::-1].index(line)
    if at > 0 and lines[at - 1] == "":  # the empty line the marker print adds before itself
        del lines[at - 1]
        at -= 1
    del lines[at]
    return True, "\n".join(lines)


__all__ = ["TOKEN_VARIABLE", "MARKER", "program", "python_program", "checked", "launch", "Launch",
           "reached_end", "new_token"]
