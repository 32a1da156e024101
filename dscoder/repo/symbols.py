"""The names a source file defines, and the text of each definition, found without a parser.

A completion that calls `parse_config(` wants to see how `parse_config` is declared in the file
that defines it. This module finds definitions with regular expressions and takes each one's
extent by indentation (Python) or by counting braces (the C-like languages): like `deps`, it
must never fail on a syntax error, Python 2, a half-typed file (the one being edited is
half-typed by definition) or binary junk, and must cost milliseconds per file, where `ast`
parses Python only and only when it is valid. What it misses: definitions made by assignment
inside functions, C/C++ functions (their declarations have no keyword; their `#define`s,
structs, classes and enums are found), methods of JS object literals.

A definition longer than `max_lines` is cut to a skeleton: its header and docstring, then the
signature lines of the members one level in (a class's methods), so that a 2,000-line class
costs a few hundred tokens of prompt and still shows what can be called on it.
"""

from __future__ import annotations

import keyword
import re
from dataclasses import dataclass

from dscoder.repo.deps import C_FAMILY, CSHARP, GO, JAVA, JS_FAMILY, PYTHON, RUST

MAX_LINES = 40  # lines of a definition kept whole; longer ones become a skeleton
MAX_SCAN_LINES = 20_000  # lines of a file scanned for definitions (generated monsters are cut)


@dataclass(frozen=True)
class Definition:
    """`name` defined in `path` at `line` (1-based, the header's line), `text` its source or skeleton."""

    name: str
    path: str
    line: int
    kind: str  # "function", "class", "variable", "method" (a function inside another definition)
    text: str


_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_PY_DEF = re.compile(r"^([ \t]*)(?:async[ \t]+)?(def|class)[ \t]+([A-Za-z_]\w*)")
_PY_ASSIGN = re.compile(r"^([A-Z_a-z]\w*)[ \t]*(?::[^=\n]*)?=(?!=)")
_BRACED = {
    "JavaScript": re.compile(r"^[ \t]*(?:export[ \t]+)?(?:default[ \t]+)?(?:async[ \t]+)?"
                             r"(?:(function\*?|class)[ \t]+([A-Za-z_$][\w$]*)|(const|let|var)[ \t]+([A-Za-z_$][\w$]*)"
                             r"[ \t]*=)"),
    "TypeScript": re.compile(r"^[ \t]*(?:export[ \t]+)?(?:default[ \t]+)?(?:declare[ \t]+)?(?:abstract[ \t]+)?"
                             r"(?:async[ \t]+)?(?:(function\*?|class|interface|type|enum|namespace)[ \t]+"
                             r"([A-Za-z_$][\w$]*)|(const|let|var)[ \t]+([A-Za-z_$][\w$]*)[ \t]*[:=])"),
    "Java": re.compile(r"^[ \t]*(?:(?:public|private|protected|static|final|abstract|sealed|non-sealed|strictfp)"
                       r"[ \t]+)*(class|interface|enum|record|@interface)[ \t]+([A-Za-z_]\w*)"),
    "C#": re.compile(r"^[ \t]*(?:(?:public|private|protected|internal|static|sealed|abstract|partial|readonly|ref)"
                     r"[ \t]+)*(class|interface|enum|struct|record)[ \t]+([A-Za-z_]\w*)"),
    "Go": re.compile(r"^(func)[ \t]+(?:\([^)]*\)[ \t]*)?([A-Za-z_]\w*)|^(type)[ \t]+([A-Za-z_]\w*)"),
    "Rust": re.compile(r"^[ \t]*(?:pub(?:\([^)]*\))?[ \t]+)?(?:async[ \t]+)?(?:unsafe[ \t]+)?(?:const[ \t]+)?"
                       r"(fn|struct|enum|trait|type|union|macro_rules!)[ \t]*([A-Za-z_]\w*)"),
    "C": re.compile(r"^[ \t]*(?:typedef[ \t]+)?(struct|union|enum|class|namespace)[ \t]+([A-Za-z_]\w*)[^;]*$"
                    r"|^[ \t]*#[ \t]*(define)[ \t]+([A-Za-z_]\w*)"),
}
_KIND = {"def": "function", "function": "function", "function*": "function", "fn": "function", "func": "function",
         "macro_rules!": "function", "define": "variable", "const": "variable", "let": "variable", "var": "variable"}


def _family(language: str) -> str | None:
    for family, names in (("Python", PYTHON), ("JavaScript", frozenset({"JavaScript", "JSX"})),
                          ("TypeScript", frozenset({"TypeScript", "TSX"})), ("Java", JAVA), ("C#", CSHARP),
                          ("Go", GO), ("Rust", RUST), ("C", C_FAMILY)):
        if language in names:
            return family
    return None


