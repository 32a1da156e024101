"""A fim-lines case file is read from --data as well as from the package: whoever wrote it must not get
a file outside the known source roots read, hashed or shown (absolute paths, `..`, a symlink or a
symlinked folder leading out, an unknown source, a zip member climbing out, malformed fields).
The whole case file is refused, naming the case, before anything outside is opened.

And the text judges (fim-lines' exact match, passkey's number) treat a model's answer as data.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dscoder.cli.app import app
from dscoder.tasks import fim_lines, passkey
from dscoder.tasks.fim_lines import CaseFileError, Source

SECRET = "TOP-SECRET-LINE-0123456789\n"


@pytest.fixture
def layout(tmp_path):
    """A source root holding one honest file, and a secret beside it, outside the root."""
    root = tmp_path / "root"
    (root / "lib").mkdir(parents=True)
    honest = "".join(f"function f{i} () {{\n  return compute{i}(value)\n}}\n" for i in range(10))
    (root / "lib" / "honest.js").write_text(honest)
    secret = tmp_path / "secret.txt"
    secret.write_text(SECRET * 20)
    return root, secret


def case(path: str, sha: str = "0" * 64, source: str = "nodejs", **more) -> dict:
    return {"format": 1, "task_id": f"js/{path}", "source": source, "path": path, "sha256": sha, "line": 2,
            "prefix_lines": 1, "suffix_lines": 1, **more}


def load(tmp_path: Path, rows: list[dict], root: Path):
    cases = tmp_path / "cases.jsonl"
    cases.write_text("".join((row if isinstance(row, str) else json.dumps(row)) + "\n" for row in rows))
    sources = {"nodejs": Source("dir", str(root)),
               "jdk-src": Source("jdk-zip", str(tmp_path / "no" / "*" / "src.zip"))}
    return fim_lines.load_cases(cases, "js", sources)


@pytest.mark.parametrize("path", ["../secret.txt", "lib/../../secret.txt", "/etc/shadow", "/etc/passwd",
                                  "./lib/honest.js", "lib//honest.js", "lib\\..\\..\\secret.txt", "", "lib/\x00x"])
def test_paths_that_leave_the_root_or_are_not_plain_are_refused(layout, tmp_path, path):
    root, _ = layout
    with pytest.raises(CaseFileError, match="path"):
        load(tmp_path, [case(path)], root)


def test_a_symlink_leading_out_is_refused_even_with_the_right_hash(layout, tmp_path):
    root, secret = layout
    (root / "lib" / "innocent.js").symlink_to(secret)
    (root / "etc").symlink_to("/etc")
    right = hashlib.sha256(secret.read_bytes()).hexdigest()  # the attacker knows the secret's hash: still refused
    with pytest.raises(CaseFileError, match="leads outside") as refused:
        load(tmp_path, [case("lib/innocent.js", right)], root)
    assert SECRET.strip() not in str(refused.value)
    with pytest.raises(CaseFileError, match="leads outside"):
        load(tmp_path, [case("etc/shadow")], root)
    # A symlink that stays inside the root is only another name for a file there.
    (root / "lib" / "alias.js").symlink_to(root / "lib" / "honest.js")
    honest = hashlib.sha256((root / "lib" / "honest.js").read_bytes()).hexdigest()
    assert len(load(tmp_path, [case("lib/alias.js", honest)], root)) == 1


def test_one_hostile_case_refuses_the_whole_file(layout, tmp_path):
    root, _ = layout
    honest = hashlib.sha256((root / "lib" / "honest.js").read_bytes()).hexdigest()
    assert len(load(tmp_path, [case("lib/honest.js", honest)], root)) == 1
    with pytest.raises(CaseFileError, match="must stay inside"):
        load(tmp_path, [case("lib/honest.js", honest), case("../secret.txt")], root)


def test_unknown_sources_zip_members_climbing_out_and_malformed_cases_are_refused(layout, tmp_path):
    root, _ = layout
    with pytest.raises(CaseFileError, match="unknown source 'etc'"):
        load(tmp_path, [case("shadow", source="etc")], root)
    with pytest.raises(CaseFileError, match="must stay inside"):
        load(tmp_path, [case("../../../etc/shadow", source="jdk-src")], root)
    malformed = ["not json", json.dumps([1, 2]), json.dumps(case("lib/honest.js", format=2)),
                 json.dumps(case("lib/honest.js", line="2")), json.dumps(case("lib/honest.js", line=True)),
                 json.dumps(case("lib/honest.js", line=0)), json.dumps(case("lib/honest.js", sha="zz")),
                 json.dumps(case("lib/honest.js", prefix_lines=-1)), json.dumps(case(["lib"]))]
    for row in malformed:
        with pytest.raises(CaseFileError):
            load(tmp_path, [row], root)
    honest = hashlib.sha256((root / "lib" / "honest.js").read_bytes()).hexdigest()
    with pytest.raises(CaseFileError, match="appears twice"):
        load(tmp_path, [case("lib/honest.js", honest), case("lib/honest.js", honest)], root)
    # A case whose file matches its hash but whose line is not in it is a wrong case file, not a skip.
    with pytest.raises(CaseFileError, match="not in"):
        load(tmp_path, [case("lib/honest.js", honest, line=10_000)], root)


def test_a_hostile_case_file_given_with_data_is_an_error_on_the_command_line(tmp_path):
    data = tmp_path / "data" / "fim-lines"
    data.mkdir(parents=True)
    (data / "js.jsonl").write_text(json.dumps(case("../../../../../../etc/shadow")) + "\n")
    completions = tmp_path / "completions.jsonl"
    completions.write_text("")
    result = CliRunner().invoke(app, ["eval", "fim-lines", "-l", "js", "--data", str(tmp_path / "data"),
                                      "--completions", str(completions), "--out", str(tmp_path / "out"),
                                      "--no-progress"])
    assert result.exit_code == 2, result.output
    assert "must stay inside its source" in result.output and "root:" not in result.output
    assert not (tmp_path / "out" / "samples.jsonl").exists()


def test_the_text_judges_read_answers_as_data():
    problem = passkey.problems("1k")[0]
    key = problem.extra["key"]
    # Judged by the first number in them, nothing else: code is not run, escapes are only characters.
    hostile = {f"__import__('os').system('touch /tmp/pwned-by-passkey') or {key}": True, "{{key}}" * 1000: False,
               f"\x00\x1b[2J{key} {key}": False, "9" * 100_000 + f" {key}": False, f"{key}" * 3: False}
    assert {text: problem.judge(text) for text in hostile} == hostile
    assert problem.judge(f" {key}. Remember it.") and problem.judge(f"The pass key is {key}")
    assert not Path("/tmp/pwned-by-passkey").exists()
    line = fim_lines.problem("js/x", "js", "a\n", "  run(value)\n", "b\n")
    assert not line.judge("__import__('os')._exit(0)\n") and line.judge("run(value)  \n# not judged")
