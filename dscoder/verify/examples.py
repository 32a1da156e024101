"""The examples a prompt already holds, turned into checks: the tests a user gave without writing a file.

HumanEval's prompts, and most docstrings people write, show how a function behaves in one of a
few shapes. Each recognised example becomes one check; what cannot be read as Python is
skipped and counted (`TestSuite.skipped`), never guessed at:
- doctest: `>>> expression` (with `...` continuation lines) and the expected output below it,
  up to a blank line, the next `>>>` or the end of the docstring. A statement with no output
  (`>>> x = [1, 2]`) is set-up for the examples after it. The result is compared by value when
  the expected output is a Python literal (floats within 1e-6), else as printed text with
  whitespace runs as one space. Expected exceptions (`Traceback ...`) are skipped.
- one line, a call and its value: `f(x) == y`, `f(x) ➞ y`, `f(x) => y`, `f(x) ==> y`,
  `f(x) -> y`, `f(x) = y`, `f(x)  # returns y`, `f(x) should return y`, with or without a
  leading `assert`;
- `For a = 1, b = [2] the output should be y` (the keywords of a call of the prompt's last
  function) and `Input: a = 1, b = 2` or `Input: [1, 2]` followed by `Output: y`.
The expected value must be a literal; trailing prose (`'No' (the name should start...)`, a
final period, a `# comment`) is cut off. When the prompt defines functions (`def name(`), only
examples that call one of them are kept (HumanEval/81's examples call `grade_equation`, which
the prompt never defines, so every candidate would fail them).
"""

from __future__ import annotations

import ast
import builtins
import re

from dscoder.verify.tests import TestSuite

_DEF = re.compile(r"^[ \t]*(?:async[ \t]+)?def[ \t]+([A-Za-z_]\w*)[ \t]*\(", re.M)
_PROMPT = re.compile(r"^([ \t]*)>>>(?: (.*)|$)")
_ARROWS = r"➞|==>|=>|->|→|==|="
_LEAD = r"^\s*(?:[*-]\s+|for\s+|assert\s+)?"  # a bullet, HumanEval/150's "for f(x) == y", an assert
_CALL_LINE = re.compile(rf"{_LEAD}(?P<call>[A-Za-z_][\w.]*\s*\(.*\))\s*(?P<op>{_ARROWS})\s*(?P<want>.+?)\s*$")
_COMMENT_LINE = re.compile(_LEAD + r"(?P<call>[A-Za-z_][\w.]*\s*\(.*\))\s*#\s*(?:returns?|=>|->|➞|==>|==|should return)"
                           r"\s*:?\s*(?P<want>.+?)\s*$", re.I)
_SHOULD_LINE = re.compile(_LEAD + r"(?P<call>[A-Za-z_][\w.]*\s*\(.*\))\s+(?:should\s+return|returns?)\s*:?\s+"
                          r"(?P<want>.+?)\s*$", re.I)
_FOR_LINE = re.compile(r"^\s*For\s+(?P<args>.+?)\s*,?\s+the\s+(?:output|result|answer)\s+(?:should\s+be|will\s+be|is)"
                       r"\s*:?\s+(?P<want>.+?)\s*$", re.I)
_INPUT_LINE = re.compile(r"^\s*Input\s*:\s*(?P<args>.+?)\s*$", re.I)
_OUTPUT_LINE = re.compile(r"^\s*Output\s*:\s*(?P<want>.+?)\s*$", re.I)
_DOCSTRING_END = re.compile(r"^\s*(\"\"\"|''')")


def functions(text: str) -> list[str]:
    """The names of the functions `text` defines, in order."""
    return _DEF.findall(text)


