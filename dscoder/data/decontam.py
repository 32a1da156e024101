"""Decontamination: a file sharing a 10-gram with an evaluation benchmark is dropped.

DeepSeek-Coder filters out "files containing docstrings, questions, and solutions from sources
such as HumanEval, MBPP, GSM8K and MATH ... any piece of code that includes a 10-gram string
identical to any in the test data is excluded". The test data here is what the project's own
eval harness (`dscoder.tasks`) asks and checks: every problem's prompt, canonical solution,
whole test program and instruct message.

The unit is the *word*: an n-gram is n consecutive `\\w+` runs, case kept, with whitespace and
punctuation dropped. So a solution re-indented, re-wrapped or re-spaced, or a docstring moved
into a comment, still matches; and the n-grams are long enough (10 words is a line or two of
code) that matching means copying. With punctuation counted as tokens, 10 tokens shrink to
`for i in range(len(x)):` and 98 of the 1,790 .py files of CPython's standard library match.

Three rules keep ordinary code from matching:

- boilerplate: an n-gram found in more than `boilerplate` (5) distinct problems is the
  harness talking (MultiPL-E test drivers, `def check(candidate):` runs, few-shot examples
  repeated in every prompt, the instruct template), not a problem. Distinct means distinct
  *origin*: HumanEval/12, its MultiPL-E translations and its infilling variants are one
  problem, so a docstring shared by its ten translations is not mistaken for boilerplate.
- data: an n-gram with more than four numbers among its ten words is a literal table
  (`0 1 2 3 4 5 6 7 8 9`, `'one': 1, 'two': 2, ...`), which test suites everywhere hold.
- content: an n-gram needs two different words that are neither Python keywords, `self`/
  `cls`, numbers nor single characters; `for i in range(n): for i in range(n)` has one.

Measured with all 15 benchmark sets (10,421 problems, 257k n-grams; the boilerplate rule
removes 1.8k): 1 of the 1,790 standard-library files matches (test_functools.py's
`def __lt__(self, other): return self.value < other.value`, word for word MBPP/342's), 2 of a
6,000-file site-packages sample (a torch comment quoting MBPP/167's task, PIL code sharing a
line with HumanEval/98's solution), none of 4,000 C/C++ headers and JavaScript files. Without
the data and content rules the standard library gives 42 matches, nearly all number tables.
The price: one-line solutions made only of keywords and single letters (HumanEval/102's
`if x > y: return -1 ...`) give no n-gram, so only their prompts can match.

Storage: each word maps to a 64-bit value fixed by its text (blake2b), an n-gram to a
polynomial hash of its words' values, all n-grams to one sorted `uint64` array searched with
`searchsorted`, and an aligned array names the problem that first had each. A word that is in
no benchmark cannot be part of a benchmark n-gram, so the vocabulary dictionary doubles as a
filter. The object is plain data: it pickles in a few MB and is cheap to send to workers.
"""

from __future__ import annotations

import hashlib
import keyword
import re
from itertools import repeat
from pathlib import Path

import numpy as np

N = 10
BOILERPLATE = 5  # an n-gram in more distinct problems than this is harness text
_WORD = re.compile(r"\w+")
_STOP = frozenset(keyword.kwlist) | frozenset(keyword.softkwlist) | {"self", "cls"}
_P = np.uint64(0x9E3779B97F4A7C15)  # odd multiplier of the polynomial hash
_ORIGIN = re.compile(r"HumanEval[/_](\d+)")


def words(text: str) -> list[str]:
    return _WORD.findall(text)


def origin(task_id: str) -> str:
    """The problem a task derives from: HumanEval/12 for "HumanEval_12_foo" (MultiPL-E) and
    "SingleLineInfilling/HumanEval/12/L3" alike; other ids are their own origin."""
    m = _ORIGIN.search(task_id)
    return f"HumanEval/{m.group(1)}" if m else task_id


