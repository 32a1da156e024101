"""Corpus tokenization, MB/s per core: the build's encoder before and after `dscoder.data.encode`.

The text is real code nobody here wrote: the Python standard library (`sysconfig`'s stdlib
directory, each top-level package one document of its files in sorted order, each top-level
module a document of its own, files over 1 MiB or with NUL bytes left out as the build does),
documents in a seeded shuffled order until `--megabytes`. Documents are FIM-rewritten as the
build does (rate 0.5, seed 0) when the tokenizer has FIM tokens, so both sides encode the same
prefix/middle/suffix pieces.

* **old**: the encoder as it was (kept here verbatim as the reference): the library's
  `encode_batch` over each document's segments, ids joined in Python lists.
* **new**: `dscoder.data.pack.DocumentEncoder`, which encodes through
  `dscoder.data.encode.TextEncoder`.

Both run in this one process on one thread (`TOKENIZERS_PARALLELISM=false`,
`RAYON_NUM_THREADS=1`, set before `tokenizers` is imported), alternating old, new, old,
new...; each run starts from a freshly built tokenizer, so no run inherits another's caches.
MB/s is source bytes (UTF-8) over wall seconds; MB per CPU-second (this process's) is beside
it, since the machine is shared. The table gives the median and the range, the ratio of the
medians, the load average before and after, and whether every document's ids are
byte-identical; it is appended to RESULTS.md.

    python benchmarks/tokenize_corpus.py     # DeepSeek-Coder's vocabulary (../shared), the embedded model's
    python benchmarks/tokenize_corpus.py --runs 7 --megabytes 8 --no-save
"""

from __future__ import annotations

import os

os.environ["TOKENIZERS_PARALLELISM"] = "false"  # one core: before tokenizers is imported
os.environ["RAYON_NUM_THREADS"] = "1"

import argparse  # noqa: E402
import platform  # noqa: E402
import random  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import sysconfig  # noqa: E402
import time  # noqa: E402
from datetime import date  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from dscoder.data import fim  # noqa: E402
from dscoder.data.fim import Segment  # noqa: E402
from dscoder.data.pack import DocumentEncoder, _plain  # noqa: E402
from dscoder.tokenizer.fim import FimUnsupportedError, fim_tokens  # noqa: E402
from dscoder.tokenizer.tokenizer import Tokenizer  # noqa: E402

RESULTS = Path(__file__).with_name("RESULTS.md")
DEEPSEEK_VOCAB = Path(__file__).resolve().parents[2] / "shared/data/tokenizers/ggml-vocab-deepseek-coder.gguf"


class OldDocumentEncoder:
    """`DocumentEncoder` before `dscoder.data.encode` (HEAD 1049680), verbatim but for its name:
    the reference both for speed and for the ids."""

    def __init__(self, tokenizer: Tokenizer, *, need_fim: bool) -> None:
        self.eos = tokenizer.eos_id
        self.dtype = np.dtype(np.uint16) if tokenizer.vocab_size <= 1 << 16 else np.dtype(np.uint32)
        self.fim_ids = fim.token_ids(tokenizer, fim_tokens(tokenizer, str(tokenizer.source))) if need_fim else None
        self._backend = _plain(tokenizer.backend)

    def encode(self, mode: str, parts: list[list[Segment]]) -> tuple[np.ndarray, dict[str, int]]:
        texts = [s.text for part in parts for s in part]
        encoded = iter(self._backend.encode_batch(texts, add_special_tokens=False)) if texts else iter(())
        per_language: dict[str, int] = {}
        token_parts = []
        for part in parts:
            ids: list[int] = []
            for segment in part:
                got = next(encoded).ids
                per_language[segment.language] = per_language.get(segment.language, 0) + len(got)
                ids.extend(got)
            token_parts.append(ids)
        pieces = fim.layout(mode, token_parts, self.fim_ids)
        flat = np.empty(sum(len(p) for p in pieces) + 1, dtype=self.dtype)
        at = 0
        for piece in pieces:
            flat[at:at + len(piece)] = piece
            at += len(piece)
        flat[at] = self.eos
        return flat, per_language


def documents(root: Path, megabytes: float) -> tuple[list[list[Segment]], int, int]:
    """(documents as segment lists, UTF-8 bytes, non-ASCII files) of the stdlib, up to `megabytes`."""
    docs, total, non_ascii = [], 0, 0
    entries = sorted(p for p in root.iterdir() if p.name not in ("site-packages", "__pycache__", "test"))
    random.Random(0).shuffle(entries)  # a mix of packages, not the first ones by name
    for entry in entries:
        files = sorted(f for f in entry.rglob("*") if f.is_file() and "__pycache__" not in f.parts) \
            if entry.is_dir() else [entry]
        segments = []
        for f in files:
            data = f.read_bytes()
            if not data or len(data) > 1 << 20 or b"\0" in data:
                continue
            text = data.decode("utf-8", "replace")
            segments.append(Segment(fim.file_block(str(f.relative_to(root)), text), f.suffix or "none"))
            total += len(segments[-1].text.encode())
            non_ascii += not text.isascii()
        if segments:
            docs.append(segments)
        if total >= megabytes * 1e6:
            break
    return docs, total, non_ascii


