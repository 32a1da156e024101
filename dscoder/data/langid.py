"""A file's programming language from its name alone: Linguist's extensions and file names.

The corpus is bucketed by language before anything reads a file, so this looks only at the
path, never the content, and must cost next to nothing per file (it runs on every file of every
repository).  The table covers DeepSeek-Coder V1's languages (the list in its README: 89 names,
though the paper counts "87") plus XML, which the XML rule of `filters` needs, with the common
extensions and file names GitHub Linguist's `languages.yml` gives them; V2's 338 languages are the
same table with more rows.

How a name is looked up, first hit wins:

1. the base name exactly (`Makefile`, `CMakeLists.txt`, `.bashrc`), then lower-cased (`makefile`);
2. its extensions, longest first, so `x.coffee.md` is Literate CoffeeScript before `.md` makes it
   Markdown and `x.d.ts` falls through to `.ts`.  A dotfile's leading dot starts no extension
   (`.py` alone is no Python file, `.eslintrc.json` is JSON).  Extensions are compared
   lower-cased, except the few spelled with a capital in the table, which must match exactly:
   `.C`/`.H` are C++ while `.c`/`.h` are C.

Linguist gives some extensions to several languages and settles them by content; here each
extension has exactly one owner (a duplicate is refused at import) and the choice is made once:
`.h` C (not C++ or Objective-C), `.m` MATLAB (not Objective-C or Mathematica), `.pl`/`.t`/`.cgi` Perl
(not Prolog, which keeps `.pro`/`.prolog`), `.v` Verilog (not Coq), `.vh` SystemVerilog, `.ts`
TypeScript (not Qt translations), `.fs` F# (not GLSL), `.ml` OCaml (not Standard ML), `.cl`
Common Lisp (not OpenCL), `.cls` TeX (not Visual Basic), `.pp` Pascal (not Puppet), `.sc` Scala,
`.st` Smalltalk, `.yy` Yacc (not JSON), `.tsx` TypeScript and `.jsx` JavaScript (the Stack's
grouping, which DeepSeek's language list follows).  Extensions too ambiguous to bet on (`.inc`,
`.d`, `.l`, `.i`, `.cake`) are left out: such files come back unidentified.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Language:
    """One language: its Linguist name, extensions (with the dot) and exact file names."""

    name: str
    extensions: tuple[str, ...]
    filenames: tuple[str, ...] = ()


L = Language
_TABLE = (
    L("Ada", (".adb", ".ads", ".ada", ".ada95")),
    L("Agda", (".agda",)),
    L("Alloy", (".als",)),
    L("ANTLR", (".g4", ".g")),
    L("AppleScript", (".applescript", ".scpt")),
    L("Assembly", (".asm", ".s", ".nasm", ".a51")),
    L("Augeas", (".aug",)),
    L("AWK", (".awk", ".gawk", ".mawk", ".nawk", ".auk")),
    L("Batchfile", (".bat", ".cmd")),
    L("Bluespec", (".bsv",)),
    L("C", (".c", ".h", ".cats", ".idc")),
    L("C#", (".cs", ".csx")),
    L("Clojure", (".clj", ".cljs", ".cljc", ".cljscm", ".edn", ".boot"), ("riemann.config",)),
    L("CMake", (".cmake", ".cmake.in"), ("CMakeLists.txt",)),
    L("CoffeeScript", (".coffee", ".cson", ".iced", "._coffee"), ("Cakefile",)),
    L("Common Lisp", (".lisp", ".lsp", ".asd", ".cl", ".ny", ".sexp")),
    L("C++", (".cpp", ".cc", ".cxx", ".c++", ".cp", ".hpp", ".hh", ".hxx", ".h++", ".ipp", ".tpp",
              ".inl", ".ino", ".cppm", ".ixx", ".tcc", ".C", ".H")),
    L("CSS", (".css",)),
    L("CUDA", (".cu", ".cuh")),
    L("Dart", (".dart",)),
    L("Dockerfile", (".dockerfile", ".containerfile"), ("Dockerfile", "Containerfile")),
    L("Elixir", (".ex", ".exs")),
    L("Elm", (".elm",)),
    L("Emacs Lisp", (".el", ".emacs", ".emacs.desktop"),
      (".emacs", "_emacs", ".spacemacs", ".gnus", ".viper", "Project.ede")),
    L("Erlang", (".erl", ".hrl", ".escript", ".xrl", ".yrl", ".app.src"), ("rebar.config", "Emakefile")),
    L("F#", (".fs", ".fsi", ".fsx")),
    L("Fortran", (".f", ".for", ".f77", ".fpp", ".ftn", ".f90", ".f95", ".f03", ".f08")),
    L("GLSL", (".glsl", ".vert", ".frag", ".geom", ".tesc", ".tese", ".comp", ".vsh", ".fsh", ".gsh",
               ".vshader", ".fshader", ".gshader", ".glslv", ".glslf", ".frg", ".vrx", ".rchit", ".rgen")),
    L("Go", (".go",)),
    L("Groovy", (".groovy", ".gradle", ".gvy", ".gy", ".grt", ".gtpl"), ("Jenkinsfile",)),
    L("Haskell", (".hs", ".hs-boot", ".hsc")),
    L("HTML", (".html", ".htm", ".xhtml", ".xht", ".html.hl")),
    L("Idris", (".idr", ".lidr")),
    L("Isabelle", (".thy",)),
    L("Java", (".java", ".jav")),
    L("Java Server Pages", (".jsp", ".tag")),
    L("JavaScript", (".js", ".mjs", ".cjs", ".jsx", "._js", ".es6", ".jsm", ".jake", ".pac"), ("Jakefile",)),
    L("JSON", (".json", ".geojson", ".topojson", ".jsonl", ".webmanifest", ".har", ".avsc", ".gltf",
               ".mcmeta", ".tfstate", ".webapp"),
      (".arcconfig", ".htmlhintrc", ".tern-config", ".tern-project", ".watchmanconfig", "composer.lock",
       "flake.lock", "mcmod.info")),
    L("Julia", (".jl",)),
    L("Jupyter Notebook", (".ipynb",)),
    L("Kotlin", (".kt", ".kts", ".ktm")),
    L("Lean", (".lean", ".hlean")),
    L("Literate Agda", (".lagda",)),
    L("Literate CoffeeScript", (".litcoffee", ".coffee.md")),
    L("Literate Haskell", (".lhs",)),
    L("Lua", (".lua", ".rockspec", ".nse", ".wlua", ".p8"), (".luacheckrc",)),
    L("Makefile", (".mk", ".mak", ".make", ".mkfile"),
      ("Makefile", "GNUmakefile", "BSDmakefile", "Kbuild", "Makefile.am", "Makefile.in", "Makefile.inc",
       "Makefile.frag", "Makefile.boot", "Makefile.wat", "mkfile")),
    L("Maple", (".mpl",)),
    L("Markdown", (".md", ".markdown", ".mdown", ".mdwn", ".mkd", ".mkdn", ".mkdown", ".ronn", ".livemd",
                   ".scd", ".workbook"), ("contents.lr",)),
    L("Mathematica", (".nb", ".wl", ".wls", ".wlt", ".mt", ".ma", ".mathematica", ".cdf")),
    L("MATLAB", (".m", ".matlab")),
    L("OCaml", (".ml", ".mli", ".mll", ".mly", ".eliom", ".eliomi", ".ml4")),
    L("Pascal", (".pas", ".pascal", ".pp", ".dfm", ".dpr", ".lpr")),
    L("Perl", (".pl", ".pm", ".t", ".al", ".cgi", ".perl", ".ph", ".plx", ".psgi"),
      ("cpanfile", "Makefile.PL", "Rexfile", ".latexmkrc", "latexmkrc")),
    L("PHP", (".php", ".phtml", ".php3", ".php4", ".php5", ".phps", ".phpt", ".ctp"),
      (".php", ".php_cs", ".php_cs.dist", "Phakefile")),
    L("PowerShell", (".ps1", ".psd1", ".psm1")),
    L("Prolog", (".pro", ".prolog", ".yap")),
    L("Protocol Buffer", (".proto",)),
    L("Python", (".py", ".pyi", ".pyw", ".py3", ".pyde", ".pyp", ".pyt", ".gyp", ".gypi", ".lmi", ".rpy",
                 ".tac", ".wsgi", ".xpy"),
      ("SConstruct", "SConscript", "wscript", ".pythonrc", ".gclient", "DEPS", "WATCHLISTS")),
    L("R", (".r", ".rd", ".rsx"), (".Rprofile", "expr-dist")),
    L("Racket", (".rkt", ".rktd", ".rktl", ".scrbl")),
    L("reStructuredText", (".rst", ".rest", ".rst.txt", ".rest.txt")),
    L("RMarkdown", (".rmd", ".qmd")),
    L("Ruby", (".rb", ".rbw", ".rbi", ".rake", ".gemspec", ".ru", ".podspec", ".thor", ".jbuilder", ".rabl",
               ".builder", ".rbuild"),
      ("Gemfile", "Rakefile", "Guardfile", "Podfile", "Vagrantfile", "Capfile", "Brewfile", "Fastfile",
       "Berksfile", "Thorfile", "Appraisals", "Dangerfile", "Deliverfile", "Steepfile", ".pryrc", ".irbrc",
       ".simplecov")),
    L("Rust", (".rs", ".rs.in")),
    L("SAS", (".sas",)),
    L("Scala", (".scala", ".sc", ".sbt", ".kojo")),
    L("Scheme", (".scm", ".ss", ".sch", ".sld", ".sls", ".sps")),
    L("Shell", (".sh", ".bash", ".zsh", ".ksh", ".bats", ".command", ".tmux", ".tool", ".sh.in"),
      (".bashrc", ".bash_profile", ".bash_logout", ".bash_aliases", ".bash_functions", ".zshrc", ".zshenv",
       ".zprofile", ".zlogin", ".zlogout", ".profile", ".envrc", "PKGBUILD", "gradlew", "bashrc", "zshrc")),
    L("Smalltalk", (".st",)),
    L("Solidity", (".sol",)),
    L("SPARQL", (".sparql", ".rq")),
    L("SQL", (".sql", ".cql", ".ddl", ".prc", ".udf", ".viw", ".mysql")),
    L("Stan", (".stan",)),
    L("Standard ML", (".sml", ".sig", ".fun")),
    L("Stata", (".do", ".ado", ".doh", ".ihlp", ".mata", ".matah", ".sthlp")),
    L("SystemVerilog", (".sv", ".svh", ".vh")),
    L("TCL", (".tcl", ".tm", ".adp", ".tcl.in", ".xdc")),
    L("Tcsh", (".tcsh", ".csh"), (".tcshrc", ".cshrc", ".login", ".logout")),
    L("TeX", (".tex", ".sty", ".cls", ".ltx", ".dtx", ".ins", ".bbx", ".cbx", ".lbx", ".mkii", ".mkiv", ".mkvi")),
    L("Thrift", (".thrift",)),
    L("TypeScript", (".ts", ".cts", ".mts", ".tsx")),
    L("Verilog", (".v", ".veo")),
    L("VHDL", (".vhd", ".vhdl", ".vhf", ".vhi", ".vho", ".vhs", ".vht", ".vhw")),
    L("Visual Basic", (".vb", ".vbs", ".bas", ".frm", ".vba", ".vbhtml")),
    L("XSLT", (".xslt", ".xsl")),
    L("Yacc", (".y", ".yacc", ".yy")),
    L("YAML", (".yml", ".yaml", ".mir", ".reek", ".rviz", ".sublime-syntax", ".syntax", ".yaml-tmlanguage"),
      (".clang-format", ".clang-tidy", ".clangd", ".gemrc", "CITATION.cff", "glide.lock")),
    L("Zig", (".zig", ".zig.zon")),
    L("XML", (".xml", ".xsd", ".wsdl", ".xaml", ".resx", ".csproj", ".vbproj", ".fsproj", ".vcxproj", ".props",
              ".targets", ".nuspec", ".rss", ".atom", ".kml", ".xib", ".storyboard", ".xml.dist", ".jelly"),
      (".classpath", ".project", ".cproject", "App.config", "Web.config", "packages.config", "NuGet.config")),
)
del L

LANGUAGES: dict[str, Language] = {lang.name: lang for lang in _TABLE}


def _index() -> tuple[dict[str, str], dict[str, str], dict[str, str], dict[str, str], int]:
    """The four lookup dicts (file names exact/lower-cased, extensions exact/lower-cased) and the
    most dots any table extension has; two rows claiming one key is a table bug, refused here."""
    names_exact: dict[str, str] = {}
    names_lower: dict[str, str] = {}
    exts_exact: dict[str, str] = {}
    exts_lower: dict[str, str] = {}

    def claim(table: dict[str, str], key: str, name: str, what: str) -> None:
        owner = table.setdefault(key, name)
        if owner != name:
            raise ValueError(f"{what} {key!r} is claimed by both {owner} and {name}")

    if len(LANGUAGES) != len(_TABLE):
        raise ValueError("a language appears twice in the table")
    for lang in _TABLE:
        for filename in lang.filenames:
            claim(names_exact, filename, lang.name, "file name")
        for ext in lang.extensions:
            if not ext.startswith(".") or ext == ".":
                raise ValueError(f"{lang.name}: extension {ext!r} must start with a dot")
            # A capital in the table means the case is the point (.C is C++, .c is C).
            claim(exts_exact if ext != ext.lower() else exts_lower, ext, lang.name, "extension")
    for filename, name in names_exact.items():
        names_lower.setdefault(filename.lower(), name)
    max_dots = max(ext.count(".") for ext in (*exts_exact, *exts_lower))
    return names_exact, names_lower, exts_exact, exts_lower, max_dots


_NAMES_EXACT, _NAMES_LOWER, _EXTS_EXACT, _EXTS_LOWER, _MAX_DOTS = _index()


def identify(path: str) -> str | None:
    """The Linguist name of the language of the file at `path` (any folders ignored), or None."""
    name = path[max(path.rfind("/"), path.rfind("\\")) + 1:]
    found = _NAMES_EXACT.get(name) or _NAMES_LOWER.get(name.lower())
    if found:
        return found
    # The start of each candidate extension, rightmost last; position 0 (a dotfile) is no extension.
    starts = []
    end = len(name)
    while len(starts) < _MAX_DOTS:
        dot = name.rfind(".", 1, end)
        if dot <= 0:
            break
        starts.append(dot)
        end = dot
    for dot in reversed(starts):
        ext = name[dot:]
        found = _EXTS_EXACT.get(ext) or _EXTS_LOWER.get(ext.lower())
        if found:
            return found
    return None
