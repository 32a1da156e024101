"""Corpus text to token ids: the ids `tokenizers` gives, at several times its speed on source code.

Why not just `backend.encode_batch(texts)`: profiled on a stdlib corpus with DeepSeek-Coder's
vocabulary, 94% of the encode stage is inside that one call, and most of it in the
pre-tokenizer: five Oniguruma `Split` passes, each allocating a normalized string (with
per-byte alignments) for every piece it cuts: 1-1.6 MB/s on one core. The BPE merges
are cheap, since the library caches words. Batching or threads do not change the work.

What is done here instead, for a pre-tokenizer we know (`SPLITTERS`):

1. **Split.** An ASCII text is cut into the very pre-tokens the library's pre-tokenizer would
   make by one compiled Python regular expression (`Splitter.words`), written for ASCII
   only, where Unicode classes (`\\s`, `\\p{L}`, `\\p{P}`, `\\p{N}`) have fixed members on
   every Unicode version. A text with any other character is first cut at positions no
   pre-token can cross (`Splitter.boundary`: around each line break for DeepSeek's
   pre-tokenizer, whose first step isolates `\\r` and `\\n`); its ASCII units are split as
   above, and each unit that is not ASCII stays whole.
2. **Deduplicate.** Source code repeats its words: a 1.5 MB part holds about 400,000 words
   but 30,000 distinct ones. Each distinct word is encoded once and cached: mapped to the
   byte-level alphabet (the mapping read from the library's `ByteLevel`) and given to the
   tokenizer's own model (the library's Rust BPE), which is what the library's pipeline does
   to each pre-token once it is cut. A non-ASCII unit goes through the full tokenizer, which
   is exact because nothing crosses its ends.
3. **Assemble** each text's ids from the cached ones with numpy gathers, with no loop over
   tokens in Python.

The ids are the library's by construction, not by imitation: the only hand-written parts are
the ASCII split and the places a text may be cut, and `tests/data/test_data_encode.py` checks
both against the library's pre-tokenizer (every pair of ASCII characters, every triple of
character classes, random ASCII and Unicode text) and the ids on real corpora (the `.bin`
files of a build, byte for byte). A tokenizer whose
pre-tokenizer or normalizer is anything else is encoded by the library as before
(`TextEncoder.fast` is False), as is every build run with `--library-encode`.

Measured on one core (`benchmarks/tokenize_corpus.py`, the table in docs/data.md): 8x the
library's speed with DeepSeek-Coder's vocabulary, 5x with SmolLM2's.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

import numpy as np
from tokenizers import Tokenizer as Backend
from tokenizers import pre_tokenizers

from dscoder.tokenizer.tokenizer import pre_tokenizer_for

# ASCII members of Oniguruma's Unicode classes, as `tokenizers` matches them (the test reads
# them back from the library). Written out because Python's `\s` also matches \x1c-\x1f.
_SPACE = "\t\n\x0b\x0c\r "
_SPACE_IN_LINE = "\t\x0b\x0c "  # after DeepSeek's first split has isolated \r and \n
_LETTER = "A-Za-z"
_PUNCT = r"""!"#%&'()*,\-./:;?@\[\\\]_{}"""  # \p{P}; $+<=>^`|~ are symbols (\p{S})
_DIGIT = "0-9"


@dataclass(frozen=True)
class Splitter:
    """A pre-tokenizer's cuts, redone by Python's `re` for ASCII text.

    `words`: `findall` of an ASCII text gives exactly the library's pre-tokens (before the
    byte-level mapping). `boundary`: `split` cuts a text into units at places where the
    library's pre-tokenizer always cuts, whatever the characters around them, so each unit is
    pre-tokenized as if it stood alone.
    """

    name: str
    words: re.Pattern
    boundary: re.Pattern

    def pieces(self, text: str) -> list[str]:
        """`text` cut into the library's pre-tokens, except that each unit (of `boundary`)
        holding a non-ASCII character stays whole."""
        if text.isascii():
            return self.words.findall(text)
        pieces: list[str] = []
        for unit in self.boundary.split(text):
            if unit.isascii():
                pieces += self.words.findall(unit)
            else:
                pieces.append(unit)
        return pieces


