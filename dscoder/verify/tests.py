"""Where a candidate's tests come from, turned into one plan that `checks_runner` executes.

Three sources, each its own `TestSuite`, combinable (`combine`):
- a user's test file (`from_file`): Python only, read with `ast`. Top-level `assert`s and calls
  of the file's own helpers (`check(add)`) are checks, run as a script in order, the other
  statements (imports, definitions, set-up) around them; then every pytest-style `test_*`
  function (with `@pytest.mark.parametrize` cases when they are literals) and every test
  method of a `Test*` class or `unittest.TestCase` is a check of its own, called by the
  runner, so pytest need not be in the sandbox. `if __name__ == "__main__":` blocks run as
  top-level code without their `unittest.main()` / `pytest.main()`. A file that does not parse
  is a `TestsError` naming the file and line; a test function that needs fixtures is skipped
  and said to be;
- examples in the prompt (`dscoder.verify.examples`): docstring `>>>` examples and the
  `f(x) == y` / `f(x) ➞ y` shapes HumanEval's prompts use;
- tests the model writes (`dscoder.verify.model_tests`): asserts, parsed one by one here.

A test file's imports of modules that are neither the standard library nor installed (`from
calc import add`, the model's `from solution import add`) are bound to the candidate, as is
the code file's own name (`module`); every other import is imported before the candidate
runs and restored before the tests (`checks_runner`).

`subjects` are the functions whose returns must be plain data (`execute.harness`'s guard):
those the checks only compare with literal values (`assert f(1) == 2`, every example), so an
object whose `__eq__` always says True cannot pass them. A test file that does more with a
function's result (calls its methods, compares two results) leaves it unguarded. A builtin's
name is never a subject of a test file: the tests' `abs` is always the real one.
"""

from __future__ import annotations

import ast
import builtins
import importlib.util
import sys
import textwrap
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from dscoder.errors import UserError

RUNNERS = ("unittest.main", "pytest.main", "main", "sys.exit", "exit")  # top-level calls that would run the tests again


class TestsError(UserError):
    """Tests that cannot be used (they do not parse, none were found); the message names the file and line."""

    __test__ = False  # not a test class, whatever pytest makes of its name


@dataclass
class TestSuite:
    """The checks one candidate must pass, as steps for `checks_runner` (plain data only)."""

    __test__ = False

    origin: str  # shown in failures and tracebacks: "tests.py", "the prompt's examples", "model-written tests"
    steps: list[dict] = field(default_factory=list)
    skipped: Counter = field(default_factory=Counter)  # why -> how many checks were left out
    imports: set[str] = field(default_factory=set)
    aliases: set[str] = field(default_factory=set)
    subjects: set[str] = field(default_factory=set)
    unittest: bool = False

    @property
    def checks(self) -> int:
        return sum(step["kind"] != "setup" for step in self.steps)

    def describe(self) -> str:
        """'5 checks from tests.py (2 skipped: needs pytest fixtures)'."""
        text = f"{self.checks} check{'s' if self.checks != 1 else ''} from {self.origin}"
        if self.skipped:
            text += " (" + ", ".join(f"{n} skipped: {why}" for why, n in self.skipped.items()) + ")"
        return text

    def plan(self) -> dict:
        """What the runner reads (repr-able plain data)."""
        return {"origin": self.origin, "steps": self.steps, "checks": self.checks, "imports": sorted(self.imports),
                "aliases": sorted(self.aliases), "subjects": sorted(self.subjects), "unittest": self.unittest}


def combine(suites: list[TestSuite]) -> TestSuite:
    """Several sources as one suite; each step keeps its origin in its label."""
    suites = [s for s in suites if s.steps]
    if len(suites) == 1:
        return suites[0]
    out = TestSuite(" + ".join(s.origin for s in suites))
    for suite in suites:
        out.steps += [{**step, "label": f"{suite.origin}: {step['label']}"} for step in suite.steps]
        out.skipped.update(suite.skipped)
        out.imports |= suite.imports
        out.aliases |= suite.aliases
        out.subjects |= suite.subjects
        out.unittest |= suite.unittest
    return out


def require_checks(suite: TestSuite, hint: str) -> TestSuite:
    if suite.checks == 0:
        raise TestsError(f"no checks found in {suite.origin}{' (' + suite.describe() + ')' if suite.skipped else ''}"
                         f"; {hint}")
    return suite


# ---- a test file -------------------------------------------------------------------------------

