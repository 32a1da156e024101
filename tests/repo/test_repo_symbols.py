"""dscoder.repo.symbols: definitions found by regex with their extent, and the names near a cursor."""

from __future__ import annotations

from dscoder.repo.symbols import bound_names, definitions, identifiers

PY = '''import os


@lru_cache
def load(path: str) -> dict:
    """Read it."""
    with open(path) as f:
        return parse(f.read())


class Config:
    """Settings."""

    name = "x"

    def get(self, key):
        return self.values[key]

    async def fetch(self):
        pass


LIMIT: int = 10
counter = 0
if LIMIT == 3:
    pass
'''


def by_name(found):
    return {d.name: d for d in found}


def test_python_definitions_have_their_whole_block_and_decorators():
    found = by_name(definitions("pkg/a.py", "Python", PY))
    assert set(found) == {"load", "Config", "get", "fetch", "LIMIT", "counter"}
    assert found["load"].kind == "function" and found["load"].line == 5
    assert found["load"].text.startswith("@lru_cache\ndef load(")
    assert found["load"].text.rstrip().endswith("return parse(f.read())")
    assert "class Config:" in found["Config"].text and "async def fetch" in found["Config"].text
    assert found["get"].kind == "method" and found["Config"].kind == "class"
    assert found["LIMIT"].text == "LIMIT: int = 10" and found["LIMIT"].kind == "variable"


def test_a_long_class_becomes_a_skeleton_of_its_signatures():
    methods = "".join(f"    def m{i}(self, x):\n        y = x + {i}\n        return y * 2\n\n" for i in range(30))
    text = 'class Big:\n    """Many methods."""\n\n' + methods
    big = by_name(definitions("big.py", "Python", text, max_lines=20))["Big"]
    lines = big.text.split("\n")
    assert lines[0] == "class Big:" and '"""Many methods."""' in lines[1]
    assert [l.strip() for l in lines if l.strip().startswith("def")] == [f"def m{i}(self, x):" for i in range(30)]
    assert "return y * 2" not in big.text and lines[-1].strip() == "..."


def test_braced_languages():
    go = "package p\n\nfunc (s *Server) Start(port int) error {\n\tif port < 0 {\n\t\treturn nil\n\t}\n\treturn nil\n}\n\ntype Opt struct {\n\tN int\n}\n"
    found = by_name(definitions("p/s.go", "Go", go))
    assert found["Start"].text.endswith("\treturn nil\n}") and found["Opt"].text.endswith("N int\n}")
    ts = "export interface Point {\n  x: number;\n}\nexport const origin = { x: 0 };\nexport async function move(p: Point) {\n  return p;\n}\n"
    found = by_name(definitions("a.ts", "TypeScript", ts))
    assert set(found) == {"Point", "origin", "move"} and found["move"].text.count("\n") == 2
    rust = "pub struct Grid {\n    w: usize,\n}\n\nimpl Grid {\n    pub fn new(w: usize) -> Self {\n        Grid { w }\n    }\n}\n"
    found = by_name(definitions("src/g.rs", "Rust", rust))
    assert found["Grid"].text == "pub struct Grid {\n    w: usize,\n}" and found["new"].kind == "method"
    java = "package a;\npublic final class Cache<K> {\n  private int n;\n  // a brace in a comment }\n  String s = \"}\";\n}\n"
    assert by_name(definitions("a/Cache.java", "Java", java))["Cache"].text.endswith("\"}\";\n}")
    c = "#define MAX_LEN 64\nstruct node {\n  int v;\n};\nint add(int a, int b) { return a + b; }\n"
    assert set(by_name(definitions("n.h", "C", c))) == {"MAX_LEN", "node"}  # C functions: no keyword, not found


def test_unknown_language_and_junk_are_empty_not_errors():
    assert definitions("x.md", "Markdown", "# def f():") == []
    junk = "\x00\xff def (((\n{{{{ class }}}} \n" * 100
    for language in ("Python", "Go", "C", "Rust", "JavaScript"):
        definitions("junk", language, junk)


def test_identifiers_nearest_the_end_first_without_keywords_or_locals():
    assert identifiers("x = load(path)\nfor item in Config.items():\n    return item.value") == [
        "value", "item", "items", "Config", "path", "load"]
    code = "from m import helper\n\ndef f(a, b=2, *, flag: bool = False):\n    total = helper(a)\n    for k in b:\n        pass\n    with open(a) as fh:\n        pass\n"
    assert bound_names(code) >= {"a", "b", "flag", "total", "k", "fh"}
    assert "helper" not in bound_names(code)


def test_imported_names_and_the_ones_not_used_yet():
    from dscoder.repo.symbols import imported_names, unused_imports

    text = "from a.b import (X,\n   Y as Z, W)\nfrom .c import *\nimport os\nfrom m import k\n\nprint(X, k)\n"
    assert imported_names(text) == ["X", "Z", "W", "k"]
    assert unused_imports(text) == ["Z", "W"]
    assert imported_names("import { a, b as c } from './x';\nimport D, {e} from 'y';\n") == ["a", "c", "e"]
    assert imported_names("import static java.util.Objects.requireNonNull;\nimport java.util.List;\n") == [
        "requireNonNull", "List"]
