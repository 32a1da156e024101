"""Training rows from `dscoder data build` corpora: memory-mapped, shuffled, mixed, sharded, resumable.

A corpus directory (`dscoder/data/pack.py` writes it) is one flat token stream per split, cut
into shards of whole `seq_len` rows, plus `manifest.json`. `Corpus` opens one split as a
virtual concatenation of its shards, each a read-only `numpy.memmap`: nothing is read until a
row is asked for, so a corpus larger than memory costs only page cache. Sizes are checked
against the manifest when it opens (a truncated copy fails here, naming the file, not as a
short row a million steps in); `verify()` also checks every shard's sha256.

Training rows need not be the corpus's rows: row `i` at length `L` is tokens `i*L .. (i+1)*L-1`
of the split's flat stream, so a tiny run trains on 256-token rows cut from a 4096-token corpus
and context extension on 16K rows made of 4 consecutive 4K rows, from the same files.

`RowStream` is the order in which training sees them. Its invariants, which the trainer's
resume and data parallelism rely on:

- **A global stream.** Rows sit at global positions 0, 1, 2, ...; what sits at a position is a
  pure function of (seed, the corpora's names, row counts and weights, seq_len, position) and
  of the rows drawn before it, never of the number of processes reading it.
- **Order within a corpus.** Each corpus is read as a permutation of its rows per epoch,
  `Generator(PCG64(SeedSequence([PERMUTATION, seed, name_key, epoch]))).permutation(rows)`;
  when all rows have been used the next epoch draws a new permutation. `name_key` is derived
  from the corpus's name (sha256, not Python's salted `hash`), so two corpora of one mixture
  are shuffled independently and adding a third does not reshuffle the others.
- **Mixture.** With several corpora, the corpus at each position is drawn by weight from
  uniforms generated in blocks of `BLOCK` positions, block `b` from
  `SeedSequence([MIXTURE, seed, b])`; any process computes the choice for any position without
  replaying the stream from zero. Each corpus keeps its own cursor: the k-th row drawn from a
  corpus is row `perm(epoch = k // rows)[k % rows]` of it.
- **Rank sharding.** `next_batch(global_rows)` covers the next `global_rows` positions;
  with `k = global_rows // world_size`, rank `r` gets the contiguous slice of positions
  `r*k .. (r+1)*k - 1` of that batch, and every rank advances the position (and every
  cursor) by the whole batch. So the ranks' batches concatenated in rank order are exactly
  what one process asking for `global_rows` gets, and no row is seen twice within an epoch.
- **Resume.** Every rank holds the same global state; `state_dict()` (plain ints, floats and
  lists, JSON-ready) is the position and each corpus's epoch and cursor, plus what they mean
  (seed, names, weights, row counts, seq_len), which `load_state_dict` refuses to apply to a
  stream built differently. After a restore the next batches are identical to those of a stream
  that never stopped, at any world size that divides the global batch.

`validation_batches` is the other order: the validation split's rows in file order, sharded by
rank, the same rows at every evaluation.

The permutation is O(rows) int64s, recomputed per epoch: 250 thousand rows for 1 B tokens at
4096 (2 MB), 4 million for 1 B tokens at 256 (31 MB); a corpus of hundreds of billions of
tokens read as short rows would want a keyed bijection instead (a Feistel network over the
row index).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterator, Mapping
from pathlib import Path

import numpy as np
import torch

from dscoder.errors import UserError

# What `dscoder data build` writes (dscoder.data.pipeline.FORMAT; a test checks they agree). Kept
# here so the trainer reads a corpus without importing the build pipeline.
FORMAT = "dscoder-corpus/1"
SPLITS = ("train", "validation")
DTYPES = {"uint16": np.dtype("<u2"), "uint32": np.dtype("<u4")}  # shards are little-endian on every host

BLOCK = 4096  # positions whose corpus choices are drawn together from one generator
PERMUTATION, MIXTURE = 0x5045524D, 0x4D495854  # 'PERM', 'MIXT': keeps the two kinds of stream apart
STATE_VERSION = 1


class CorpusError(UserError):
    """A corpus cannot be trained on as asked: no manifest, a missing or resized shard, a
    tokenizer that does not match the model, or a stream state that belongs to another stream."""


def _key(name: str) -> int:
    """A stable 64-bit integer for a corpus name (Python's `hash` of a str changes per process)."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "little")


class Corpus:
    """One split of one corpus directory, as a flat token stream over memory-mapped shards."""

    def __init__(self, directory: str | Path, split: str = "train") -> None:
        self.directory = Path(directory)
        if split not in SPLITS:
            raise CorpusError(f"no split {split!r} in a corpus; the splits are {', '.join(SPLITS)}")
        self.split = split
        self.manifest = manifest = _read_manifest(self.directory)
        self.dtype = DTYPES[manifest["dtype"]]
        self.seq_len: int = manifest["seq_len"]  # the corpus's rows; training rows may differ
        self.tokenizer: dict = manifest["tokenizer"]
        self.languages: dict[str, dict] = manifest.get("languages", {})
        self._shards: list[np.memmap] = []
        starts = [0]
        for shard in manifest["splits"][split]["shards"]:
            path = self.directory / shard["file"]
            tokens = shard["tokens"]
            if not path.is_file():
                raise CorpusError(f"shard {path} listed in {self.directory / 'manifest.json'} is missing")
            expected, actual = tokens * self.dtype.itemsize, path.stat().st_size
            if actual != expected:
                raise CorpusError(f"shard {path} holds {actual} bytes; the manifest says {tokens} tokens of "
                                  f"{manifest['dtype']}, {expected} bytes (a truncated or partial copy?)")
            if tokens == 0:  # mmap cannot map an empty file; the build writes none, but one is harmless
                continue
            self._shards.append(np.memmap(path, dtype=self.dtype, mode="r", shape=(tokens,)))
            starts.append(starts[-1] + tokens)
        self._starts = np.array(starts, dtype=np.int64)  # shard i holds tokens starts[i] .. starts[i+1]-1
        self.tokens: int = int(starts[-1])

    def __repr__(self) -> str:
        return f"Corpus({str(self.directory)!r}, {self.split!r}: {self.tokens} tokens in {len(self._shards)} shards)"

    @property
    def shards(self) -> list[np.memmap]:
        """The memory-mapped shards, in order (read-only views; nothing has been read)."""
        return list(self._shards)

    def window(self, start: int, length: int) -> np.ndarray:
        """Tokens `start .. start+length-1` of the split's stream, across shard boundaries; a copy."""
        if start < 0 or length < 0 or start + length > self.tokens:
            raise IndexError(f"tokens {start}..{start + length - 1} are outside {self} (0..{self.tokens - 1})")
        out = np.empty(length, dtype=self.dtype)
        at = 0
        shard = int(np.searchsorted(self._starts, start, side="right")) - 1
        while at < length:
            offset = start + at - int(self._starts[shard])
            piece = self._shards[shard][offset:offset + length - at]
            out[at:at + len(piece)] = piece
            at += len(piece)
            shard += 1
        return out

    def rows(self, seq_len: int) -> int:
        """How many whole `seq_len` rows the stream holds (a tail shorter than one row is never used)."""
        if seq_len <= 0:
            raise ValueError(f"seq_len must be positive, not {seq_len}")
        return self.tokens // seq_len

    def row(self, i: int, seq_len: int) -> np.ndarray:
        """Row `i` of the stream cut into `seq_len` rows: tokens `i*seq_len .. (i+1)*seq_len-1`."""
        if not 0 <= i < self.rows(seq_len):
            raise IndexError(f"row {i} of {seq_len} tokens is outside {self} ({self.rows(seq_len)} rows)")
        return self.window(i * seq_len, seq_len)

    def verify(self) -> None:
        """Check every shard's sha256 against the manifest (reads the whole split once)."""
        for shard in self.manifest["splits"][self.split]["shards"]:
            path = self.directory / shard["file"]
            digest = hashlib.sha256()
            with open(path, "rb") as f:  # hashlib.file_digest is 3.11+; the project supports 3.10
                while chunk := f.read(1 << 24):
                    digest.update(chunk)
            actual = digest.hexdigest()
            if actual != shard["sha256"]:
                raise CorpusError(f"shard {path} has sha256 {actual}; the manifest says {shard['sha256']} "
                                  "(the file changed after the build)")

    def check_tokenizer(self, sha256: str | None, vocab_size: int, source: str | None = None) -> None:
        """Refuse a model whose tokenizer did not make this corpus, or whose vocabulary is too
        small for its ids. `sha256` is `dscoder.data.pack.tokenizer_digest` of the model's
        tokenizer (None: not checked); `vocab_size` the model's embedding rows; `source` names
        the model's tokenizer in the message."""
        mine = self.tokenizer
        where = self.directory / "manifest.json"
        theirs = f"the model's tokenizer{f' ({source})' if source else ''}"
        if sha256 is not None and sha256 != mine["sha256"]:
            raise CorpusError(f"corpus {self.directory} was tokenized by {mine['source']} (sha256 {mine['sha256']}, "
                              f"{where}); {theirs} has sha256 {sha256}. Rebuild the corpus with the model's "
                              "tokenizer, or train the model that tokenizer belongs to")
        if mine["vocab_size"] > vocab_size:
            raise CorpusError(f"corpus {self.directory} holds ids of a {mine['vocab_size']}-token vocabulary "
                              f"({mine['source']}, {where}); {theirs} gives the model {vocab_size} embedding rows, "
                              "so some ids would be out of range")


def _read_manifest(directory: Path) -> dict:
    path = directory / "manifest.json"
    if not path.is_file():
        raise CorpusError(f"{directory} has no manifest.json; it is not a finished `dscoder data build` output")
    try:
        manifest = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CorpusError(f"{path} is not valid JSON ({e}); it is not a dscoder corpus manifest") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        found = manifest.get("format") if isinstance(manifest, dict) else None
        raise CorpusError(f"{path} is not a {FORMAT} manifest (format: {found!r}); "
                          "build the corpus with `dscoder data build`")
    try:  # what the reader relies on; a KeyError or TypeError below is a manifest cut short or edited
        if manifest["dtype"] not in DTYPES:
            raise CorpusError(f"{path}: dtype {manifest['dtype']!r} is not one of {', '.join(DTYPES)}")
        if not isinstance(manifest["seq_len"], int) or manifest["seq_len"] <= 0:
            raise CorpusError(f"{path}: seq_len {manifest['seq_len']!r} is not a positive integer")
        tokenizer = manifest["tokenizer"]
        if not isinstance(tokenizer["sha256"], str) or not isinstance(tokenizer["vocab_size"], int):
            raise CorpusError(f"{path}: tokenizer {tokenizer!r} has no sha256 string or integer vocab_size")
        for key in ("source", "eos_id"):
            tokenizer[key]
        for name, split in manifest["splits"].items():
            for shard in split["shards"]:
                if (not isinstance(shard["tokens"], int) or shard["tokens"] < 0 or not isinstance(shard["file"], str)
                        or "/" in shard["file"] or not isinstance(shard["sha256"], str)):
                    raise CorpusError(f"{path}: split {name} lists a bad shard {shard!r}")
    except (KeyError, TypeError) as e:
        raise CorpusError(f"{path} is not a complete {FORMAT} manifest (missing or malformed {e})") from None
    for split in SPLITS:
        manifest["splits"].setdefault(split, {"shards": [], "documents": 0, "tokens": 0, "sequences": 0,
                                              "padding_tokens": 0})
    return manifest


class RowStream:
    """The deterministic, resumable, rank-sharded order of training rows over one or more corpora
    (see the module docstring for the invariants)."""

    def __init__(self, sources: Mapping[str, Corpus], weights: Mapping[str, float] | None, seq_len: int, seed: int,
                 rank: int = 0, world_size: int = 1) -> None:
        if not sources:
            raise CorpusError("no corpus to train on")
        if not isinstance(seed, int) or seed < 0:
            raise CorpusError(f"the data seed must be a non-negative integer, not {seed!r}")
        if seq_len <= 0:
            raise CorpusError(f"seq_len must be positive, not {seq_len}")
        if world_size < 1 or not 0 <= rank < world_size:
            raise CorpusError(f"rank {rank} is not in a world of {world_size}")
        self.names = sorted(sources)  # the order of the dict given does not change the stream
        self.corpora = [sources[n] for n in self.names]
        self.seq_len, self.seed, self.rank, self.world_size = seq_len, seed, rank, world_size
        self.sizes = [c.rows(seq_len) for c in self.corpora]
        for name, corpus, n in zip(self.names, self.corpora, self.sizes):
            if n == 0:
                raise CorpusError(f"corpus {name} ({corpus.directory}, {corpus.split}) holds {corpus.tokens} tokens, "
                                  f"less than one row of {seq_len}")
        if weights is None:  # as if the corpora were concatenated
            given = {n: float(s) for n, s in zip(self.names, self.sizes)}
        else:
            given = {n: float(w) for n, w in weights.items()}
            if set(given) != set(self.names):
                raise CorpusError(f"the weights name {', '.join(sorted(given))} but the corpora are "
                                  f"{', '.join(self.names)}")
            bad = [n for n, w in given.items() if not math.isfinite(w) or w < 0]
            if bad:
                raise CorpusError(f"weights must be finite and non-negative: {', '.join(f'{n}={given[n]}' for n in bad)}")
        total = sum(given.values())
        if total <= 0:
            raise CorpusError("the weights are all zero")
        self.weights = [given[n] / total for n in self.names]
        cdf = np.cumsum(self.weights)
        cdf[-1] = 1.0
        self._cdf = cdf
        self._last_drawable = max(i for i, w in enumerate(self.weights) if w > 0)
        self.position = 0
        self._drawn = [0] * len(self.names)  # rows drawn from each corpus, over all epochs
        self._block: tuple[int, np.ndarray] | None = None
        self._perms: dict[int, tuple[int, np.ndarray]] = {}

    # ---- reading -----------------------------------------------------------------------------

    def next_batch(self, global_rows: int) -> torch.Tensor:
        """This rank's share of the next `global_rows` positions, as int64 `(global_rows //
        world_size, seq_len)`: positions `rank*k .. (rank+1)*k-1` of the batch. Every rank
        advances by the whole batch."""
        if global_rows <= 0 or global_rows % self.world_size:
            raise CorpusError(f"a global batch of {global_rows} rows does not split over {self.world_size} ranks")
        k = global_rows // self.world_size
        choice = self._choices(self.position, global_rows)
        draw = np.empty(global_rows, dtype=np.int64)  # each position's draw number within its corpus
        for c in range(len(self.names)):
            mask = choice == c
            count = int(mask.sum())
            draw[mask] = self._drawn[c] + np.arange(count)
            self._drawn[c] += count
        out = np.empty((k, self.seq_len), dtype=np.int64)
        for j, p in enumerate(range(self.rank * k, (self.rank + 1) * k)):
            c = int(choice[p])
            out[j] = self.corpora[c].row(self._row_id(c, int(draw[p])), self.seq_len)
        self.position += global_rows
        return torch.from_numpy(out)

    def _choices(self, start: int, n: int) -> np.ndarray:
        """The corpus index at positions `start .. start+n-1`."""
        if len(self.names) == 1:
            return np.zeros(n, dtype=np.int64)
        parts = []
        for block in range(start // BLOCK, (start + n - 1) // BLOCK + 1):
            if self._block is None or self._block[0] != block:
                uniform = np.random.Generator(np.random.PCG64(np.random.SeedSequence([MIXTURE, self.seed, block])))
                picks = np.searchsorted(self._cdf, uniform.random(BLOCK), side="right")
                self._block = (block, np.minimum(picks, self._last_drawable))
            lo = max(start - block * BLOCK, 0)
            hi = min(start + n - block * BLOCK, BLOCK)
            parts.append(self._block[1][lo:hi])
        return np.concatenate(parts)

    def _row_id(self, c: int, draw: int) -> int:
        epoch, index = divmod(draw, self.sizes[c])
        cached = self._perms.get(c)
        if cached is None or cached[0] != epoch:
            rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence(
                [PERMUTATION, self.seed, _key(self.names[c]), epoch])))
            cached = self._perms[c] = (epoch, rng.permutation(self.sizes[c]))
        return int(cached[1][index])

    # ---- what has happened -------------------------------------------------------------------

    def drawn(self) -> dict[str, int]:
        """Rows drawn from each corpus so far over all ranks, to log the mixture against its weights."""
        return dict(zip(self.names, self._drawn))

    def epochs(self) -> dict[str, int]:
        """Completed passes over each corpus (0 during the first)."""
        return {n: d // s for n, d, s in zip(self.names, self._drawn, self.sizes)}

    def state_dict(self) -> dict:
        """The stream's position and what it means; plain JSON-ready values, the same on every rank."""
        return {"version": STATE_VERSION, "position": self.position, "seed": self.seed, "seq_len": self.seq_len,
                "names": list(self.names), "weights": list(self.weights), "rows": list(self.sizes),
                "epochs": [d // s for d, s in zip(self._drawn, self.sizes)],
                "cursors": [d % s for d, s in zip(self._drawn, self.sizes)]}

    def load_state_dict(self, state: Mapping) -> None:
        """Continue from `state`, refusing one written by a stream with other corpora, weights,
        row counts, seq_len or seed (the rows it would give are not the ones that were next)."""
        try:
            names, weights, sizes = list(state["names"]), list(state["weights"]), list(state["rows"])
            epochs, cursors, position = list(state["epochs"]), list(state["cursors"]), int(state["position"])
            seed, seq_len, version = state["seed"], state["seq_len"], state.get("version")
        except (KeyError, TypeError, ValueError) as e:
            raise CorpusError(f"not a data stream state (missing or malformed {e})") from None
        if version != STATE_VERSION:
            raise CorpusError(f"data stream state version {version!r}; this dscoder reads version {STATE_VERSION}")
        diffs = []
        if names != self.names:
            diffs.append(f"corpora {', '.join(names)} (this stream: {', '.join(self.names)})")
        else:
            if len(weights) != len(names) or not all(math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
                                                     for a, b in zip(weights, self.weights)):
                diffs.append(f"weights {_pairs(names, weights)} (this stream: {_pairs(self.names, self.weights)})")
            if sizes != self.sizes:
                diffs.append(f"rows of {seq_len} per corpus {_pairs(names, sizes)} "
                             f"(this stream: {_pairs(self.names, self.sizes)}; a corpus was rebuilt?)")
        if seed != self.seed:
            diffs.append(f"seed {seed} (this stream: {self.seed})")
        if seq_len != self.seq_len:
            diffs.append(f"seq_len {seq_len} (this stream: {self.seq_len})")
        if diffs:
            raise CorpusError("the data stream state is from another stream: " + "; ".join(diffs))
        if len(epochs) != len(names) or len(cursors) != len(names) or any(
                e < 0 or not 0 <= c < s for e, c, s in zip(epochs, cursors, self.sizes)):
            raise CorpusError(f"data stream state has impossible epochs {epochs} / cursors {cursors} "
                              f"for corpora of {self.sizes} rows")
        drawn = [e * s + c for e, c, s in zip(epochs, cursors, self.sizes)]
        if sum(drawn) != position:
            raise CorpusError(f"data stream state is inconsistent: position {position} but {sum(drawn)} rows drawn")
        self.position, self._drawn = position, drawn
        self._block = None
        self._perms = {}


def _pairs(names: list[str], values: list) -> str:
    return ", ".join(f"{n}={v:.6g}" if isinstance(v, float) else f"{n}={v}" for n, v in zip(names, values))


def validation_batches(corpus: Corpus, seq_len: int, batch_rows: int, rank: int = 0, world_size: int = 1,
                       max_rows: int | None = None) -> Iterator[torch.Tensor]:
    """The rows of `corpus` (meant for its validation split) in file order, no shuffle, as this
    rank's int64 `(≤ batch_rows, seq_len)` batches: the same rows at every evaluation.

    The rows used are the first `min(rows, max_rows)`, rounded down to a multiple of
    `world_size` so that every rank runs the same number of batches of the same sizes (a
    sharded model needs every rank in every forward). They are taken in global batches of
    `batch_rows * world_size` rows, rank `r` getting the contiguous slice `r*b .. (r+1)*b-1` of
    each (the last batch: `remaining // world_size` rows each). The ranks' rows together are
    the same set at any world size, up to the fewer than `world_size` rows at the end."""
    if world_size < 1 or not 0 <= rank < world_size:
        raise CorpusError(f"rank {rank} is not in a world of {world_size}")
    if batch_rows <= 0:
        raise CorpusError(f"batch_rows must be positive, not {batch_rows}")
    total = corpus.rows(seq_len) if max_rows is None else min(corpus.rows(seq_len), max_rows)
    total -= total % world_size
    if total == 0:
        raise CorpusError(f"{corpus.directory} ({corpus.split}) has {corpus.rows(seq_len)} rows of {seq_len} tokens"
                          f"{f' (max_rows {max_rows})' if max_rows is not None else ''}; "
                          f"evaluating on {world_size} rank(s) needs at least {world_size}")

    def batches() -> Iterator[torch.Tensor]:
        for start in range(0, total, batch_rows * world_size):
            share = min(batch_rows * world_size, total - start) // world_size
            first = start + rank * share
            out = np.empty((share, seq_len), dtype=np.int64)
            out[:] = corpus.window(first * seq_len, share * seq_len).reshape(share, seq_len)
            yield torch.from_numpy(out)

    return batches()


def corpus_windows(corpus: Corpus, wanted: int, length: int, seed: int) -> list[list[int]]:
    """`wanted` distinct rows of `length` tokens drawn (seeded) from a corpus: the code an SFT run mixes
    in, fully trained. Rows, not documents: a corpus document is a whole repository (its files in
    dependency order, FIM-rewritten or not), far longer than an SFT row."""
    rows = corpus.rows(length)
    if wanted <= 0 or rows == 0:
        return []
    picked = np.random.default_rng(seed).choice(rows, size=min(wanted, rows), replace=False)
    return [corpus.row(int(i), length).astype(np.int64).tolist() for i in sorted(picked)]