def _deepseek_coder() -> Splitter:
    """`[\\r\\n]`, `\\s?\\p{L}+`, `\\s?\\p{P}+`, CJK runs, `\\p{N}`, applied one after another
    (each to the pieces the previous left, keeping matches and gaps), folded into one pattern:
    a line break; a letter run, or a punctuation run, with the one space before it; a digit;
    else a run of anything else, which stops at a space that the next letter or punctuation
    run takes. (CJK runs cannot occur in ASCII.) That last run is written as runs of spaces
    and runs of other characters rather than character by character: the same matches, and
    the whole split runs 1.5x as fast on indented code."""
    ws, letter, punct = f"[{_SPACE_IN_LINE}]", f"[{_LETTER}]", f"[{_PUNCT}]"
    other = f"[^\r\n{_SPACE_IN_LINE}{_LETTER}{_PUNCT}{_DIGIT}]"
    words = (rf"[\r\n]|{ws}?{letter}+|{ws}?{punct}+|[{_DIGIT}]"
             rf"|(?:{ws}+(?![{_LETTER}{_PUNCT}])|{other}+)+")
    # Each line break its own unit: `split` with a group keeps them (and runs 2x as fast as
    # a zero-width split at both sides of it).
    return Splitter("deepseek-coder", re.compile(words), re.compile(r"([\r\n])"))


def _gpt2(individual_digits: bool) -> Splitter:
    """GPT-2's `'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+`
    (the library's `ByteLevel(use_regex=True)`), after `Digits(individual_digits=True)` for
    SmolLM. There every digit is cut off first, so spaces before a digit end their piece:
    `\\s+(?!\\S)` takes a digit for the end of the text.

    Boundary: before a `\\n` that follows a printable ASCII character. No alternative that
    matches that character can take a `\\n`, so a match ends there and the scan restarts."""
    s, letter = f"[{_SPACE}]", f"[{_LETTER}]"
    if individual_digits:
        digits, not_space_after = f"[{_DIGIT}]", f"[^{_SPACE}{_DIGIT}]"
    else:
        digits, not_space_after = f" ?[{_DIGIT}]+", f"[^{_SPACE}]"
    # The contractions share their quote (none is a prefix of another, so the order holds).
    words = (rf"'(?:s|t|re|ve|m|ll|d)| ?{letter}+|{digits}| ?[^{_SPACE}{_LETTER}{_DIGIT}]+"
             rf"|{s}+(?!{not_space_after})|{s}+")
    return Splitter("smollm" if individual_digits else "gpt2", re.compile(words), re.compile(r"(?<=[!-~])(?=\n)"))


SPLITTERS: dict[str, Splitter] = {s.name: s for s in (_deepseek_coder(), _gpt2(True), _gpt2(False))}


_EMPTY = json.dumps({"version": "1.0", "model": {"type": "BPE", "vocab": {}, "merges": []}})


def _without_trim_offsets(spec: object) -> object:
    """A pre-tokenizer's JSON less `trim_offsets`, which moves offsets, never cuts or ids."""
    if isinstance(spec, dict):
        return {k: _without_trim_offsets(v) for k, v in spec.items() if k != "trim_offsets"}
    if isinstance(spec, list):
        return [_without_trim_offsets(v) for v in spec]
    return spec


def _pre_tokenizer_spec(backend: Backend) -> object:
    return _without_trim_offsets(json.loads(backend.to_str())["pre_tokenizer"])


_KNOWN: dict[str, object] = {}


def splitter_for(backend: Backend) -> Splitter | None:
    """The splitter that redoes `backend`'s pre-tokenization, or None when there is none: the
    backend has a normalizer (it would change the text before the cuts), or its pre-tokenizer
    is not exactly the one `pre_tokenizer_for` builds for a name in `SPLITTERS`."""
    if backend.normalizer is not None or backend.pre_tokenizer is None:
        return None
    if not _KNOWN:
        for name in SPLITTERS:
            holder = Backend.from_str(_EMPTY)
            holder.pre_tokenizer = pre_tokenizer_for(name)
            _KNOWN[name] = _pre_tokenizer_spec(holder)
    spec = _pre_tokenizer_spec(backend)
    return next((SPLITTERS[name] for name, known in _KNOWN.items() if known == spec), None)


class _Growing:
    """A 1-D numpy array appended to in amortized O(1) (capacity doubles)."""

    def __init__(self, dtype) -> None:
        self._data = np.empty(1024, dtype)
        self.size = 0

    def extend(self, values: np.ndarray) -> None:
        end = self.size + len(values)
        if end > len(self._data):
            grown = np.empty(max(end, 2 * len(self._data)), self._data.dtype)
            grown[:self.size] = self._data[:self.size]
            self._data = grown
        self._data[self.size:end] = values
        self.size = end

    @property
    def array(self) -> np.ndarray:
        return self._data[:self.size]


