"""Deduplication: near-duplicate repositories (MinHash-LSH), then exact duplicate files.

DeepSeek-Coder deduplicates at repository level: file-level near-dedup would tear files out of
the repositories whose dependency structure the model is meant to learn. Settings are
BigCode's: word 5-gram shingles, 256 permutations, Jaccard threshold 0.7 (`datasketch`).

A repository's signature is the element-wise minimum of its files' signatures, which is
exactly the MinHash of the union of their shingle sets, so workers sign files independently
and nothing needs a repository's whole text in one place.

Which repository of a near-duplicate cluster is kept: the one with the most bytes of code (the
most complete copy of a fork family), ties to the alphabetically first name. The cluster is
the connected component of the LSH candidate graph, each pair above the threshold by the
signatures' estimated Jaccard. Exact dedup then runs on the kept repositories' files: the
first copy of a content hash in build order (repository order, then path) stays.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable

import numpy as np
from datasketch import LeanMinHash, MinHash, MinHashLSH

NUM_PERM = 256
SHINGLE = 5
THRESHOLD = 0.7
SEED = 1  # the permutations; fixed so signatures from different runs and workers compare
SCHEME = "affine32"  # datasketch 2's default, named: signatures are only comparable within one scheme

_WORD = re.compile(r"\w+")
_TEMPLATE = MinHash(num_perm=NUM_PERM, seed=SEED, scheme=SCHEME)  # permutations are built once, not per file


def _hash(shingle: bytes) -> int:
    return int.from_bytes(hashlib.blake2b(shingle, digest_size=4).digest(), "little")


def signature(text: str) -> np.ndarray:
    """The MinHash signature (uint64[NUM_PERM]) of a text's distinct word 5-grams."""
    words = _WORD.findall(text)
    shingles = {" ".join(words[i:i + SHINGLE]).encode() for i in range(max(len(words) - SHINGLE + 1, 1))} if words else set()
    m = MinHash(num_perm=NUM_PERM, seed=SEED, hashfunc=_hash, permutations=_TEMPLATE.permutations, scheme=SCHEME)
    if shingles:
        m.update_batch(list(shingles))
    return m.hashvalues.copy()


def union(signatures: Iterable[np.ndarray]) -> np.ndarray:
    """The signature of the union of the sets behind `signatures`."""
    out = np.full(NUM_PERM, np.iinfo(np.uint64).max, dtype=np.uint64)
    for s in signatures:
        np.minimum(out, s, out=out)
    return out


def jaccard(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean(a == b))


def near_duplicate_repositories(signatures: dict[str, np.ndarray], sizes: dict[str, int],
                                threshold: float = THRESHOLD) -> dict[str, str]:
    """{dropped repository: the repository kept in its place}, for every near-duplicate cluster."""
    lsh = MinHashLSH(threshold=threshold, num_perm=NUM_PERM)
    names = sorted(signatures)
    lean = {n: LeanMinHash(seed=SEED, hashvalues=signatures[n], scheme=SCHEME) for n in names}
    parent = {n: n for n in names}

    def find(n: str) -> str:
        while parent[n] != n:
            parent[n] = parent[parent[n]]
            n = parent[n]
        return n

    for n in names:
        for other in lsh.query(lean[n]):
            if jaccard(signatures[n], signatures[other]) >= threshold:
                parent[find(n)] = find(other)
        lsh.insert(n, lean[n])
    clusters: dict[str, list[str]] = {}
    for n in names:
        clusters.setdefault(find(n), []).append(n)
    dropped = {}
    for members in clusters.values():
        if len(members) > 1:
            keep = min(members, key=lambda n: (-sizes.get(n, 0), n))
            dropped.update({n: keep for n in members if n != keep})
    return dropped


def content_hash(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8", "surrogatepass")).hexdigest()
