"""The data build on trees an attacker wrote: nothing from outside the tree is read, nothing the
tree configures is run, and odd names, depths and sizes neither crash a build nor lie in its counts.

Each test builds a tiny tree, runs the real build (`pipeline.build`, in this process, one worker)
and looks at what came out: the shards' text, `dropped.jsonl` and the manifest. Planted secrets
and marker files live outside the tree, where only a followed link or a command the tree
configured could reach them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from data_repos import (TRAPS_SET_OFF_BY_GIT, git, make_deep_tree, make_trapped_git_repo, module,
                        remove_deep_tree, set_off_traps)

from dscoder.data import pipeline
from dscoder.repo import ingest
from dscoder.tokenizer.tokenizer import Tokenizer
from dscoder.tokenizer.train import train_tokenizer

SECRET = 'DATABASE_PASSWORD = "hunter2-correct-horse-battery"\n'
BASHRC = "export PS1='outside-the-tree$ '\nalias ll='ls -l --outside-the-tree'\n"


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory) -> str:
    root = tmp_path_factory.mktemp("tok")
    (root / "src").mkdir()
    (root / "src" / "a.py").write_text(module("a") * 20 + SECRET + BASHRC)
    train_tokenizer([root / "src"], 300, root / "tok", show_progress=False)
    return str(root / "tok" / "tokenizer.json")


def build(tokenizer: str, sources: list, out: Path, **overrides) -> dict:
    settings = dict(sources=[str(s) for s in sources], out=str(out), tokenizer=tokenizer, seq_len=64,
                    shard_sequences=8, val_fraction=0.0, workers=1, part_bytes=4096, fim_rate=0.0,
                    decontaminate=False)
    settings.update(overrides)
    return pipeline.build(pipeline.BuildConfig(**settings))


def corpus_text(out: Path, tokenizer: str) -> str:
    manifest = json.loads((out / "manifest.json").read_text())
    ids = [np.fromfile(out / s["file"], dtype=manifest["dtype"]) for split in manifest["splits"].values()
           for s in split["shards"]]
    return Tokenizer.load(tokenizer).decode(np.concatenate(ids).tolist()) if ids else ""


def drops(out: Path) -> dict[str, str]:
    """path -> rule, from dropped.jsonl (read as strict UTF-8: every line must be)."""
    rows = [json.loads(line) for line in (out / "dropped.jsonl").read_bytes().decode("utf-8").splitlines()]
    return {row["path"]: row["rule"] for row in rows}


@pytest.fixture
def outside(tmp_path) -> Path:
    """A directory beside the tree: a planted secret module and a shell rc."""
    place = tmp_path / "outside"
    place.mkdir()
    (place / "x.py").write_text(module("outside") + SECRET)
    (place / "bashrc").write_text(BASHRC)
    return place


def assert_nothing_from(outside_text: str, text: str) -> None:
    assert "hunter2" not in text and "outside-the-tree" not in text and "add_outside" not in text, outside_text


# ---- containment: links out of the tree are not followed, and are counted ----------------------

def test_git_tree_reads_nothing_through_a_link_to_outside(tokenizer, outside, tmp_path):
    """`git ls-files` lists `d/x.py` although `d` is now a link out of the tree: the build read it."""
    repo = tmp_path / "repo"
    (repo / "d").mkdir(parents=True)
    (repo / "main.py").write_text(module("main"))
    (repo / "d" / "x.py").write_text(module("x"))
    os.symlink("main.py", repo / "alias.py")  # a link that stays inside: its target is read once
    os.symlink(outside / "bashrc", repo / "rc.sh")
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "init")
    (repo / "d" / "x.py").unlink()
    (repo / "d").rmdir()
    os.symlink(outside, repo / "d")
    assert "d/x.py" in git(repo, "ls-files").stdout.decode()

    manifest = build(tokenizer, [repo], tmp_path / "out")
    text = corpus_text(tmp_path / "out", tokenizer)
    assert_nothing_from("outside", text)
    assert text.count("def add_main") == 1
    assert drops(tmp_path / "out") == {"d/x.py": "ingest.symlink_outside_root", "rc.sh": "ingest.symlink_outside_root",
                                       "alias.py": "ingest.symlink_in_root"}
    assert manifest["dropped"]["ingest.symlink_outside_root"] == 2
    assert manifest["dropped"]["ingest.symlink_in_root"] == 1


def test_plain_tree_counts_links_it_does_not_follow(tokenizer, outside, tmp_path):
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "main.py").write_text(module("main"))
    os.symlink(outside, tree / "d")
    os.symlink(outside / "x.py", tree / "x.py")
    os.symlink("main.py", tree / "alias.py")
    os.symlink(tree, tree / "loop")
    os.mkfifo(tree / "pipe.py")  # never opened for reading: a FIFO would block the read forever
    manifest = build(tokenizer, [tree], tmp_path / "out")
    assert_nothing_from("outside", corpus_text(tmp_path / "out", tokenizer))
    assert drops(tmp_path / "out") == {"d": "ingest.symlink_outside_root", "x.py": "ingest.symlink_outside_root",
                                       "alias.py": "ingest.symlink_in_root", "loop": "ingest.symlink_in_root",
                                       "pipe.py": "ingest.not_regular_file"}
    assert manifest["files"] == {"listed": 6, "kept": 1}


def test_split_child_that_links_outside_is_counted_not_read(tokenizer, outside, tmp_path):
    src = tmp_path / "src"
    (src / "pkg").mkdir(parents=True)
    (src / "pkg" / "mod.py").write_text(module("pkg"))
    os.symlink(outside, src / "evil")
    manifest = build(tokenizer, [src], tmp_path / "out", split=True)
    assert_nothing_from("outside", corpus_text(tmp_path / "out", tokenizer))
    rows = [json.loads(line) for line in (tmp_path / "out" / "dropped.jsonl").read_text().splitlines()]
    assert {"repository": "src", "path": "evil", "rule": "ingest.symlink_outside_root"} in rows
    assert manifest["dropped"]["ingest.symlink_outside_root"] == 1


def test_clone_target_planted_as_a_link_is_not_followed(tokenizer, outside, tmp_path):
    """A link where a clone belongs (a shared output directory) led the build into another repository."""
    upstream = tmp_path / "upstream"
    upstream.mkdir()
    (upstream / "up.py").write_text(module("upstream"))
    subprocess.run(["git", "init", "-q", str(upstream)], check=True)
    git(upstream, "add", "-A")
    git(upstream, "commit", "-qm", "init")
    subprocess.run(["git", "init", "-q", str(outside)], check=True)
    git(outside, "add", "-A")
    git(outside, "commit", "-qm", "outside")
    out = tmp_path / "out"
    place = out / "work" / "clones" / (str(upstream).strip("/").replace("/", "_"))  # where the clone goes
    place.parent.mkdir(parents=True)
    os.symlink(outside, place)
    build(tokenizer, [f"file://{upstream}"], out, keep_work=True)
    text = corpus_text(out, tokenizer)
    assert "def add_upstream" in text
    assert_nothing_from("outside", text)
    assert not place.is_symlink() and (place / ".git").is_dir()  # the clone was made where the link was...
    assert (outside / "x.py").exists()  # ...and the link removed, not what it pointed at


def test_a_tree_changed_after_planning_is_still_contained(tokenizer, outside, tmp_path):
    """The plan lists `d/x.py` from a real directory; before the (resumed) scan, `d` becomes a link
    out of the tree. The read itself must refuse it: a check at planning time is not enough."""
    tree = tmp_path / "tree"
    (tree / "d").mkdir(parents=True)
    (tree / "main.py").write_text(module("main"))
    (tree / "d" / "x.py").write_text(module("x"))
    out = tmp_path / "out"
    build(tokenizer, [tree], out, keep_work=True)
    (out / "manifest.json").unlink()
    for marker in [*(out / "work" / "scan").glob("part-*.json"), *(out / "work" / "tokens").glob("part-*.json")]:
        marker.unlink()
    (tree / "d" / "x.py").unlink()
    (tree / "d").rmdir()
    os.symlink(outside, tree / "d")
    manifest = build(tokenizer, [tree], out)
    assert_nothing_from("outside", corpus_text(out, tokenizer))
    assert drops(out)["d/x.py"] == "ingest.symlink_outside_root" and manifest["files"]["kept"] == 1


def test_paths_that_leave_the_root_are_refused_by_the_reader(outside, tmp_path):
    tree = tmp_path / "tree"
    tree.mkdir()
    os.symlink(outside, tree / "d")
    with ingest.Tree(str(tree)) as reader:
        for rel in ("../outside/x.py", str(outside / "x.py"), "./d/x.py", "d/../../outside/x.py", ""):
            assert reader.read(rel).why == "outside_root", rel
        assert reader.read("d/x.py").why == "symlink_outside_root"
        assert reader.read("nothing.py").why == "missing"


# ---- git: listing a tree runs nothing it configures ----------------------------------------------

def test_git_listing_runs_nothing_the_tree_configures(tokenizer, tmp_path):
    """fsmonitor, hooks, filters (clean/smudge/process), textconv, sshCommand, pager, aliases,
    include.path and includeIf: each leaves a marker when run. The build lists the tracked files
    (the .gitignored one left out) and no marker appears; then plain git sets the traps off."""
    repo, markers = tmp_path / "repo", tmp_path / "markers"
    tracked = make_trapped_git_repo(repo, markers)
    (repo / "untracked.py").write_text(module("untracked"))
    build(tokenizer, [repo], tmp_path / "out", keep_work=True)
    assert sorted(os.listdir(markers)) == []
    plan = json.loads((tmp_path / "out" / "work" / "plan.json").read_text())
    assert {f[2] for part in plan["parts"] for f in part} | {f[1] for f in plan["skipped_files"]} == tracked
    text = corpus_text(tmp_path / "out", tokenizer)
    assert "def add_a" in text and "def add_b" in text and "add_ignored" not in text and "add_untracked" not in text
    set_off_traps(repo)
    assert TRAPS_SET_OFF_BY_GIT <= set(os.listdir(markers)), "the traps must be live for this test to mean anything"


def test_clone_runs_no_template_hook(tokenizer, tmp_path, monkeypatch):
    """A clone copies the user's template hooks and runs post-checkout: not for a tree read as data."""
    upstream, markers = tmp_path / "upstream", tmp_path / "markers"
    make_trapped_git_repo(upstream, markers)
    templates = tmp_path / "templates" / "hooks"
    templates.mkdir(parents=True)
    for hook in ("post-checkout", "reference-transaction", "post-index-change"):
        (templates / hook).write_text(f'#!/bin/sh\ntouch "{markers}/template-{hook}"\n')
        (templates / hook).chmod(0o755)
    (tmp_path / "gitconfig").write_text(f"[init]\n\ttemplateDir = {templates.parent}\n")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(tmp_path / "gitconfig"))
    build(tokenizer, [f"file://{upstream}"], tmp_path / "out")
    assert sorted(os.listdir(markers)) == []
    assert "def add_a" in corpus_text(tmp_path / "out", tokenizer)