def from_file(path: str | Path, module: str | None = None) -> TestSuite:
    """The tests in a Python file; `module` is the name the tests may import the code as."""
    path = Path(path)
    if path.suffix not in (".py", ""):
        raise TestsError(f"{path}: verification runs Python tests only (a .py file), not {path.suffix} files")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise TestsError(f"cannot read the tests {path} as UTF-8 text: {e}") from None
    return parse(text, str(path), module)


def parse(text: str, origin: str, module: str | None = None) -> TestSuite:
    """The tests in Python source `text` (see the module docstring); `origin` names it in errors."""
    try:
        tree = ast.parse(text, origin)
    except SyntaxError as e:
        raise TestsError(f"{origin}:{e.lineno}: the tests do not parse as Python: {e.msg}"
                         + (f": {e.text.strip()}" if e.text else "")) from None
    suite = TestSuite(origin)
    defined = {n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))}
    called_at_top: set[str] = set()
    deferred: list[dict] = []
    for node in _top_level(tree):
        source = _source(text, node)
        if isinstance(node, ast.Assert):
            suite.steps.append(_check(source, node.lineno))
        elif isinstance(node, ast.Expr) and isinstance(node.value, ast.Call):
            name = _dotted(node.value.func)
            if name in RUNNERS:
                continue
            if name in defined or name.split(".")[-1].startswith(("test", "check")):
                called_at_top.add(name)
                suite.steps.append(_check(source, node.lineno))
            else:
                suite.steps.append(_setup(source, node.lineno))
        else:
            suite.steps.append(_setup(source, node.lineno))
            if isinstance(node, ast.FunctionDef) and node.name.startswith("test"):
                deferred += _function_checks(node, suite)
            elif isinstance(node, ast.ClassDef):
                deferred += _method_checks(node, suite)
    suite.steps += [step for step in deferred if step.get("name") not in called_at_top or "cls" in step]
    _imports(tree, suite, module)
    suite.subjects = _compared_with_literals(tree) - suite.aliases
    return suite


def _top_level(tree: ast.Module):
    """The module's statements, with `if __name__ == "__main__":` bodies in their place."""
    for node in tree.body:
        if (isinstance(node, ast.If) and isinstance(node.test, ast.Compare) and isinstance(node.test.left, ast.Name)
                and node.test.left.id == "__name__" and not node.orelse):
            yield from node.body
        else:
            yield node


def _source(text: str, node: ast.stmt) -> str:
    """A statement's text, decorators included, dedented (an `if __main__` body is indented)."""
    lines = text.splitlines(keepends=True)
    first = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
    if first == node.lineno and node.end_lineno == node.lineno:
        return ast.get_source_segment(text, node) or ""
    return textwrap.dedent("".join(lines[first - 1:node.end_lineno]))


def _setup(source: str, line: int) -> dict:
    return {"kind": "setup", "source": source, "line": line, "label": source.splitlines()[0][:80] if source else ""}


def _check(source: str, line: int) -> dict:
    return {"kind": "check", "source": source, "line": line, "label": " ".join(source.split())[:80]}


def _dotted(node: ast.expr) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return ""


def _parametrize(node: ast.FunctionDef) -> list[dict] | None | str:
    """The cases of a `@pytest.mark.parametrize("a,b", [...])` with literal values; None without one;
    a reason when there is one we cannot read."""
    marks = [d for d in node.decorator_list if isinstance(d, ast.Call) and _dotted(d.func).endswith("mark.parametrize")]
    if not marks:
        return None
    if len(marks) > 1 or len(marks[0].args) < 2:
        return "parametrize that is not one literal list"
    try:
        names, values = ast.literal_eval(marks[0].args[0]), ast.literal_eval(marks[0].args[1])
    except ValueError:
        return "parametrize with values that are not literals"
    names = [n.strip() for n in names.split(",")] if isinstance(names, str) else list(names)
    cases = []
    for value in values:
        row = (value,) if len(names) == 1 else tuple(value)
        if len(row) != len(names):
            return "parametrize with rows of the wrong length"
        cases.append(dict(zip(names, row)))
    return cases


def _required(node: ast.FunctionDef, skip_self: bool = False) -> list[str]:
    args = node.args.posonlyargs + node.args.args
    if skip_self:
        args = args[1:]
    return [a.arg for a in args[:len(args) - len(node.args.defaults)]] + \
           [a.arg for a, d in zip(node.args.kwonlyargs, node.args.kw_defaults) if d is None]


