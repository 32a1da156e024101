"""Benchmark data for a clone with no ../shared: the pinned table, the cache, `dscoder eval fetch`,
and `dscoder eval BENCH` finding (or downloading) its data there.

Downloads come from a real HTTP server on 127.0.0.1 serving ../shared/data (DSCODER_DATA_URL),
so these tests need the shared data and no network. Only small files are served.
"""

from __future__ import annotations

import hashlib
import json
import re

import pytest
from typer.testing import CliRunner

from conftest import SHARED_DATA, requires
from data_server import DataServer, leftovers, no_shared_data
from dscoder.cli.app import app
from dscoder.tasks import fetch, infilling, sources
from dscoder.tasks.humaneval import LANGUAGES
from dscoder.tasks.problem import data_file

cli = CliRunner()
SMALL = ("humaneval-infilling", "mbpp")  # 4 files, 0.85 MB in all


def _shared() -> None:
    if not (SHARED_DATA / "mbpp" / "mbpp.jsonl").is_file():
        requires("shared-data", f"{SHARED_DATA} not found (the download tests serve it over loopback)")


def test_the_table_pins_every_file_to_a_commit_with_the_shared_copies_hash_and_size():
    _shared()
    languages = set(LANGUAGES) | {"swift", "r", "jl", "d", "rkt", "lua", "rb", "scala", "pl"}
    assert len(languages) == 19
    expected = {f"humaneval/humaneval-{lang}.jsonl" for lang in languages} | {
        "mbpp/mbpp.jsonl", "gsm8k/test.json", "humanevalplus/HumanEvalPlus-v0.1.10.jsonl.gz",
        "mbppplus/MbppPlus-v0.2.0.jsonl.gz", "leetcode/20240121-Jul.jsonl", "leetcode/20240121-Jul-zh.jsonl",
        "math/test.json", "gsm-hard/test.json", "cruxeval/cruxeval.jsonl",
        *(f"infilling/HumanEval-{s}Infilling{'Light' if s == 'RandomSpan' else ''}.jsonl.gz"
          for s in ("SingleLine", "MultiLine", "RandomSpan"))}
    assert expected <= set(sources.BY_PATH)
    assert len([p for p in sources.BY_PATH if p.startswith("humaneval/")]) == 19
    for source in sources.SOURCES:
        local = SHARED_DATA / source.path
        assert local.stat().st_size == source.size, source.path
        assert hashlib.sha256(local.read_bytes()).hexdigest() == source.sha256, source.path
        assert source.benchmarks and set(source.benchmarks) <= set(sources.BENCHMARKS)
        if source.url is not None:  # a raw file at a 40-hex commit, never a branch
            assert re.fullmatch(r"https://raw\.githubusercontent\.com/[\w.-]+/[\w.-]+/[0-9a-f]{40}/\S+", source.url), \
                source.url
    assert [s.path for s in sources.SOURCES if s.url is None] == ["gsm8k/test.json"]  # said in the report
    assert set(sources.BENCHMARKS) == {"humaneval", "mbpp", "humaneval-infilling", "gsm8k", "humaneval+", "mbpp+",
                                       "leetcode", "cruxeval", "math", "gsm-hard"}


