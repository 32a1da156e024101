"""Tokens in, training sequences out: documents encoded, joined by EOS, cut to fixed length, sharded.

A shard is a flat little-endian array (uint16 while the vocabulary fits, else uint32) whose
length is a whole number of `seq_len` rows, so a trainer memory-maps it and reshapes; nothing
else needs to be read. Documents run across row boundaries (the packing of GPT-style
pretraining: no padding inside the stream); only the last row of a split is filled up with EOS,
and the manifest says how many tokens that was.

Source text is encoded by the tokenizer's BPE model *without* its added tokens, so a file that
contains the literal text of a control token (DeepSeek-Coder's own code mentions
`<｜fim▁begin｜>`) is learned as text, never as a control token; the control tokens a document
really carries (FIM markers, EOS) are inserted as ids.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer as Backend

from dscoder.tokenizer.fim import FimUnsupportedError, fim_tokens
from dscoder.tokenizer.tokenizer import Tokenizer
from dscoder.data import fim
from dscoder.data.encode import TextEncoder
from dscoder.data.fim import Segment
from dscoder.errors import UserError
from dscoder.files import remove_stale, write_atomic


def token_dtype(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16) if vocab_size <= 1 << 16 else np.dtype(np.uint32)


def tokenizer_digest(tokenizer: Tokenizer) -> str:
    """sha256 of the tokenizer's full serialisation (vocabulary, merges, added tokens, pipeline)."""
    return hashlib.sha256(tokenizer.backend.to_str().encode()).hexdigest()


def _plain(backend: Backend) -> Backend:
    spec = json.loads(backend.to_str())
    spec["added_tokens"] = []
    return Backend.from_str(json.dumps(spec))


class DocumentEncoder:
    """Turns a document (segments, FIM-rewritten or not) into token ids plus per-language counts.

    The segments' text goes through `dscoder.data.encode.TextEncoder` (the library's ids, several
    times faster for the pre-tokenizers it knows; `library=True` asks the library for every
    document instead). FIM pieces are split as text before tokenizing, so each segment is
    encoded on its own, as it always was; the pieces are then laid out with the FIM ids and
    EOS by numpy, with no loop over tokens.
    """

    def __init__(self, tokenizer: Tokenizer, *, need_fim: bool, library: bool = False) -> None:
        if tokenizer.eos_id is None:
            raise UserError(f"tokenizer {tokenizer.source} has no EOS token; packed documents are separated by EOS")
        self.eos = tokenizer.eos_id
        self.dtype = token_dtype(tokenizer.vocab_size)
        self.fim_ids = None
        if need_fim:
            try:
                self.fim_ids = fim.token_ids(tokenizer, fim_tokens(tokenizer, str(tokenizer.source)))
            except FimUnsupportedError as e:
                raise FimUnsupportedError(f"{e} (or build with --fim-rate 0)") from None
        self.texts = TextEncoder(_plain(tokenizer.backend), dtype=self.dtype, library=library)

    def encode(self, mode: str, parts: list[list[Segment]]) -> tuple[np.ndarray, dict[str, int]]:
        encoded = iter(self.texts.encode([s.text for part in parts for s in part]))
        per_language: dict[str, int] = {}
        token_parts = []
        for part in parts:
            arrays = []
            for segment in part:
                got = next(encoded)
                per_language[segment.language] = per_language.get(segment.language, 0) + len(got)
                arrays.append(got)
            token_parts.append(np.concatenate(arrays) if arrays else np.empty(0, self.dtype))
        pieces = fim.layout(mode, token_parts, self.fim_ids)
        flat = np.empty(sum(len(p) for p in pieces) + 1, dtype=self.dtype)
        at = 0
        for piece in pieces:
            flat[at:at + len(piece)] = piece
            at += len(piece)
        flat[at] = self.eos
        return flat, per_language


def _atomic_write(path: Path, data: bytes | np.ndarray) -> str:
    """Write `path` whole or not at all (`dscoder.files.write_atomic`) and return the sha256 of
    what was written. The build's part markers, shards and manifest all go through here, so a
    part, a shard or the manifest exists only when complete."""
    view = memoryview(np.ascontiguousarray(data) if isinstance(data, np.ndarray) else data).cast("B")
    write_atomic(path, view)
    return hashlib.sha256(view).hexdigest()


class ShardWriter:
    """Writes one split's token stream as `{split}-NNNNN.bin` shards of whole `seq_len` rows."""

    def __init__(self, out: Path, split: str, *, seq_len: int, shard_sequences: int, dtype: np.dtype, eos: int) -> None:
        self.out, self.split, self.seq_len, self.dtype, self.eos = out, split, seq_len, dtype, eos
        self.shard_tokens = seq_len * shard_sequences
        remove_stale(out)  # temporaries of a build killed while writing a shard
        self._buffer: list[np.ndarray] = []
        self._buffered = 0
        self.shards: list[dict] = []
        self.tokens = 0
        self.documents = 0
        self.padding = 0

    def add(self, ids: np.ndarray) -> None:
        self._buffer.append(ids)
        self._buffered += len(ids)
        self.tokens += len(ids)
        self.documents += 1
        while self._buffered >= self.shard_tokens:
            self._flush(self.shard_tokens)

    def _flush(self, n: int) -> None:
        stream = np.concatenate(self._buffer) if self._buffer else np.empty(0, self.dtype)
        shard, rest = stream[:n], stream[n:]
        self._buffer, self._buffered = ([rest] if len(rest) else []), len(rest)
        name = f"{self.split}-{len(self.shards):05d}.bin"
        digest = _atomic_write(self.out / name, shard.astype(self.dtype, copy=False))
        self.shards.append({"file": name, "sequences": len(shard) // self.seq_len, "tokens": int(len(shard)),
                            "sha256": digest})

    def close(self) -> dict:
        if self._buffered:
            self.padding = -self._buffered % self.seq_len
            self._buffer.append(np.full(self.padding, self.eos, dtype=self.dtype))
            self._flush(self._buffered + self.padding)
        return {"shards": self.shards, "documents": self.documents, "tokens": self.tokens,
                "sequences": sum(s["sequences"] for s in self.shards), "padding_tokens": self.padding}
