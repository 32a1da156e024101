"""A pass means the tests ran to their end: samples that leave early, fake the end, or return
objects that lie about equality are failed, through the real benchmark problems and the one
verdict function (`dscoder.execute.programs.execute`, also the GRPO reward).

Every attack here scored `passed` before the end-of-checks marker and the plain-data guard
(`dscoder.execute.harness`, `pyharness`): exit status 0 was the whole proof. Each is written
as the model's completion of a real HumanEval problem, assembled by `dscoder.tasks` exactly
as an evaluation assembles it. The sweeps showing that every canonical solution still passes
are at the bottom (slow) and in tests/eval/test_eval_benchmarks.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dscoder.cli.app import app
from dscoder.execute import harness, toolchains
from dscoder.execute.programs import Program, execute, execute_many
from dscoder.tasks import gsm8k, humaneval, infilling, mbpp
from conftest import requires, shared_data

FIXTURES = Path(__file__).parents[1] / "eval" / "fixtures" / "multipl_e_solutions.json"


def verdicts(programs: list[Program], timeout: float = 10.0):
    got = dict(execute_many(programs, timeout=timeout, workers=2))
    return [got[i] for i in range(len(programs))]


def python_problem(task_id: str):
    return next(p for p in humaneval.problems("python") if p.task_id == task_id)


# ---- Python: the four samples of the issue, through `dscoder eval` -------------------------------

# HumanEval/0 has_close_elements, /2 truncate_number, /4 mean_absolute_deviation, /7 filter_by_substring:
# each completion is wrong, and each left the checks early (or lied about equality) to exit 0.
ISSUE_SAMPLES = {
    "HumanEval/0": "    import os\n    os._exit(0)\n",
    "HumanEval/2": "    import atexit, os\n    atexit.register(lambda: os._exit(0))\n    return -1.0\n",
    "HumanEval/4": "    import os, sys\n    sys.excepthook = lambda *a: os._exit(0)\n    return -1.0\n",
    "HumanEval/7": ("    class Anything(list):\n        def __eq__(self, other):\n            return True\n"
                    "    return Anything()\n"),
}


def test_the_four_issue_samples_score_zero_through_dscoder_eval(tmp_path):
    """The run that reported pass@1 = 50% for wrong answers: each sample is failed, with the
    reason in its row, and pass@1 is 0 (it was 100% for these four before the marker)."""
    completions = tmp_path / "samples.jsonl"
    completions.write_text("".join(json.dumps({"task_id": t, "completion": c}) + "\n" for t, c in ISSUE_SAMPLES.items()))
    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["eval", "humaneval", "--completions", str(completions), "--out", str(out),
                                      "--no-progress"])
    assert result.exit_code == 0, result.output
    rows = {r["task_id"]: r for r in map(json.loads, (out / "samples.jsonl").read_text().splitlines())}
    assert {t: r["status"] for t, r in rows.items()} == {t: "failed" for t in ISSUE_SAMPLES}
    assert "before its checks finished" in rows["HumanEval/0"]["stderr"]  # exit 0, no marker
    assert "AssertionError" in rows["HumanEval/2"]["stderr"] and rows["HumanEval/2"]["returncode"] == 1
    assert "AssertionError" in rows["HumanEval/4"]["stderr"] and rows["HumanEval/4"]["returncode"] == 1
    assert "not plain data" in rows["HumanEval/7"]["stderr"] and "Anything" in rows["HumanEval/7"]["stderr"]
    assert json.loads((out / "summary.json").read_text())["pass@1"] == 0.0


# ---- Python: variants, each a wrong answer that exited 0 before -----------------------------------

FAKE_MARKER = harness.MARKER + "0" * 32
EARLY_EXITS = {
    "sys_exit_in_function": "    import sys\n    sys.exit(0)\n",
    "raise_systemexit": "    raise SystemExit(0)\n",
    "exit_builtin": "    exit()\n",
    "thread_exits_0": ("    import threading, os, time\n"
                       "    threading.Thread(target=lambda: os._exit(0)).start()\n    time.sleep(5)\n"),
    "sigterm_handler_exits_0": ("    import os, signal\n"
                                "    signal.signal(signal.SIGTERM, lambda *a: os._exit(0))\n"
                                "    os.kill(os.getpid(), signal.SIGTERM)\n"),
    "print_fake_marker_then_exit": f"    print({FAKE_MARKER!r})\n    import os\n    os._exit(0)\n",
    "builtins_print_replaced_then_atexit": ("    import atexit, builtins, os\n    builtins.print = lambda *a, **k: None\n"
                                            "    atexit.register(lambda: os._exit(0))\n    return False\n"),
    # Everything the sample can read: its files, environment, command line and stdin, each line
    # printed, and printed again as a marker line. The token is in none of them.
    "dump_files_env_and_stdin": (
        "    import os, sys\n"
        "    seen = []\n"
        "    for name in os.listdir('.'):\n"
        "        if os.path.isfile(name):\n"
        "            seen += open(name, errors='replace').read().splitlines()\n"
        "    for name in ('/proc/self/environ', '/proc/self/cmdline'):\n"
        "        seen += open(name, 'rb').read().decode(errors='replace').replace('\\0', '\\n').splitlines()\n"
        "    seen += sys.stdin.read().splitlines()\n"
        f"    for line in seen:\n        print(line)\n        print({harness.MARKER!r} + line.split('=')[-1])\n"
        "    sys.stdout.flush()\n    os._exit(0)\n"),
    # Brute force by fork: the parent exits 0 while a child runs the checks (here with the right
    # answer, as one of 2^k children would); only the process that started the checks may end them.
    "fork_child_runs_the_checks": ("    import os\n    if os.fork():\n        os.wait()\n        os._exit(0)\n"
                                   "    return any(abs(a - b) < threshold for i, a in enumerate(numbers) "
                                   "for b in numbers[i + 1:])\n"),
}


@pytest.mark.parametrize("name", list(EARLY_EXITS))
def test_leaving_the_checks_early_is_failed(name):
    verdict = execute(Program("python", python_problem("HumanEval/0").program(EARLY_EXITS[name])))
    assert verdict.status == "failed", verdict


def test_kill_9_of_itself_is_failed():
    verdict = execute(Program("python", python_problem("HumanEval/0").program("    import os\n    os.kill(os.getpid(), 9)\n")))
    assert verdict.status == "failed" and verdict.returncode != 0


def test_replacing_builtins_does_not_skip_the_checks_or_the_guard():
    """The harness runs the checks with its own `exec` and guards with its own `type`, bound
    before any sample code: a sample replacing them in `builtins` changes nothing. A right
    answer that replaces `builtins.print` still passes (the marker is written to the fd)."""
    problem = python_problem("HumanEval/0")
    no_exec = ("    return True\nimport builtins\nbuiltins.exec = lambda *a, **k: None\n"
               "builtins.compile = lambda *a, **k: None\n")
    no_type = ("    import builtins\n    builtins.type = lambda *a: int\n    builtins.id = lambda x: 0\n"
               "    class E:\n        def __eq__(self, o):\n            return True\n    return E()\n")
    quiet = "    import builtins\n    builtins.print = lambda *a, **k: None\n" + problem.reference
    got = verdicts([Program("python", problem.program(c)) for c in (no_exec, no_type, quiet)])
    assert [v.status for v in got] == ["failed", "failed", "passed"], got


LYING_RETURNS = {  # name: (problem, completion); each passed every check before the guard
    "eq_always_true": ("HumanEval/0", "    class E:\n        def __eq__(self, o):\n            return True\n"
                                      "    return E()\n"),
    "int_subclass_posing_as_bool": ("HumanEval/0", "    class B(int):\n        def __eq__(self, o):\n"
                                                   "            return True\n        __hash__ = int.__hash__\n"
                                                   "    return B(1)\n"),
    "int_subclass": ("HumanEval/13", "    class I(int):\n        def __eq__(self, o):\n            return True\n"
                                     "        __hash__ = int.__hash__\n    return I(0)\n"),
    "float_subclass_lying_sub": ("HumanEval/2", "    class F(float):\n        def __eq__(self, o):\n"
                                                "            return True\n        def __sub__(self, o):\n"
                                                "            return 0.0\n        __hash__ = float.__hash__\n"
                                                "    return F(7)\n"),
    "str_subclass": ("HumanEval/27", "    class S(str):\n        def __eq__(self, o):\n            return True\n"
                                     "        __hash__ = str.__hash__\n    return S('wrong')\n"),
    "liars_inside_a_list": ("HumanEval/7", "    class E:\n        def __eq__(self, o):\n            return True\n"
                                           "    return [E() for s in strings if substring in s]\n"),
    "metaclass_claims_equality": ("HumanEval/0", "    class Meta(type):\n        def __eq__(cls, o):\n"
                                                 "            return True\n        __hash__ = type.__hash__\n"
                                                 "    class E(metaclass=Meta):\n        def __eq__(self, o):\n"
                                                 "            return True\n    return E()\n"),
}


@pytest.mark.parametrize("name", list(LYING_RETURNS))
def test_returns_that_are_not_plain_data_are_refused(name):
    """An int/float/str subclass or any object overriding an operator passes `==` or `abs(x - y) < eps`
    whatever it holds; the expected values are plain data, so the return must be too."""
    task_id, completion = LYING_RETURNS[name]
    verdict = execute(Program("python", python_problem(task_id).program(completion)))
    assert verdict.status == "failed", verdict
    assert "not plain data" in verdict.stderr


def test_a_refusal_stands_even_when_the_checks_swallow_the_exception():
    """The refusal is recorded by the harness, not only raised: checks that catch every
    exception around a call cannot turn it into a pass."""
    problem = python_problem("HumanEval/0")
    source = harness.python_program(
        problem.prompt + "    class E:\n        def __eq__(self, o):\n            return True\n    return E()\n",
        "try:\n    assert has_close_elements([1.0], 0.5) == False\nexcept Exception:\n    pass\n",
        guard=("has_close_elements",))
    verdict = execute(Program("python", source))
    assert verdict.status == "failed" and "not plain data" in verdict.stderr


def test_plain_data_passes_and_recursion_keeps_its_depth():
    """The guard checks only the outermost call: during it the entry point's name is the
    sample's own function again, so recursion through the name adds no frame per level (900
    levels fit under the default limit of 1000, as before the guard). A self-referencing list
    is walked once (a wrong answer, not a hang). MBPP's stdlib `Counter` return is accepted
    while `Counter` is untouched, and refused once the sample patched its `__eq__`."""
    fib = python_problem("HumanEval/55")  # fib(n: int)
    deep = ("    depth = getattr(fib, 'depth', 0)\n    if depth < 900:\n        fib.depth = depth + 1\n"
            "        try:\n            return fib(n)\n        finally:\n            fib.depth = depth\n"
            "    a, b = 0, 1\n    for _ in range(n):\n        a, b = b, a + b\n    return a\n")
    cyclic = "    x = [1]\n    x.append(x)\n    return x\n"
    shared_data("mbpp", "mbpp.jsonl")
    mbpp40 = next(p for p in mbpp.problems() if p.task_id == "MBPP/40")
    patched = ("from collections import Counter\nCounter.__eq__ = lambda self, other: True\n"
               "def freq_element(nums):\n    return Counter([0])\n")
    got = verdicts([Program("python", fib.program(deep)), Program("python", python_problem("HumanEval/0").program(cyclic)),
                    Program("python", mbpp40.program(mbpp40.reference)), Program("python", mbpp40.program(patched))])
    assert [v.status for v in got] == ["passed", "failed", "passed", "failed"], got
    assert "AssertionError" in got[1].stderr and "not plain data" not in got[1].stderr
    assert "collections.Counter, not plain data" in got[3].stderr


def test_the_marker_line_is_cut_from_the_recorded_output_and_the_token_is_fresh_each_run():
    problem = python_problem("HumanEval/0")
    source = problem.program(problem.reference + "print('hello from the sample')\n")
    verdict = execute(Program("python", source))
    assert verdict.status == "passed" and verdict.stderr == "hello from the sample"
    tokens = {harness.new_token() for _ in range(100)}
    assert len(tokens) == 100 and all(len(t) == 32 for t in tokens)
    assert harness.reached_end(f"a\n\n{harness.MARKER}abc\n", "abc") == (True, "a\n")
    assert harness.reached_end(f"{harness.MARKER}abcd\n", "abc") == (False, f"{harness.MARKER}abcd\n")


def test_plain_programs_keep_the_exit_status_rule():
    """Programs not assembled by `harness.program` (the sandbox's own tests, a user's script)
    are judged as before: exit 0 passes."""
    assert not harness.checked("python", "print('hi')\n")
    assert execute(Program("python", "import os\nos._exit(0)\n")).status == "passed"
    assert execute(Program("python", "raise SystemExit(3)\n")).status == "failed"


@pytest.mark.parametrize("suite", ["mbpp", "gsm8k", "infilling"])
def test_the_other_python_benchmarks_carry_the_marker_and_the_guard(suite):
    """MBPP guards the functions its asserts call, GSM8K guards `solution()`, infilling its entry point."""
    if suite == "mbpp":
        shared_data("mbpp", "mbpp.jsonl")
        problem = mbpp.problems()[0]  # MBPP/11 remove_Occ
        exit_early = "import os\ndef remove_Occ(s, ch):\n    os._exit(0)\n"
        liar = "class E:\n    def __eq__(self, o):\n        return True\ndef remove_Occ(s, ch):\n    return E()\n"
    elif suite == "gsm8k":
        shared_data("gsm8k", "test.json")
        problem = gsm8k.problems()[0]  # 18 dollars
        exit_early = "    import os\n    os._exit(0)\n"
        liar = "    class F(float):\n        def __float__(self):\n            return 18.0\n    return F(3)\n"
    else:
        shared_data("infilling")
        problem = infilling.problems("single-line")[0]  # has_close_elements
        exit_early = "    import os; os._exit(0)\n" + problem.reference
        liar = ("    class E:\n        def __eq__(self, o):\n            return True\n"
                "    return E()\n" + problem.reference)
    programs = [Program("python", problem.program(c)) for c in (problem.reference, exit_early, liar)]
    got = verdicts(programs)
    assert [v.status for v in got] == ["passed", "failed", "failed"], got
    assert "not plain data" in got[2].stderr


# ---- Other languages: the marker at the end of the test main ---------------------------------------

# Completions of MultiPL-E's HumanEval_53_add, each a wrong answer that ended the process with
# status 0 before the checks finished (or emptied the checks), and each scored `passed` before.
OTHER_LANGUAGES = {
    "cpp": {"exit0": "    exit(0);\n", "define_assert_away": "    return 0;\n#define assert(x) ((void)0)\n"},
    "java": {"system_exit": "        System.exit(0);\n        return 0L;\n",
             "runtime_halt": "        Runtime.getRuntime().halt(0);\n        return 0L;\n"},
    "js": {"process_exit": "  process.exit(0);\n}\n",
           "exit_handler": "  process.on('exit', () => process.exit(0));\n  return 0;\n}\n"},
    "ts": {"process_exit": "  (globalThis as any).process.exit(0);\n  return 0;\n}\n"},
    "go": {"testmain_skips_the_tests": "\treturn x + y - 1\n}\n\nfunc TestMain(m *testing.M) {}\n"},
    "rs": {"process_exit": "    std::process::exit(0);\n",
           "shadow_assert_eq": "    0\n}\nmacro_rules! assert_eq { ($($t:tt)*) => {} }\nfn _unused() {\n"},
    "sh": {"exit_at_top_level": "    echo 0\n}\nexit 0\nunused() {\n",
           "exit_trap_exits_0": "    echo 0\n}\ntrap 'exit 0' EXIT\nunused() {\n"},
    "php": {"exit": "    exit(0);\n}\n",
            "shutdown_exits_0": "    register_shutdown_function(function () { exit(0); });\n    return 0;\n}\n"},
    "cs": {"environment_exit": "        System.Environment.Exit(0);\n        return 0L;\n",
           "shadow_debug_assert": ("        return 0L;\n    }\n    class Debug { public static void Assert(bool b) {} }\n"
                                   "    static void Unused() {\n")},
}
SLOW = {"cpp", "java", "go", "rs", "cs", "ts"}  # a compile step of seconds per program


def multipl_e(language: str):
    why = toolchains.toolchain(language).missing()
    if why:
        requires(f"toolchain:{language}", f"{language}: {why}")
    shared_data("humaneval", f"humaneval-{language}.jsonl")
    return {p.task_id: p for p in humaneval.problems(language)}


@pytest.mark.parametrize("language", [pytest.param(lang, marks=[pytest.mark.slow] if lang in SLOW else [])
                                      for lang in OTHER_LANGUAGES])
def test_leaving_early_is_failed_in_every_language(language):
    """Each attack fails, while the hand-written right answer (fixtures) still passes in the same batch."""
    problem = multipl_e(language)["HumanEval_53_add"]
    right = json.loads(FIXTURES.read_text())[language]["HumanEval_53_add"]["solution"]
    attacks = OTHER_LANGUAGES[language]
    got = verdicts([Program(language, problem.program(right))]
                   + [Program(language, problem.program(c)) for c in attacks.values()], timeout=30)
    assert got[0].status == "passed", got[0]
    assert {name: v.status for name, v in zip(attacks, got[1:])} == {name: "failed" for name in attacks}, got


def test_every_multipl_e_checks_text_takes_the_marker():
    """The marker is placed in every problem of every language (a shape it does not know raises)."""
    for language in humaneval.MULTIPL_E:
        path = shared_data("humaneval", f"humaneval-{language}.jsonl")
        rows = [json.loads(line) for line in path.read_text().splitlines()]
        for row in rows:
            source = harness.program(language, row["prompt"], row["tests"])
            assert harness.checked(language, source) and source.count(harness.TOKEN_VARIABLE) == 1 + (language == "go")


# ---- Canonical solutions still pass (full sweeps: slow) -----------------------------------------------

@pytest.mark.slow
def test_all_1319_gsm8k_reference_programs_pass():
    shared_data("gsm8k", "test.json")
    problems = gsm8k.problems()
    statuses = [v.status for v in verdicts([Program("python", p.program(p.reference)) for p in problems])]
    assert statuses == ["passed"] * 1319, [p.task_id for p, s in zip(problems, statuses) if s != "passed"][:10]


@pytest.mark.slow
@pytest.mark.parametrize("split", list(infilling.SPLITS))
def test_every_infilling_canonical_middle_passes(split):
    shared_data("infilling")
    problems = infilling.problems(split)
    statuses = [v.status for v in verdicts([Program("python", p.program(p.reference)) for p in problems])]
    assert statuses.count("passed") == len(problems), [p.task_id for p, s in zip(problems, statuses) if s != "passed"][:10]


# A body that compiles for any return type and fails when run: every problem's instrumented
# checks must build (a `failed`, never an `error`), in every language.
STUB = {"cpp": "    throw 0;\n", "java": "        throw new RuntimeException();\n",
        "cs": "        throw new System.Exception();\n", "rs": "    unimplemented!()\n", "go": "\tpanic(0)\n}\n",
        "js": "  throw new Error();\n}\n", "ts": "  throw new Error();\n}\n", "php": "    throw new Exception();\n}\n",
        "sh": "    return 1\n"}


# Problems whose own prompt and tests do not compile (MultiPL-E's translation): `error` with or
# without the marker (cpp: `std::nullopt` used as a type; go: `[]interface{}` literals for `[]int`).
UNBUILDABLE = {"cpp": {"HumanEval_137_compare_one": "error"}, "go": {"HumanEval_87_get_row": "error"}}


@pytest.mark.slow
@pytest.mark.parametrize("language", list(STUB))
def test_the_marker_builds_in_every_multipl_e_problem(language):
    problems = list(multipl_e(language).values())
    got = verdicts([Program(language, p.program(STUB[language])) for p in problems], timeout=30)
    assert {p.task_id: v.status for p, v in zip(problems, got) if v.status != "failed"} == UNBUILDABLE.get(language, {})
