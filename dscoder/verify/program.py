"""One candidate and its tests as one sandboxed program, and what its run said.

The program is assembled by `execute.harness.python_program`, like every benchmark program, so
`execute.programs.execute` (the one verdict function) judges it: a pass needs exit status 0
*and* the harness's end-of-checks marker with the run's secret token, which a candidate that
exits early, calls `os._exit(0)` or prints a marker of its own never has. Its parts:

    <one line: load `checks_runner` and the plan, before the candidate, as `__dscoder_verify_<random>__`>
    <the candidate's code>
    #<dscoder-checks guard=...>            (the harness's separator)
    __dscoder_verify_<random>__()

The one line goes after any `from __future__` imports (they must come first) and shifts the
candidate's line numbers in tracebacks by one. `guard` names the suite's subjects that the
candidate defines: their returns must be plain data (the harness refuses anything else).

The runner's name is drawn afresh for each program: the candidate runs in the namespace the call
is made from, and a candidate that rebinds a known name to a no-op would skip the checks and
still reach the harness's marker. A random name it cannot know without reading its own source
(a deliberate attack on this harness, like reading the harness's token) closes that; and a pass
also needs the runner's own report that every check passed, which a skipped runner never writes.

The runner reports on stderr, in lines starting `dscoder verify: `, ending with `P/T checks
passed`; `outcome` reads them back from the verdict's stderr excerpt (its tail holds them).
"""

from __future__ import annotations

import ast
import functools
import re
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from dscoder.execute import harness
from dscoder.execute.programs import Program, Verdict
from dscoder.verify import checks_runner
from dscoder.verify.tests import TestSuite

NAME = "__dscoder_verify_{}__"  # the runner's name in the program, with a fresh random part each time
_SUMMARY = re.compile(rf"^{re.escape(checks_runner.PREFIX)}(\d+)/(\d+) checks passed$", re.M)
_FAILED = re.compile(rf"^{re.escape(checks_runner.PREFIX)}(FAILED .*|\.\.\. and \d+ more failures)$", re.M)


@functools.cache
def runner_source() -> str:
    return Path(checks_runner.__file__).read_text(encoding="utf-8")


def prelude(suite: TestSuite, name: str) -> str:
    """The line that binds `name` to the runner, loaded with its own copy of the builtins (taken now,
    before the candidate runs), given the plan and the candidate's module namespace."""
    return (name + " = (lambda g: (exec(compile({src!r}, {file!r}, 'exec'), g), g['prepare'])[1])"
            "({{'__builtins__': __import__('builtins').__dict__.copy(), '__name__': 'dscoder_verify'}})"
            "({plan!r}, globals())").format(src=runner_source(), file=checks_runner.RUNNER_FILE, plan=suite.plan())


def top_level_functions(code: str) -> set[str]:
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return set()
    return {n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))}


def _after_future_imports(code: str) -> int:
    """The line (0-based) before which the prelude goes: after the last `from __future__` import."""
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return 0
    last = 0
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.module == "__future__":
            last = node.end_lineno
        elif not (isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)):  # a docstring may precede them
            break
    return last


def program(code: str, suite: TestSuite) -> Program:
    """The sandboxed program that runs `suite` on candidate `code` (Python)."""
    lines = code.splitlines(keepends=True)
    at = _after_future_imports(code)
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    name = NAME.format(secrets.token_hex(8))
    solution = "".join(lines[:at]) + prelude(suite, name) + "\n" + "".join(lines[at:])
    guard = sorted(suite.subjects & top_level_functions(code))
    return Program("python", harness.python_program(solution, name + "()\n", guard))


@dataclass
class Outcome:
    """What one candidate's run said: the verdict, and the checks it passed (advisory unless passed)."""

    status: str  # the verdict's: passed, failed, timeout, error
    passed_checks: int
    total_checks: int
    failures: list[str] = field(default_factory=list)  # the runner's FAILED lines, else the verdict's reason
    stderr: str = ""
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return self.status == "passed"


def outcome(verdict: Verdict, suite: TestSuite) -> Outcome:
    """The verdict read with the runner's report. A pass needs the verdict's pass and the runner's
    last report to say every check passed; a run that did not pass scores at most its reported
    count less one (so a candidate that fails cannot rank with one that passes every check), and a
    report that claims another number of checks than the suite has is ignored."""
    total = suite.checks
    found = _SUMMARY.findall(verdict.stderr)
    if verdict.status == "passed":
        if found and tuple(map(int, found[-1])) == (total, total):
            return Outcome("passed", total, total, [], verdict.stderr, verdict.seconds)
        return Outcome("failed", 0, total, ["failed: the checks never reported (the runner was bypassed)"],
                       verdict.stderr, verdict.seconds)
    passed = 0
    if found:
        reported, of = map(int, found[-1])
        if of == total and reported <= total:
            passed = min(reported, total - 1)
    failures = [m for m in _FAILED.findall(verdict.stderr)]
    if not failures:
        reason = verdict.stderr.strip().splitlines()
        failures = [f"{verdict.status}: {reason[-1] if reason else 'no output'}"]
    return Outcome(verdict.status, passed, total, failures, verdict.stderr, verdict.seconds)


__all__ = ["program", "outcome", "Outcome", "prelude", "top_level_functions"]
