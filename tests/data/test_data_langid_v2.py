"""Language identification for DeepSeek-Coder-V2's 338 languages, with V1's identifications unchanged."""

from __future__ import annotations

import pytest

from conftest import shared_data
from dscoder.repo import langid
from dscoder.repo.langid import LANGUAGES, UNIDENTIFIABLE_BY_NAME, V1_LANGUAGES, V2_SPELLINGS, identify

UNIDENTIFIABLE = dict(UNIDENTIFIABLE_BY_NAME)


def v2_names() -> list[str]:
    """DeepSeek-Coder-V2's list (one Linguist name a line), read from ../shared, never copied here."""
    path = shared_data("languages", "deepseek-coder-v2-supported_langs.txt")
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


# -- coverage -----------------------------------------------------------------------------------

def test_every_v2_name_is_in_the_table_or_accounted_for():
    names = v2_names()
    assert len(names) == len(set(names)) == 338
    unaccounted = [n for n in names if n not in LANGUAGES and n not in UNIDENTIFIABLE and n not in V2_SPELLINGS]
    assert unaccounted == []
    assert sum(n in LANGUAGES for n in names) == 323
    assert len(UNIDENTIFIABLE) == len(UNIDENTIFIABLE_BY_NAME) == 14


def test_nothing_in_the_table_is_outside_v1_and_v2():
    allowed = set(V1_LANGUAGES) | set(v2_names()) | {"XML"}
    assert [n for n in LANGUAGES if n not in allowed] == []
    assert set(UNIDENTIFIABLE) <= set(v2_names())
    assert set(V2_SPELLINGS) <= set(v2_names())


def test_the_three_ways_of_accounting_do_not_overlap():
    assert not set(UNIDENTIFIABLE) & set(LANGUAGES)
    assert not set(V2_SPELLINGS) & set(LANGUAGES)
    assert not set(V2_SPELLINGS) & set(UNIDENTIFIABLE)
    assert all(reason for reason in UNIDENTIFIABLE.values())


def test_v2_spellings_name_v1_rows():
    assert V2_SPELLINGS == {"Tcl": "TCL"}
    assert set(V2_SPELLINGS.values()) <= set(V1_LANGUAGES)
    assert identify("build.tcl") == "TCL"


def test_the_docstring_counts_are_the_tables():
    doc = " ".join(langid.__doc__.split())
    v2_rows = len(LANGUAGES) - len(V1_LANGUAGES)
    assert f"{len(LANGUAGES)} rows, V1's {len(V1_LANGUAGES)} first" in doc
    assert f"then {v2_rows} for the V2 names" in doc
    assert f"and {len(UNIDENTIFIABLE)} cannot be told" in doc


def test_every_row_has_an_extension_or_a_file_name():
    for lang in LANGUAGES.values():
        assert lang.extensions or lang.filenames, lang.name


# -- V1 unchanged -------------------------------------------------------------------------------

def test_v1_rows_come_first_and_are_v1s_list_plus_xml():
    assert len(V1_LANGUAGES) == 90 and "XML" in V1_LANGUAGES
    assert list(LANGUAGES)[:90] == list(V1_LANGUAGES)


@pytest.fixture
def v1_only(monkeypatch):
    """`identify` as it was with V1's rows alone."""
    names_exact, names_lower, exts_exact, exts_lower, max_dots = langid._index(langid._V1_TABLE)

    def identify_v1(path: str) -> str | None:
        with monkeypatch.context() as m:
            m.setattr(langid, "_NAMES_EXACT", names_exact)
            m.setattr(langid, "_NAMES_LOWER", names_lower)
            m.setattr(langid, "_EXTS_EXACT", exts_exact)
            m.setattr(langid, "_EXTS_LOWER", exts_lower)
            m.setattr(langid, "_MAX_DOTS", max_dots)
            return identify(path)

    return identify_v1


