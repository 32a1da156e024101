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
- MultiPL-E's other languages (Lua, Ruby, R, Perl, Julia, Swift, D, Scala, Racket): a print of
  the variable after the checks, or where the checks end (D's `main`, after its `unittest`
  block; Scala's `main`), printed only when the test library reports no failure (luaunit's
  count, test-unit's result run here rather than in its at_exit hook). Racket's checks run in
  a `main` submodule of their own (`_racket`), since rackunit exits 0 after a failed check.
- Go: `go test` hides a passing test's output and forwards no stdin, and a Go sample cannot
  import `os` (its imports are the prompt's), so the token is linked into a variable of the
  test file (`-ldflags=-X`, through GOFLAGS, which also sets `-v` so the output is shown) and
  printed at the end of the `Test` function. `os.Exit(0)` during a test already fails there,
  but `syscall.Exit(0)` and `os.Exit(0)` in `init` passed before this.

Alongside, checks that a sample could empty from the inside are pinned to the real thing:
C++ re-includes <assert.h> with NDEBUG undefined (a sample's `#define assert(x)` is undone),
Rust calls `::std::assert_eq!` (a sample's `macro_rules! assert_eq` shadowed the prelude's),
C# throws on a failed check instead of calling `Debug.Assert`, which a nested class `Debug`
in the sample shadowed and `Trace.Listeners.Clear()` silenced. Likewise Perl's `exit 1` is
`CORE::exit(1)` (a sample's `CORE::GLOBAL::exit` made it a no-op) and its `eq_deeply` Test::Deep's,
R's `stopifnot`/`isTRUE`/`all.equal` are base's, Scala's `assert` is Predef's, and D's `main`
prints only after the checks' block set a flag (a sample could replace druntime's unit tester).

Residual risks, stated rather than hidden: outside Python the token is in the process
environment (Go: in its binary), so a sample written to read the harness's variable, or its
own source file to learn its name, can print the marker itself; in Python, code that walks
frames or memory to the harness's locals can (see `pyharness`). Neither is an accident of
exiting early: both need knowledge of this harness. Values with overridden equality are
refused only in Python (a Java `ArrayList` subclass with `equals` always true, or a C++
`operator==` overload, still pass), and a JavaScript sample can still patch
`require('node:assert')`; so can a Lua, Ruby or R sample that replaces its test library
(`package.loaded.luaunit`, reopening test-unit's classes, `assignInNamespace`). Those need the
tests to run in a process the sample does not share.
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
        "lua": f'io.stdout:write("\\n{marker}" .. (os.getenv("{var}") or "") .. "\\n"); io.stdout:flush()\n',
        "rb": f'$stdout.write("\\n{marker}#{{ENV["{var}"]}}\\n"); $stdout.flush\n',
        "r": f'base::cat("\\n{marker}", base::Sys.getenv("{var}"), "\\n", sep = "")\n',
        "pl": f'print STDOUT "\\n{marker}" . ($ENV{{{var}}} // "") . "\\n";\n',
        "jl": f'println("\\n{marker}", get(ENV, "{var}", ""))\n',
        "swift": f'import Foundation\nprint("\\n{marker}" + (ProcessInfo.processInfo.environment["{var}"] ?? ""))\n',
        "d": f'void main() {{ import std.stdio : stdout, write; import std.process : environment; '
             f'if (dscoder_checks_done) {{ write("\\n{marker}", environment.get("{var}", ""), "\\n"); '
             f'stdout.flush(); }} }}\n',
        "rkt": f'(printf "\\n{marker}~a\\n" (or (getenv "{var}") "")) (flush-output)\n',
        "scala": f'        _root_.java.lang.System.out.print("\\n{marker}" + '
                 f'_root_.java.lang.System.getenv("{var}") + "\\n"); _root_.java.lang.System.out.flush();\n',
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
    if language in _MORE:
        return _MORE[language](checks, line)
    raise ValueError(f"no end-of-checks marker for language {language!r}")


# ---- MultiPL-E's other languages ------------------------------------------------------------------
# Each takes the dataset's checks and the marker print. Where a sample could empty a check by
# defining a name the checks use (Perl's `exit`, R's `stopifnot`, Scala's `assert`), the checks call
# the real one by its full name; the marker is printed only when the test library reports no failure.

def _replace_last(checks: str, call: str, language: str, by: str) -> str:
    _ends_with_call(checks, call, language)
    return checks.rstrip()[:-len(call)] + by


def _lua(checks: str, line: str) -> str:
    # luaunit returns its failure count; the dataset exits with it, so a failure exits non-zero.
    return _replace_last(checks, "os.exit(lu.LuaUnit.run())", "lua",
                         "local dscoder_failures = lu.LuaUnit.run()\nif dscoder_failures == 0 then\n" + line
                         + "end\nos.exit(dscoder_failures)\n")


def _ruby(checks: str, line: str) -> str:
    # test-unit runs its cases in an at_exit hook, after anything printed here; run them now instead.
    return (checks.rstrip("\n") + "\nTest::Unit::AutoRunner.need_auto_run = false\n"
            "if Test::Unit::AutoRunner.run\n" + line + "else\n  exit(1)\nend\n")


_R_PINNED = re.compile(r"(?<![\w.:])(stopifnot|isTRUE|all\.equal)\(")


def _r(checks: str, line: str) -> str:
    _ends_with_call(checks, "test_humaneval()", "r")
    return _R_PINNED.sub(r"base::\1(", checks).rstrip("\n") + "\n" + line


def _perl(checks: str, line: str) -> str:
    _ends_with_call(checks, "testhumaneval();", "pl")
    checks = re.sub(r"(?<![\w:])exit 1;", "CORE::exit(1);", checks)
    checks = re.sub(r"(?<![\w:$&])eq_deeply\(", "Test::Deep::eq_deeply(", checks)
    return checks.rstrip("\n") + "\n" + line


def _append(checks: str, line: str) -> str:
    """Julia and Swift: a failure already exits non-zero before the marker (a top-level @testset
    throws after its summary; Swift's `assert` traps in the unoptimised build used here), so the marker
    simply follows the checks."""
    return checks.rstrip("\n") + "\n" + line


def _d(checks: str, line: str) -> str:
    """Built with -unittest and run with `--DRT-testmode=run-main`: the unittest blocks run, then
    main only if they all passed. The last statement of the checks' block sets a flag that main
    needs before it prints the marker, so a sample that replaces druntime's unit tester
    (`Runtime.moduleUnitTester`) to skip the checks does not reach it."""
    checks = _replace_last(checks, "void main(){}", "d", "")
    checks = _before_closing_brace(checks, 1, "    dscoder_checks_done = true;\n", "d")
    return checks.rstrip("\n") + "\n__gshared bool dscoder_checks_done;\n" + line


_SCALA_ASSERT = re.compile(r"^(\s*)assert\(", re.M)


def _scala(checks: str, line: str) -> str:
    return _before_closing_brace(_SCALA_ASSERT.sub(r"\1_root_.scala.Predef.assert(", checks), 2, line, "scala")


_RKT_CANDIDATE = re.compile(r"\(let \(\(\s*candidate\s+([^\s()]+)\s*\)\)")


def _racket(checks: str, line: str) -> str:
    """rackunit reports a failed check on stderr and goes on (exit status 0), and a module may
    redefine any name it imports from `#lang racket` (`let`, `define`), which the checks use. So
    the checks run in a `main` submodule of their own language, seeing only the candidate from the
    sample's module, with each check counted and its failure caught: the marker needs every check
    of the text to have run and none to have failed."""
    found = _RKT_CANDIDATE.search(checks)
    if found is None:
        raise ValueError(f"rkt checks without `(let (( candidate NAME))`: {checks[:300]!r}")
    name = found.group(1)
    expected = len(re.findall(r"\(check-", checks))
    body = _replace_last(checks, "(test-humaneval)", "rkt", "")
    return (f"(provide {name})\n(module* main racket\n(require (only-in (submod \"..\") {name}))\n{body}\n"
            f"(define dscoder-ran 0)\n(define dscoder-failed 0)\n"
            "(define (dscoder-report e)\n"
            "  (set! dscoder-failed (add1 dscoder-failed))\n"
            "  (eprintf \"--------------------\\nFAILURE\\n\")\n"
            "  (if (exn:test:check? e)\n"
            "      (for ([info (exn:test:check-stack e)])\n"
            "        (eprintf \"~a: ~e\\n\" (check-info-name info) (check-info-value info)))\n"
            "      (eprintf \"~a\\n\" (if (exn? e) (exn-message e) e))))\n"
            "(parameterize ([current-check-around\n"
            "                (lambda (check)\n"
            "                  (set! dscoder-ran (add1 dscoder-ran))\n"
            "                  (with-handlers ([(lambda (e) #t) dscoder-report]) (check)))])\n"
            "  (test-humaneval))\n"
            f"(if (and (= dscoder-ran {expected}) (zero? dscoder-failed))\n"
            f"    (begin {line.strip()})\n"
            f"    (begin (eprintf \"dscoder: ~a of {expected} checks ran, ~a failed\\n\" dscoder-ran dscoder-failed)"
            " (exit 1))))\n")


_MORE = {"lua": _lua, "rb": _ruby, "r": _r, "pl": _perl, "jl": _append, "swift": _append, "d": _d, "scala": _scala,
         "rkt": _racket}


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
