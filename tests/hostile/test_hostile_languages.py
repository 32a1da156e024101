"""Hostile samples in MultiPL-E's other languages (Lua, Ruby, R, Perl, Racket, D, Scala): each is
a model's completion of a real problem (HumanEval_53_add, `add(x, y)`), assembled by
`dscoder.tasks.humaneval` exactly as an evaluation assembles it and judged by the one verdict
function (`dscoder.execute.programs.execute`, also the GRPO reward). None may pass.

Three families per runtime:
- reading a host file: the sample returns the right sum only if it could read a world-readable
  canary outside its work directory (in /var/tmp, which the sandbox does not mount), and
  prints what it read; contained, it answers wrong and the canary's secret is nowhere in the
  verdict;
- leaving early: a wrong answer that exits 0 before the checks end (or makes the checks' own
  exit do nothing), which exit status alone would have passed;
- emptying the checks from the inside: redefining what the checks call (Perl's `exit` and
  `eq_deeply`, R's `stopifnot`, Racket's `let` and rackunit's handlers, D's unit tester,
  Scala's `assert`), which `harness` pins to the real thing or runs apart from the sample;
and fork bombs, stopped at the sample's process limit (or by the clock) without harm.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from dscoder.execute import sandbox, toolchains
from dscoder.execute.programs import Program, execute
from dscoder.tasks import humaneval
from conftest import requires, shared_data

SLOW = pytest.mark.slow  # the Scala compiler, and the fork bombs' full timeout

READS = {  # the right sum only if the canary at {path} could be read
    "lua": ('    local f = io.open("{path}", "r")\n    if f then\n        io.write(f:read("a"))\n'
            '        return x + y\n    end\n    return 0\nend'),
    "rb": '  begin\n    puts File.read("{path}")\n    x + y\n  rescue StandardError\n    0\n  end\nend',
    "r": ('\n    secret <- tryCatch(readLines("{path}"), error = function(e) NULL, warning = function(w) NULL)\n'
          '    if (is.null(secret)) return(0)\n    print(secret)\n    x + y\n}'),
    "pl": "    open(my $fh, '<', '{path}') or return 0;\n    print <$fh>;\n    return $x + $y;\n}",
    "rkt": '  (if (file-exists? "{path}") (begin (display (file->string "{path}")) (+ x y)) 0))',
    "d": ('{\n    import std.file : exists, readText;\n    import std.stdio : write;\n'
          '    if (exists("{path}")) { write(readText("{path}")); return x + y; }\n    return 0;\n}'),
    "scala": ('        val f = new java.io.File("{path}")\n'
              '        if (f.exists) { print(scala.io.Source.fromFile(f).mkString); x + y } else 0'),
}

CASES = {  # name: (language, completion of `add`, the status it must get)
    # leaving early, after or instead of a wrong answer
    "lua_exits_0_in_the_function": ("lua", "    os.exit(0)\nend", "failed"),
    "lua_disables_os_exit_then_fails_a_check": ("lua", "    return x - y\nend\nos.exit = function() end", "failed"),
    "ruby_exit_bang_0": ("rb", "  exit!(0)\nend", "failed"),
    "ruby_at_exit_turns_the_failure_into_0": ("rb", "  at_exit { exit!(0) }\n  x - y\nend", "failed"),
    "r_quits_with_status_0": ("r", '\n    quit(save = "no", status = 0)\n}', "failed"),
    "perl_exits_0": ("pl", "    exit 0;\n}", "failed"),
    "racket_exits_0": ("rkt", "  (exit 0))", "failed"),
    "d_exits_0_during_the_unittest": ("d", "{\n    import core.stdc.stdlib : exit;\n    exit(0);\n    return 0;\n}",
                                      "failed"),
    "scala_sys_exit_0": ("scala", "        sys.exit(0)", "failed"),
    # emptying the checks from the inside
    "r_redefines_stopifnot_and_istrue": ("r", "\n    x - y\n}\nstopifnot <- function(...) invisible(TRUE)\n"
                                              "isTRUE <- function(x) TRUE", "failed"),
    "perl_overrides_exit_and_eq_deeply": ("pl", "    return $x - $y;\n}\nBEGIN { *CORE::GLOBAL::exit = sub { }; }\n"
                                                "sub eq_deeply { 1 }", "failed"),
    "racket_redefines_let": ("rkt", "  (- x y))\n(define-syntax-rule (let bindings body ...) (void))", "failed"),
    "racket_silences_rackunit": ("rkt", "  (- x y))\n(require rackunit)\n(current-check-handler void)\n"
                                        "(current-check-around (lambda (check) (void)))\n"
                                        "(current-error-port (open-output-nowhere))", "failed"),
    "racket_candidate_switches_the_checks_off": ("rkt", "  (current-check-around (lambda (check) (void)))\n"
                                                        "  (+ x y 1))\n(require rackunit)", "failed"),
    "d_replaces_the_unit_tester": ("d", "{\n    return x - y;\n}\nimport core.runtime;\n"
                                        "shared static this() { Runtime.moduleUnitTester = () => true; }", "failed"),
    "scala_shadows_assert": ("scala", "        return x - y\n    }\n    def assert(b: Boolean): Unit = {\n", "failed"),
    # fork bombs: the sample's process cap holds them (a named limit, or the clock where forks fail quietly)
    "perl_fork_bomb": ("pl", "    fork while 1;\n}", "failed|timeout"),
    "ruby_fork_bomb": ("rb", "  loop { fork rescue nil }\nend", "failed|timeout"),
}
SLOW_CASES = {"scala_sys_exit_0", "scala_shadows_assert", "ruby_fork_bomb"}


def problem(language: str):
    tool = toolchains.toolchain(language)
    if tool.missing():
        requires(f"toolchain:{language}", f"{language}: {tool.missing()}")
    shared_data("humaneval", f"humaneval-{language}.jsonl")
    return {p.task_id: p for p in humaneval.problems(language)}["HumanEval_53_add"]


@pytest.fixture(scope="module")
def bwrap():
    iso = sandbox.isolation()
    if iso.method != "bwrap":
        requires("sandbox", f"these samples need bubblewrap's file system view ({iso.warning})")
    return iso


@pytest.fixture
def canary():
    """A world-readable secret in /var/tmp, which the host's other users can read and the sandbox
    does not mount."""
    token = uuid.uuid4().hex
    path = Path("/var/tmp") / f"dscoder-canary-{token}"
    path.write_text(f"SECRET-{token}\n")
    path.chmod(0o644)
    yield path, f"SECRET-{token}"
    path.unlink(missing_ok=True)


@pytest.mark.parametrize("language", [pytest.param(x, marks=[SLOW] if x == "scala" else []) for x in READS])
def test_a_sample_cannot_read_a_host_file(bwrap, canary, language):
    path, secret = canary
    assert path.read_text().strip() == secret  # readable here, on the host
    completion = READS[language].replace("{path}", str(path))
    verdict = execute(Program(language, problem(language).program(completion)), timeout=30)
    assert verdict.status == "failed", verdict  # it answered 0: the read failed
    assert secret not in verdict.stderr


@pytest.mark.parametrize("name", [pytest.param(n, marks=[SLOW] if n in SLOW_CASES else []) for n in CASES])
def test_a_hostile_sample_is_not_passed(bwrap, name):
    language, completion, status = CASES[name]
    bomb = "timeout" in status
    verdict = execute(Program(language, problem(language).program(completion)), timeout=5 if bomb else 30)
    assert verdict.status in status.split("|"), verdict
    if bomb and verdict.status == "failed":
        assert "process limit" in verdict.stderr, verdict
