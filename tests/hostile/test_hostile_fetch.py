"""A benchmark download is hostile input: a server (or a mirror, or a proxy) that changes, pads,
cuts, withholds or stalls a file must never get its bytes into the cache, and the error must name
the file and what was wrong. The servers here are real ones on 127.0.0.1 (tests/data_server.py)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import SHARED_DATA, requires
from data_server import DataServer, leftovers, no_shared_data
from dscoder.cli.app import app
from dscoder.tasks import fetch, infilling, sources
from dscoder.tasks.problem import data_file

cli = CliRunner()
LIGHT = sources.source_of("infilling/HumanEval-RandomSpanInfillingLight.jsonl.gz")  # the smallest file, 45 KB
CRUX = sources.source_of("cruxeval/cruxeval.jsonl")


def _shared() -> None:
    if not (SHARED_DATA / LIGHT.path).is_file():
        requires("shared-data", f"{SHARED_DATA / LIGHT.path} not found (served as the genuine file)")


def _junk_root(tmp_path: Path, *chosen: sources.Source) -> Path:
    """A folder with the table's files at their right sizes but wrong bytes (no shared data needed)."""
    root = tmp_path / "served"
    for source in chosen:
        (root / source.path).parent.mkdir(parents=True, exist_ok=True)
        (root / source.path).write_bytes(b"x" * source.size)
    return root


def _nothing_kept(cache: Path, source: sources.Source) -> None:
    assert not (cache / source.path).exists()
    assert leftovers(cache) == []


def test_one_changed_byte_is_refused_with_both_hashes_and_nothing_is_kept(monkeypatch, tmp_path):
    _shared()
    genuine = (SHARED_DATA / LIGHT.path).read_bytes()
    middle = len(genuine) // 2
    tampered = genuine[:middle] + bytes([genuine[middle] ^ 0x20]) + genuine[middle + 1:]
    actual = hashlib.sha256(tampered).hexdigest()
    with DataServer(SHARED_DATA, {LIGHT.path: "tamper"}) as server:
        cache = no_shared_data(monkeypatch, tmp_path, server.url)
        result = cli.invoke(app, ["eval", "fetch", "humaneval-infilling"])
        assert result.exit_code == 2, result.output
        for part in ("refused", LIGHT.path, LIGHT.sha256, actual):
            assert part in result.output
        _nothing_kept(cache, LIGHT)
        for other in sources.for_benchmarks(["humaneval-infilling"]):  # the other files still came
            if other is not LIGHT:
                assert (cache / other.path).read_bytes() == (SHARED_DATA / other.path).read_bytes()

        # The same refusal when the harness downloads on first use: a user error, not a traceback.
        with pytest.raises(fetch.Refused, match=f"{LIGHT.sha256}.*nothing was kept"):
            infilling.problems("random-span")
        result = cli.invoke(app, ["eval", "humaneval-infilling", "--split", "random-span", "--completions",
                                  str(tmp_path / "unused.jsonl"), "--out", str(tmp_path / "run"), "--no-progress"])
        assert result.exit_code == 2 and "refused" in result.output and actual in result.output
        _nothing_kept(cache, LIGHT)


def test_a_server_that_sends_more_than_the_file_is_refused(monkeypatch, tmp_path):
    with DataServer(_junk_root(tmp_path, LIGHT), {LIGHT.path: "extra"}) as server:
        cache = no_shared_data(monkeypatch, tmp_path, server.url)
        with pytest.raises(fetch.Refused, match=f"{LIGHT.path}.*more than the expected {LIGHT.size} bytes"):
            fetch.download(LIGHT)
        _nothing_kept(cache, LIGHT)


def test_wrong_bytes_of_the_right_size_are_refused(monkeypatch, tmp_path):
    junk = hashlib.sha256(b"x" * CRUX.size).hexdigest()
    with DataServer(_junk_root(tmp_path, CRUX)) as server:
        cache = no_shared_data(monkeypatch, tmp_path, server.url)
        with pytest.raises(fetch.Refused) as refused:
            data_file("cruxeval", "cruxeval.jsonl")
        assert CRUX.path in str(refused.value) and CRUX.sha256 in str(refused.value) and junk in str(refused.value)
        _nothing_kept(cache, CRUX)


def test_a_missing_file_is_a_named_error_with_the_url_and_the_ways_out(monkeypatch, tmp_path):
    with DataServer(tmp_path / "nothing") as server:
        cache = no_shared_data(monkeypatch, tmp_path, server.url)
        with pytest.raises(FileNotFoundError) as missing:
            data_file("cruxeval", "cruxeval.jsonl")
        message = str(missing.value)
        for part in (CRUX.path, server.url + CRUX.path, "HTTP 404", "dscoder eval fetch cruxeval", "--data DIR",
                     "DSCODER_DATA"):
            assert part in message
        result = cli.invoke(app, ["eval", "fetch", "cruxeval"])
        assert result.exit_code == 2 and "failed" in result.output and "HTTP 404" in result.output
        assert "--data DIR" in result.output and "DSCODER_DATA" in result.output
        _nothing_kept(cache, CRUX)


def test_a_transfer_cut_short_is_never_kept(monkeypatch, tmp_path):
    """Cut after announcing the full length, or cut with no length announced: either way a failed download
    that says how far it got, and nothing in the cache."""
    root = _junk_root(tmp_path, LIGHT, CRUX)
    with DataServer(root, {LIGHT.path: "truncate", CRUX.path: "short"}) as server:
        cache = no_shared_data(monkeypatch, tmp_path, server.url)
        for source in (LIGHT, CRUX):
            with pytest.raises(fetch.FetchError) as cut:
                fetch.download(source)
            assert not isinstance(cut.value, fetch.Refused)
            assert f"could not download {source.path}" in str(cut.value)
            assert f"ended after {source.size // 2} of {source.size} bytes" in str(cut.value)
            _nothing_kept(cache, source)


def test_a_stalled_server_times_out_and_leaves_nothing(monkeypatch, tmp_path):
    with DataServer(_junk_root(tmp_path, LIGHT), {LIGHT.path: "stall"}) as server:
        cache = no_shared_data(monkeypatch, tmp_path, server.url)
        with pytest.raises(fetch.FetchError, match=f"could not download {LIGHT.path}.*timed out"):
            fetch.download(LIGHT, timeout=0.5)
        _nothing_kept(cache, LIGHT)


def test_a_cached_file_changed_on_disk_is_not_used(monkeypatch, tmp_path):
    """The cache is checked at every use: an altered copy is downloaded again online, and refused offline."""
    _shared()
    with DataServer(SHARED_DATA) as server:
        no_shared_data(monkeypatch, tmp_path, server.url)
        path = fetch.download(LIGHT)
        path.write_bytes(path.read_bytes()[:-1] + b"!")
        assert data_file(*LIGHT.path.split("/")) == path
        assert path.read_bytes() == (SHARED_DATA / LIGHT.path).read_bytes() and server.requests[LIGHT.path] == 2
        path.write_bytes(b"altered")
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
        with pytest.raises(FileNotFoundError, match="HF_HUB_OFFLINE is set"):
            data_file(*LIGHT.path.split("/"))
        assert server.requests[LIGHT.path] == 2