@pytest.mark.parametrize("layout", ["sha256", "worktree", "split-index"])
def test_git_layouts_still_list_their_tracked_files(layout, tmp_path):
    """git reads only the index, in a git directory of ours: SHA-256 repositories, linked worktrees
    (a `.git` file) and split indexes must list as `git ls-files` does."""
    repo = tmp_path / "repo"
    repo.mkdir()
    for name in ("a.py", "b.py", "skip.py"):
        (repo / name).write_text(module(name[0]))
    (repo / ".gitignore").write_text("skip.py\n")
    init = ["git", "init", "-q"] + (["--object-format=sha256"] if layout == "sha256" else [])
    subprocess.run([*init, str(repo)], check=True)
    git(repo, *(["-c", "core.splitIndex=true"] if layout == "split-index" else []), "add", "-A")
    git(repo, "commit", "-qm", "init")
    if layout == "split-index":
        (repo / "c.py").write_text(module("c"))
        git(repo, "-c", "core.splitIndex=true", "add", "c.py")
        assert list((repo / ".git").glob("sharedindex.*"))
    root = repo
    if layout == "worktree":
        root = tmp_path / "linked"
        git(repo, "worktree", "add", "-q", str(root))
        assert (root / ".git").is_file()
    (listed,) = ingest.discover([str(root)])
    assert set(listed.files) == set(git(root, "ls-files", "-z").stdout.decode().strip("\0").split("\0"))
    assert "a.py" in listed.files and "skip.py" not in listed.files


