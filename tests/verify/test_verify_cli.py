"""`--verify` on the command line, as a user runs it (real subprocesses, real models, the real sandbox):
the chosen code on stdout, verdicts and the summary on stderr, exit status 0 / 1 (none passed) / 2."""

from __future__ import annotations

import subprocess
import sys

import pytest

from verify_helpers import pool  # noqa: F401  (the sandbox is required)

PROMPT = "def f():\n    return 1\n# "


def dscoder(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dscoder.cli.app", *args], capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture
def tests_file(tmp_path):
    def write(text: str):
        path = tmp_path / "test_f.py"
        path.write_text(text)
        return str(path)
    return write


def test_complete_verify_prints_the_chosen_completion_and_the_verdicts(fim_model_dir, tests_file, pool):
    out = dscoder("complete", PROMPT, "-m", str(fim_model_dir), "--max-tokens", "8", "--stop", "\n",
                  "--verify", "--samples", "3", "--tests", tests_file("assert f() == 1\n"))
    assert out.returncode == 0, out.stderr
    assert "tests: 1 check from" in out.stderr and "candidate 1 (greedy): passed 1/1 checks" in out.stderr
    assert "; chose candidate 1" in out.stderr
    greedy = dscoder("complete", PROMPT, "-m", str(fim_model_dir), "--max-tokens", "8", "--stop", "\n")
    assert out.stdout == greedy.stdout + "\n", "the greedy candidate passed: plain greedy's text is printed"


def test_none_passing_prints_the_best_and_exits_1(fim_model_dir, tests_file, pool):
    out = dscoder("complete", PROMPT, "-m", str(fim_model_dir), "--max-tokens", "8", "--stop", "\n",
                  "--verify", "--samples", "2", "--tests", tests_file("assert f() == 1\nassert f() == 2\n"))
    assert out.returncode == 1, out.stderr
    assert "0/2 passed; none passed: chose candidate 1, the most checks passed (1/2)" in out.stderr
    assert "FAILED assert f() == 2" in out.stderr and out.stdout.strip() != ""


def test_verify_options_are_refused_without_verify_and_bad_input_before_the_model_loads(tmp_path):
    missing = str(tmp_path / "no-model")
    out = dscoder("complete", "x", "--samples", "3", "-m", missing)
    assert out.returncode == 2 and "--samples only apply with --verify" in out.stderr
    out = dscoder("complete", "x", "--verify", "--samples", "17", "-m", missing)
    assert out.returncode == 2 and "--samples must be between 1 and 16, got 17" in out.stderr
    out = dscoder("chat", "--verify", "--model", missing)
    assert out.returncode == 2 and "--verify needs a one-shot question" in out.stderr
    script = tmp_path / "a.js"
    script.write_text("console.log(1)\n")
    out = dscoder("fix", str(script), "--error", "x", "--verify", "-m", missing)
    assert out.returncode == 2 and "verification runs Python only" in out.stderr
    out = dscoder("complete", "x", "--verify", "--tests", str(tmp_path / "none.py"), "-m", missing)
    assert out.returncode == 2 and "cannot read the tests" in out.stderr
    assert "Traceback" not in out.stderr


def test_tests_verify_runs_each_candidate_suite_on_the_file(fim_model_dir, tmp_path, pool):
    """The tiny model writes no test suite: every candidate is refused without a run, named, exit 1."""
    code = tmp_path / "calc.py"
    code.write_text("def add(a, b):\n    return a + b\n")
    out = dscoder("tests", str(code), "-m", str(fim_model_dir), "--max-tokens", "16", "--verify", "--samples", "2")
    assert out.returncode == 1, out.stderr
    assert "candidate 1 (greedy): error" in out.stderr and "0/2 passed" in out.stderr


def test_the_embedded_model_answers_a_docstring_example_and_verification_passes_it(smollm2_gguf, pool):
    """The real default model: its greedy answer to a small function passes the docstring's examples."""
    message = ("Complete this Python function:\n```python\ndef add(a, b):\n    \"\"\"Return the sum of a and b.\n"
               "    >>> add(1, 2)\n    3\n    >>> add(-1, 1)\n    0\n    \"\"\"\n```")
    out = dscoder("chat", "-m", message, "--max-tokens", "96", "--verify", "--samples", "2")
    assert out.returncode == 0, out.stderr
    assert "tests: 2 checks from the prompt's examples" in out.stderr
    assert "passed 2/2 checks" in out.stderr and "return a + b" in out.stdout