def _function_checks(node: ast.FunctionDef, suite: TestSuite) -> list[dict]:
    label = f"{node.name}()"
    cases = _parametrize(node)
    if isinstance(cases, str):
        suite.skipped[cases] += 1
        return []
    if cases is None:
        needs = _required(node)
        if needs:
            suite.skipped["needs pytest fixtures (" + ", ".join(needs) + ")"] += 1
            return []
        return [{"kind": "function", "name": node.name, "line": node.lineno, "label": label, "source": ""}]
    return [{"kind": "function", "name": node.name, "case": case, "line": node.lineno, "source": "",
             "label": f"{node.name}({', '.join(f'{k}={v!r}' for k, v in case.items())})"[:80]} for case in cases]


def _method_checks(node: ast.ClassDef, suite: TestSuite) -> list[dict]:
    is_case = any(_dotted(b).endswith("TestCase") for b in node.bases)
    if not (is_case or node.name.startswith("Test")):
        return []
    suite.unittest |= is_case
    found = []
    for item in node.body:
        if isinstance(item, ast.FunctionDef) and item.name.startswith("test"):
            if not is_case and (_required(item, skip_self=True) or _parametrize(item) is not None):
                suite.skipped["needs pytest fixtures or parametrize in a class"] += 1
                continue
            found.append({"kind": "method", "cls": node.name, "name": item.name, "unittest": is_case,
                          "line": item.lineno, "label": f"{node.name}.{item.name}", "source": ""})
    return found


def installed(name: str) -> bool:
    """Whether top-level module `name` is the standard library or installed beside this Python (so the
    sandbox, which sees this installation read-only, can import it); a file in the current directory
    does not count (the sandbox does not see it)."""
    if name in sys.stdlib_module_names or name in sys.builtin_module_names:
        return True
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return False
    if spec is None:
        return False
    where = spec.origin if spec.origin not in (None, "namespace") else next(iter(spec.submodule_search_locations or []), "")
    roots = {str(Path(p).resolve()) for p in (sys.prefix, sys.base_prefix, sys.exec_prefix)}
    return any(str(Path(where).resolve()).startswith(root) for root in roots) if where else False


def _imports(tree: ast.Module, suite: TestSuite, module: str | None) -> None:
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name.split(".")[0] for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module.split(".")[0]]
        else:
            continue
        for name in names:
            (suite.imports if name != module and installed(name) else suite.aliases).add(name)
    if module:
        suite.aliases.add(module)


def _literal(node: ast.expr) -> bool:
    try:
        ast.literal_eval(node)
        return True
    except ValueError:
        return False


def _compared_with_literals(tree: ast.Module) -> set[str]:
    """Functions every call of which (in the tests) is one side of `==`/`!=`/`is`/`in` with a
    literal on the other side: their results are only ever compared with plain data."""
    compared: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare) and len(node.comparators) == 1:
            left, right = node.left, node.comparators[0]
            for side, other in ((left, right), (right, left)):
                if isinstance(side, ast.Call) and _literal(other):
                    compared.add(id(side))
    calls: dict[str, list[bool]] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            calls.setdefault(node.func.id, []).append(id(node) in compared)
    # a builtin's name is never a subject: the candidate's own `abs` must not replace the tests' abs
    return {name for name, seen in calls.items() if all(seen) and name not in _BUILTINS}


_BUILTINS = frozenset(dir(builtins))


# ---- asserts, one by one (model-written tests, a benchmark's listed tests) ---------------------

def from_asserts(asserts: list[str], origin: str, setup: str = "", subjects: set[str] | None = None) -> TestSuite:
    """One check per assert (its line: its place in the list); one that does not parse is skipped
    and counted. `subjects` default to the functions the asserts only compare with literals."""
    suite = TestSuite(origin)
    if setup.strip():
        try:
            ast.parse(setup)
            suite.steps.append(_setup(setup, 1))
        except SyntaxError:
            suite.skipped["set-up that does not parse"] += 1
    for number, text in enumerate(asserts, 1):
        try:
            tree = ast.parse(text)
        except SyntaxError:
            suite.skipped["does not parse"] += 1
            continue
        if len(tree.body) != 1 or not isinstance(tree.body[0], ast.Assert):
            suite.skipped["not an assert"] += 1
            continue
        suite.steps.append(_check(text.strip(), number))
        _imports(tree, suite, None)
    suite.aliases = set()  # asserts import nothing of their own that is not installed
    suite.subjects = set(subjects) if subjects is not None else _compared_with_literals(
        ast.parse("\n".join(s["source"] for s in suite.steps if s["kind"] == "check") or "pass"))
    return suite
