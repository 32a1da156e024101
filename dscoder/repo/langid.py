"""A file's programming language from its name alone: Linguist's extensions and file names.

The corpus is bucketed by language before anything reads a file, so this looks only at the
path, never the content, and must cost next to nothing per file (it runs on every file of every
repository).  The table covers DeepSeek-Coder V1's languages (the list in its README: 89 names,
though the paper counts "87") plus XML, which the XML rule of `filters` needs, and
DeepSeek-Coder-V2's 338 (its `supported_langs.txt`; a copy lies in ../shared/data/languages, never
in the repository): 335 rows, V1's 90 first and unchanged, then 245 for the V2 names V1 lacks.  Of
V2's 338 names, 323 have a row, `Tcl` is V1's row `TCL` (`V2_SPELLINGS`: V1 corpora use that
spelling), and 14 cannot be told by a file name at all, each listed with the reason in
`UNIDENTIFIABLE_BY_NAME` (their only extensions are a V1 language's, or they have none).
`V1_LANGUAGES` names V1's rows, for a corpus that keeps to V1's languages.

Rows carry the common extensions and file names GitHub Linguist's `languages.yml` gives the
language.  V2's list mixes in older Linguist names (Bro, Nimrod, Perl 6, VimL, Jade, ASP) and
Pygments lexer names (AmbientTalk, CADL, COBOLFree, Execline, FoxPro, GAS, RConsole, S, ...): a
row takes what Linguist gives the language under its current name, plus Pygments' file patterns
where Pygments has a lexer of that name (all a Pygments-only name has; Mizar, in neither, has its
own `.miz`).  Patterns too generic to mean the language (`.run`, `.load`) are left out.

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

V2's rows keep every V1 choice (no V2 row takes a key that V1's rows identify, so a V1 corpus is
bucketed as before: `Objective-C`, `Octave`, `Arduino` and the like are therefore unidentifiable)
and settle the rest as follows.  Two names for one language split its extensions, so both stay
identifiable: `.bro` Bro and `.zeek` Zeek, `.jade` Jade and `.pug` Pug, `.erb` HTML ERB and `.rhtml`
RHTML, `.cbl` COBOLFree (Pygments' split; Linguist: COBOL, which keeps `.cob`/`.cpy`), `.prg`
FoxPro (Pygments; Linguist's xBase, here XBase, keeps `.prw`/`.ch`).  Otherwise: `.as`
ActionScript (not AngelScript), `.asy` Asymptote (not LTspice), `.b` Limbo (Brainfuck keeps
`.bf`; not Beef, Befunge or HyPhy), `.bb` BitBake (not BlitzBasic, which keeps `.decls`, or
babashka Clojure), `.bst` BST (not BuildStream), `.ch` XBase (not Charity), `.dsc` Debian Control
File (not DenizenScript), `.e` Eiffel (not E or Euphoria), `.ftl` FreeMarker (not Fluent), `.fx`
HLSL (Flux keeps `.flux`), `.gd` GDScript (not GAP, which keeps `.gap`/`.gi`), `.gsp` Groovy Server
Pages (not Gosu), `.gst` Gosu (not XML), `.j` Jasmin (not Objective-J), `.jq` JSONiq (not jq),
`.mc` M4 (not Monkey C, Mason or Win32 message files), `.mm` Objective-C++ (not FreeMind XML),
`.mo` Modelica (not Motoko), `.mod` Modula-2 (not AMPL, NMODL or kernel modules), `.moo` MooCode
(not Mercury), `.ms` MiniScript (not MAXScript, troff's ms or Unix assembly), `.ncl` NCL, `.nu` Nu
(not Nushell), `.odin` Odin, `.p` and `.w` OpenEdge ABL (not Gnuplot, Pawn or CWEB), `.plt` Gnuplot
(not Prolog), `.psc` Papyrus (not Praat), `.q` Q (not HiveQL), `.re` ReasonML (not C++'s re2c),
`.tpl` Smarty, `.vhost` Apache Configuration (not Nginx), `.mask` Unity3D Asset (not Mask), `.n`
and `.nr` Groff (not Nemerle or Noir), `.at` AmbientTalk.  Left out as too ambiguous: `.asc` (AGS
Script, AsciiDoc, PGP armour), `.gs` (Gosu, Genie, GLSL, Apps Script), `.tst` (GAP, Scilab), `.tt`
(Treetop, Template Toolkit, Thor), `.x` (Linker Script, Logos, RPC, DirectX, Alex), `.def`
(Modula-2, Singularity, Windows module definitions).
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
# DeepSeek-Coder V1's languages (its README's list) and XML, as V1 corpora were bucketed.
_V1_TABLE = (
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

# DeepSeek-Coder-V2's languages that V1's list lacks, in the order of V2's list. No row here takes a
# file name or an extension that the V1 rows above identify (tests/data/test_data_langid_v2.py holds
# every key against a V1-only index), so a V1 corpus is bucketed exactly as before.
_V2_TABLE = (
    L("ABAP", (".abap",)),
    L("AGS Script", (".ash",)),
    L("AMD GPU", (".isa",)),
    L("AMPL", (".ampl",)),
    L("ANSYS Parametric Design Language", (".ans",)),
    L("APL", (".apl", ".dyalog", ".aplf", ".aplo", ".apln", ".aplc", ".apli")),
    L("ASP", (".asp", ".asax", ".ascx", ".ashx", ".asmx", ".aspx", ".axd")),
    L("ActionScript", (".as",)),
    L("AmbientTalk", (".at",)),
    L("Apache Configuration", (".apacheconf", ".vhost"), (".htaccess", "apache.conf", "apache2.conf", "httpd.conf")),
    L("Arc", (".arc",)),
    L("AspectJ", (".aj",)),
    L("Asymptote", (".asy",)),
    L("AutoHotkey", (".ahk", ".ahkl")),
    L("AutoIt", (".au3",)),
    L("BC", (".bc",)),
    L("BNF", (".bnf",)),
    L("BST", (".bst",)),
    L("Berry", (".be",)),
    L("BitBake", (".bb", ".bbappend", ".bbclass")),
    L("BlitzBasic", (".decls",)),
    L("BlitzMax", (".bmx",)),
    L("Boo", (".boo",)),
    L("Boogie", (".bpl",)),
    L("Brainfuck", (".bf",)),
    L("BrightScript", (".brs",)),
    L("Bro", (".bro",)),
    L("C2HS Haskell", (".chs",)),
    L("CADL", (".cadl",)),
    L("COBOL", (".cob", ".ccp", ".cobol", ".cpy")),
    L("COBOLFree", (".cbl",)),
    L("CapDL", (".cdl",)),
    L("Ceylon", (".ceylon",)),
    L("Chapel", (".chpl",)),
    L("ChucK", (".ck",)),
    L("Cirru", (".cirru",)),
    L("Click", (".click",)),
    L("ColdFusion CFC", (".cfc",)),
    L("Crystal", (".cr",)),
    L("Csound", (".orc", ".udo")),
    L("Csound Score", (".sco",)),
    L("Cypher", (".cyp", ".cypher")),
    L("Cython", (".pyx", ".pxd", ".pxi")),
    L("DASM16", (".dasm16", ".dasm")),
    L("DM", (".dm",)),
    L("Darcs Patch", (".darcspatch", ".dpatch")),
    L("Debian Control File", (".dsc",), ("control",)),
    L("DeviceTree", (".dts", ".dtsi")),
    L("Diff", (".diff", ".patch")),
    L("Docker", (".docker",)),
    L("Dylan", (".dylan", ".dyl", ".intr", ".lid")),
    L("EBNF", (".ebnf",)),
    L("ELPi", (".elpi",)),
    L("Eiffel", (".e",)),
    L("EmberScript", (".em", ".emberscript")),
    L("Execline", (".exec",)),
    L("F*", (".fst", ".fsti")),
    L("Factor", (".factor",), (".factor-boot-rc", ".factor-rc")),
    L("Fancy", (".fy", ".fancypack"), ("Fakefile",)),
    L("Fantom", (".fan",)),
    L("Felix", (".flx", ".flxh")),
    L("Fennel", (".fnl", ".fnlm")),
    L("Fish", (".fish",)),
    L("Flux", (".flux",)),
    L("FoxPro", (".prg",)),
    L("FreeFem", (".edp",)),
    L("FreeMarker", (".ftl",)),
    L("Futhark", (".fut",)),
    L("G-Code", (".gcode", ".gco", ".cnc")),
    L("GAP", (".gap", ".gi")),
    L("GDScript", (".gd",)),
    L("GSQL", (".gsql",)),
    L("Genshi", (".kid",)),
    L("Gentoo Ebuild", (".ebuild",)),
    L("Gentoo Eclass", (".eclass",)),
    L("Gettext Catalog", (".po", ".pot")),
    L("Glyph", (".glf",)),
    L("Gnuplot", (".gp", ".gnu", ".gnuplot", ".plot", ".plt")),
    L("Gosu", (".gst", ".gsx", ".vark")),
    L("Grace", (".grace",)),
    L("Grammatical Framework", (".gf",)),
    L("GraphQL", (".graphql", ".gql", ".graphqls")),
    L("Graphviz DOT", (".dot", ".gv")),
    L("Groff", (".roff", ".1", ".1in", ".1m", ".1p", ".1x", ".2", ".3", ".3in", ".3m", ".3p", ".3pm", ".3qt", ".3x",
                ".4", ".5", ".6", ".7", ".8", ".9", ".man", ".mdoc", ".me", ".n", ".nr", ".rno", ".tmac"),
      ("eqnrc", "mmn", "mmt", "troffrc", "troffrc-end")),
    L("Groovy Server Pages", (".gsp",)),
    L("HCL", (".hcl", ".nomad", ".tf", ".tfvars", ".workflow")),
    L("HLSL", (".hlsl", ".cginc", ".fx", ".fxh", ".hlsli")),
    L("HTML Django", (".jinja", ".j2", ".jinja2")),
    L("HTML ERB", (".erb", ".erb.deface")),
    L("HTTP", (".http",)),
    L("Handlebars", (".handlebars", ".hbs")),
    L("Haxe", (".hx", ".hxsl")),
    L("Hy", (".hy",)),
    L("IGOR Pro", (".ipf",)),
    L("Inform 6 Template", (".i6t",)),
    L("Inno Setup", (".iss", ".isl")),
    L("Io", (".io",)),
    L("J", (".ijs",)),
    L("JAGS", (".jag", ".bug")),
    L("JCL", (".jcl",)),
    L("JFlex", (".flex", ".jflex")),
    L("JSONiq", (".jq",)),
    L("JSX", (".react",)),
    L("Jade", (".jade",)),
    L("Jasmin", (".j",)),
    L("JavaScript MozPreproc", (".js.in",)),
    L("K", (".k",)),
    L("KRL", (".krl",)),
    L("Kconfig", (), ("Kconfig", "Config.in")),
    L("Koka", (".kk", ".kki")),
    L("LFE", (".lfe",)),
    L("LLVM", (".ll",)),
    L("LSL", (".lsl", ".lslp")),
    L("Less", (".less",)),
    L("Lex", (".lex",), ("Lexer.x", "lexer.x")),
    L("Lighttpd Configuration File", (), ("lighttpd.conf",)),
    L("LilyPond", (".ly", ".ily")),
    L("Limbo", (".b",)),
    L("Linker Script", (".ld", ".lds"), ("ld.script",)),
    L("Liquid", (".liquid",)),
    L("Logtalk", (".lgt", ".logtalk")),
    L("M4", (".m4", ".mc")),
    L("MQL", (".mq4", ".mq5", ".mqh")),
    L("MUF", (".muf",)),
    L("Mako", (".mako", ".mao")),
    L("Mason", (".mhtml", ".mi"), ("autohandler", "dhandler")),
    L("Maxima", (".mac", ".max")),
    L("Meson", (), ("meson.build", "meson_options.txt", "meson.options")),
    L("Metal", (".metal",)),
    L("MiniScript", (".ms",)),
    L("Mirah", (".druby", ".duby", ".mirah")),
    L("Mizar", (".miz",)),
    L("Modelica", (".mo",)),
    L("Modula-2", (".mod",)),
    L("Monkey", (".monkey", ".monkey2")),
    L("MooCode", (".moo",)),
    L("MoonScript", (".moon",)),
    L("Mosel", (".mos",)),
    L("MuPAD", (".mu",)),
    L("NCL", (".ncl",)),
    L("NSIS", (".nsi", ".nsh")),
    L("NetLinx", (".axs", ".axi")),
    L("Nginx Configuration File", (".nginx", ".nginxconf"), ("nginx.conf",)),
    L("Nimrod", (".nim", ".nim.cfg", ".nimble", ".nimrod", ".nims"), ("nim.cfg",)),
    L("Ninja", (".ninja",)),
    L("Nit", (".nit",)),
    L("Nix", (".nix",)),
    L("Nu", (".nu",), ("Nukefile",)),
    L("NuSMV", (".smv",)),
    L("OMG Interface Definition Language", (".idl", ".pidl")),
    L("Objdump", (".objdump",)),
    L("Objective-C++", (".mm",)),
    L("Odin", (".odin",)),
    L("Opa", (".opa",)),
    L("OpenCL", (".opencl",)),
    L("OpenEdge ABL", (".p", ".w")),
    L("OpenSCAD", (".scad",)),
    L("Ox", (".ox", ".oxh", ".oxo")),
    L("Oz", (".oz",)),
    L("PAWN", (".pwn", ".sma")),
    L("PEG", (".peg",)),
    L("POD", (".pod",)),
    L("POV-Ray", (".pov",)),
    L("Papyrus", (".psc",)),
    L("Parrot Internal Representation", (".pir",)),
    L("Perl 6", (".6pl", ".6pm", ".nqp", ".p6", ".p6l", ".p6m", ".pl6", ".pm6", ".raku", ".rakumod")),
    L("Pike", (".pike", ".pmod")),
    L("PkgConfig", (".pc",)),
    L("Pony", (".pony",)),
    L("Praat", (".praat", ".proc")),
    L("Processing", (".pde",)),
    L("Propeller Spin", (".spin",)),
    L("Pug", (".pug",)),
    L("Puppet", (), ("Modulefile",)),
    L("PureBasic", (".pb", ".pbi")),
    L("PureScript", (".purs",)),
    L("Q", (".q",)),
    L("QML", (".qml", ".qbs")),
    L("QVTO", (".qvto",)),
    L("RAML", (".raml",)),
    L("RConsole", (".rout",)),
    L("REALbasic", (".rbbas", ".rbfrm", ".rbmnu", ".rbres", ".rbtbar", ".rbuistate")),
    L("REXX", (".rexx", ".pprx", ".rex", ".rx", ".arexx")),
    L("RHTML", (".rhtml",)),
    L("Ragel in Ruby Host", (".rl",)),
    L("ReasonML", (".re", ".rei")),
    L("Red", (".red", ".reds")),
    L("RenderScript", (".rsh",)),
    L("Ride", (".ride",)),
    L("Robot Framework", (".robot", ".resource")),
    L("Rouge", (".rg",)),
    L("S", (), (".Rhistory", ".Renviron")),
    L("SARL", (".sarl",)),
    L("SCSS", (".scss",)),
    L("SMT", (".smt2", ".smt", ".z3")),
    L("SQF", (".sqf", ".hqf")),
    L("SWIG", (".swg",)),
    L("Sage", (".sage", ".sagews")),
    L("Sass", (".sass",)),
    L("Scilab", (".sci", ".sce")),
    L("Self", (".self",)),
    L("ShExC", (".shex",)),
    L("Sieve", (".sieve", ".siv")),
    L("Silver", (".sil", ".vpr")),
    L("Singularity", (), ("Singularity",)),
    L("Slim", (".slim",)),
    L("Smali", (".smali",)),
    L("Smarty", (".tpl",)),
    L("Smithy", (".smithy",)),
    L("SourcePawn", (".sp",)),
    L("Squirrel", (".nut",)),
    L("Stylus", (".styl",)),
    L("Swift", (".swift",)),
    L("Tea", (".tea",)),
    L("Terminfo", (), ("terminfo", "terminfo.src")),
    L("Treetop", (".treetop",)),
    L("Turing", (".tu",)),
    L("Twig", (".twig",)),
    L("TypoScript", (".typoscript",)),
    L("USD", (".usd", ".usda")),
    L("Unity3D Asset", (".anim", ".asset", ".mask", ".mat", ".meta", ".prefab", ".unity")),
    L("Uno", (".uno",)),
    L("UnrealScript", (".uc",)),
    L("UrWeb", (".ur", ".urs")),
    L("VCL", (".vcl",)),
    L("Vala", (".vala", ".vapi")),
    L("Velocity", (".vtl", ".vm", ".fhtml")),
    L("VimL", (".vim", ".vimrc", ".vmb"),
      (".exrc", ".gvimrc", ".nvimrc", ".vimrc", "_vimrc", "_exrc", "_gvimrc", "gvimrc", "nvimrc", "vimrc")),
    L("Vue", (".vue",)),
    L("Web IDL", (".webidl",)),
    L("WebAssembly", (".wast", ".wat")),
    L("Whiley", (".whiley",)),
    L("X10", (".x10",)),
    L("XBase", (".prw", ".ch")),
    L("XC", (".xc",)),
    L("XQuery", (".xquery", ".xq", ".xql", ".xqm", ".xqy")),
    L("XS", (".xs",)),
    L("Xtend", (".xtend",)),
    L("Xtlang", (".xtm",)),
    L("YANG", (".yang",)),
    L("Zeek", (".zeek",)),
    L("Zephir", (".zep",)),
    L("Zimpl", (".zimpl", ".zmpl", ".zpl")),
    L("eC", (".ec", ".eh")),
    L("ooc", (".ooc",)),
)
del L
_TABLE = _V1_TABLE + _V2_TABLE

LANGUAGES: dict[str, Language] = {lang.name: lang for lang in _TABLE}
# The table's names of DeepSeek-Coder V1's languages (its README's 89, and XML): a V1-only corpus
# keeps the files whose language is one of these.
V1_LANGUAGES: tuple[str, ...] = tuple(lang.name for lang in _V1_TABLE)

# V2's list spells a name differently from the V1 row that identifies it (the row keeps V1's
# spelling, which V1 corpora and their manifests use).
V2_SPELLINGS: dict[str, str] = {"Tcl": "TCL"}

# V2's languages that a file name cannot tell, and why: with `LANGUAGES` and `V2_SPELLINGS`, this
# accounts for every name of V2's list.
UNIDENTIFIABLE_BY_NAME: tuple[tuple[str, str], ...] = (
    ("Arduino", "its only extension, .ino, is C++'s (V1)"),
    ("Fortran Fixed Form", "its extensions (.f, .for, .F) are Fortran's (V1)"),
    ("GAS", "its extensions (.s, .S) are Assembly's (V1)"),
    ("Gradle", "its only extension, .gradle, is Groovy's (V1); .gradle.kts is Kotlin's .kts (V1)"),
    ("HTML PHP", "its only extension, .phtml, is PHP's (V1)"),
    ("NASM", "its extensions (.asm, .nasm) are Assembly's (V1)"),
    ("Objective-C", "its extensions are .m, MATLAB's (V1), and .h, C's (V1)"),
    ("Octave", "its only extension, .m, is MATLAB's (V1)"),
    ("Rd", "its only extension, .Rd, is R's .rd (V1)"),
    ("Ren'Py", "its only extension, .rpy, is Python's (V1)"),
    ("SuperCollider", "its extensions are .sc, Scala's (V1), and .scd, Markdown's (V1)"),
    ("Transact-SQL", "its only extension, .sql, is SQL's (V1)"),
    ("VBScript", "its only extension, .vbs, is Visual Basic's (V1)"),
    ("XML Lasso", "no extension or file name of its own (Pygments tells it from XML by content)"),
)


def _index(table: tuple[Language, ...] | None = None
           ) -> tuple[dict[str, str], dict[str, str], dict[str, str], dict[str, str], int]:
    """The four lookup dicts (file names exact/lower-cased, extensions exact/lower-cased) and the
    most dots any extension has, for `table` (the whole table by default); two rows claiming one
    key is a table bug, refused here."""
    table = _TABLE if table is None else table
    names_exact: dict[str, str] = {}
    names_lower: dict[str, str] = {}
    exts_exact: dict[str, str] = {}
    exts_lower: dict[str, str] = {}

    def claim(index: dict[str, str], key: str, name: str, what: str) -> None:
        owner = index.setdefault(key, name)
        if owner != name:
            raise ValueError(f"{what} {key!r} is claimed by both {owner} and {name}")

    if len({lang.name for lang in table}) != len(table):
        raise ValueError("a language appears twice in the table")
    for lang in table:
        if not lang.extensions and not lang.filenames:
            raise ValueError(f"{lang.name}: no extension and no file name")
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