def supported(language: str) -> bool:
    return _family(language) is not None


def definitions(path: str, language: str, text: str, max_lines: int = MAX_LINES) -> list[Definition]:
    """The definitions in one file, in file order; [] for a language this module does not read."""
    family = _family(language)
    if family is None or not text:
        return []
    lines = text.split("\n", MAX_SCAN_LINES)[:MAX_SCAN_LINES]
    if family == "Python":
        return _python(path, lines, max_lines)
    return _braced(path, lines, _BRACED[family], max_lines)


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" \t"))


def _python(path: str, lines: list[str], max_lines: int) -> list[Definition]:
    found = []
    for i, line in enumerate(lines):
        m = _PY_DEF.match(line)
        if m:
            indent, word, name = len(m.group(1)), m.group(2), m.group(3)
            start = i
            while start > 0 and lines[start - 1].lstrip().startswith("@") and _indent(lines[start - 1]) == indent:
                start -= 1
            end = _python_end(lines, i, indent)
            kind = "class" if word == "class" else ("method" if indent else "function")
            found.append(Definition(name, path, i + 1, kind, _python_text(lines, start, i, end, indent, max_lines)))
        elif (m := _PY_ASSIGN.match(line)) and not keyword.iskeyword(m.group(1)):
            end = _python_end(lines, i, 0)
            found.append(Definition(m.group(1), path, i + 1, "variable", _cut(lines[i:end], max_lines)))
    return found


def _python_end(lines: list[str], header: int, indent: int) -> int:
    """One past the last line of the block opened at `header` (its body: the lines indented more)."""
    end = header + 1
    for j in range(header + 1, len(lines)):
        line = lines[j]
        if not line.strip():
            continue
        if _indent(line) <= indent and not line.lstrip().startswith((")", "]", "}")):
            break
        end = j + 1
    return end


def _cut(block: list[str], max_lines: int) -> str:
    return "\n".join(block[:max_lines]) + ("\n    ..." if len(block) > max_lines else "")


def _python_text(lines: list[str], start: int, header: int, end: int, indent: int, max_lines: int) -> str:
    """The whole definition, or (too long) its header, docstring and the signatures one level in."""
    if end - start <= max_lines:
        return "\n".join(lines[start:end])
    kept = lines[start:header + 1]
    j = header + 1
    while j < end and not lines[j].rstrip().endswith(":") and lines[header].rstrip().endswith((",", "(")):
        kept.append(lines[j])  # a signature spread over several lines
        j += 1
    body = next((k for k in range(j, end) if lines[k].strip()), end)
    inner = _indent(lines[body]) if body < end else indent + 4
    doc = lines[body].strip()[:3] if body < end else ""
    if doc in ('"""', "'''"):
        close = next((k for k in range(body, end) if doc in lines[k].strip()[3 if k == body else 0:]), body)
        kept += lines[body:min(close + 1, body + 12)]
    for k in range(body, end):
        line = lines[k]
        if _indent(line) == inner and (_PY_DEF.match(line) or line.lstrip().startswith("@")):
            kept.append(line)
        if len(kept) >= 3 * max_lines:
            break
    return "\n".join(kept) + "\n" + " " * inner + "..."


def _braced(path: str, lines: list[str], pattern: re.Pattern, max_lines: int) -> list[Definition]:
    found = []
    for i, line in enumerate(lines):
        m = pattern.match(line)
        if not m:
            continue
        groups = [g for g in m.groups()]
        word, name = next(((groups[k], groups[k + 1]) for k in range(0, len(groups), 2) if groups[k + 1]), (None, None))
        if name is None:
            continue
        end = i + 1 if word == "define" else _brace_end(lines, i)
        kind = _KIND.get(word, "class")
        if _indent(line) and kind == "function":
            kind = "method"
        found.append(Definition(name, path, i + 1, kind, _braced_text(lines[i:end], max_lines)))
    return found


_STRINGS = re.compile(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'|`[^`]*`|//.*$')


def _brace_end(lines: list[str], header: int) -> int:
    """One past the line that closes the first `{` opened at or after `header` (strings and line
    comments ignored); the header line alone when a `;` ends it before any brace opens."""
    depth, opened = 0, False
    for j in range(header, min(len(lines), header + 5000)):
        code = _STRINGS.sub("", lines[j])
        for ch in code:
            if ch == "{":
                depth, opened = depth + 1, True
            elif ch == "}":
                depth -= 1
                if opened and depth <= 0:
                    return j + 1
            elif ch == ";" and not opened:
                return j + 1
        if not opened and j > header + 3:
            return header + 1
    return min(len(lines), header + 5000)