def encode_all(encoder, docs: list[tuple[str, list[list[Segment]]]]) -> list[np.ndarray]:
    return [encoder.encode(mode, parts)[0] for mode, parts in docs]


def compare(path: Path, docs: list[list[Segment]], size: int, runs: int) -> tuple[list[str], dict]:
    tokenizer = Tokenizer.load(path)
    try:
        fim_tokens(tokenizer)
        need_fim = True
    except FimUnsupportedError:
        need_fim = False
    rewritten = [fim.rewrite(segments, f"doc{i}", seed=0, rate=0.5 if need_fim else 0.0, spm_rate=0.0)
                 for i, segments in enumerate(docs)]
    makers = {"old": lambda: OldDocumentEncoder(tokenizer, need_fim=need_fim),
              "new": lambda: DocumentEncoder(tokenizer, need_fim=need_fim)}
    wall: dict[str, list[float]] = {"old": [], "new": []}
    cpu: dict[str, list[float]] = {"old": [], "new": []}
    outputs: dict[str, list[np.ndarray]] = {}
    load_before = os.getloadavg()
    for _ in range(runs):
        for side in ("old", "new"):
            encoder = makers[side]()  # a fresh tokenizer each run: no cache carried over
            w0, c0 = time.perf_counter(), time.process_time()
            out = encode_all(encoder, rewritten)
            wall[side].append(size / 1e6 / (time.perf_counter() - w0))
            cpu[side].append(size / 1e6 / (time.process_time() - c0))
            outputs.setdefault(side, out)
            print(f"  {path.name} {side}: {wall[side][-1]:.2f} MB/s", file=sys.stderr, flush=True)
    load_after = os.getloadavg()
    identical = all(a.dtype == b.dtype and a.tobytes() == b.tobytes() for a, b in zip(outputs["old"], outputs["new"])) \
        and len(outputs["old"]) == len(outputs["new"])
    tokens = sum(len(a) for a in outputs["new"])
    fast = makers["new"]().texts.fast
    ratio = statistics.median(wall["new"]) / statistics.median(wall["old"])
    load = f"{load_before[0]:.2f} → {load_after[0]:.2f}"
    rows = []
    for side in ("old", "new"):
        rows.append(f"| `{path.name}` | {side} | {runs} | {statistics.median(wall[side]):.2f} | "
                    f"{min(wall[side]):.2f}–{max(wall[side]):.2f} | {statistics.median(cpu[side]):.2f} | "
                    f"{'1.00×' if side == 'old' else f'{ratio:.2f}×'} | {load} | "
                    f"{'yes' if identical else 'NO'} |")
    modes = sorted({m for m, _ in rewritten})
    return rows, {"tokens": tokens, "fast": fast, "fim": need_fim, "modes": modes, "identical": identical,
                  "ratio": ratio}


def revision() -> str:
    """The commit measured (`+ changes` when the code measured, dscoder/data and dscoder/tokenizer, differs)."""
    root = Path(__file__).resolve().parents[1]
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True,
                              check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "dscoder/data", "dscoder/tokenizer"], cwd=root,
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "an unknown commit"
    return f"{head} + changes" if dirty else head


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5, help="Runs of each side (alternating).")
    parser.add_argument("--megabytes", type=float, default=4.0, help="Source text to encode per run.")
    parser.add_argument("--no-save", action="store_true", help="Print the table only.")
    args = parser.parse_args()

    from dscoder.hub import default_model_path

    root = Path(sysconfig.get_paths()["stdlib"])
    docs, size, non_ascii = documents(root, args.megabytes)
    tokenizers = [p for p in (DEEPSEEK_VOCAB, Path(default_model_path())) if p.exists()]
    lines = [f"### tokenize_corpus.py — {date.today()} — {platform.machine()}, {os.cpu_count()} cores, "
             f"Python {platform.python_version()}", "",
             f"dscoder at {revision()}. "
             f"{size / 1e6:.2f} MB of the stdlib ({root}) in {len(docs)} documents, "
             f"{sum(len(d) for d in docs)} files ({non_ascii} not ASCII); one process, one thread, "
             f"old and new alternating, {args.runs} runs each.", "",
             "| tokenizer | encoder | runs | MB/s per core, median | range | MB per CPU-s, median | "
             "new / old (medians) | load avg 1 min (before → after) | ids byte-identical |",
             "|---|---|---:|---:|---:|---:|---:|---|:-:|"]
    notes = []
    identical = True
    for path in tokenizers:
        rows, info = compare(path, docs, size, args.runs)
        lines += rows
        identical &= info["identical"]
        notes.append(f"`{path.name}`: {info['tokens']:,} tokens; FIM "
                     f"{'on, modes ' + '/'.join(info['modes']) if info['fim'] else 'off (no FIM tokens)'}; "
                     f"fast path {'taken' if info['fast'] else 'NOT taken'}.")
    lines += ["", *notes, "", "Command:", "", f"    python benchmarks/tokenize_corpus.py --runs {args.runs} "
              f"--megabytes {args.megabytes:g}", ""]
    text = "\n".join(lines)
    print(text)
    if not args.no_save:
        with open(RESULTS, "a") as f:
            f.write("\n" + text)
    return 0 if identical else 1


if __name__ == "__main__":
    sys.exit(main())
