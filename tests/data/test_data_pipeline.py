"""The corpus build end to end on planted fixture repositories, and its pieces: ingest, dedup, FIM, packing.

The tokenizer is a tiny byte-level BPE trained here with DeepSeek-Coder's special tokens, so
these tests need no shared data; one test repeats the build with DeepSeek-Coder's real
vocabulary when `../shared/data/tokenizers` is present.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
from conftest import shared_data, wait_for
from data_repos import make_sources
from typer.testing import CliRunner

from dscoder.cli.app import app
from dscoder.data import dedup, fim, pipeline
from dscoder.repo import ingest
from dscoder.data.fim import Segment
from dscoder.data.pack import DocumentEncoder, ShardWriter
from dscoder.data.stats import CorpusError, load_manifest
from dscoder.tokenizer.fim import DEEPSEEK_FIM
from dscoder.tokenizer.tokenizer import Tokenizer
from dscoder.tokenizer.train import train_tokenizer

@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("corpus")
    planted = make_sources(root)
    vocab_src = root / "vocab"
    for i, repo in enumerate(("alpha", "beta", "delta")):
        for f in (planted["src"] / repo).rglob("*"):
            if f.is_file() and ".git" not in f.parts:
                (vocab_src / f"{i}_{f.name}").parent.mkdir(parents=True, exist_ok=True)
                (vocab_src / f"{i}_{f.name}").write_bytes(f.read_bytes())
    tok_dir = root / "tokenizer"
    train_tokenizer([vocab_src], 600, tok_dir, show_progress=False)
    planted["tokenizer"] = str(tok_dir / "tokenizer.json")
    return planted


def _config(corpus: dict, out: Path, **overrides) -> pipeline.BuildConfig:
    settings = dict(sources=[str(corpus["src"])], out=str(out), tokenizer=corpus["tokenizer"], split=True,
                    seq_len=64, shard_sequences=8, val_fraction=0.0, workers=1, part_bytes=600)
    settings.update(overrides)
    return pipeline.BuildConfig(**settings)


def _tokens(out: Path, split: str = "train") -> np.ndarray:
    manifest = json.loads((out / "manifest.json").read_text())
    files = [out / s["file"] for s in manifest["splits"][split]["shards"]]
    return np.concatenate([np.fromfile(f, dtype=manifest["dtype"]) for f in files]) if files else np.empty(0)


def _documents(tokens: np.ndarray, eos: int) -> list[np.ndarray]:
    cuts = np.flatnonzero(tokens == eos)
    docs, start = [], 0
    for cut in cuts:
        if cut > start:
            docs.append(tokens[start:cut])
        start = cut + 1
    return docs


def _shard_bytes(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(out.glob("*.bin"))}


@pytest.fixture(scope="module")
def plain_build(corpus, tmp_path_factory) -> tuple[Path, dict]:
    """Left to right (no FIM), so documents decode back to their files in order."""
    out = tmp_path_factory.mktemp("plain")
    manifest = pipeline.build(_config(corpus, out, fim_rate=0.0))
    return out, manifest


def _drops(out: Path) -> dict[str, set[str]]:
    found = defaultdict(set)
    for line in (out / "dropped.jsonl").read_text().splitlines():
        row = json.loads(line)
        found[row["rule"]].add(f"{row['repository'].split('/')[-1]}/{row['path']}")
    return found


def test_every_planted_file_is_dropped_by_its_rule(corpus, plain_build):
    out, manifest = plain_build
    found = _drops(out)
    for rule, files in corpus["dropped"].items():
        assert files <= found[rule], f"{rule}: expected {files}, the build dropped {found[rule]}"
        assert manifest["dropped"][rule] >= len(files)
    assert sum(manifest["dropped"].values()) == sum(len(v) for v in found.values())
    assert manifest["notes"].get("utf8_replaced") == 1  # latin.py: one bad byte, kept with U+FFFD


def test_near_duplicate_repository_found_and_distinct_ones_kept(corpus, plain_build):
    out, manifest = plain_build
    assert manifest["near_duplicate_repositories"] == corpus["near_duplicates"]
    docs = _documents(_tokens(out), Tokenizer.load(corpus["tokenizer"]).eos_id)
    assert manifest["repositories"] == {"listed": 5, "near_duplicates": 1, "kept": 4} and len(docs) == 4


def test_decontamination_names_the_benchmark_problem(plain_build):
    _, manifest = plain_build
    hits = manifest["decontamination"]["hits"]
    assert [h["path"] for h in hits] == ["solutions.py"]
    assert "HumanEval/0" in hits[0]["problem"]
    assert manifest["decontamination"]["benchmarks"]  # which benchmarks the index was built from


def test_documents_hold_files_in_dependency_order_without_pii(corpus, plain_build):
    out, _ = plain_build
    tokenizer = Tokenizer.load(corpus["tokenizer"])
    text = "\n".join(tokenizer.decode(d.tolist()) for d in _documents(_tokens(out), tokenizer.eos_id))
    for secret in corpus["secrets"]:
        assert secret not in text
    assert "<EMAIL>" in text and "<IP_ADDRESS>" in text and "<KEY>" in text
    for repo, order in corpus["orders"]:
        positions = [text.index(f"#{path}\n") for path in order]
        assert positions == sorted(positions), f"{repo}: {order} appear at {positions}"
    assert "def clamp" in text and "vec_dot" in text and "Ren\ufffd Dupont" in text


def test_control_token_text_in_source_stays_text(corpus, plain_build):
    out, _ = plain_build
    tokenizer = Tokenizer.load(corpus["tokenizer"])
    tokens = _tokens(out)
    assert tokenizer.token_to_id(DEEPSEEK_FIM.prefix) not in set(tokens.tolist())  # no FIM in this build...
    text = tokenizer.decode(tokens.tolist())
    assert 'MARKER = "<｜fim▁begin｜>"' in text  # ...though a source file spells the marker out


def test_shards_are_whole_rows_and_the_manifest_accounts_for_every_token(corpus, plain_build):
    out, manifest = plain_build
    train = manifest["splits"]["train"]
    tokens = _tokens(out)
    assert len(tokens) == train["sequences"] * 64 == train["tokens"] + train["padding_tokens"]
    assert train["padding_tokens"] < 64
    assert sum(v["tokens"] for v in manifest["languages"].values()) + train["documents"] == train["tokens"]
    assert {"Python", "JavaScript", "C", "Markdown"} <= set(manifest["languages"])
    assert manifest["tokenizer"]["sha256"] and manifest["dtype"] == "uint16"
    assert load_manifest(out) == manifest
    assert not (out / "work").exists()


def test_fim_documents_reassemble_to_their_left_to_right_form(corpus, plain_build, tmp_path):
    plain_out, _ = plain_build
    tokenizer = Tokenizer.load(corpus["tokenizer"])
    manifest = pipeline.build(_config(corpus, tmp_path, fim_rate=1.0, spm_rate=0.5, seed=3))
    assert manifest["fim"]["psm"] + manifest["fim"]["spm"] == 4 and manifest["fim"]["psm"] and manifest["fim"]["spm"]
    begin, hole, end = (tokenizer.token_to_id(t) for t in (DEEPSEEK_FIM.prefix, DEEPSEEK_FIM.suffix, DEEPSEEK_FIM.middle))
    plain = sorted(tokenizer.decode(d.tolist()) for d in _documents(_tokens(plain_out), tokenizer.eos_id))
    rebuilt = []
    for doc in _documents(_tokens(tmp_path), tokenizer.eos_id):
        ids = doc.tolist()
        assert ids.count(begin) == ids.count(hole) == ids.count(end) == 1
        i, j, k = ids.index(begin), ids.index(hole), ids.index(end)
        if i == 0:  # PSM: begin prefix hole suffix end middle
            prefix, suffix = ids[1:j], ids[j + 1:k]
        else:  # SPM: hole suffix begin prefix end middle
            assert j == 0
            suffix, prefix = ids[1:i], ids[i + 1:k]
        rebuilt.append(tokenizer.decode(prefix) + tokenizer.decode(ids[k + 1:]) + tokenizer.decode(suffix))
    assert sorted(rebuilt) == plain


def test_same_shards_for_any_worker_count(corpus, plain_build, tmp_path):
    plain_out, plain_manifest = plain_build
    manifest = pipeline.build(_config(corpus, tmp_path, fim_rate=0.0, workers=2))
    assert _shard_bytes(tmp_path) == _shard_bytes(plain_out)
    for key in ("splits", "languages", "dropped", "fim"):
        assert manifest[key] == plain_manifest[key]


def test_validation_split_holds_whole_repositories(corpus, tmp_path):
    manifest = pipeline.build(_config(corpus, tmp_path, val_fraction=0.3, seed=1))
    held = manifest["validation_repositories"]
    assert held and manifest["splits"]["validation"]["documents"] == len(held)
    assert manifest["splits"]["train"]["documents"] + len(held) == 4


def test_resume_redoes_only_unfinished_parts(corpus, plain_build, tmp_path):
    """A build killed mid-stage: markers of some parts missing, a half-written file left behind."""
    plain_out, _ = plain_build
    config = _config(corpus, tmp_path, fim_rate=0.0, keep_work=True)
    pipeline.build(config)
    work = tmp_path / "work"
    scan_parts = sorted(work.glob("scan/part-*.json"))
    assert len(scan_parts) > 3
    (tmp_path / "manifest.json").unlink()
    for marker in scan_parts[1::2]:
        marker.unlink()
        jsonl = marker.with_suffix(".jsonl")
        jsonl.write_bytes(jsonl.read_bytes()[: len(jsonl.read_bytes()) // 2])  # torn write
    for marker in sorted(work.glob("tokens/part-*.json"))[:1]:
        marker.unlink()
    kept_mtime = scan_parts[0].stat().st_mtime_ns
    pipeline.build(config)
    assert scan_parts[0].stat().st_mtime_ns == kept_mtime  # a finished part is not redone
    assert _shard_bytes(tmp_path) == _shard_bytes(plain_out)


def test_changed_settings_refuse_to_resume(corpus, tmp_path):
    pipeline.build(_config(corpus, tmp_path, fim_rate=0.0, keep_work=True))
    (tmp_path / "manifest.json").unlink()
    with pytest.raises(pipeline.BuildError, match="seed"):
        pipeline.build(_config(corpus, tmp_path, fim_rate=0.0, seed=5))
    pipeline.build(_config(corpus, tmp_path, fim_rate=0.0, seed=5), restart=True)
    assert json.loads((tmp_path / "manifest.json").read_text())["settings"]["seed"] == 5


def _part_markers(work: Path) -> dict[str, int]:
    """The finished parts of every stage (a marker is written last, atomically), with their mtimes."""
    return {str(p.relative_to(work)): p.stat().st_mtime_ns for p in sorted(work.glob("*/part-*.json"))}


def test_killed_cli_build_resumes_to_the_same_shards(corpus, plain_build, tmp_path):
    """SIGKILL the real command once its scan has finished a part; the rerun completes it.

    The build is frozen (SIGSTOP) before it is killed, so what its directory holds then is
    what the kill interrupted: the test proves the kill landed mid-scan (killed by the signal,
    some scan parts finished and some not, no manifest) instead of trusting that it did."""
    plain_out, _ = plain_build
    work = tmp_path / "work"
    args = [sys.executable, "-m", "dscoder.cli.app", "data", "build", str(corpus["src"]), "--out", str(tmp_path),
            "--tokenizer", corpus["tokenizer"], "--split", "--seq-len", "64", "--shard-sequences", "8",
            "--val-fraction", "0", "--fim-rate", "0", "--workers", "2", "--part-bytes", "600", "--keep-work"]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    finished, scan_parts, manifest_written = {}, 0, True
    try:
        wait_for(lambda: proc.poll() is not None or list(work.glob("scan/part-*.json")), 300,
                 "the build's first finished scan part")
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGSTOP)  # the build and its workers, frozen mid-write
            finished = _part_markers(work)
            scan_parts = len(json.loads((work / "plan.json").read_text())["parts"])
            manifest_written = (tmp_path / "manifest.json").exists()
            os.killpg(proc.pid, signal.SIGKILL)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL, f"the build ended by itself (exit {proc.returncode}) before the kill"
    assert not manifest_written, "the build had finished when it was killed"
    scan_done = sum(name.startswith("scan/") for name in finished)
    assert 1 <= scan_done < scan_parts, f"killed with {scan_done} of {scan_parts} scan parts finished"

    done = subprocess.run(args, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    after = _part_markers(work)
    assert sum(name.startswith("scan/") for name in after) == scan_parts
    assert {name: after.get(name) for name in finished} == finished  # finished parts are not redone
    assert _shard_bytes(tmp_path) == _shard_bytes(plain_out)


@pytest.mark.slow  # long (CI time); run with pytest -m slow
def test_ray_engine_builds_the_same_shards(corpus, plain_build, tmp_path):
    pytest.importorskip("ray.data")
    plain_out, _ = plain_build
    pipeline.build(_config(corpus, tmp_path, fim_rate=0.0, engine="ray", workers=2))
    assert _shard_bytes(tmp_path) == _shard_bytes(plain_out)


def test_stats_command_prints_and_plots_and_catches_a_truncated_shard(plain_build, tmp_path):
    out, manifest = plain_build
    result = CliRunner().invoke(app, ["data", "stats", str(out), "--png", str(tmp_path / "c.png")])
    assert result.exit_code == 0, result.output
    assert "Python" in result.output and "filter.max_line_length" in result.output
    assert (tmp_path / "c.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    copy = tmp_path / "copy"
    copy.mkdir()
    for f in out.iterdir():
        (copy / f.name).write_bytes(f.read_bytes())
    shard = copy / manifest["splits"]["train"]["shards"][0]["file"]
    shard.write_bytes(shard.read_bytes()[:-2])
    with pytest.raises(CorpusError, match=shard.name):
        load_manifest(copy)


@pytest.mark.parametrize("setting, value, message", [("engine", "spark", "--engine must be one of local, ray"),
                                                     ("seq_len", 1, "--seq-len must be at least 2"),
                                                     ("fim_rate", 1.5, "--fim-rate and --spm-rate must lie in"),
                                                     ("val_fraction", 1.0, "--val-fraction in")])
def test_bad_settings_are_refused_before_any_work(corpus, tmp_path, setting, value, message):
    with pytest.raises(pipeline.BuildError, match=message):
        pipeline.build(_config(corpus, tmp_path / "out", **{setting: value}))
    assert not (tmp_path / "out").exists()


def test_a_build_that_keeps_nothing_says_why(corpus, tmp_path):
    src = tmp_path / "src"
    (src / "only").mkdir(parents=True)
    (src / "only" / "blob.py").write_bytes(b"\x00binary")
    (src / "only" / "notes.unknownext").write_text("words\n")
    with pytest.raises(pipeline.BuildError, match=r"all 2 files .* were dropped \(.*ingest.binary 1.*dropped.jsonl"):
        pipeline.build(_config(corpus, tmp_path / "out", sources=[str(src)]))
    assert len((tmp_path / "out" / "dropped.jsonl").read_text().splitlines()) == 2


def test_build_refuses_a_tokenizer_without_fim_tokens_unless_fim_is_off(corpus, tmp_path):
    spec = json.loads(Path(corpus["tokenizer"]).read_text())
    spec["added_tokens"] = [t for t in spec["added_tokens"] if "fim" not in t["content"]]
    plain_tok = tmp_path / "tokenizer.json"
    plain_tok.write_text(json.dumps(spec))
    (tmp_path / "tokenizer_config.json").write_text(Path(corpus["tokenizer"]).with_name("tokenizer_config.json").read_text())
    with pytest.raises(ValueError, match="--fim-rate 0"):
        pipeline.build(_config(corpus, tmp_path / "a", tokenizer=str(plain_tok)))


def test_deepseek_vocabulary_fim_ids(corpus, tmp_path):
    vocab = shared_data("tokenizers", "ggml-vocab-deepseek-coder.gguf")
    manifest = pipeline.build(_config(corpus, tmp_path, tokenizer=str(vocab), fim_rate=1.0))
    tokens = set(_tokens(tmp_path).tolist())
    assert {32016, 32015, 32017} <= tokens  # <｜fim▁begin｜>, <｜fim▁hole｜>, <｜fim▁end｜>
    assert manifest["tokenizer"]["eos_id"] == 32014 and manifest["dtype"] == "uint16"


# ---- pieces -----------------------------------------------------------------------------------

def test_discover_splits_children_and_honours_gitignore(corpus):
    repos = {r.name: r for r in ingest.discover([str(corpus["src"])], split=True)}
    assert set(repos) == {"src/alpha", "src/alpha-fork", "src/beta", "src/gamma", "src/delta"}
    assert "ignored.py" not in repos["src/delta"].files and ".gitignore" in repos["src/delta"].files
    assert not any(f.startswith("loop/") for f in repos["src/gamma"].files)  # the symlink loop is not entered
    whole = ingest.discover([str(corpus["src"])])
    assert [r.name for r in whole] == ["src"]
    with pytest.raises(ingest.IngestError, match="not a directory"):
        ingest.discover([str(corpus["src"] / "missing")])


def test_git_url_is_cloned_shallowly_and_a_bad_one_is_named(corpus, tmp_path):
    url = f"file://{corpus['src'] / 'delta'}"
    (repo,) = ingest.discover([url], clone_dir=tmp_path)
    assert set(repo.files) == {".gitignore", "src/main.c", "src/vec.c", "src/vec.h", "tools/util_copy.py"}
    assert Path(repo.root).parent == tmp_path and (Path(repo.root) / ".git").exists()
    with pytest.raises(ingest.IngestError, match="git clone file:///nowhere/repo.git failed"):
        ingest.discover(["file:///nowhere/repo.git"], clone_dir=tmp_path)


def test_read_text_reasons(tmp_path):
    (tmp_path / "big.py").write_text("x = 1\n" * 100)
    assert ingest.read_text(tmp_path / "big.py", max_bytes=100)[1] == "too_large"
    (tmp_path / "ok.py").write_text("x = 1\n")
    assert ingest.read_text(tmp_path / "ok.py") == ("x = 1\n", None, 6)


def test_minhash_estimates_jaccard_and_unions_exactly():
    words = [f"w{i}" for i in range(400)]
    a, b = " ".join(words[:300]), " ".join(words[100:])
    true = 196 / 396  # shared 5-grams over all 5-grams of the two word runs
    assert abs(dedup.jaccard(dedup.signature(a), dedup.signature(b)) - true) < 0.1
    first, second = " ".join(words[:200]), " ".join(words[200:])
    both = dedup.union([dedup.signature(first), dedup.signature(second)])
    shingles = dedup.signature(first + " \n " + second)  # the same sets plus the 4 crossing 5-grams
    assert dedup.jaccard(both, shingles) > 0.95


def test_near_duplicate_keeps_the_largest_copy_then_the_first_name():
    base = " ".join(f"token{i}" for i in range(500))
    sigs = {"b": dedup.signature(base), "a": dedup.signature(base), "c": dedup.signature(base + " extra words here"),
            "z": dedup.signature(" ".join(f"other{i}" for i in range(500)))}
    assert dedup.near_duplicate_repositories(sigs, {"a": 10, "b": 10, "c": 11, "z": 1}) == {"a": "c", "b": "c"}
    assert dedup.near_duplicate_repositories(sigs, {"a": 10, "b": 10, "c": 9, "z": 1}) == {"b": "a", "c": "a"}


def test_fim_rewrite_is_seeded_per_document_and_cuts_across_files():
    segments = [Segment("import os\n" * 5, "Python"), Segment("int main() {}\n" * 5, "C")]
    whole = "".join(s.text for s in segments)
    modes = set()
    for key in range(40):
        mode, parts = fim.rewrite(segments, f"repo{key}", seed=0, rate=0.5, spm_rate=0.5)
        assert (mode, parts) == fim.rewrite(segments, f"repo{key}", seed=0, rate=0.5, spm_rate=0.5)
        assert "".join(s.text for part in parts for s in part) == whole if mode == "none" else True
        if mode != "none":
            prefix, middle, suffix = ("".join(s.text for s in p) for p in parts)
            assert prefix + middle + suffix == whole
        modes.add(mode)
    assert modes == {"none", "psm", "spm"}
    assert fim.layout("spm", [[1], [2], [3]], (10, 11, 12)) == [[11], [3], [10], [1], [12], [2]]


def test_shard_writer_pads_only_the_last_row(tmp_path):
    writer = ShardWriter(tmp_path, "train", seq_len=4, shard_sequences=2, dtype=np.dtype(np.uint16), eos=0)
    for n in (3, 5, 4):
        writer.add(np.arange(1, n + 1, dtype=np.uint16))
    summary = writer.close()
    assert [s["tokens"] for s in summary["shards"]] == [8, 4] and summary["padding_tokens"] == 0
    assert np.fromfile(tmp_path / "train-00000.bin", dtype=np.uint16).tolist() == [1, 2, 3, 1, 2, 3, 4, 5]
    writer = ShardWriter(tmp_path, "validation", seq_len=4, shard_sequences=2, dtype=np.dtype(np.uint16), eos=9)
    writer.add(np.array([1, 2, 3, 4, 5], dtype=np.uint16))
    assert writer.close()["padding_tokens"] == 3
    assert np.fromfile(tmp_path / "validation-00000.bin", dtype=np.uint16).tolist() == [1, 2, 3, 4, 5, 9, 9, 9]


def test_encoder_counts_tokens_per_language(corpus):
    tokenizer = Tokenizer.load(corpus["tokenizer"])
    encoder = DocumentEncoder(tokenizer, need_fim=True)
    ids, per_language = encoder.encode("none", [[Segment("def f():\n    pass\n", "Python"), Segment("int x;\n", "C")]])
    assert ids[-1] == tokenizer.eos_id and sum(per_language.values()) == len(ids) - 1
    assert tokenizer.decode(ids[:-1].tolist()) == "def f():\n    pass\nint x;\n"


def test_language_weights_resample_training_documents_by_main_language(corpus, plain_build, tmp_path):
    from dscoder.data import resample

    out_plain, _ = plain_build
    weights = "Python=3,JavaScript=0"
    out = tmp_path / "resampled"
    manifest = pipeline.build(_config(corpus, out, fim_rate=0.0, language_weights=weights))
    by_language = manifest["resampling"]["by_main_language"]
    assert manifest["resampling"]["factors"] == {"Python": 3.0, "JavaScript": 0.0}
    for language, counts in by_language.items():
        factor = {"Python": 3, "JavaScript": 0}.get(language, 1)
        assert counts["written"] == factor * counts["documents"], language
    assert by_language["Python"]["documents"] >= 2
    eos = json.loads((out / "manifest.json").read_text())["tokenizer"]["eos_id"]
    plain_docs = [d.tobytes() for d in _documents(_tokens(out_plain), eos)]
    new_docs = [d.tobytes() for d in _documents(_tokens(out), eos)]
    assert len(new_docs) == sum(c["written"] for c in by_language.values())
    assert set(new_docs) <= set(plain_docs)  # the same documents, repeated or left out, none altered
    assert pipeline.build(_config(corpus, out, fim_rate=0.0, language_weights=weights)) == manifest  # reused
    for bad, message in [("Klingon=2", "not a language dscoder identifies"), ("Python=-1", "finite number >= 0"),
                         ("Python", "not LANGUAGE=FACTOR"), ("Python=2,python=3", "names Python twice")]:
        with pytest.raises(Exception, match=message):
            resample.parse_language_weights(bad)
        with pytest.raises(Exception, match=message):
            pipeline.build(_config(corpus, tmp_path / "bad", language_weights=bad))
        assert not (tmp_path / "bad").exists()
