"""Benchmark data that is licensed for evaluation only never enters a corpus: MultiPL-E's
translations (BSD-3 with a clause forbidding use as ML training data) are refused by name at
ingest, whatever tree holds a copy of them."""

from __future__ import annotations

from dscoder.repo import ingest
from conftest import shared_data


def test_every_multipl_e_file_of_the_shared_data_is_refused_at_ingest():
    folder = shared_data("humaneval")
    names = sorted(p.name for p in folder.iterdir() if p.name.startswith("humaneval-"))
    assert len(names) >= 19, names  # python + 18 MultiPL-E languages
    assert {name: ingest.skipped_path(f"some/repo/{name}") for name in names} == \
        {name: "evaluation_only" for name in names}


def test_multipl_e_names_are_refused_and_ordinary_files_are_kept():
    refused = ["humaneval-lua.jsonl", "data/HumanEval-rkt.jsonl", "mbpp-rb-reworded.json", "humaneval-cpp.jsonl.gz"]
    kept = ["humaneval.py", "mbpp.jsonl", "src/humaneval_test.lua", "tests/humaneval-notes.md", "lua/add.lua"]
    assert [ingest.skipped_path(p) for p in refused] == ["evaluation_only"] * len(refused)
    assert [ingest.skipped_path(p) for p in kept] == [None] * len(kept)