def test_no_v2_row_takes_anything_v1_identified(v1_only):
    v2_rows = [lang for lang in LANGUAGES.values() if lang.name not in V1_LANGUAGES]
    assert len(v2_rows) == 245
    taken = []
    for lang in v2_rows:
        for ext in lang.extensions:
            for path in (f"dir/file{ext}", f"dir/FILE{ext.upper()}", f"dir/a.b{ext}"):
                if v1_only(path) is not None:
                    taken.append((lang.name, path, v1_only(path)))
        for filename in lang.filenames:
            for path in (f"dir/{filename}", f"dir/{filename.lower()}", f"dir/{filename.upper()}"):
                if v1_only(path) is not None:
                    taken.append((lang.name, path, v1_only(path)))
    assert taken == []


def test_v1_rows_identify_as_before(v1_only):
    for lang in LANGUAGES.values():
        if lang.name not in V1_LANGUAGES:
            continue
        for ext in lang.extensions:
            assert identify(f"x/y{ext}") == v1_only(f"x/y{ext}") == lang.name, ext
        for filename in lang.filenames:
            assert identify(f"x/{filename}") == v1_only(f"x/{filename}") == lang.name, filename


@pytest.mark.parametrize("name, path, owner", [
    ("Arduino", "sketch/sketch.ino", "C++"), ("Objective-C", "App/AppDelegate.m", "MATLAB"),
    ("Objective-C", "App/AppDelegate.h", "C"), ("Octave", "solve.m", "MATLAB"), ("GAS", "start.S", "Assembly"),
    ("GAS", "entry.s", "Assembly"), ("NASM", "boot.asm", "Assembly"), ("NASM", "boot.nasm", "Assembly"),
    ("Fortran Fixed Form", "legacy.f", "Fortran"), ("Fortran Fixed Form", "LEGACY.FOR", "Fortran"),
    ("Gradle", "build.gradle", "Groovy"), ("Gradle", "build.gradle.kts", "Kotlin"), ("HTML PHP", "page.phtml", "PHP"),
    ("Rd", "man/fit.Rd", "R"), ("Ren'Py", "game/script.rpy", "Python"), ("SuperCollider", "synth.scd", "Markdown"),
    ("SuperCollider", "Synth.sc", "Scala"), ("Transact-SQL", "procs.sql", "SQL"), ("VBScript", "run.vbs", "Visual Basic"),
])
def test_unidentifiable_names_files_go_to_their_v1_owner(name, path, owner):
    assert name in UNIDENTIFIABLE
    assert identify(path) == owner


def test_xml_lasso_has_nothing_of_its_own():
    assert "XML Lasso" in UNIDENTIFIABLE
    assert identify("page.lasso") is None


# -- families -----------------------------------------------------------------------------------

def check(cases: list[tuple[str, str]]) -> None:
    got = {path: identify(path) for path, _ in cases}
    assert got == dict(cases)


def test_jvm_languages():
    check([("source/com/acme/Main.ceylon", "Ceylon"), ("src/Foo.gsx", "Gosu"), ("src/lib.gst", "Gosu"),
           ("app.mirah", "Mirah"), ("src/main/xtend/Greeter.xtend", "Xtend"), ("Logging.aj", "AspectJ"),
           ("Hello.j", "Jasmin"), ("grails-app/views/index.gsp", "Groovy Server Pages"), ("build.fan", "Fantom"),
           ("Hello.x10", "X10"), ("src/Main.kt", "Kotlin"), ("build.gradle", "Groovy")])


def test_ml_and_functional_languages():
    check([("src/App.re", "ReasonML"), ("src/App.rei", "ReasonML"), ("src/Main.purs", "PureScript"),
           ("ulib/Prims.fst", "F*"), ("ulib/Prims.fsti", "F*"), ("lib/vec.fut", "Futhark"), ("std/core.kk", "Koka"),
           ("Main.ur", "UrWeb"), ("Main.urs", "UrWeb"), ("hello.opa", "Opa"), ("Foo.gf", "Grammatical Framework"),
           ("main.ml", "OCaml"), ("list.sml", "Standard ML")])