def _braced_text(block: list[str], max_lines: int) -> str:
    """The whole definition, or its first lines and then the member headers one level in."""
    if len(block) <= max_lines:
        return "\n".join(block)
    head = block[: max_lines // 2]
    inner = next((_indent(l) for l in block[1:] if l.strip()), 4)
    members = [l for l in block[max_lines // 2:] if _indent(l) == inner and "(" in l and l.rstrip().endswith("{")]
    return "\n".join(head + members[: max_lines * 2]) + "\n" + " " * inner + "..."


_KEYWORDS = frozenset(keyword.kwlist) | frozenset(keyword.softkwlist) | frozenset({
    "self", "cls", "this", "true", "false", "null", "nil", "None", "True", "False", "return", "function", "const",
    "let", "var", "new", "public", "private", "static", "void", "int", "str", "string", "func", "fn", "mut", "impl",
    "struct", "package", "final", "super", "extends", "implements", "interface", "typeof", "instanceof", "undefined"})


def identifiers(text: str) -> list[str]:
    """The distinct names in `text`, nearest its end first (the cursor is at the end), keywords and
    one-letter names left out."""
    seen: dict[str, None] = {}
    for name in reversed(_IDENTIFIER.findall(text)):
        if len(name) > 1 and name not in _KEYWORDS:
            seen.setdefault(name, None)
    return list(seen)


_BOUND = re.compile(r"\b([A-Za-z_]\w*)[ \t]*(?::[^=\n]*)?(?<![=!<>])=(?!=)|\bfor[ \t]+([A-Za-z_]\w*)"
                    r"|\bexcept\b[^:\n]*\bas[ \t]+([A-Za-z_]\w*)|\bwith\b[^:\n]*\bas[ \t]+([A-Za-z_]\w*)")
_PARAMS = re.compile(r"\b(?:def|function|fn|func)[ \t]+\w+[ \t]*\(([^)]*)\)")
_IMPORT_LINE = re.compile(r"^[ \t]*(?:from|import|using|#include|use)\b.*$", re.M)


def bound_names(text: str) -> set[str]:
    """Names `text` binds itself: assignment targets, loop and `as` variables, parameters. A name
    used near the cursor that the file binds is a local, not something to look up elsewhere
    (imports are left out: an imported name is exactly what to look up)."""
    code = _IMPORT_LINE.sub("", text)
    names = {g for m in _BOUND.finditer(code) for g in m.groups() if g}
    for m in _PARAMS.finditer(code):
        names.update(_IDENTIFIER.findall(re.sub(r"[:=][^,]*", "", m.group(1))))
    return names


_PY_FROM = re.compile(r"^[ \t]*from[ \t]+[.\w]+[ \t]+import[ \t]+(\([^)]*\)|[^\n#]+)", re.M)
_JS_NAMED = re.compile(r"^[ \t]*import[ \t]+(?:type[ \t]+)?(?:[\w$]+[ \t]*,[ \t]*)?\{([^}]*)\}[ \t]*from", re.M)
_JAVA_IMPORT = re.compile(r"^[ \t]*import[ \t]+(?:static[ \t]+)?[\w.]+\.([A-Za-z_]\w*)[ \t]*;", re.M)


def imported_names(text: str) -> list[str]:
    """The names a file imports by name, in file order: Python's `from m import a, b as c` (a, c),
    JS/TS's `import {a, b as c} from` (a, c), Java's `import p.C;` (C). Star imports give none."""
    names: list[str] = []
    for m in _PY_FROM.finditer(text):
        for part in m.group(1).strip("() \t").replace("\n", " ").split(","):
            words = part.split()
            if words and words[0] != "*":
                names.append(words[-1] if len(words) == 3 and words[1] == "as" else words[0])
    for m in _JS_NAMED.finditer(text):
        for part in m.group(1).split(","):
            words = part.split()
            if words:
                names.append(words[-1] if len(words) == 3 and words[1] == "as" else words[0])
    names += _JAVA_IMPORT.findall(text)
    return [n for n in dict.fromkeys(names) if _IDENTIFIER.fullmatch(n)]


def unused_imports(prefix: str) -> list[str]:
    """Names `prefix` imports by name and has not used yet (outside import lines): the ones the
    code after the cursor most likely goes on to use."""
    used = set(_IDENTIFIER.findall(_IMPORT_BLOCK.sub("", prefix)))
    return [n for n in imported_names(prefix) if n not in used]


_IMPORT_BLOCK = re.compile(r"^[ \t]*from[ \t]+[.\w]+[ \t]+import[ \t]+\([^)]*\)|" + _IMPORT_LINE.pattern, re.M)
