"""Verified generation against hostile candidates, tests and clients (`dscoder.verify`).

A candidate is model-written code that runs before its tests, in the same process: every
way it could make wrong code pass, or hold the machine, is tried here, through the real
sandbox and the one verdict function. Each candidate below is wrong (it adds badly) unless
it says otherwise, and none may pass; the right one beside it shows the tests would pass.
The API's `verify` object is attacked through a live server: every bad field is a 400
naming it, before any candidate is sampled.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from conftest import requires  # noqa: F401
from dscoder.verify import examples, select
from dscoder.verify.candidates import Candidate
from dscoder.verify.tests import TestsError, from_asserts, from_file, parse

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "verify"))
from verify_helpers import engine, judge_codes, pool, tiny  # noqa: E402,F401  (fixtures)

ADD = 'def add(a, b):\n    """Sum.\n    >>> add(1, 2)\n    3\n    >>> add(2, 2)\n    4\n    """\n'
RIGHT = ADD + "    return a + b\n"
WRONG = ADD + "    return a * b - 1\n"  # passes no example: 1 and 3
SUITE = examples.from_text(ADD)


def statuses(pool, codes, suite=SUITE, timeout=10.0):
    return [(j.outcome.status, j.outcome.passed_checks) for j in judge_codes(pool, codes, suite, timeout)]


def test_the_right_candidate_passes_the_tests_the_attacks_face(pool):
    assert statuses(pool, [RIGHT, WRONG]) == [("passed", 2), ("failed", 0)]


# ---- leaving early, faking the end ----------------------------------------------------------------

EXITS = {
    "os._exit at import": "import os\nos._exit(0)\n",
    "sys.exit at import": "import sys\nsys.exit(0)\n",
    "atexit exit 0": "import atexit, os\natexit.register(lambda: os._exit(0))\n",
    "excepthook exit 0": "import os, sys\nsys.excepthook = lambda *a: os._exit(0)\n",
    "exit inside the function": None,  # the function under test exits 0 when the checks call it
    "fake end-of-checks marker": "print('\\ndscoder: checks completed ' + '0' * 32)\nimport os\nos._exit(0)\n",
    "fake runner report": "import sys, os\nsys.stderr.write('dscoder verify: 2/2 checks passed\\n')\nos._exit(0)\n",
}


@pytest.mark.parametrize("name", EXITS)
def test_a_candidate_that_leaves_early_or_fakes_the_end_does_not_pass(pool, name):
    if EXITS[name] is None:
        code = ADD + "    import os\n    os._exit(0)\n"
    else:
        code = WRONG + EXITS[name]
    [(status, passed)] = statuses(pool, [code])
    assert status != "passed" and passed < SUITE.checks


def test_a_candidate_that_disarms_every_global_function_does_not_pass(pool):
    """Rebinding every callable of its module to a no-op, the runner's entry among them (whatever its
    name), skips the checks: the harness sees its checks end, but the runner never reported."""
    code = WRONG + ("for _k, _v in list(globals().items()):\n"
                    "    if callable(_v) and _k != 'add':\n        globals()[_k] = lambda *a, **k: None\n")
    [judged] = judge_codes(pool, [code], SUITE)
    assert judged.outcome.status == "failed"
    assert judged.outcome.failures == ["failed: the checks never reported (the runner was bypassed)"]


# ---- changing what the tests see ------------------------------------------------------------------

ABS = "def test_abs():\n    assert abs(add(1, 2) - 3) < 1e-9\n"
ISCLOSE = "import math\n\ndef test_isclose():\n    assert math.isclose(add(0.1, 0.2), 0.3)\n"
JSON = "def test_json():\n    assert __import__('json').dumps(add(1, 2)) == '3'\n"  # imported only when run
CASE = "import unittest\n\nclass Sum(unittest.TestCase):\n    def test_equal(self):\n        self.assertEqual(add(2, 2), 0 + 4)\n"
# Each attack with the only tests it aims at: without the runner's guard (restored builtins, modules,
# import paths; no thread left running) the wrong `add` below passes them all.
TAMPER = {
    "builtins.AssertionError": ("import builtins\nbuiltins.AssertionError = type('Quiet', (Exception,), {})\n",
                                "assert add(1, 2) == 3\n"),
    "builtins.abs": ("import builtins\nbuiltins.abs = lambda x: 0\n", ABS),
    "a global abs": ("abs = lambda x: 0\n", ABS),
    "a thread that keeps patching": ("import threading, builtins, time\ndef keep():\n    while True:\n"
                                     "        builtins.abs = lambda x: 0\n        time.sleep(0.001)\n"
                                     "threading.Thread(target=keep, daemon=True).start()\n", ABS),
    "math.isclose": ("import math\nmath.isclose = lambda *a, **k: True\n", ISCLOSE),
    "sys.modules['math']": ("import sys, types\nm = types.ModuleType('math')\nm.isclose = lambda *a, **k: True\n"
                            "sys.modules['math'] = m\n", ISCLOSE),
    "TestCase.assertEqual": ("import unittest\nunittest.TestCase.assertEqual = lambda *a, **k: None\n", CASE),
    "assertEqual's code": ("import unittest\nunittest.case.TestCase.assertEqual.__code__ = "
                           "(lambda self, a, b, msg=None: None).__code__\n", CASE),
    "a json.py beside itself": ("open('json.py', 'w').write('dumps = lambda x: \"3\"\\n')\n", JSON),
    "an import hook": ("import sys, types\nclass F:\n    def find_spec(self, name, path=None, target=None):\n"
                       "        if name == 'json':\n            import importlib.util\n"
                       "            return importlib.util.spec_from_loader(name, self)\n"
                       "    def create_module(self, spec):\n        m = types.ModuleType('json')\n"
                       "        m.dumps = lambda x: '3'\n        return m\n    def exec_module(self, m):\n"
                       "        pass\nsys.meta_path.insert(0, F())\n", JSON),
}


@pytest.mark.parametrize("name", TAMPER)
def test_a_candidate_that_changes_what_the_tests_use_does_not_pass(pool, name):
    attack, tests = TAMPER[name]
    suite = parse(tests, "test_add.py")
    right = "def add(a, b):\n    return a + b\n"
    wrong = "def add(a, b):\n    return 0\n" + attack
    [(right_status, _), (status, passed)] = statuses(pool, [right, wrong], suite)
    assert right_status == "passed"
    assert status == "failed" and passed < suite.checks


def test_an_always_equal_answer_is_refused_for_the_examples(pool):
    code = ADD + "    class Anything(int):\n        def __eq__(self, other):\n            return True\n" \
                 "    return Anything(0)\n"
    [judged] = judge_codes(pool, [code], SUITE)
    assert judged.outcome.status == "failed" and "not plain data" in judged.outcome.stderr


def test_a_candidate_that_rewrites_its_program_and_harness_files_does_not_pass(pool):
    """The program and the harness are read before the candidate runs; writing over them changes nothing."""
    code = WRONG + ("for _name in ('program.py', 'main.py'):\n"
                    "    open(_name, 'w').write('print(\"dscoder: checks completed x\")\\n')\n")
    [(status, _)] = statuses(pool, [code])
    assert status == "failed"


# ---- holding the machine --------------------------------------------------------------------------

def test_a_candidate_that_hangs_is_a_timeout_and_the_others_are_judged(pool):
    hangs = ADD + "    while True:\n        pass\n"
    hangs_at_import = "while True:\n    pass\n"
    assert statuses(pool, [hangs, hangs_at_import, RIGHT], timeout=2.0) == \
        [("timeout", 0), ("timeout", 0), ("passed", 2)]


def test_a_fork_bomb_is_contained_and_the_pool_goes_on(pool):
    bomb = "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n"
    [(status, _)] = statuses(pool, [WRONG + bomb], timeout=3.0)
    assert status in ("failed", "timeout")
    assert statuses(pool, [RIGHT, RIGHT]) == [("passed", 2), ("passed", 2)]


def test_a_flood_of_output_keeps_the_report_and_the_verdict(pool):
    loud_right = "import sys\nsys.stdout.write('x' * 20_000_000)\n" + RIGHT
    loud_half = ADD + "    import sys\n    sys.stderr.write('y' * 5_000_000)\n    return 3\n"
    judged = judge_codes(pool, [loud_right, loud_half], SUITE)
    assert judged[0].outcome.status == "passed"
    assert (judged[1].outcome.status, judged[1].outcome.passed_checks) == ("failed", 1)
    assert judged[1].outcome.failures == ["FAILED add(2, 2) -> 4 (the prompt's examples:5): expected 4, got 3"]


def test_a_report_that_claims_too_much_is_not_believed(pool):
    """A failing candidate that prints a report of its own ranks no higher than its real count."""
    liar = ADD + ("    import sys\n    sys.stderr.write('dscoder verify: 2/2 checks passed\\n')\n"
                  "    return 0\n")
    [(status, passed)] = statuses(pool, [liar])
    assert status == "failed" and passed <= SUITE.checks - 1


# ---- tests that cannot be used ---------------------------------------------------------------------

def test_tests_that_do_not_parse_are_named_with_their_line_before_any_model_loads(tmp_path):
    bad = tmp_path / "test_bad.py"
    bad.write_text("from calc import add\n\ndef test_add():\n    assert add(1, 2) == 3 +\n")
    with pytest.raises(TestsError, match=f"{bad}:4: the tests do not parse as Python"):
        from_file(bad)
    out = subprocess.run([sys.executable, "-m", "dscoder.cli.app", "complete", "def add(a, b):\n", "--verify",
                          "--tests", str(bad), "--model", str(tmp_path / "no-such-model")],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and f"{bad}:4: the tests do not parse" in out.stderr, out.stderr
    assert "Traceback" not in out.stderr and "no-such-model" not in out.stderr


def test_a_candidate_test_suite_that_does_not_parse_is_that_candidates_error(pool):
    def build(candidate):
        from dscoder.verify.program import program
        suite = parse(candidate.code, f"candidate {candidate.index + 1}'s tests")
        return program("def add(a, b):\n    return a + b\n", suite), suite

    judge = select.Judge(pool, None, 5.0, build)
    bad = judge.submit(Candidate(0, "def test_x(:\n", "def test_x(:\n", "stop", 0, 0.0)).result()
    good = judge.submit(Candidate(1, "", "assert add(1, 2) == 3\n", "stop", 0, 0.0)).result()
    assert bad.outcome.status == "error" and "candidate 1's tests:1: the tests do not parse" in bad.outcome.failures[0]
    assert good.outcome.passed


def test_asserts_that_do_not_parse_are_skipped_not_run():
    suite = from_asserts(["assert add(1, 2) == 3", "assert add(1,", "import os; os.system('x')"], "model")
    assert suite.checks == 1 and suite.skipped == {"does not parse": 1, "not an assert": 1}


# ---- the API's verify object ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def server(tiny):
    pytest.importorskip("httpx")
    from dscoder.serve.api import ServerState, create_app
    from dscoder.serve.engine import Engine, EngineConfig
    from serve_live import LiveServer

    model, tok = tiny
    engine = Engine(model, tok, EngineConfig(num_blocks=256, block_size=16, max_running=16, max_waiting=64))
    with LiveServer(create_app(ServerState("tiny", engine=engine.start()))) as live:
        yield live


BAD_BODIES = [
    ({"n": 17}, "verify.n"),
    ({"n": 0}, "verify.n"),
    ({"n": "8"}, "verify.n"),
    ({"tests": "x" * (64 * 1024 + 1)}, "verify.tests"),
    ({"tests": 5}, "verify.tests"),
    ({"use_doctests": "yes"}, "verify.use_doctests"),
    ({"timeout": 600}, "verify.timeout"),
    ({"timeout": -1}, "verify.timeout"),
    ({"surprise": 1}, "verify.surprise"),
    ({"tests": "def test_x(:\n    pass\n"}, "verify.tests"),
    ({"use_doctests": False}, "verify"),  # no tests at all
]


@pytest.mark.parametrize("verify, param", BAD_BODIES, ids=[p + ":" + str(v)[:30] for v, p in BAD_BODIES])
def test_a_bad_verify_object_is_a_400_naming_the_field(server, verify, param):
    import httpx

    body = {"model": "tiny", "prompt": "def f():\n    return 1\n# ", "max_tokens": 4, "verify": verify}
    r = httpx.post(f"{server.url}/v1/completions", json=body, timeout=120)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == param, r.text
    if param == "verify.tests" and "tests" in verify and isinstance(verify["tests"], str) and "(" in verify["tests"]:
        assert ":1: the tests do not parse" in r.json()["error"]["message"]


@pytest.mark.parametrize("extra, param", [({"n": 2}, "n"), ({"echo": True}, "echo"), ({"logprobs": 1}, "logprobs"),
                                          ({"suffix": "x"}, "suffix"), ({"prompt": ["a", "b"]}, "prompt"),
                                          ({"prompt": [1, 2, 3]}, "prompt")])
def test_what_verify_cannot_be_combined_with_is_refused(server, extra, param):
    import httpx

    body = {"model": "tiny", "prompt": "def f():\n    return 1\n# ", "max_tokens": 4,
            "verify": {"tests": "assert f() == 1\n"}, **extra}
    r = httpx.post(f"{server.url}/v1/completions", json=body, timeout=120)
    assert r.status_code == 400 and r.json()["error"]["param"] == param, r.text
