"""repo-completion's case file and repositories, damaged or altered: a case is left out by name when its
repository is missing or changed (never scored 0), a damaged case file is refused naming `path:line`, a
case file cannot get anything outside site-packages read, and a link in a package leading out is never
read into a prompt."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dscoder.tasks import repo_cases
from dscoder.tasks.repo_cases import CaseFileError
from repo_site import PACKAGE, ghost_row, make_site

SECRET = "TOP-SECRET-0123456789"


@pytest.fixture
def built(tmp_path) -> tuple[Path, Path, list[dict]]:
    site = make_site(tmp_path)
    twin = site / "pkgy"
    twin.mkdir()
    for path in (site / "pkgx").glob("*.py"):
        (twin / path.name).write_text(path.read_text().replace("pkgx", "pkgy"))
    cases = tmp_path / "cases.jsonl"
    rows = repo_cases.build([PACKAGE, repo_cases.Repository("pkgy", "pkgy", "twin")], per_repo=4, dirs=[site],
                            per_file=4)
    cases.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return site, cases, rows


def test_a_changed_file_leaves_its_repository_out_by_name(built):
    site, cases, rows = built
    (site / "pkgx" / "util.py").write_text((site / "pkgx" / "util.py").read_text() + "\n# edited\n")
    loaded = repo_cases.load(cases, [site])
    assert {c.root for c in loaded.cases} == {"pkgy"} and len(loaded.cases) == 4
    assert set(loaded.left_out) == {r["task_id"] for r in rows if r["root"] == "pkgx"}
    assert all("pkgx differs" in why and "files_sha256" in why for why in loaded.left_out.values())


def test_a_new_or_removed_file_changes_the_hash_too(built):
    site, cases, _ = built
    (site / "pkgx" / "extra.py").write_text("X = 1\n")
    assert len(repo_cases.load(cases, [site]).left_out) == 4
    (site / "pkgx" / "extra.py").unlink()
    (site / "pkgx" / "__pycache__" / "new.pyc").write_bytes(b"compiled at import time")  # not read: no change
    assert not repo_cases.load(cases, [site]).left_out
    (site / "pkgx" / "__init__.py").unlink()
    assert len(repo_cases.load(cases, [site]).left_out) == 4


def test_a_missing_repository_is_left_out_not_scored(built, tmp_path):
    site, cases, rows = built
    with cases.open("a") as f:
        f.write(json.dumps(ghost_row(rows[0])) + "\n")
    loaded = repo_cases.load(cases, [site])
    assert loaded.left_out == {"ghostpkg/app.py:12": "ghostpkg is not installed (the cases are of ghostpkg 9.9)"}
    assert len(loaded.cases) == 8


@pytest.mark.parametrize("damage", ["truncated", "not json", "field", "hash", "line"])
def test_a_damaged_line_is_refused_naming_path_and_line(built, damage):
    _, cases, rows = built
    lines = cases.read_text().splitlines()
    row = dict(rows[2])
    if damage == "truncated":
        lines[2] = lines[2][:40]
    elif damage == "not json":
        lines[2] = "[1, 2]"
    elif damage == "field":
        lines[2] = json.dumps({**row, "line": "12"})
    elif damage == "hash":
        lines[2] = json.dumps({**row, "files_sha256": "xyz"})
    else:
        lines[2] = json.dumps({**row, "line": 0})
    cases.write_text("\n".join(lines) + "\n")
    with pytest.raises(CaseFileError, match=f"{cases}:3: "):
        repo_cases.load(cases)


@pytest.mark.parametrize("field, value", [("root", "../outside"), ("root", "/etc"), ("file", "../../secret.py"),
                                          ("defined_in", "a/../../b.py"), ("file", "x\x00.py"), ("root", "")])
def test_a_path_leaving_site_packages_is_refused(built, field, value):
    _, cases, rows = built
    cases.write_text(json.dumps({**rows[0], field: value}) + "\n")
    with pytest.raises(CaseFileError, match="cases.jsonl:1"):
        repo_cases.load(cases)


def test_a_case_disagreeing_with_files_that_match_their_hash_is_refused(built):
    site, cases, rows = built
    cases.write_text(json.dumps({**rows[0], "target": "    something else"}) + "\n")
    with pytest.raises(CaseFileError, match="the case itself is wrong"):
        repo_cases.load(cases, [site])
    cases.write_text(json.dumps({**rows[0], "line": rows[0]["line"] + 1}) + "\n")
    with pytest.raises(CaseFileError, match="the case itself is wrong"):
        repo_cases.load(cases, [site])


def test_a_link_leading_out_is_never_read(tmp_path):
    site = make_site(tmp_path)
    secret = tmp_path / "secret.py"
    secret.write_text(f'KEY = "{SECRET}"\n')
    (site / "pkgx" / "keys.py").symlink_to(secret)
    files = repo_cases.read_repository(site / "pkgx")
    assert "keys.py" not in files.texts and ("keys.py", "symlink_outside_root") in files.skipped
    staged = repo_cases.stage(files, "pkgx", tmp_path / "staged")
    assert all(SECRET not in p.read_text() for p in staged.rglob("*.py"))
    outside = tmp_path / "elsewhere" / "pkgz"
    outside.mkdir(parents=True)
    (outside / "__init__.py").write_text(f'KEY = "{SECRET}"\n')
    (site / "pkgz").symlink_to(outside, target_is_directory=True)  # a package that is a link out of site-packages
    assert repo_cases.find_root("pkgz", [site]) is None


def test_undecodable_and_unparsable_files_give_no_case_and_stop_nothing(tmp_path):
    site = make_site(tmp_path)
    (site / "pkgx" / "binary.py").write_bytes(b"\x00\x01\x02" * 100)
    (site / "pkgx" / "broken.py").write_text("def f(:\n    return Config(\n")
    files = repo_cases.read_repository(site / "pkgx")
    assert ("binary.py", "binary") in files.skipped
    found = repo_cases.repository_candidates(files, "pkgx")
    assert {c.file for c in found} == {"app.py"}
