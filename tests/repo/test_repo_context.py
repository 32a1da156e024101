"""dscoder.repo.context: what of a repository a cursor's prompt reads, in which order, within a budget."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from dscoder.errors import UserError
from dscoder.repo.context import ContextConfig, RepoIndex, prompt_prefix, with_context


def count(text: str) -> int:
    return len(text.split())  # a stand-in tokenizer: the budget arithmetic is what is tested


def write(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


REPO = {
    "pkg/__init__.py": "",
    "pkg/base.py": "def base_helper():\n    return 0\n",
    "pkg/util.py": "from pkg.base import base_helper\n\n\ndef scaled(x, k):\n    return x * k\n",
    "pkg/shapes.py": "class Square:\n    def area(self):\n        return 4\n",
    "pkg/other.py": "def unrelated():\n    pass\n",
    "pkg/app.py": "from pkg.util import scaled\n\n\ndef main(w):\n    return scaled(w, 2)\n# LATER LINE\n",
}


@pytest.fixture
def repo(tmp_path):
    return write(tmp_path / "r", REPO)


def test_imports_nearest_last_then_definitions_and_the_cursor_file_kept_out(repo):
    index = RepoIndex(repo)
    prefix = "from pkg.util import scaled\n\n\ndef main(w):\n    s = Square()\n    return "
    ctx = index.context("pkg/app.py", prefix, "", 10_000, count)
    assert [(b.path, b.kind, b.distance) for b in ctx.blocks] == [
        ("pkg/base.py", "import", 2), ("pkg/util.py", "import", 1), ("pkg/shapes.py", "definition", 0)]
    assert ctx.text.startswith("#pkg/base.py\ndef base_helper():")
    assert "#pkg/shapes.py\nclass Square:\n    def area(self):" in ctx.text
    assert "LATER LINE" not in ctx.text and "#pkg/app.py" not in ctx.text  # the buffer replaces the file on disk
    assert "unrelated" not in ctx.text  # neither imported nor named near the cursor
    assert ctx.tokens == sum(b.tokens for b in ctx.blocks) == sum(count(b.text) for b in ctx.blocks)
    assert prompt_prefix(ctx, "pkg/app.py", prefix) == ctx.text + "#pkg/app.py\n" + prefix


def test_a_tight_budget_keeps_definitions_first_and_whole_files_only_when_they_fit(repo):
    index = RepoIndex(repo)
    prefix = "from pkg.util import scaled\n\ndef main(w):\n    return scaled("
    full = index.context("pkg/app.py", prefix, "", 10_000, count)
    assert [b.kind for b in full.blocks] == ["import", "import"]  # util taken whole: its `scaled` snippet dropped
    definition = count("#pkg/util.py\ndef scaled(x, k):\n    return x * k\n")
    tight = index.context("pkg/app.py", prefix, "", definition, count)
    assert [(b.path, b.kind) for b in tight.blocks] == [("pkg/util.py", "definition")]
    assert tight.tokens <= definition and ("pkg/util.py", "budget") in tight.left_out
    assert index.context("pkg/app.py", prefix, "", 0, count).blocks == []


def test_with_context_leaves_the_window_to_the_cursor_file_and_the_answer(repo):
    index = RepoIndex(repo)
    prefix = "from pkg.util import scaled\n" + "x = 1\n" * 50
    own = count("#pkg/app.py\n" + prefix)
    text, ctx = with_context(index, "pkg/app.py", prefix, "", own + 20 + 8, 20, count)
    assert ctx.blocks == [] and text == "#pkg/app.py\n" + prefix
    text, ctx = with_context(index, "pkg/app.py", prefix, "", own + 200, 20, count)
    assert ctx.tokens <= 200 - 20 - 8 and ctx.blocks and text.endswith("#pkg/app.py\n" + prefix)


def test_a_name_defined_in_many_files_is_not_looked_up(tmp_path):
    files = {f"m{i}.py": "def run():\n    pass\n" for i in range(5)} | {"only.py": "def unique_name():\n    pass\n"}
    index = RepoIndex(write(tmp_path, files), ContextConfig(max_ambiguous=3))
    ctx = index.context("main.py", "run()\nunique_name()\n", "", 1000, count)
    assert [b.path for b in ctx.blocks] == ["only.py"]


def test_a_package_root_is_seen_from_its_parent(tmp_path):
    root = write(tmp_path / "mypkg", {"__init__.py": "", "core.py": "def core_fn():\n    return 1\n",
                                      "api.py": "from mypkg.core import core_fn\n"})
    ctx = RepoIndex(root).context("api.py", "from mypkg.core import core_fn\n\ncore_fn(", "", 1000, count)
    assert [(b.path, b.kind) for b in ctx.blocks] == [("core.py", "import")]
    assert ctx.text.startswith("#mypkg/core.py\n")
    assert prompt_prefix(ctx, "api.py", "x").endswith("#mypkg/api.py\nx")


def test_refresh_reads_a_changed_file_again_and_keeps_the_rest(repo):
    index = RepoIndex(repo)
    before = index.files["pkg/base.py"]
    kept = index.files["pkg/other.py"]
    (repo / "pkg/base.py").write_text("def base_helper():\n    return 42\n")
    os.utime(repo / "pkg/base.py", ns=(time.time_ns() + 10**9, time.time_ns() + 10**9))
    index.refresh()
    assert index.files["pkg/base.py"] is not before and "42" in index.files["pkg/base.py"].text
    assert index.files["pkg/other.py"] is kept


def test_a_git_tree_is_read_from_its_index_so_ignored_files_stay_out(repo):
    if subprocess.run(["git", "--version"], capture_output=True).returncode != 0:
        pytest.skip("git is not installed")
    (repo / ".gitignore").write_text("pkg/secret_settings.py\n")
    (repo / "pkg/secret_settings.py").write_text("API_TOKEN = 'hunter2'\n")
    env = {**os.environ, "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"}
    subprocess.run(["git", "init", "-q", str(repo)], check=True, env=env)
    subprocess.run(["git", "-C", str(repo), "add", "."], check=True, env=env)
    index = RepoIndex(repo)
    assert "pkg/secret_settings.py" not in index.files and "pkg/util.py" in index.files
    ctx = index.context("pkg/app.py", "print(API_TOKEN)\n", "", 1000, count)
    assert "hunter2" not in ctx.text


def test_paths_outside_the_repository_are_refused(repo):
    index = RepoIndex(repo)
    assert index.relative(str(repo / "pkg" / "app.py")) == "pkg/app.py"
    assert index.relative("./pkg//app.py") == "pkg/app.py"
    for bad in ("../etc/passwd", "pkg/../../x.py", "/etc/passwd"):
        with pytest.raises(UserError):
            index.context(bad, "", "", 100, count)


def test_a_name_imported_and_not_yet_used_is_shown_before_distant_ones(tmp_path):
    files = {"lib.py": "def first():\n    pass\n\n\ndef soon_used(a, b):\n    return a - b\n" + "x = 1\n" * 300}
    root = write(tmp_path, files)
    prefix = "from lib import first, soon_used\n\n\ndef f():\n    first()\n    "
    budget = count("#lib.py\ndef soon_used(a, b):\n    return a - b\n")
    ctx = RepoIndex(root, ContextConfig(near_names=0)).context("main.py", prefix, "", budget, count)
    assert [b.kind for b in ctx.blocks] == ["definition"] and "def soon_used(a, b):" in ctx.text
    assert "def first" not in ctx.text  # already used in the file, and the budget is spent
    near = RepoIndex(root, ContextConfig(near_names=8)).context("main.py", prefix, "", budget, count)
    assert "def first" in near.text  # the nearest names come first when asked to