def test_lisps():
    check([("src/init.fnl", "Fennel"), ("server.lfe", "LFE"), ("math.hy", "Hy"), ("news.arc", "Arc"),
           ("core.rg", "Rouge"), ("init.el", "Emacs Lisp"), (".emacs", "Emacs Lisp"), ("util.lisp", "Common Lisp")])


def test_shells():
    check([("functions/config.fish", "Fish"), ("run.exec", "Execline"), ("app-misc/foo/foo-1.0.ebuild", "Gentoo Ebuild"),
           ("eclass/eutils.eclass", "Gentoo Eclass"), ("install.sh", "Shell"), ("PKGBUILD", "Shell"),
           ("setup.csh", "Tcsh"), (".bashrc", "Shell")])


def test_hardware_description_and_low_level():
    check([("arch/arm/boot/dts/board.dts", "DeviceTree"), ("arch/arm/boot/dts/soc.dtsi", "DeviceTree"),
           ("main.xc", "XC"), ("Blink.spin", "Propeller Spin"), ("part.gcode", "G-Code"), ("mill.cnc", "G-Code"),
           ("kernel.isa", "AMD GPU"), ("boards/link.ld", "Linker Script"), ("ld.script", "Linker Script"),
           ("alu.v", "Verilog"), ("top.sv", "SystemVerilog"), ("Fifo.bsv", "Bluespec"), ("alu.vhd", "VHDL")])


def test_assembly_dialects_and_intermediate_representations():
    check([("prog.dasm16", "DASM16"), ("prog.dasm", "DASM16"), ("opt.ll", "LLVM"), ("a.objdump", "Objdump"),
           ("smali/com/acme/Main.smali", "Smali"), ("t/op.pir", "Parrot Internal Representation"),
           ("add.wat", "WebAssembly"), ("spec.wast", "WebAssembly"), ("boot.asm", "Assembly")])


def test_data_and_configuration_formats():
    check([("infra/main.tf", "HCL"), ("vars.tfvars", "HCL"), ("job.nomad", "HCL"), ("conf/nginx.conf", "Nginx Configuration File"),
           ("sites/app.nginxconf", "Nginx Configuration File"), ("public/.htaccess", "Apache Configuration"),
           ("conf/httpd.conf", "Apache Configuration"), ("site.vhost", "Apache Configuration"),
           ("lighttpd.conf", "Lighttpd Configuration File"), ("debian/control", "Debian Control File"),
           ("pkg_1.0.dsc", "Debian Control File"), ("lib/pkgconfig/zlib.pc", "PkgConfig"),
           ("Assets/Player.prefab", "Unity3D Asset"), ("Assets/Main.unity", "Unity3D Asset"),
           ("Assets/Tex.png.meta", "Unity3D Asset"), ("ietf-interfaces.yang", "YANG"), ("api.raml", "RAML"),
           ("schema.graphql", "GraphQL"), ("query.gql", "GraphQL"), ("drivers/net/Kconfig", "Kconfig"),
           ("package/foo/Config.in", "Kconfig"), ("meson.build", "Meson"), ("meson_options.txt", "Meson"),
           ("build.ninja", "Ninja"), ("misc/terminfo.src", "Terminfo"), ("fix.patch", "Diff"), ("x.diff", "Diff"),
           ("po/fr.po", "Gettext Catalog"), ("po/app.pot", "Gettext Catalog"), ("requests.http", "HTTP"),
           ("default.nix", "Nix"), ("scene.usda", "USD"), ("graph.dot", "Graphviz DOT"), ("graph.gv", "Graphviz DOT"),
           ("fix.dpatch", "Darcs Patch"), ("package.json", "JSON"), ("ci.yml", "YAML")])