def test_the_cache_folder_follows_dscoder_cache_then_xdg_then_home(monkeypatch, tmp_path):
    for name in ("DSCODER_CACHE", "XDG_CACHE_HOME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "h"))
    assert fetch.cache_dir() == tmp_path / "h" / ".cache" / "dscoder" / "data"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    assert fetch.cache_dir() == tmp_path / "x" / "dscoder" / "data"
    monkeypatch.setenv("DSCODER_CACHE", str(tmp_path / "d"))
    assert fetch.cache_dir() == tmp_path / "d" / "data"


def test_fetch_fills_the_cache_and_eval_reads_its_problems_from_there(monkeypatch, tmp_path):
    """Two benchmarks fetched through the CLI: byte-identical files, one request each; a second fetch asks
    for nothing; `dscoder eval` then scores from the cache with no ../shared and no DSCODER_DATA."""
    _shared()
    with DataServer(SHARED_DATA) as server:
        cache = no_shared_data(monkeypatch, tmp_path, server.url)
        result = cli.invoke(app, ["eval", "fetch", *SMALL])
        assert result.exit_code == 0, result.output
        wanted = sources.for_benchmarks(list(SMALL))
        assert len(wanted) == 4 and "downloaded" in result.output
        for source in wanted:
            assert (cache / source.path).read_bytes() == (SHARED_DATA / source.path).read_bytes()
        assert dict(server.requests) == {s.path: 1 for s in wanted}
        assert leftovers(cache) == []

        again = cli.invoke(app, ["eval", "fetch", *SMALL])
        assert again.exit_code == 0, again.output
        assert "downloaded" not in again.output and again.output.count("cached") >= 4
        assert sum(server.requests.values()) == 4  # nothing was asked again

        # The harness finds the files in the cache, not beside the checkout.
        assert data_file("mbpp", "mbpp.jsonl") == cache / "mbpp" / "mbpp.jsonl"
        problems = infilling.problems("random-span")[:3]
        completions = tmp_path / "middles.jsonl"
        completions.write_text("".join(json.dumps({"task_id": p.task_id, "completion": p.reference}) + "\n"
                                       for p in problems))
        run = tmp_path / "run"
        result = cli.invoke(app, ["eval", "humaneval-infilling", "--split", "random-span", "--completions",
                                  str(completions), "--limit", "3", "--out", str(run), "--no-progress"])
        assert result.exit_code == 0, result.output
        summary = json.loads((run / "summary.json").read_text())
        assert summary["problems"] == 3 and summary["pass@1"] == 1.0
        assert sum(server.requests.values()) == 4  # eval downloaded nothing either


def test_a_first_eval_downloads_only_the_file_it_needs_and_offline_says_how_to_get_it(monkeypatch, tmp_path):
    _shared()
    single = "infilling/HumanEval-SingleLineInfilling.jsonl.gz"
    with DataServer(SHARED_DATA) as server:
        cache = no_shared_data(monkeypatch, tmp_path, server.url)
        monkeypatch.setenv("DSCODER_OFFLINE", "1")
        with pytest.raises(FileNotFoundError) as offline:
            infilling.problems("single-line")
        message = str(offline.value)
        assert single in message and server.url + single in message and "DSCODER_OFFLINE" in message
        for way_out in ("dscoder eval fetch humaneval-infilling", "--data DIR", "DSCODER_DATA"):
            assert way_out in message
        assert not server.requests and not (cache / single).exists()

        monkeypatch.delenv("DSCODER_OFFLINE")
        assert len(infilling.problems("single-line")) == 1033  # downloaded on first use
        assert dict(server.requests) == {single: 1}
        assert (cache / single).read_bytes() == (SHARED_DATA / single).read_bytes()
        infilling.problems("single-line")
        assert dict(server.requests) == {single: 1}  # then read from the cache


def test_a_named_data_folder_is_the_only_place_looked(monkeypatch, tmp_path):
    """--data / DSCODER_DATA name the data to evaluate: a file missing there is an error, never a download."""
    _shared()
    with DataServer(SHARED_DATA) as server:
        no_shared_data(monkeypatch, tmp_path, server.url)
        empty = tmp_path / "empty"
        empty.mkdir()
        monkeypatch.setenv("DSCODER_DATA", str(empty))
        with pytest.raises(FileNotFoundError, match=re.escape(str(empty / "mbpp" / "mbpp.jsonl"))):
            data_file("mbpp", "mbpp.jsonl")
        monkeypatch.delenv("DSCODER_DATA")
        with pytest.raises(FileNotFoundError, match="from --data or DSCODER_DATA"):
            data_file("mbpp", "mbpp.jsonl", data=empty)
        assert not server.requests


def test_list_shows_every_file_and_where_it_would_come_from_without_downloading(monkeypatch, tmp_path):
    _shared()
    with DataServer(SHARED_DATA) as server:
        no_shared_data(monkeypatch, tmp_path, server.url)
        result = cli.invoke(app, ["eval", "fetch", "--list"])
        assert result.exit_code == 0, result.output
        for source in sources.SOURCES:
            assert source.path in result.output
        assert "to download" in result.output and not server.requests
    monkeypatch.setenv("DSCODER_CHECKOUT_DATA", "1")
    monkeypatch.delenv("DSCODER_DATA_URL")
    result = cli.invoke(app, ["eval", "fetch", "--list", "mbpp"])
    assert result.exit_code == 0 and "../shared/data" in result.output and "google-research" in result.output


def test_an_unpinned_file_comes_from_a_mirror_or_a_named_folder_only(monkeypatch, tmp_path):
    """GSM8K's file has no verifiable public copy: fetch says so (exit 0), eval names the ways out, and a
    mirror of shared/data (DSCODER_DATA_URL) still serves it, checked against the table's hash."""
    _shared()
    no_shared_data(monkeypatch, tmp_path)
    result = cli.invoke(app, ["eval", "fetch", "gsm8k"])
    assert result.exit_code == 0, result.output
    assert "not pinned" in result.output
    with pytest.raises(FileNotFoundError, match="no pinned public URL.*--data DIR.*DSCODER_DATA"):
        data_file("gsm8k", "test.json")
    with DataServer(SHARED_DATA) as server:
        monkeypatch.setenv("DSCODER_DATA_URL", server.url)
        path = data_file("gsm8k", "test.json")
        assert path.read_bytes() == (SHARED_DATA / "gsm8k" / "test.json").read_bytes()


def test_an_unknown_benchmark_is_a_named_error(monkeypatch, tmp_path):
    no_shared_data(monkeypatch, tmp_path)
    result = cli.invoke(app, ["eval", "fetch", "humaneval", "nosuch"])
    assert result.exit_code == 2
    assert "'nosuch'" in result.output and "humaneval-infilling" in result.output


def test_a_progress_bar_does_not_change_the_bytes(monkeypatch, tmp_path):
    _shared()
    source = sources.source_of("infilling/HumanEval-RandomSpanInfillingLight.jsonl.gz")
    with DataServer(SHARED_DATA) as server:
        cache = no_shared_data(monkeypatch, tmp_path, server.url)
        path = fetch.download(source, progress=True)
    assert path == cache / source.path and path.read_bytes() == (SHARED_DATA / source.path).read_bytes()
