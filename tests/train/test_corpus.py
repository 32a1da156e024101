"""The trainer's reader of `dscoder data build` corpora, on real corpus directories.

Each corpus here is written by the build's own `ShardWriter` plus a manifest shaped as
`dscoder.data.pipeline._pack` assembles it, so the reader is tested against the bytes the
build writes, not against a copy of its format.
"""

from __future__ import annotations

import json
import math
import resource

import numpy as np
import pytest
import torch

from dscoder.data.pack import ShardWriter, token_dtype
from dscoder.data.pipeline import FORMAT as BUILD_FORMAT
from dscoder.train.corpus import FORMAT, Corpus, CorpusError, RowStream, validation_batches
from dscoder.train.mixture import (V1_MIX, V2_MIX, MixtureError, check_drawn, parse_mix, parse_sources,
                                   resolve_sources)

SHA = "a" * 64


def build(directory, *, seed=0, docs=40, val_docs=6, seq_len=16, shard_sequences=3, vocab=1000, low=0, high=None,
          sha=SHA):
    """A corpus directory as `dscoder data build` writes it; returns the splits' flat streams.
    Token ids are drawn from [low, high) (EOS is vocab-1), so each corpus of a mixture is
    recognisable by its ids."""
    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    dtype, eos = token_dtype(vocab), vocab - 1
    high = high or vocab - 1
    writers = {split: ShardWriter(directory, split, seq_len=seq_len, shard_sequences=shard_sequences, dtype=dtype,
                                  eos=eos) for split in ("train", "validation")}
    for i in range(docs + val_docs):
        ids = np.append(rng.integers(low, high, size=int(rng.integers(3, 40))), eos).astype(dtype)
        writers["validation" if i >= docs else "train"].add(ids)
    splits = {split: w.close() for split, w in writers.items()}
    manifest = {"format": BUILD_FORMAT, "dtype": dtype.name, "seq_len": seq_len,
                "tokenizer": {"source": "test/tokenizer", "sha256": sha, "vocab_size": vocab, "eos_id": eos},
                "settings": {"seq_len": seq_len, "seed": seed}, "splits": splits,
                "languages": {"Python": {"files": docs, "bytes": 100 * docs, "tokens": 10 * docs}}}
    (directory / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return {split: np.concatenate([np.fromfile(directory / s["file"], dtype=dtype) for s in v["shards"]])
            for split, v in splits.items()}


@pytest.fixture
def corpus(tmp_path):
    streams = build(tmp_path / "c")
    return Corpus(tmp_path / "c"), streams


def row_ids(corpus: Corpus, seq_len: int) -> dict[bytes, int]:
    table = {corpus.row(i, seq_len).astype(np.int64).tobytes(): i for i in range(corpus.rows(seq_len))}
    assert len(table) == corpus.rows(seq_len), "test corpus rows should be distinct"
    return table


def ids_of(batch: torch.Tensor, table: dict[bytes, int]) -> list[int]:
    return [table[r.numpy().tobytes()] for r in batch]


# ---- Corpus --------------------------------------------------------------------------------------


def test_format_is_the_builds():
    assert FORMAT == BUILD_FORMAT


def test_window_across_shards_is_the_concatenated_stream(corpus):
    c, streams = corpus
    flat = streams["train"]
    assert len(c.shards) >= 3 and c.tokens == len(flat) and c.tokens % 16 == 0
    assert all(isinstance(s, np.memmap) and s.mode == "r" for s in c.shards)  # mapped, never loaded
    assert np.array_equal(c.window(0, c.tokens), flat)
    rng = np.random.default_rng(1)
    for _ in range(200):
        start = int(rng.integers(0, c.tokens))
        length = int(rng.integers(0, c.tokens - start + 1))
        assert np.array_equal(c.window(start, length), flat[start:start + length])
    boundary = 3 * 16  # shard_sequences * seq_len
    assert np.array_equal(c.window(boundary - 5, 10), flat[boundary - 5:boundary + 5])
    with pytest.raises(IndexError):
        c.window(c.tokens - 3, 4)
    assert c.languages["Python"]["files"] == 40 and c.seq_len == 16 and c.dtype == np.dtype("<u2")
    val = Corpus(c.directory, "validation")
    assert np.array_equal(val.window(0, val.tokens), streams["validation"])


@pytest.mark.parametrize("seq_len", [5, 16, 48])
def test_rows_of_any_length_cut_the_flat_stream(corpus, seq_len):
    c, streams = corpus
    flat = streams["train"]
    assert c.rows(seq_len) == len(flat) // seq_len
    for i in range(c.rows(seq_len)):
        assert np.array_equal(c.row(i, seq_len), flat[i * seq_len:(i + 1) * seq_len])
    with pytest.raises(IndexError):
        c.row(c.rows(seq_len), seq_len)


def test_a_sparse_shard_is_mapped_not_read(tmp_path):
    """A 1 GiB shard (sparse: no disk, but reading it would cost 1 GiB of memory) opens at once."""
    build(tmp_path / "c")
    manifest = json.loads((tmp_path / "c" / "manifest.json").read_text())
    big = 1 << 29  # tokens: 1 GiB of uint16
    with open(tmp_path / "c" / "train-00099.bin", "wb") as f:
        f.truncate(big * 2)
    manifest["splits"]["train"]["shards"].append({"file": "train-00099.bin", "sequences": big // 16, "tokens": big,
                                                  "sha256": "0" * 64})
    (tmp_path / "c" / "manifest.json").write_text(json.dumps(manifest))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    c = Corpus(tmp_path / "c")
    assert c.tokens > big and not c.window(c.tokens - 4096, 4096).any()
    assert c.row(c.rows(4096) - 1, 4096).shape == (4096,)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 200 * 1024  # KiB


def test_missing_and_resized_shards_are_named(tmp_path):
    build(tmp_path / "c")
    shard = tmp_path / "c" / "train-00001.bin"
    data = shard.read_bytes()
    shard.write_bytes(data[:-6])
    with pytest.raises(CorpusError, match=rf"train-00001\.bin holds {len(data) - 6} bytes.*{len(data)} bytes"):
        Corpus(tmp_path / "c")
    shard.write_bytes(data + b"\0\0")
    with pytest.raises(CorpusError, match=rf"train-00001\.bin holds {len(data) + 2} bytes"):
        Corpus(tmp_path / "c")
    shard.unlink()
    with pytest.raises(CorpusError, match=r"train-00001\.bin .*missing"):
        Corpus(tmp_path / "c")
    Corpus(tmp_path / "c", "validation")  # the other split is whole


def test_verify_finds_a_changed_byte(tmp_path):
    build(tmp_path / "c")
    Corpus(tmp_path / "c").verify()
    shard = tmp_path / "c" / "train-00002.bin"
    data = bytearray(shard.read_bytes())
    data[7] ^= 1
    shard.write_bytes(bytes(data))
    with pytest.raises(CorpusError, match=r"train-00002\.bin has sha256"):
        Corpus(tmp_path / "c").verify()


def test_not_a_corpus(tmp_path):
    with pytest.raises(CorpusError, match="has no manifest.json"):
        Corpus(tmp_path)
    build(tmp_path / "c")
    path = tmp_path / "c" / "manifest.json"
    good = path.read_text()
    path.write_text(good[: len(good) // 2])
    with pytest.raises(CorpusError, match=r"manifest\.json is not valid JSON"):
        Corpus(tmp_path / "c")
    path.write_text(json.dumps({**json.loads(good), "format": "something/2"}))
    with pytest.raises(CorpusError, match="format: 'something/2'"):
        Corpus(tmp_path / "c")
    broken = json.loads(good)
    del broken["tokenizer"]["sha256"]
    path.write_text(json.dumps(broken))
    with pytest.raises(CorpusError, match="missing or malformed 'sha256'"):
        Corpus(tmp_path / "c")
    path.write_text(good)
    with pytest.raises(CorpusError, match="no split 'test'"):
        Corpus(tmp_path / "c", "test")


def test_tokenizer_checks(corpus):
    c, _ = corpus
    c.check_tokenizer(SHA, 1000)
    c.check_tokenizer(None, 32256)
    other = "b" * 64
    with pytest.raises(CorpusError) as e:
        c.check_tokenizer(other, 1000, source="deepseek-coder-1.3b")
    assert SHA in str(e.value) and other in str(e.value) and "deepseek-coder-1.3b" in str(e.value)
    assert "test/tokenizer" in str(e.value) and str(c.directory) in str(e.value)
    with pytest.raises(CorpusError, match=r"1000-token vocabulary.*test/tokenizer.*\(tiny\) gives the model 999"):
        c.check_tokenizer(SHA, 999, source="tiny")


# ---- RowStream -------------------------------------------------------------------------------------


def take(stream: RowStream, steps: int, rows: int) -> list[torch.Tensor]:
    return [stream.next_batch(rows) for _ in range(steps)]


def test_order_follows_the_seed(corpus):
    c, _ = corpus
    a, b = (take(RowStream({"code": c}, None, 16, seed=7), 3, 8) for _ in range(2))
    other = take(RowStream({"code": c}, None, 16, seed=8), 3, 8)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not all(torch.equal(x, y) for x, y in zip(a, other))
    assert a[0].dtype == torch.int64 and a[0].shape == (8, 16)


def test_each_epoch_is_a_new_permutation(corpus):
    c, _ = corpus
    table = row_ids(c, 16)
    n = c.rows(16)
    stream = RowStream({"code": c}, None, 16, seed=3)
    seen = [i for _ in range(math.ceil(3 * n / 5)) for i in ids_of(stream.next_batch(5), table)]
    epochs = [seen[k * n:(k + 1) * n] for k in range(3)]
    assert all(sorted(e) == list(range(n)) for e in epochs)
    assert epochs[0] != epochs[1] != epochs[2] and epochs[0] != list(range(n))
    assert stream.epochs() == {"code": len(seen) // n} and stream.drawn() == {"code": len(seen)}


def test_rows_longer_than_the_corpus_rows(corpus):
    c, streams = corpus
    stream = RowStream({"code": c}, None, 48, seed=0)
    batch = stream.next_batch(c.rows(48))
    starts = sorted(int(np.flatnonzero(np.all(np.lib.stride_tricks.sliding_window_view(
        streams["train"], 48)[::48] == r.numpy(), axis=1))[0]) for r in batch)
    assert starts == list(range(c.rows(48)))  # every 48-token row exactly once


@pytest.mark.parametrize("mixed", [False, True])
def test_ranks_together_get_what_one_process_gets(tmp_path, mixed):
    build(tmp_path / "a")
    sources = {"code": Corpus(tmp_path / "a")}
    weights = None
    if mixed:
        build(tmp_path / "b", seed=1, docs=25)
        sources["text"] = Corpus(tmp_path / "b")
        weights = {"code": 0.7, "text": 0.3}
    one = RowStream(sources, weights, 16, seed=5)
    for world in (2, 4):
        ranks = [RowStream(sources, weights, 16, seed=5, rank=r, world_size=world) for r in range(world)]
        single = RowStream(sources, weights, 16, seed=5)
        for _ in range(12):  # past an epoch of either corpus
            whole = single.next_batch(8)
            parts = [s.next_batch(8) for s in ranks]
            assert all(p.shape == (8 // world, 16) for p in parts)
            assert torch.equal(torch.cat(parts), whole)
        assert all(s.state_dict() == single.state_dict() for s in ranks)
    with pytest.raises(CorpusError, match="does not split over 4 ranks"):
        RowStream(sources, weights, 16, seed=5, rank=1, world_size=4).next_batch(6)
    assert one.next_batch(8).shape == (8, 16)


@pytest.mark.parametrize("mixed", [False, True])
def test_resume_gives_the_same_next_batches(tmp_path, mixed):
    build(tmp_path / "a")
    sources = {"code": Corpus(tmp_path / "a")}
    weights = None
    if mixed:
        build(tmp_path / "b", seed=1, docs=20)
        sources["math"] = Corpus(tmp_path / "b")
        weights = {"code": 0.5, "math": 0.5}
    n = sources["code"].rows(16)
    straight = RowStream(sources, weights, 16, seed=11)
    take(straight, 2, 6)
    assert 0 < straight.drawn()["code"] < n  # mid-epoch
    state = json.loads(json.dumps(straight.state_dict()))  # as a checkpoint holds it
    assert set(state) == {"version", "position", "seed", "seq_len", "names", "weights", "rows", "epochs", "cursors"}
    expected = take(straight, 25, 6)
    assert all(e >= 1 for e in straight.epochs().values())  # the batches compared cross epoch boundaries
    resumed = RowStream(dict(reversed(sources.items())), weights, 16, seed=11)
    resumed.load_state_dict(state)
    assert all(torch.equal(a, b) for a, b in zip(take(resumed, 25, 6), expected))
    assert resumed.state_dict() == straight.state_dict() and resumed.drawn() == straight.drawn()
    ranks = [RowStream(sources, weights, 16, seed=11, rank=r, world_size=2) for r in range(2)]
    for s in ranks:  # a state saved by one process resumes on two
        s.load_state_dict(state)
    assert all(torch.equal(torch.cat([s.next_batch(6) for s in ranks]), e) for e in expected)


def test_a_state_from_another_stream_is_refused(tmp_path):
    build(tmp_path / "a")
    build(tmp_path / "b", seed=1)
    a, b = Corpus(tmp_path / "a"), Corpus(tmp_path / "b")
    stream = RowStream({"code": a, "text": b}, {"code": 0.8, "text": 0.2}, 16, seed=1)
    stream.next_batch(4)
    state = stream.state_dict()
    with pytest.raises(CorpusError, match=r"seed 1 \(this stream: 2\)"):
        RowStream({"code": a, "text": b}, {"code": 0.8, "text": 0.2}, 16, seed=2).load_state_dict(state)
    with pytest.raises(CorpusError, match=r"weights code=0.8, text=0.2 \(this stream: code=0.5, text=0.5\)"):
        RowStream({"code": a, "text": b}, {"code": 1, "text": 1}, 16, seed=1).load_state_dict(state)
    with pytest.raises(CorpusError, match=r"corpora code, text \(this stream: code, math\)"):
        RowStream({"code": a, "math": b}, {"code": 0.8, "math": 0.2}, 16, seed=1).load_state_dict(state)
    with pytest.raises(CorpusError, match=r"seq_len 16 \(this stream: 8\)"):
        RowStream({"code": a, "text": b}, {"code": 0.8, "text": 0.2}, 8, seed=1).load_state_dict(state)
    with pytest.raises(CorpusError, match="position 5 but 4 rows drawn"):
        RowStream({"code": a, "text": b}, {"code": 0.8, "text": 0.2}, 16, seed=1).load_state_dict(
            {**state, "position": 5})


def test_mixture_follows_the_weights(tmp_path):
    weights = {"code": 0.6, "math": 0.1, "text": 0.3}
    sources = {}
    for k, name in enumerate(weights):  # ids 0-299 code, 300-599 math, 600-899 text
        build(tmp_path / name, seed=k, docs=10 + 10 * k, low=300 * k, high=300 * (k + 1))
        sources[name] = Corpus(tmp_path / name)
    stream = RowStream(sources, weights, 16, seed=4)
    origin = {name: 0 for name in weights}
    for batch in take(stream, 50, 64):
        for row in batch:
            origin[list(weights)[int(row[row < 999][0]) // 300]] += 1
    assert stream.drawn() == origin and sum(origin.values()) == 3200
    checks = check_drawn(stream.drawn(), weights)
    assert all(c.ok for c in checks.values()), checks
    assert all(stream.epochs()[n] >= 1 for n in weights)  # small corpora wrapped around, still in proportion
    again = RowStream(sources, weights, 16, seed=4)
    take(again, 50, 64)
    assert again.drawn() == stream.drawn()
    assert RowStream(sources, weights, 16, seed=5).next_batch(64).tolist() != RowStream(
        sources, weights, 16, seed=4).next_batch(64).tolist()


def test_bad_streams(corpus):
    c, _ = corpus
    with pytest.raises(CorpusError, match="weights name code, math but the corpora are code"):
        RowStream({"code": c}, {"code": 1, "math": 1}, 16, seed=0)
    with pytest.raises(CorpusError, match="less than one row"):
        RowStream({"code": c}, None, c.tokens + 1, seed=0)
    with pytest.raises(CorpusError, match="all zero"):
        RowStream({"code": c}, {"code": 0}, 16, seed=0)
    with pytest.raises(CorpusError, match="rank 2 is not in a world of 2"):
        RowStream({"code": c}, None, 16, seed=0, rank=2, world_size=2)


def test_validation_batches_in_file_order(corpus):
    c, streams = corpus
    val = Corpus(c.directory, "validation")
    n = val.rows(8)
    flat = torch.from_numpy(streams["validation"][: n * 8].astype(np.int64)).view(n, 8)
    assert torch.equal(torch.cat(list(validation_batches(val, 8, 3))), flat)
    ranks = [list(validation_batches(val, 8, 3, rank=r, world_size=2)) for r in range(2)]
    assert len(ranks[0]) == len(ranks[1]) and [len(b) for b in ranks[0]] == [len(b) for b in ranks[1]]
    rows = torch.cat([torch.cat(list(pair)) for pair in zip(*ranks)])
    assert torch.equal(rows, flat[: n - n % 2])
    assert torch.equal(torch.cat(list(validation_batches(val, 8, 4, max_rows=5))), flat[:5])
    with pytest.raises(CorpusError, match="needs at least 4"):
        validation_batches(val, 8, 2, rank=0, world_size=4, max_rows=3)


# ---- mixture ---------------------------------------------------------------------------------------


def test_parse_mix():
    assert parse_mix("code=0.6,math=0.1,text=0.3") == pytest.approx({"code": 0.6, "math": 0.1, "text": 0.3})
    assert parse_mix(" code = 3 , text=1 ") == {"code": 0.75, "text": 0.25}
    assert parse_mix("v2") == pytest.approx(V2_MIX) and parse_mix("V1") == pytest.approx(V1_MIX)
    assert sum(V1_MIX.values()) == pytest.approx(1) and sum(V2_MIX.values()) == pytest.approx(1)


@pytest.mark.parametrize("spec,message", [
    ("code", "'code' is not name=weight"),
    ("code=0.5,", "an empty item"),
    ("code=lots", "'lots', is not a number"),
    ("code=-1,text=2", "weight of code is -1"),
    ("code=nan", "weight of code is nan"),
    ("code=0,text=0", "every weight is zero"),
    ("code=1,code=2", "names code twice"),
    ("=1", "'' is not a corpus name"),
    ("", "empty mixture"),
])
def test_parse_mix_refuses(spec, message):
    with pytest.raises(MixtureError, match=message.replace("(", r"\(")):
        parse_mix(spec)


def test_resolve_sources(tmp_path):
    assert parse_sources([str(tmp_path)]) == {"corpus": tmp_path}
    sources, weights = resolve_sources("code=3,text=1", [f"code={tmp_path}/a", f"text={tmp_path}/b"])
    assert sources == {"code": tmp_path / "a", "text": tmp_path / "b"} and weights == {"code": 0.75, "text": 0.25}
    assert resolve_sources(None, {"code": tmp_path}) == ({"code": tmp_path}, None)
    with pytest.raises(MixtureError, match=r"weighs math but no corpus is given as math=PATH; corpus text has no weight"):
        resolve_sources("code=1,math=1", [f"code={tmp_path}", f"text={tmp_path}"])
    with pytest.raises(MixtureError, match="is not name=PATH"):
        parse_sources([str(tmp_path), f"code={tmp_path}"])
    with pytest.raises(MixtureError, match="code is given twice"):
        parse_sources([f"code={tmp_path}/a", f"code={tmp_path}/b"])


def test_check_drawn():
    ok = check_drawn({"code": 605, "text": 395}, {"code": 0.6, "text": 0.4})
    assert ok["code"].ok and ok["code"].actual == pytest.approx(0.605) and ok["code"].expected == pytest.approx(0.6)
    bad = check_drawn({"code": 700, "text": 300}, {"code": 0.6, "text": 0.4})  # 6.5 sd off
    assert not bad["code"].ok and bad["code"].sigmas == pytest.approx(0.1 / math.sqrt(0.24 / 1000))
    assert check_drawn({"code": 0, "text": 0}, {"code": 1, "text": 1})["code"].ok
    assert not check_drawn({"code": 1, "none": 1}, {"code": 1, "none": 0})["none"].ok  # weight 0 never drawn