def test_markup_stylesheets_and_templates():
    check([("views/post.hbs", "Handlebars"), ("base.html.twig", "Twig"), ("_layouts/post.liquid", "Liquid"),
           ("page.tpl", "Smarty"), ("index.mako", "Mako"), ("page.kid", "Genshi"), ("views/index.jade", "Jade"),
           ("views/index.pug", "Pug"), ("views/show.slim", "Slim"), ("templates/base.j2", "HTML Django"),
           ("templates/page.html.j2", "HTML Django"), ("app/views/index.html.erb", "HTML ERB"),
           ("app/views/_form.html.erb.deface", "HTML ERB"), ("legacy/index.rhtml", "RHTML"),
           ("mail.ftl", "FreeMarker"), ("page.vm", "Velocity"), ("page.vtl", "Velocity"), ("App.vue", "Vue"),
           ("site.less", "Less"), ("site.sass", "Sass"), ("site.scss", "SCSS"), ("site.styl", "Stylus"),
           ("index.html", "HTML"), ("style.css", "CSS"), ("lib/Foo.pod", "POD")])


def test_roff_manual_pages():
    check([("man/ls.1", "Groff"), ("man/printf.3p", "Groff"), ("man/perl.3pm", "Groff"), ("doc/x.man", "Groff"),
           ("tmac/an.tmac", "Groff"), ("troffrc", "Groff"), ("doc/paper.me", "Groff")])


def test_shader_languages():
    check([("Shaders/Blur.hlsl", "HLSL"), ("Effects/bloom.fx", "HLSL"), ("UnityCG.cginc", "HLSL"),
           ("Shaders.metal", "Metal"), ("kernel.opencl", "OpenCL"), ("shader.frag", "GLSL"), ("vert.glsl", "GLSL"),
           ("Program.fs", "F#"), ("x.cl", "Common Lisp")])


def test_proof_assistants_and_verification():
    check([("text/xboole_0.miz", "Mizar"), ("prog.bpl", "Boogie"), ("src/sort.whiley", "Whiley"),
           ("bench.smt2", "SMT"), ("model.smv", "NuSMV"), ("Prims.fst", "F*"), ("rules.elpi", "ELPi"),
           ("Basic.lean", "Lean"), ("Theory.thy", "Isabelle"), ("Nat.agda", "Agda"), ("Proof.v", "Verilog")])


def test_scientific_and_mathematical_languages():
    check([("hello.chpl", "Chapel"), ("calc.mac", "Maxima"), ("sym.mu", "MuPAD"), ("sim.sci", "Scilab"),
           ("sim.sce", "Scilab"), ("grp.gap", "GAP"), ("lib/grp.gi", "GAP"), ("plot.gp", "Gnuplot"),
           ("fig.plt", "Gnuplot"), ("Proc.ipf", "IGOR Pro"), ("model.jag", "JAGS"), ("Motor.mo", "Modelica"),
           ("mesh.edp", "FreeFem"), ("plot.ncl", "NCL"), ("est.ox", "Ox"), ("tsp.zpl", "Zimpl"), ("diet.ampl", "AMPL"),
           ("prod.mos", "Mosel"), ("beam.ans", "ANSYS Parametric Design Language"), ("stats.sage", "Sage"),
           ("notebook.sagews", "Sage"), ("run.Rout", "RConsole"), ("home/.Rhistory", "S"), ("fit.jl", "Julia")])