def from_text(text: str, origin: str = "the prompt's examples") -> TestSuite:
    """Every example of `text` that can be read as a check (see the module docstring)."""
    known = functions(text)
    suite = TestSuite(origin)
    seen: set[tuple] = set()
    used_lines: set[int] = set()
    lines = text.splitlines()
    for start, source, expected, consumed in _doctests(lines):
        used_lines.update(consumed)
        _add_doctest(suite, known, seen, start, source, expected)
    for number, line in enumerate(lines, 1):
        if number in used_lines:
            continue
        found = _one_line(line, known)
        if found is None and _INPUT_LINE.match(line):
            found = _input_output(lines, number, known)
        if found is None:
            continue
        if isinstance(found, str):
            suite.skipped[found] += 1
            continue
        call, value = found
        _add(suite, seen, {"kind": "example", "source": call, "expression": True, "line": number,
                           "expected": repr(value), "value": value, "label": f"{call} -> {value!r}"[:80]})
    suite.subjects = {name for name in known if any(name in _called(s["source"]) for s in suite.steps)}
    return suite


def _add(suite: TestSuite, seen: set, step: dict) -> None:
    key = (step["source"], step.get("expected"))
    if key in seen:
        return
    seen.add(key)
    suite.steps.append(step)


def _called(source: str) -> set[str]:
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return set()
    return {n.func.id for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)}


def _calls_known(source: str, known: list[str]) -> bool:
    """Whether `source` calls a function of the prompt (any call counts when the prompt defines none),
    and calls no name that is neither the prompt's nor a builtin."""
    called = _called(source)
    if not known:
        return bool(called)
    return bool(called & set(known)) and called <= set(known) | set(dir(builtins))


# ---- doctests ---------------------------------------------------------------------------------

def _doctests(lines: list[str]):
    """(first line number, source, expected output, the line numbers used) of each `>>>` example."""
    i = 0
    while i < len(lines):
        found = _PROMPT.match(lines[i])
        if not found:
            i += 1
            continue
        indent, start = found.group(1), i + 1
        source = [found.group(2) or ""]
        used = [i + 1]
        i += 1
        while i < len(lines) and re.match(rf"^{re.escape(indent)}\.\.\.(?: |$)", lines[i]):
            source.append(lines[i][len(indent) + 4:])
            used.append(i + 1)
            i += 1
        expected = []
        while (i < len(lines) and lines[i].strip() and not _PROMPT.match(lines[i])
               and not _DOCSTRING_END.match(lines[i]) and lines[i].startswith(indent)):
            expected.append(lines[i][len(indent):])
            used.append(i + 1)
            i += 1
        yield start, "\n".join(source), "\n".join(expected), used


def _add_doctest(suite: TestSuite, known: list[str], seen: set, start: int, source: str, expected: str) -> None:
    try:
        tree = ast.parse(source)
    except SyntaxError:
        suite.skipped["example that does not parse"] += 1
        return
    if expected.lstrip().startswith("Traceback"):
        suite.skipped["example expecting an exception"] += 1
        return
    expression = len(tree.body) == 1 and isinstance(tree.body[0], ast.Expr)
    if not expected.strip():
        if not expression:  # `>>> x = [1, 2]`: set-up for the examples below
            suite.steps.append({"kind": "setup", "source": source, "line": start, "label": source[:80]})
            return
        found = _one_line(source, known)  # `>>> f(x) == y` with no output below: HumanEval/108's shape
        if isinstance(found, tuple):
            call, value = found
            _add(suite, seen, {"kind": "example", "source": call, "expression": True, "line": start,
                               "expected": repr(value), "value": value, "label": f"{call} -> {value!r}"[:80]})
        else:
            suite.skipped["example without an expected output"] += 1
        return
    if not _calls_known(source, known):
        suite.skipped["example that calls no function of the prompt"] += 1
        return
    step = {"kind": "example", "source": source, "expression": expression, "line": start, "expected": expected,
            "label": f"{' '.join(source.split())} -> {' '.join(expected.split())}"[:80]}
    value = _literal(expected)
    if value is not _NOT_LITERAL:
        step["value"] = value
    _add(suite, seen, step)