def test_a_fifo_as_the_git_index_does_not_hang_the_listing(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "a.py").write_text(module("a"))
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    os.mkfifo(repo / ".git" / "index")
    code = f"from dscoder.repo import ingest; print(ingest.discover([{str(repo)!r}])[0].skipped)"
    try:
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    finally:
        try:  # lets a reader blocked on the FIFO (the listing of old) go
            os.close(os.open(repo / ".git" / "index", os.O_WRONLY | os.O_NONBLOCK))
        except OSError:
            pass
    assert done.returncode == 0 and "git_listing_failed" in done.stdout, done.stderr


# ---- odd trees: the build finishes, names are escaped, counts are true ---------------------------

def test_undecodable_names_are_escaped_and_the_build_resumes(tokenizer, tmp_path):
    """A file name (and a split repository's name) with bytes that are not UTF-8: a raw TypeError
    in the encode stage, on every resume too."""
    src = tmp_path / "src"
    (src / "plain").mkdir(parents=True)
    (src / "plain" / "ok.py").write_text(module("ok"))
    odd = os.fsencode(src) + b"/pkg\xff"
    os.mkdir(odd)
    with open(odd + b"/m\xfe.py", "w") as f:
        f.write(module("odd"))
    out = tmp_path / "out"
    manifest = build(tokenizer, [src], out, split=True, val_fraction=0.5, keep_work=True)
    assert manifest["files"]["kept"] == 2
    plan = json.loads((out / "work" / "plan.json").read_text())
    assert plan["repositories"] == ["src/pkg\\xff", "src/plain"]  # names are labels: escaped too
    assert len(manifest["validation_repositories"]) == 1  # held out by a hash of the name
    assert "#m\\xfe.py\n" in corpus_text(out, tokenizer)
    shards = {p.name: p.read_bytes() for p in out.glob("*.bin")}
    (out / "manifest.json").unlink()  # resumed: the encode stage runs again from the plan's paths
    for marker in (out / "work" / "tokens").glob("part-*.json"):
        marker.unlink()
    build(tokenizer, [src], out, split=True, val_fraction=0.5)
    assert {p.name: p.read_bytes() for p in out.glob("*.bin")} == shards