def test_scripting_languages():
    check([("src/app.cr", "Crystal"), ("lib.pike", "Pike"), ("hello.io", "Io"), ("game.nut", "Squirrel"),
           ("init.moon", "MoonScript"), ("gui.red", "Red"), ("job.rexx", "REXX"), ("hotkeys.ahk", "AutoHotkey"),
           ("setup.au3", "AutoIt"), ("main.be", "Berry"), ("Nukefile", "Nu"), ("init.nu", "Nu"),
           ("src/Main.hx", "Haxe"), ("x.tea", "Tea"), ("app.ooc", "ooc"), ("main.ec", "eC"),
           ("compute.bc", "BC"), ("deploy.ride", "Ride"), ("util.lsl", "LSL"), ("prog.b", "Limbo"),
           ("hello.bf", "Brainfuck"), ("src/main.swift", "Swift"), ("mod.vala", "Vala"), ("t/io.raku", "Perl 6"),
           ("lib/Foo.pm6", "Perl 6"), ("app.nim", "Nimrod"), ("project.nimble", "Nimrod"), ("nim.cfg", "Nimrod"),
           ("x.nim.cfg", "Nimrod"), ("plugin/sensible.vim", "VimL"), (".vimrc", "VimL"), ("_vimrc", "VimL"),
           ("lib/Foo.pm", "Perl"), ("script.pl", "Perl")])


def test_game_development_languages():
    check([("player.gd", "GDScript"), ("Classes/Pawn.uc", "UnrealScript"), ("plugin.sp", "SourcePawn"),
           ("gamemode.pwn", "PAWN"), ("plugin.sma", "PAWN"), ("init.sqf", "SQF"), ("Quest.psc", "Papyrus"),
           ("code/world.dm", "DM"), ("Room.ash", "AGS Script"), ("game.bmx", "BlitzMax"), ("game.decls", "BlitzBasic"),
           ("game.monkey", "Monkey"), ("main.ms", "MiniScript")])


def test_basic_family_and_xbase():
    check([("main.pb", "PureBasic"), ("Form1.rbfrm", "REALbasic"), ("MAIN.PRG", "FoxPro"), ("main.prg", "FoxPro"),
           ("funcs.prw", "XBase"), ("inkey.ch", "XBase"), ("Module1.vb", "Visual Basic")])


def test_build_systems_and_installers():
    check([("recipes/foo_1.0.bb", "BitBake"), ("foo_%.bbappend", "BitBake"), ("classes/base.bbclass", "BitBake"),
           ("acinclude.m4", "M4"), ("sendmail.mc", "M4"), ("setup.iss", "Inno Setup"), ("installer.nsi", "NSIS"),
           ("Singularity", "Singularity"), ("Modulefile", "Puppet"), ("Makefile", "Makefile"),
           ("CMakeLists.txt", "CMake"), ("Dockerfile", "Dockerfile"), ("app.docker", "Docker")])


def test_grammars_and_parser_generators():
    check([("syntax.bnf", "BNF"), ("syntax.ebnf", "EBNF"), ("grammar.peg", "PEG"), ("scanner.lex", "Lex"),
           ("Lexer.x", "Lex"), ("Scanner.jflex", "JFlex"), ("Scanner.flex", "JFlex"), ("parser.rl", "Ragel in Ruby Host"),
           ("arith.treetop", "Treetop"), ("parse.y", "Yacc"), ("Expr.g4", "ANTLR")])


def test_query_interface_and_schema_languages():
    check([("q.xquery", "XQuery"), ("lib.xqm", "XQuery"), ("q.jq", "JSONiq"), ("graph.cypher", "Cypher"),
           ("q.gsql", "GSQL"), ("dom.webidl", "Web IDL"), ("api.idl", "OMG Interface Definition Language"),
           ("model.smithy", "Smithy"), ("schema.shex", "ShExC"), ("shapes.qvto", "QVTO"), ("query.sparql", "SPARQL"),
           ("api.proto", "Protocol Buffer"), ("svc.thrift", "Thrift"), ("typo.typoscript", "TypoScript")])


