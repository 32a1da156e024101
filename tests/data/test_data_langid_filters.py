"""Language identification by file name, and the papers' heuristic filters at every boundary."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from dscoder.data import filters
from dscoder.repo import langid
from dscoder.data.filters import RULES, check
from dscoder.repo.langid import LANGUAGES, Language, identify

# One path per language: DeepSeek-Coder V1's list (its README's 89 names) plus XML.
SAMPLES = {
    "Ada": "src/main.adb", "Agda": "Nat.agda", "Alloy": "model.als", "ANTLR": "grammar/Expr.g4",
    "AppleScript": "open.applescript", "Assembly": "boot.asm", "Augeas": "lenses/hosts.aug",
    "AWK": "scripts/sum.awk", "Batchfile": "build.bat", "Bluespec": "Fifo.bsv", "C": "src/main.c",
    "C#": "Program.cs", "Clojure": "core.clj", "CMake": "CMakeLists.txt", "CoffeeScript": "app.coffee",
    "Common Lisp": "util.lisp", "C++": "src/vec.cpp", "CSS": "site.css", "CUDA": "kernel.cu",
    "Dart": "lib/main.dart", "Dockerfile": "docker/Dockerfile", "Elixir": "lib/app.ex", "Elm": "Main.elm",
    "Emacs Lisp": "init.el", "Erlang": "server.erl", "F#": "Program.fs", "Fortran": "solver.f90",
    "GLSL": "shader.frag", "Go": "cmd/main.go", "Groovy": "build.gradle", "Haskell": "Main.hs",
    "HTML": "index.html", "Idris": "Vect.idr", "Isabelle": "Theory.thy", "Java": "src/App.java",
    "Java Server Pages": "index.jsp", "JavaScript": "app.js", "JSON": "package.json", "Julia": "fit.jl",
    "Jupyter Notebook": "analysis.ipynb", "Kotlin": "Main.kt", "Lean": "Basic.lean",
    "Literate Agda": "Nat.lagda", "Literate CoffeeScript": "doc.litcoffee", "Literate Haskell": "Main.lhs",
    "Lua": "init.lua", "Makefile": "Makefile", "Maple": "calc.mpl", "Markdown": "README.md",
    "Mathematica": "notebook.nb", "MATLAB": "solve.m", "OCaml": "main.ml", "Pascal": "unit1.pas",
    "Perl": "script.pl", "PHP": "index.php", "PowerShell": "setup.ps1", "Prolog": "family.pro",
    "Protocol Buffer": "api.proto", "Python": "src/pkg/mod.py", "R": "analysis.R", "Racket": "main.rkt",
    "reStructuredText": "docs/index.rst", "RMarkdown": "report.Rmd", "Ruby": "app.rb", "Rust": "src/lib.rs",
    "SAS": "model.sas", "Scala": "Main.scala", "Scheme": "eval.scm", "Shell": "install.sh",
    "Smalltalk": "Object.st", "Solidity": "Token.sol", "SPARQL": "query.sparql", "SQL": "schema.sql",
    "Stan": "model.stan", "Standard ML": "list.sml", "Stata": "analysis.do", "SystemVerilog": "top.sv",
    "TCL": "build.tcl", "Tcsh": "setup.csh", "TeX": "paper.tex", "Thrift": "service.thrift",
    "TypeScript": "src/app.ts", "Verilog": "alu.v", "VHDL": "alu.vhd", "Visual Basic": "Module1.vb",
    "XSLT": "style.xsl", "Yacc": "parse.y", "YAML": ".github/workflows/ci.yml", "Zig": "main.zig",
    "XML": "pom.xml",
}


# -- langid -------------------------------------------------------------------------------------

def test_table_covers_deepseek_v1_languages_plus_xml():
    # V1's rows; V2's languages follow them (tests/data/test_data_langid_v2.py).
    assert set(SAMPLES) == set(langid.V1_LANGUAGES) <= set(LANGUAGES)
    assert len(langid.V1_LANGUAGES) >= 88
    for name, lang in LANGUAGES.items():
        assert lang.name == name and (lang.extensions or lang.filenames)


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_every_language_is_identified(name):
    assert identify(SAMPLES[name]) == name


@pytest.mark.parametrize("lang", list(LANGUAGES.values()), ids=list(LANGUAGES))
def test_every_table_entry_maps_back_to_its_language(lang):
    for ext in lang.extensions:
        assert identify(f"some/dir/file{ext}") == lang.name, ext
    for filename in lang.filenames:
        assert identify(f"some/dir/{filename}") == lang.name, filename


def test_language_is_a_frozen_record():
    lang = LANGUAGES["Python"]
    assert ".py" in lang.extensions and isinstance(lang, Language)
    with pytest.raises(dataclasses.FrozenInstanceError):
        lang.name = "Snake"  # type: ignore[misc]


@pytest.mark.parametrize("path", ["foo.tar.gz", "notes.txt", "README", "LICENSE", "data.bin", "x.unknownext",
                                  "", "src/", ".gitignore", "setup.py.bak"])
def test_unknown_names_are_none(path):
    assert identify(path) is None


@pytest.mark.parametrize("path, name", [
    ("Makefile", "Makefile"), ("makefile", "Makefile"), ("GNUmakefile", "Makefile"), ("MAKEFILE", "Makefile"),
    ("Dockerfile", "Dockerfile"), ("build/app.dockerfile", "Dockerfile"), ("CMakeLists.txt", "CMake"),
    ("cmakelists.txt", "CMake"), ("Gemfile", "Ruby"), ("Jenkinsfile", "Groovy"), ("Makefile.PL", "Perl"),
    ("Makefile.am", "Makefile"),
])
def test_file_names(path, name):
    assert identify(path) == name


@pytest.mark.parametrize("path, name", [
    ("X.PY", "Python"), ("Main.JAVA", "Java"), ("lib.Rs", "Rust"), ("analysis.r", "R"), ("report.RMD", "RMarkdown"),
    # A capital in the table means the case matters: .C/.H are C++, .c/.h are C.
    ("vec.C", "C++"), ("vec.H", "C++"), ("vec.c", "C"), ("vec.h", "C"),
])
def test_case_handling(path, name):
    assert identify(path) == name


@pytest.mark.parametrize("path, name", [
    (".bashrc", "Shell"), (".zshrc", "Shell"), (".emacs", "Emacs Lisp"), (".eslintrc.json", "JSON"),
    (".clang-format", "YAML"), (".py", None), (".js", None), ("conf/.profile", "Shell"),
])
def test_dotfiles(path, name):
    assert identify(path) == name


@pytest.mark.parametrize("path, name", [
    ("types/index.d.ts", "TypeScript"), ("jquery.min.js", "JavaScript"), ("README.coffee.md", "Literate CoffeeScript"),
    ("notes.md", "Markdown"), ("a.b.c.d.e.go", "Go"), ("guide.rst.txt", "reStructuredText"),
    ("config.cmake.in", "CMake"), ("phpunit.xml.dist", "XML"), ("my.module.test.py", "Python"),
    ("a\\windows\\path.rs", "Rust"), ("deep/nested/dir.with.dots/file.kt", "Kotlin"),
])
def test_multi_dot_names_and_folders(path, name):
    assert identify(path) == name


@pytest.mark.parametrize("path, name", [
    ("x.h", "C"), ("x.m", "MATLAB"), ("x.pl", "Perl"), ("x.pro", "Prolog"), ("x.v", "Verilog"),
    ("x.vh", "SystemVerilog"), ("x.ts", "TypeScript"), ("x.tsx", "TypeScript"), ("x.jsx", "JavaScript"),
    ("x.fs", "F#"), ("x.ml", "OCaml"), ("x.cl", "Common Lisp"), ("x.cls", "TeX"), ("x.yy", "Yacc"),
])
def test_ambiguous_extensions_have_one_documented_owner(path, name):
    assert identify(path) == name


@pytest.mark.parametrize("path", ["x.inc", "x.d", "x.l", "x.i"])
def test_too_ambiguous_extensions_are_left_out(path):
    assert identify(path) is None


def test_a_second_owner_for_an_extension_is_refused(monkeypatch):
    table = (Language("C", (".c", ".h")), Language("C++", (".cpp", ".h")))
    monkeypatch.setattr(langid, "_TABLE", table)
    monkeypatch.setattr(langid, "LANGUAGES", {lang.name: lang for lang in table})
    with pytest.raises(ValueError, match="'.h' is claimed by both C and C\\+\\+"):
        langid._index()


# -- filters ------------------------------------------------------------------------------------

FILLER = "def add(left, right):\n    return left + right\n" * 3  # ordinary code passing every rule


def test_rules_are_stable_names():
    assert RULES == ("empty", "json_yaml_size", "xml", "auto_generated", "avg_line_length", "max_line_length",
                     "alpha_fraction", "html_visible_text")
    assert check(FILLER, "Python") is None


def test_real_source_files_are_kept():
    for path in (Path(langid.__file__), Path(filters.__file__)):
        assert check(path.read_text(), identify(str(path))) is None


@pytest.mark.parametrize("text", ["", " ", "\n", " \t\n\r\n  \x0c"])
def test_empty_and_whitespace_only(text):
    assert check(text, "Python") == "empty"


def test_mean_line_length_boundary():
    assert check("\n".join(["a" * 100] * 10), "Python") is None
    assert check("\n".join(["a" * 100] * 10) + "\n", "Python") is None  # a final newline adds no line
    assert check("\n".join(["a" * 100] * 9 + ["a" * 101]), "Python") == "avg_line_length"  # mean 100.1
    assert check("\r\n".join(["a" * 100] * 10), "Python") is None  # line breaks are not line characters


def test_max_line_length_boundary():
    short = "\n".join(["abc def gh"] * 20)
    assert check("a" * 1000 + "\n" + short, "Python") is None
    assert check("a" * 1001 + "\n" + short, "Python") == "max_line_length"


def test_alpha_fraction_boundary():
    assert check("a11\n" * 100, "Python") is None                                     # exactly 25%
    assert check("111\n" + "a11\n" * 99, "Python") == "alpha_fraction"                  # 99/400
    # Whitespace counts in the denominator: 1 letter in 5 characters is 20%, whatever the spaces.
    assert check("a  \n" * 50, "Python") is None
    assert check("a   \n" * 50, "Python") == "alpha_fraction"
    assert check("é11\n" * 100, "Python") is None                                     # non-ASCII letters count
    assert check("²11\n" * 100, "Python") == "alpha_fraction"                         # ...other symbols don't


@pytest.mark.parametrize("text", [
    "", "abc", "a1 b2\nc3", "x" * 10 + "é", "a\ud800b²½Ⅻé", "中文注释：测试。abc" * 50,
    ("def f():\n    return 1\n" * 40 + "# 注释\n") * 5, "ÀÉÎõü ß 123 Ωμ" * 20,
])
def test_alpha_count_agrees_with_isalpha(text):
    assert filters._alpha_count(text) == sum(map(str.isalpha, text))


@pytest.mark.parametrize("offset, rule", [(0, "xml"), (50, "xml"), (99, "xml"), (100, None), (150, None)])
def test_xml_declaration_in_the_first_100_characters(offset, rule):
    text = "a" * offset + '<?xml version="1.0"?>\n' + FILLER
    assert check(text, "XML") == rule
    assert check(text, "Markdown") == rule  # the rule is not limited to XML files


def test_xslt_keeps_its_xml_declaration():
    text = '<?xml version="1.0"?>\n<xsl:stylesheet version="1.0">\n  <xsl:template match="/">hello</xsl:template>\n' \
           "</xsl:stylesheet>\n"
    assert check(text, "XSLT") is None
    assert check(text, "XML") == "xml"


def html_page(visible: int, total: int) -> str:
    """A page of exactly `total` characters of which exactly `visible` are visible text."""
    text = ("visible words\n" * (visible // 14 + 1))[:visible]
    shell = "<html><body><p>" + text + "</p><script>"
    end = "</script></body></html>"
    hidden = total - len(shell) - len(end)
    assert hidden >= 0
    page = shell + ("var hidden = 1;\n" * (hidden // 16 + 1))[:hidden] + end
    assert len(page) == total
    return page


@pytest.mark.parametrize("visible, total, rule", [
    (210, 1000, None), (200, 1000, None), (199, 1000, "html_visible_text"), (190, 1000, "html_visible_text"),
    (100, 300, None), (99, 300, "html_visible_text"),
])
def test_html_visible_text_share_and_size(visible, total, rule):
    page = html_page(visible, total)
    assert filters._visible_chars(page) == visible
    assert check(page, "HTML") == rule
    assert check(page, "Markdown") is None  # the rule is HTML's alone


def test_html_visible_text_excludes_script_style_comments_and_counts_entities_once():
    page = ("<!DOCTYPE html><html><head><style>body { color: red; }</style><script>let a = '<p>not shown</p>';"
            "</script></head><body><!-- a comment that is hidden --><p>Fish &amp; chips</p><br/>"
            "<script src='x.js'/><b>!</b></body></html>")
    assert filters._visible_chars(page) == len("Fish & chips") + len("!")


def json_like(size: int) -> str:
    return ('"key": "some words",\n' * (size // 21 + 1))[:size]


@pytest.mark.parametrize("language", ["JSON", "YAML"])
@pytest.mark.parametrize("size, rule", [(49, "json_yaml_size"), (50, None), (5000, None), (5001, "json_yaml_size")])
def test_json_and_yaml_size_bounds_are_inclusive(language, size, rule):
    text = json_like(size)
    assert len(text) == size
    assert check(text, language) == rule
    assert check(text, "Python") is None  # other languages have no size bounds


@pytest.mark.parametrize("marker", filters.GENERATED_MARKERS)
@pytest.mark.parametrize("newline", ["\n", "\r\n", "\r"])
def test_generated_markers_in_the_first_five_lines(marker, newline):
    def with_marker_on(line: int, spelled: str) -> str:
        lines = [f"line {i} of a header" for i in range(1, 9)]
        lines[line - 1] = f"// {spelled} -- see the template"
        return newline.join(lines) + newline + FILLER

    assert check(with_marker_on(5, marker), "Go") == "auto_generated"
    assert check(with_marker_on(1, marker.upper()), "Go") == "auto_generated"
    assert check(with_marker_on(6, marker), "Go") is None


def test_generated_by_alone_is_no_marker():
    assert check("# Documentation generated by hand\n" + FILLER, "Python") is None
    assert check("// Code generated by protoc-gen-go. DO NOT EDIT.\n" + FILLER, "Go") == "auto_generated"


def test_the_first_failing_rule_in_rules_order_is_named():
    xml_header = '<?xml version="1.0"?>'
    assert check(xml_header, "JSON") == "json_yaml_size"  # also xml
    assert check(xml_header + "\n// auto-generated\n" + FILLER, "Python") == "xml"  # also auto_generated
    assert check("// auto-generated\n" + "1" * 2000, "Python") == "auto_generated"  # also line lengths, alpha
    assert check("1" * 2000, "Python") == "avg_line_length"  # also max_line_length and alpha_fraction
    assert check("1" * 1001 + "\n1\n1\n1\n1\n1\n1\n1\n1\n1\n1", "Python") == "max_line_length"  # also alpha
    every_verdict = {check(t, lang) for t in (FILLER, "", "1" * 2000, xml_header) for lang in ("HTML", "JSON", "C")}
    assert every_verdict <= set(RULES) | {None}