def test_a_tree_1200_directories_deep_builds(tokenizer, tmp_path):
    tree = tmp_path / "tree"
    deep = make_deep_tree(tree, 1200)
    try:
        (tree / "top.py").write_text(module("top"))
        manifest = build(tokenizer, [tree], tmp_path / "out")
        assert manifest["files"] == {"listed": 2, "kept": 2}
        assert f"#{deep}\n" in corpus_text(tmp_path / "out", tokenizer)
    finally:
        remove_deep_tree(tree)


def test_control_characters_in_names_cannot_forge_a_header(tokenizer, tmp_path):
    tree = tmp_path / "tree"
    tree.mkdir()
    names = {"evil\n#fake.py\nimport os.py": "evil\\x0a#fake.py\\x0aimport os.py", "cr\r#cr.py": "cr\\x0d#cr.py",
             "esc\x1b[2K.py": "esc\\x1b[2K.py", "tab\t.py": "tab\\x09.py", "back\\x0a.py": "back\\\\x0a.py",
             "sep\u2028#ls.py": "sep\\u2028#ls.py", "nel\x85.py": "nel\\u0085.py", "caf\u00e9.py": "caf\u00e9.py"}
    for i, name in enumerate(names):
        (tree / name).write_text(module(f"n{i}"))
    build(tokenizer, [tree], tmp_path / "out")
    text = corpus_text(tmp_path / "out", tokenizer)
    headers = {line[1:] for line in text.splitlines() if line.startswith("#")}
    assert headers == set(names.values())


def test_a_sparse_2gb_file_skipped_as_too_large_is_not_counted_as_read(tokenizer, tmp_path):
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "a.py").write_text(module("a"))
    with open(tree / "huge.py", "wb") as f:
        f.truncate(2 << 30)
    assert os.stat(tree / "huge.py").st_blocks * 512 < 1 << 20  # sparse: nothing written
    manifest = build(tokenizer, [tree], tmp_path / "out")
    assert manifest["bytes"]["read"] == len(module("a").encode())
    assert manifest["bytes"]["skipped"] == 2 << 30
    assert manifest["dropped"]["ingest.too_large"] == 1 and manifest["dropped_bytes"]["ingest.too_large"] == 2 << 30
    assert drops(tmp_path / "out")["huge.py"] == "ingest.too_large"


def test_printable_path_is_one_line_of_utf8_and_tells_names_apart():
    names = ["a.py", "a\n.py", "a\\x0a.py", "a\udcff.py", "a\\xff.py", "a\x85.py", "a\udcc2\udc85.py", "a\ud800.py"]
    shown = [ingest.printable_path(n) for n in names]
    assert len(set(shown)) == len(names)
    for s in shown:
        assert s.isprintable() and s.encode("utf-8")
    assert shown[3] == "a\\xff.py" and shown[6] == "a\\xc2\\x85.py" and shown[5] == "a\\u0085.py"