def test_web_and_application_languages():
    check([("src/Main.as", "ActionScript"), ("Default.aspx", "ASP"), ("index.asp", "ASP"), ("Service.asmx", "ASP"),
           ("Widget.cfc", "ColdFusion CFC"), ("app.em", "EmberScript"), ("Foo.zep", "Zephir"), ("ext/Foo.xs", "XS"),
           ("ui/Main.qml", "QML"), ("App.uno", "Uno"), ("default.vcl", "VCL"),
           ("sketch.pde", "Processing"), ("model.scad", "OpenSCAD"), ("cart.p", "OpenEdge ABL"),
           ("App.mm", "Objective-C++"), ("view.react", "JSX"), ("app.jsx", "JavaScript"), ("app.tsx", "TypeScript"),
           ("module.js.in", "JavaScript MozPreproc"), ("config.js", "JavaScript")])


def test_other_languages_of_the_list():
    check([("foo.abap", "ABAP"), ("x.apl", "APL"), ("main.at", "AmbientTalk"), ("fig.asy", "Asymptote"),
           ("x.bst", "BST"), ("prog.boo", "Boo"), ("main.brs", "BrightScript"), ("local.bro", "Bro"),
           ("local.zeek", "Zeek"), ("Foo.chs", "C2HS Haskell"), ("arch.cadl", "CADL"), ("PAYROLL.CBL", "COBOLFree"),
           ("payroll.cob", "COBOL"), ("copybook.cpy", "COBOL"), ("sys.cdl", "CapDL"), ("tone.ck", "ChucK"),
           ("app.cirru", "Cirru"), ("router.click", "Click"), ("synth.orc", "Csound"), ("piece.sco", "Csound Score"),
           ("fast.pyx", "Cython"), ("fast.pxd", "Cython"), ("lib.dylan", "Dylan"), ("Account.e", "Eiffel"),
           ("boot.factor", "Factor"), ("Fakefile", "Fancy"), ("x.fy", "Fancy"), ("x.flx", "Felix"), ("q.flux", "Flux"),
           ("x.kid", "Genshi"), ("font.glf", "Glyph"), ("x.grace", "Grace"), ("story.i6t", "Inform 6 Template"),
           ("x.ijs", "J"), ("job.jcl", "JCL"), ("x.k", "K"), ("app.krl", "KRL"), ("score.ly", "LilyPond"),
           ("x.lgt", "Logtalk"), ("expert.mq4", "MQL"), ("prog.muf", "MUF"), ("comp.mhtml", "Mason"),
           ("autohandler", "Mason"), ("x.mod", "Modula-2"), ("db.moo", "MooCode"), ("proto.axs", "NetLinx"),
           ("lib.nit", "Nit"), ("main.odin", "Odin"), ("x.oz", "Oz"), ("scene.pov", "POV-Ray"), ("ex.pony", "Pony"),
           ("script.praat", "Praat"), ("x.q", "Q"), ("rs.rsh", "RenderScript"), ("suite.robot", "Robot Framework"),
           ("agent.sarl", "SARL"), ("ex.swg", "SWIG"), ("proto.self", "Self"), ("mail.sieve", "Sieve"),
           ("prog.vpr", "Silver"), ("Hello.tu", "Turing"), ("x.xc", "XC"), ("x.xtm", "Xtlang")])


def test_capitalised_extensions_and_file_names_match_in_any_case():
    check([("MAIN.PRG", "FoxPro"), ("Main.Swift", "Swift"), ("RUN.ROUT", "RConsole"), ("PAYROLL.CBL", "COBOLFree"),
           ("MESON.BUILD", "Meson"), ("kconfig", "Kconfig"), ("NGINX.CONF", "Nginx Configuration File"),
           ("_VIMRC", "VimL"), ("LS.1", "Groff")])
    # Capitals still mean case-sensitivity only where the table spells one (V1's .C and .H).
    assert [ext for lang in LANGUAGES.values() for ext in lang.extensions if ext != ext.lower()] == [".C", ".H"]