def _value(word: str) -> int:
    return int.from_bytes(hashlib.blake2b(word.encode("utf-8", "surrogatepass"), digest_size=8).digest(),
                          "little") or 1  # 0 means "not in any benchmark"


def _window_sum(flags: np.ndarray, n: int) -> np.ndarray:
    c = np.concatenate(([0], np.cumsum(flags, dtype=np.int64)))
    return c[n:] - c[:-n]


def _gram_hashes(vals: np.ndarray, n: int) -> np.ndarray:
    """Hash of every n-gram (window) of word values: sum of vals[i+k] * P**(n-1-k), mod 2**64."""
    m = len(vals) - n + 1
    h = vals[:m].copy()
    with np.errstate(over="ignore"):
        for k in range(1, n):
            h *= _P
            h += vals[k:k + m]
    return h


def _informative_hashes(vals: np.ndarray, numeric: np.ndarray, content: np.ndarray, n: int) -> np.ndarray:
    """Hashes of the n-grams that pass the data and content rules (module doc): at most 2n/5
    numbers, and two different content words (the window's smallest and largest content value
    differ)."""
    windows = np.lib.stride_tricks.sliding_window_view
    lo = windows(np.where(content, vals, np.uint64(2**64 - 1)), n).min(axis=1)
    hi = windows(np.where(content, vals, np.uint64(0)), n).max(axis=1)
    ok = (_window_sum(numeric, n) <= n * 2 // 5) & (hi > lo)
    return _gram_hashes(vals, n)[ok]


class Decontaminator:
    """Benchmark n-grams, and which problem each came from."""

    def __init__(self, keys: np.ndarray, owners: np.ndarray, ids: list[str], vocab: dict[str, int], n: int,
                 sources: dict[str, int] | None = None, skipped: dict[str, str] | None = None):
        self.keys, self.owners, self.ids, self.vocab, self.n = keys, owners, ids, vocab, n
        self.sources: dict[str, int] = sources or {}  # "benchmark/subset" -> problems loaded
        self.skipped: dict[str, str] = skipped or {}  # "benchmark/subset" -> why it is missing

    def __len__(self) -> int:
        return len(self.keys)

    def __repr__(self) -> str:
        return (f"Decontaminator({len(self)} {self.n}-grams from {len(self.ids)} problems; "
                f"skipped: {', '.join(self.skipped) or 'none'})")

    @classmethod
    def from_benchmarks(cls, data: Path | None = None, n: int = N, boilerplate: int = BOILERPLATE
                        ) -> Decontaminator:
        """Every benchmark and subset of `dscoder.tasks`; those whose data is missing under
        `data` (default: the project's shared/data) are recorded in `.skipped`, not raised."""
        from dscoder import tasks

        problems, sources, skipped = [], {}, {}
        for bench, benchmark in tasks.BENCHMARKS.items():
            if not benchmark.decontaminate:
                continue
            for subset in tasks.subsets(bench, "all"):
                name = f"{bench}/{subset}" if subset else bench
                try:
                    loaded = tasks.load(bench, subset, data)
                except (OSError, ValueError) as e:  # FileNotFoundError above all; a corrupt file too
                    skipped[name] = f"{type(e).__name__}: {e}"
                    continue
                sources[name] = len(loaded)
                for p in loaded:
                    program = p.program(p.reference or "") if p.program is not None else ""
                    texts = (p.prompt, p.reference or "", program, p.instruction or "")
                    problems.append((f"{name}/{p.task_id}", origin(p.task_id), texts))
        return cls._build(problems, n, boilerplate, sources, skipped)

    @classmethod
    def from_texts(cls, texts: dict[str, str], n: int = N, boilerplate: int = BOILERPLATE) -> Decontaminator:
        """One problem per entry, id -> its text (tests; a custom benchmark file)."""
        return cls._build([(k, k, (v,)) for k, v in texts.items()], n, boilerplate, {"texts": len(texts)}, {})

    @classmethod
    def _build(cls, problems: list[tuple[str, str, tuple[str, ...]]], n: int, boilerplate: int,
               sources: dict[str, int], skipped: dict[str, str]) -> Decontaminator:
        # Words of each distinct text. A text inside one already kept for the same origin (an
        # infilling prefix inside the whole solution) adds no n-gram and is skipped, which
        # keeps building all 10k problems (7k of them infilling variants) fast.
        seen: dict[str, list[str]] = {}
        per_problem = []
        for _, org, texts in problems:
            kept = seen.setdefault(org, [])
            word_lists = []
            for text in texts:
                if text and not any(text in other for other in kept):
                    kept.append(text)
                    word_lists.append(words(text))
            per_problem.append(word_lists)
        # Each distinct word once: its value, and the flags the data/content rules read.
        vocab_words = list(dict.fromkeys(w for lists in per_problem for ws in lists for w in ws))
        vocab = {w: _value(w) for w in vocab_words}
        index = {w: i for i, w in enumerate(vocab_words)}
        values = np.fromiter(vocab.values(), dtype=np.uint64, count=len(vocab))
        numeric = np.fromiter((w.isdigit() for w in vocab_words), dtype=bool, count=len(vocab_words))
        content = np.fromiter((len(w) > 1 and not w.isdigit() and w not in _STOP for w in vocab_words),
                              dtype=bool, count=len(vocab_words))
        origins = {org: i for i, org in enumerate(dict.fromkeys(org for _, org, _ in problems))}

        hashes, owners, orgs = [], [], []
        for problem, ((_, org, _), word_lists) in enumerate(zip(problems, per_problem)):
            for ws in word_lists:
                if len(ws) < n:
                    continue
                at = np.fromiter(map(index.__getitem__, ws), dtype=np.int64, count=len(ws))
                h = _informative_hashes(values[at], numeric[at], content[at], n)
                hashes.append(h)
                owners.append(np.full(len(h), problem, dtype=np.int32))
                orgs.append(np.full(len(h), origins[org], dtype=np.int32))
        ids = [p[0] for p in problems]
        if not hashes:
            return cls(np.zeros(0, np.uint64), np.zeros(0, np.int32), ids, vocab, n, sources, skipped)
        h, own, org = np.concatenate(hashes), np.concatenate(owners), np.concatenate(orgs)

        # Sorted by n-gram, then origin: a group per n-gram, a run per origin inside it.
        order = np.lexsort((org, h))
        h, own, org = h[order], own[order], org[order]
        starts = np.flatnonzero(np.concatenate(([True], h[1:] != h[:-1])))
        new_origin = np.concatenate(([True], (h[1:] != h[:-1]) | (org[1:] != org[:-1])))
        origin_counts = np.add.reduceat(new_origin.astype(np.int32), starts)
        # The first problem loaded (HumanEval before its translations) owns an n-gram.
        first_owner = np.minimum.reduceat(own, starts)
        keep = origin_counts <= boilerplate  # more: the harness talking
        return cls(h[starts][keep], first_owner[keep], ids, vocab, n, sources, skipped)

    def match(self, text: str) -> str | None:
        """The id of the benchmark problem owning the first n-gram of `text` found in the
        benchmarks, or None."""
        ws = _WORD.findall(text)
        n = self.n
        if len(ws) < n or not len(self.keys):
            return None
        vals = np.fromiter(map(self.vocab.get, ws, repeat(0)), dtype=np.uint64, count=len(ws))
        known = _window_sum(vals == 0, n) == 0  # n-grams made only of benchmark words
        if not known.any():
            return None
        h = _gram_hashes(vals, n)[known]
        at = np.searchsorted(self.keys, h)
        at[at == len(self.keys)] = 0
        hit = self.keys[at] == h
        if not hit.any():
            return None
        return self.ids[self.owners[at[np.argmax(hit)]]]
