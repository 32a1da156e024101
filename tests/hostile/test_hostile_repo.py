"""A repository given to `--repo` (CLI and server) is hostile input: links out of it, binary and
special files, trees too large to read, paths that climb out, request fields of the wrong shape.
Each is named, bounded and contained; nothing outside the root reaches a prompt."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dscoder.cli.app import app
from dscoder.errors import UserError
from dscoder.repo.context import ContextConfig, RepoIndex


def count(text: str) -> int:
    return len(text.split())


def skipped(index: RepoIndex) -> dict[str, str]:
    return dict(index.skipped)


@pytest.fixture
def repo(tmp_path):
    root = tmp_path / "repo"
    (root / "pkg").mkdir(parents=True)
    (root / "pkg/ok.py").write_text("def fine():\n    return 1\n")
    return root


def test_a_repo_that_is_not_a_directory_is_named_before_any_model_loads(tmp_path, repo):
    runner = CliRunner()
    for bad, says in ((tmp_path / "missing", "no such directory"), (repo / "pkg/ok.py", "not a directory")):
        result = runner.invoke(app, ["complete", "x = ", "--repo", str(bad), "--model", str(tmp_path / "no-model")])
        assert result.exit_code != 0 and says in result.output, result.output
        with pytest.raises(UserError, match=says):
            RepoIndex(bad)


def test_links_out_of_the_root_are_not_followed(tmp_path, repo):
    secret = tmp_path / "outside"
    secret.mkdir()
    (secret / "keys.py").write_text("SECRET_KEY = 'do-not-leak'\n")
    os.symlink(secret / "keys.py", repo / "pkg/keys.py")
    os.symlink(secret, repo / "linked_dir")
    index = RepoIndex(repo)
    assert skipped(index)["pkg/keys.py"] == "symlink_outside_root"
    assert not any(p.startswith("linked_dir") for p in index.files)
    ctx = index.context("pkg/app.py", "import pkg.keys\nprint(SECRET_KEY)\n", "", 10_000, count)
    assert "do-not-leak" not in ctx.text and "pkg/ok.py" in index.files


def test_binary_invalid_and_special_files_are_skipped_by_name(repo):
    (repo / "pkg/blob.py").write_bytes(b"def f():\x00\x01\x02" * 100)
    (repo / "pkg/latin.py").write_bytes(bytes(range(128, 256)) * 20)
    os.mkfifo(repo / "pkg/pipe.py")  # reading it would block forever
    (repo / "pkg/huge.py").write_text("x = 1\n" * 200_000)
    index = RepoIndex(repo, ContextConfig(max_file_bytes=512 * 1024))
    reasons = skipped(index)
    assert reasons["pkg/blob.py"] == "binary" and reasons["pkg/latin.py"] == "invalid_utf8"
    assert reasons["pkg/pipe.py"] == "not_regular_file" and reasons["pkg/huge.py"] == "too_large"
    assert set(index.files) == {"pkg/ok.py"}
    assert "1 binary" in index.summary() and "1 too_large" in index.summary()


def test_a_tree_too_large_keeps_the_files_nearest_the_cursor_within_bounds(tmp_path):
    root = tmp_path / "big"
    for d in range(30):
        (root / f"d{d:02}").mkdir(parents=True)
        for f in range(100):
            (root / f"d{d:02}" / f"m{f:03}.py").write_text(f"def f{d}_{f}():\n    return {f}\n")
    index = RepoIndex(root, ContextConfig(max_files=150))
    index.refresh(near="d17/app.py")
    assert len(index.files) == 150
    assert sum(p.startswith("d17/") for p in index.files) == 100  # the cursor's directory first
    assert sum(why == "over_max_files" for _, why in index.skipped) == 3000 - 150
    assert "2850 over_max_files" in index.summary()
    capped = RepoIndex(root, ContextConfig(max_total_bytes=2_000))
    assert 0 < len(capped.files) < 100 and any(why == "over_max_total_bytes" for _, why in capped.skipped)
    timed = RepoIndex(root, ContextConfig(max_seconds=0.0))
    assert len(timed.files) == 0 and {why for _, why in timed.skipped} <= {"listing_stopped", "time_limit"}
    listed = RepoIndex(root, ContextConfig(max_listed=200))
    assert len(listed.files) < 3000 and any(why == "listing_stopped" for _, why in listed.skipped)


def test_a_deep_tree_and_odd_names_cannot_forge_a_path_line(tmp_path):
    root = tmp_path / "deep"
    here = root
    for i in range(300):
        here = here / "d"
    here.mkdir(parents=True)
    (here / "x.py").write_text("def deep_fn():\n    pass\n")
    (root / "evil\n#fake.py").write_text("def forged():\n    pass\n")
    index = RepoIndex(root)
    ctx = index.context(None, "forged()\n", "", 1000, count)
    assert "#fake.py\n" not in ctx.text.replace("\\x0a#fake.py", "") and "evil\\x0a#fake.py" in ctx.text


def test_a_changing_file_is_read_once_whole_or_not_at_all(repo):
    index = RepoIndex(repo)
    path = repo / "pkg/ok.py"
    path.write_text("def fine():\n    return 2\n")
    os.utime(path, ns=(time.time_ns() + 10**9,) * 2)
    path.unlink()
    index.refresh()
    assert "pkg/ok.py" not in index.files


# ---- the server ------------------------------------------------------------------------------------

httpx = pytest.importorskip("httpx")
pytest.importorskip("uvicorn")


@pytest.fixture(scope="module")
def servers(fim_model_dir, tmp_path_factory):
    from dscoder.hub import load_model
    from dscoder.serve.api import ServerState, create_app
    from dscoder.serve.engine import Engine, EngineConfig
    from dscoder.serve.repo import RepoSource
    from dscoder.tokenizer.tokenizer import Tokenizer
    from serve_live import LiveServer

    root = tmp_path_factory.mktemp("served")
    (root / "a.py").write_text("def helper():\n    return 1\n")
    outside = tmp_path_factory.mktemp("outside")
    (outside / "secret.py").write_text("TOKEN = 'do-not-leak'\n")
    model, tok = load_model(fim_model_dir), Tokenizer.load(fim_model_dir)
    with_repo = ServerState("tiny", engine=Engine(model, tok, EngineConfig(num_blocks=64, max_running=4)).start(),
                            repo=RepoSource(RepoIndex(root)))
    without = ServerState("tiny", engine=Engine(model, tok, EngineConfig(num_blocks=64, max_running=4)).start())
    with LiveServer(create_app(with_repo)) as a, LiveServer(create_app(without)) as b:
        with httpx.Client(base_url=a.url, timeout=60) as ca, httpx.Client(base_url=b.url, timeout=60) as cb:
            yield ca, cb, outside


@pytest.mark.parametrize("route", ["/infill", "/v1/completions"])
def test_repo_fields_that_climb_out_or_lack_a_repository_are_refused(servers, route):
    with_repo, without, outside = servers
    base = ({"input_prefix": "helper(", "n_predict": 2} if route == "/infill"
            else {"model": "tiny", "prompt": "helper(", "max_tokens": 2})
    for path in ("../outside/secret.py", str(outside / "secret.py"), "a/../../x.py"):
        r = with_repo.post(route, json={**base, "repo": {"file": path}})
        assert r.status_code == 400 and "repo.file" in r.text, r.text
    r = without.post(route, json={**base, "repo": {"file": "a.py"}})
    assert r.status_code == 400 and "without --repo" in r.json()["error"]["message"]
    for bad in ({"file": 3}, {"file": "a.py", "root": "/"}, {"max_tokens": -1}, "a.py"):
        r = with_repo.post(route, json={**base, "repo": bad})
        assert r.status_code in (400, 422) and "repo" in r.text, r.text


def test_token_prompts_and_echo_cannot_take_repository_context(servers):
    with_repo = servers[0]
    r = with_repo.post("/v1/completions", json={"model": "tiny", "prompt": [1, 2, 3], "max_tokens": 2, "repo": {}})
    assert r.status_code == 400 and "text prompt" in r.text
    r = with_repo.post("/v1/completions", json={"model": "tiny", "prompt": "x", "max_tokens": 2, "echo": True,
                                                "repo": {}})
    assert r.status_code == 400 and "echo" in r.text