def test_multi_dot_names():
    check([("x.nim.cfg", "Nimrod"), ("form.erb.deface", "HTML ERB"), ("module.js.in", "JavaScript MozPreproc"),
           ("page.html.j2", "HTML Django"), ("build.gradle.kts", "Kotlin"), ("types/index.d.ts", "TypeScript"),
           ("README.coffee.md", "Literate CoffeeScript"), ("Tex.png.meta", "Unity3D Asset")])


# -- ownership ----------------------------------------------------------------------------------

@pytest.mark.parametrize("path, name", [
    # Two names for one language split its extensions.
    ("x.bro", "Bro"), ("x.zeek", "Zeek"), ("x.jade", "Jade"), ("x.pug", "Pug"), ("x.erb", "HTML ERB"),
    ("x.rhtml", "RHTML"), ("x.cbl", "COBOLFree"), ("x.cob", "COBOL"), ("x.prg", "FoxPro"), ("x.prw", "XBase"),
    # One owner where Linguist (or Pygments) names several.
    ("x.as", "ActionScript"), ("x.asy", "Asymptote"), ("x.b", "Limbo"), ("x.bf", "Brainfuck"), ("x.bb", "BitBake"),
    ("x.bst", "BST"), ("x.ch", "XBase"), ("x.dsc", "Debian Control File"), ("x.e", "Eiffel"), ("x.ftl", "FreeMarker"),
    ("x.fx", "HLSL"), ("x.flux", "Flux"), ("x.gd", "GDScript"), ("x.gsp", "Groovy Server Pages"), ("x.gst", "Gosu"),
    ("x.j", "Jasmin"), ("x.jq", "JSONiq"), ("x.mc", "M4"), ("x.mm", "Objective-C++"), ("x.mo", "Modelica"),
    ("x.mod", "Modula-2"), ("x.moo", "MooCode"), ("x.ms", "MiniScript"), ("x.ncl", "NCL"), ("x.nu", "Nu"),
    ("x.odin", "Odin"), ("x.p", "OpenEdge ABL"), ("x.w", "OpenEdge ABL"), ("x.plt", "Gnuplot"), ("x.psc", "Papyrus"),
    ("x.q", "Q"), ("x.re", "ReasonML"), ("x.tpl", "Smarty"), ("x.vhost", "Apache Configuration"),
    ("x.mask", "Unity3D Asset"), ("x.n", "Groff"), ("x.nr", "Groff"), ("x.at", "AmbientTalk"),
])
def test_v2_ambiguous_extensions_have_one_documented_owner(path, name):
    assert identify(path) == name
    assert f"`{path[1:]}`" in langid.__doc__


@pytest.mark.parametrize("path, name", [
    ("x.h", "C"), ("x.m", "MATLAB"), ("x.pl", "Perl"), ("x.t", "Perl"), ("x.pp", "Pascal"), ("x.sc", "Scala"),
    ("x.cls", "TeX"), ("x.cl", "Common Lisp"), ("x.v", "Verilog"), ("x.fs", "F#"), ("x.ml", "OCaml"),
    ("x.st", "Smalltalk"), ("x.ino", "C++"), ("x.rpy", "Python"), ("x.scd", "Markdown"), ("x.vbs", "Visual Basic"),
    ("x.jsx", "JavaScript"), ("x.tsx", "TypeScript"), ("x.g", "ANTLR"), ("x.s", "Assembly"), ("x.phtml", "PHP"),
    ("x.gradle", "Groovy"), ("x.sql", "SQL"), ("x.pro", "Prolog"), ("x.yy", "Yacc"),
])
def test_v1_choices_hold_against_v2_claimants(path, name):
    assert identify(path) == name


@pytest.mark.parametrize("path", ["x.asc", "x.gs", "x.tst", "x.tt", "x.x", "x.def", "x.inc", "x.d", "x.l", "x.i",
                                  "x.cake", "x.run", "x.load"])
def test_too_ambiguous_extensions_are_left_out(path):
    assert identify(path) is None
