"""Fill-in-the-middle rewriting of training documents, before packing (DeepSeek-Coder V1 §3.1).

With probability `rate` (0.5 in the paper) a document is cut at two uniformly random character
positions into prefix, middle and suffix, and emitted as PSM, or as SPM at `spm_rate`, in the
model's own FIM tokens (`dscoder.tokenizer.fim`): PSM is `begin prefix hole suffix end middle`, SPM is
`hole suffix begin prefix end middle`, the orders the inference side prompts with. Otherwise the
document stays left-to-right.

A document is a list of segments, one per file, each tagged with its language; the cuts split
segments, so every token produced can still be counted to the language it came from. The
random source is seeded per document (`random.Random(f"{seed}/{key}")`), so a document's FIM
form does not depend on which worker handled it or in what order.
"""

from __future__ import annotations

import bisect
import random
from dataclasses import dataclass

from dscoder.repo.ingest import printable_path
from dscoder.tokenizer.fim import FimTokens

MODES = ("none", "psm", "spm")


@dataclass(frozen=True)
class Segment:
    text: str
    language: str


def file_block(path: str, text: str) -> str:
    """One file of a repository-level document: a path comment line, then the file (ending in a newline).

    The same layout the server's `/infill` gives `input_extra` files, so a model sees at
    inference what it was trained on. The path is written by `printable_path`: a file name is
    any bytes but `/` and NUL, and a newline in one must not start a line of its own (a fake
    header), nor bytes that are not UTF-8 reach the tokenizer.
    """
    return f"#{printable_path(path)}\n{text}" + ("" if text.endswith("\n") else "\n")


def _cut(segments: list[Segment], at: int) -> tuple[list[Segment], list[Segment]]:
    """Split a segment list at character offset `at` of their concatenation."""
    ends = []
    total = 0
    for s in segments:
        total += len(s.text)
        ends.append(total)
    i = bisect.bisect_right(ends, at)
    if i == len(segments):
        return list(segments), []
    start = ends[i] - len(segments[i].text)
    head, tail = segments[i].text[:at - start], segments[i].text[at - start:]
    left = list(segments[:i]) + ([Segment(head, segments[i].language)] if head else [])
    right = ([Segment(tail, segments[i].language)] if tail else []) + list(segments[i + 1:])
    return left, right


def rewrite(segments: list[Segment], key: str, *, seed: int, rate: float, spm_rate: float
            ) -> tuple[str, list[list[Segment]]]:
    """(mode, parts): for "none" one part (the document); for "psm"/"spm" [prefix, middle, suffix]."""
    rng = random.Random(f"{seed}/{key}")
    if rng.random() >= rate:
        return "none", [list(segments)]
    length = sum(len(s.text) for s in segments)
    lo, hi = sorted((rng.randint(0, length), rng.randint(0, length)))
    prefix, rest = _cut(segments, lo)
    middle, suffix = _cut(rest, hi - lo)
    return ("spm" if rng.random() < spm_rate else "psm"), [prefix, middle, suffix]


def layout(mode: str, parts: list[list[int]], tokens: list[int] | tuple[int, int, int]) -> list[list[int]]:
    """The token pieces of a document in training order, `tokens` being the (begin, hole, end) ids."""
    if mode == "none":
        return parts
    begin, hole, end = tokens
    prefix, middle, suffix = parts
    if mode == "psm":
        return [[begin], prefix, [hole], suffix, [end], middle]
    return [[hole], suffix, [begin], prefix, [end], middle]


def token_ids(vocab, tokens: FimTokens) -> tuple[int, int, int]:
    """(begin, hole, end) ids of a FIM spelling in a tokenizer's vocabulary."""
    return tuple(vocab.token_to_id(t) for t in (tokens.prefix, tokens.suffix, tokens.middle))