class TextEncoder:
    """Texts to token ids, equal to `backend.encode(text, add_special_tokens=False).ids` for each.

    `backend` is used as given (the corpus build passes one without added tokens, so source
    text that spells a control token stays text). With a known pre-tokenizer (`fast`), the
    ids come from the split-deduplicate-assemble path of the module docstring, with a cache of
    distinct words kept across calls and emptied when it outgrows `max_words` entries or
    `max_chars` characters of keys; otherwise from the library's `encode_batch_fast`.
    """

    def __init__(self, backend: Backend, *, dtype=np.uint32, library: bool = False,
                 max_words: int = 1 << 18, max_chars: int = 32 << 20) -> None:
        self.backend = backend
        self.dtype = np.dtype(dtype)
        self.splitter = None if library else splitter_for(backend)
        self.max_words, self.max_chars = max_words, max_chars
        if self.splitter is not None:
            # What the pre-tokenizer's last step, the byte-level mapping, makes of each ASCII
            # character, asked of the library itself.
            byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
            self._byte_level = {i: byte_level.pre_tokenize_str(chr(i))[0][0] for i in range(128)}
        self._clear()

    @property
    def fast(self) -> bool:
        return self.splitter is not None

    def _clear(self) -> None:
        self._index: dict[str, int] = {}  # word (or non-ASCII unit) -> row of _starts/_lengths
        self._starts = _Growing(np.int64)
        self._lengths = _Growing(np.int64)
        self._ids = _Growing(self.dtype)
        self._chars = 0

    def encode(self, texts: list[str]) -> list[np.ndarray]:
        """Each text's ids, as an array of `dtype`."""
        try:
            if self.splitter is None:
                return [np.array(e.ids, dtype=self.dtype)
                        for e in self.backend.encode_batch_fast(texts, add_special_tokens=False)] if texts else []
            return [self._encode(text) for text in texts]
        except TypeError:
            # The library's words for a str it cannot take ("TextEncodeInput must be Union[...]").
            for i, text in enumerate(texts):
                if not isinstance(text, str):
                    raise TypeError(f"text {i} is a {type(text).__name__}, not a str") from None
                try:
                    text.encode("utf-8")
                except UnicodeEncodeError as e:
                    raise ValueError(f"text {i} is not valid Unicode: {e.reason} at character {e.start} "
                                     f"({text[e.start:e.end]!r})") from None
            raise

    def _encode(self, text: str) -> np.ndarray:
        if len(self._index) > self.max_words or self._chars > self.max_chars:
            self._clear()
        pieces = self.splitter.pieces(text)
        index = self._index
        fresh = set(pieces).difference(index)
        if fresh:
            self._learn(sorted(fresh))
        if not pieces:
            return np.empty(0, self.dtype)
        rows = np.fromiter(map(index.__getitem__, pieces), dtype=np.int64, count=len(pieces))
        lengths = self._lengths.array[rows]
        ends = np.cumsum(lengths)
        # Token k of the text is token (k - its piece's first position) of that piece's cached run.
        source = np.repeat(self._starts.array[rows] - (ends - lengths), lengths) + np.arange(int(ends[-1]))
        return self._ids.array[source]

    def _learn(self, words: list[str]) -> None:
        """Encode new distinct pieces and cache them.

        An ASCII word is a whole pre-token: it is mapped to the byte-level alphabet and given
        to the tokenizer's own model (`model.tokenize`), which is what the library's pipeline
        does to each pre-token once it is cut; half the time of `encode` on the words, which
        would run the byte-level step through the library's normalized strings. The non-ASCII
        units go through the full tokenizer in one call, as one pre-tokenized sequence (the
        library still runs the pre-tokenizer on each unit, never across two), `word_ids`
        saying which unit each token is from.
        """
        index = self._index
        ids: list[int] = []
        lengths: list[int] = []
        model, to_byte_level = self.backend.model, self._byte_level
        units = []
        for word in words:
            if not word.isascii():
                units.append(word)
                continue
            tokens = model.tokenize(word.translate(to_byte_level))
            ids += [t.id for t in tokens]
            lengths.append(len(tokens))
            index[word] = len(index)
        if units:
            encoding = self.backend.encode(units, is_pretokenized=True, add_special_tokens=False)
            ids += encoding.ids
            lengths += np.bincount(np.array(encoding.word_ids, dtype=np.int64), minlength=len(units)).tolist()
            for unit in units:
                index[unit] = len(index)
        counts = np.array(lengths, dtype=np.int64)
        self._starts.extend(self._ids.size + np.cumsum(counts) - counts)
        self._lengths.extend(counts)
        self._ids.extend(np.array(ids, dtype=self.dtype))
        self._chars += sum(map(len, words))