# ---- one-line shapes ---------------------------------------------------------------------------

_NOT_LITERAL = object()


def _literal(text: str):
    """`text` as a Python literal, or _NOT_LITERAL."""
    try:
        value = ast.literal_eval(text.strip())
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return _NOT_LITERAL
    try:
        ok = ast.literal_eval(repr(value)) == value
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        ok = False
    return value if ok else _NOT_LITERAL  # nan, inf: no literal to write into the plan


def _leading_literal(text: str):
    """The longest leading part of `text` that is a literal (prose after it cut off), or _NOT_LITERAL."""
    text = text.strip().rstrip(".;,").strip()
    value = _literal(text)
    if value is not _NOT_LITERAL:
        return value
    word = text.split()[0] if text.split() else ""
    if word.lower().rstrip(".;,") in ("true", "false"):  # HumanEval/76 writes JavaScript's `true`
        return word.lower().rstrip(".;,") == "true"
    if "#" in text:
        value = _literal(text.split("#", 1)[0])
        if value is not _NOT_LITERAL:
            return value
    cuts = [m.start() for m in re.finditer(r"[\s.,;(]", text)]
    for cut in sorted(cuts, reverse=True):
        if _ARITHMETIC.match(text[cut:]):  # `19 - 5 - 6 = 8` (HumanEval/67) is a sum, not 19 and prose
            continue
        value = _literal(text[:cut].rstrip(".;, "))
        if value is not _NOT_LITERAL:
            return value
    return _NOT_LITERAL


_ARITHMETIC = re.compile(r"^\s*[-+*/%=<>^&|]")


def _call(call: str, known: list[str]) -> str | None:
    """`call` when it parses as one call of a known function (or any, when none is known)."""
    try:
        tree = ast.parse(call.strip(), mode="eval")
    except SyntaxError:
        return None
    node = tree.body
    if not isinstance(node, ast.Call) or not _calls_known(call, known):
        return None
    free = {n.id for arg in [*node.args, *(k.value for k in node.keywords)] for n in ast.walk(arg)
            if isinstance(n, ast.Name)}
    if free - set(known) - set(dir(builtins)):  # `is_happy(a) => False` (HumanEval/80): unquoted text
        return None
    return ast.unparse(node)


def _one_line(line: str, known: list[str]) -> tuple[str, object] | str | None:
    """(call, value) for a one-line example; a reason to skip for a line that looks like one but cannot
    be read; None for any other line."""
    for pattern in (_COMMENT_LINE, _SHOULD_LINE, _CALL_LINE):
        found = pattern.match(line)
        if found:
            call = _call(found.group("call"), known)
            if call is None:
                return None if not known or not any(k in line for k in known) else "example that is not one call"
            value = _leading_literal(found.group("want"))
            if value is _NOT_LITERAL:
                return "example whose value is not a literal"
            return call, value
    found = _FOR_LINE.match(line)
    if found and known:
        return _keywords_call(found.group("args"), found.group("want"), known)
    return None


def _keywords_call(args: str, want: str, known: list[str]) -> tuple[str, object] | str:
    args = re.sub(r"\s*:\s*", "=", args) if "=" not in args else args
    call = _call(f"{known[-1]}({args})", known)
    if call is None:
        return "example whose inputs are not Python"
    value = _leading_literal(want)
    if value is _NOT_LITERAL:
        return "example whose value is not a literal"
    return call, value


def _input_output(lines: list[str], number: int, known: list[str]) -> tuple[str, object] | str | None:
    """`Input: ...` on line `number` (1-based) and `Output: ...` on one of the next two lines."""
    if not known:
        return None
    args = _INPUT_LINE.match(lines[number - 1]).group("args")
    for line in lines[number:number + 2]:
        found = _OUTPUT_LINE.match(line)
        if found:
            return _keywords_call(args, found.group("want"), known)
    return "example whose input spans lines"


__all__ = ["from_text", "functions"]
