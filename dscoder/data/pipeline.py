"""`dscoder data build`: the stages run over many repositories, in parallel, resumably, reproducibly.

Four steps, each leaving files under `OUT/work/` that the next reads:

1. **plan** (main process): the repositories and their files, listed in a fixed sorted order and
   cut into parts of about `part_bytes`. Paths through a symbolic link, files that are not
   regular and files over `max_file_bytes` are refused here already (`ingest.Tree.check`), so
   parts hold only what will be read. Written once; a resumed build reuses it, so parts mean
   the same files whatever happened in between.
2. **scan** (parallel, per part): read (inside the repository's root only, checked again as
   each file is opened: the tree may have changed since the plan), language id, filters,
   decontamination, PII redaction, content hash and MinHash signature of each file. Kept text goes to `scan/part-N.jsonl`, its
   index and counts to `scan/part-N.json` (written last, atomically: a part is done exactly
   when that file exists).
3. **dedup** (main process, from the indexes only): near-duplicate repositories by MinHash-LSH,
   then exact duplicate files; cheap, so recomputed on every run.
4. **encode** (parallel, per part of repositories): each repository's files in dependency
   order, joined into one document, FIM-rewritten, tokenized (`encode.TextEncoder`: the
   tokenizers library's ids, split and deduplicated by word first): `tokens/part-N.bin` + `.json`.

Then **pack** (main process) holds out whole repositories (about `val_fraction` of the tokens,
picked by a seeded hash of their names) as validation, cuts the streams into `seq_len` rows
and writes the shards and `manifest.json`.

An interrupted build (Ctrl+C, a killed worker, a lost machine) is resumed by running the same
command again: finished parts are kept, unfinished ones redone from scratch, so no document is
duplicated or lost. Every random choice is seeded by the build seed and a document's name, so
the shards are byte-identical for any number of workers and either engine.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import shutil
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dscoder import files
from dscoder.data import dedup, engines, filters, fim, pii, resample
from dscoder.repo import deps, ingest, langid
from dscoder.data.decontam import Decontaminator
from dscoder.data.fim import Segment
from dscoder.data.pack import DocumentEncoder, ShardWriter, _atomic_write, token_dtype, tokenizer_digest
from dscoder.errors import UserError
from dscoder.hub import tokenizer_source
from dscoder.settings import MISSING, identity, setting

FORMAT = "dscoder-corpus/1"


class BuildError(UserError):
    """A build cannot start or resume as asked (settings changed, no tokenizer, nothing to read)."""


@dataclass
class BuildConfig:
    """A build's settings: the `dscoder data build` options are generated from these fields.

    All but the `run=True` ones determine the output: they are written to `OUT/manifest.json`
    (and `OUT/work/settings.json` while building), and a resumed build must match them.
    """

    sources: list[str] = setting(MISSING, "Repositories: directories, git work trees or git URLs.", argument=True)
    out: str = setting(MISSING, "Output directory: shards, manifest.json, and work/ while building.", "--out", "-o")
    tokenizer: str | None = setting(None, "tokenizer.json, model directory, .gguf, preset or HF repo id "
                                          "(default: the embedded model's).", "--tokenizer", "-t")
    split: bool = setting(False, "Each child directory of a source is its own repository "
                                 "(a stdlib or site-packages tree).", "--split")
    seq_len: int = setting(4096, "Tokens per packed training sequence.")
    shard_sequences: int = setting(8192, "Sequences per shard file.")  # 4096 x 8192 = 32M tokens, 64 MiB in uint16
    # DeepSeek-Coder V1: FIM on 50% of documents, all in PSM form (the paper's ablation preferred PSM).
    fim_rate: float = setting(0.5, "Share of documents rewritten for fill-in-the-middle (0 turns FIM off).")
    spm_rate: float = setting(0.0, "Share of FIM documents in SPM order instead of PSM.")
    val_fraction: float = setting(0.01, "Share of tokens held out for validation, as whole repositories.")
    seed: int = setting(0, "Seeds FIM and the validation split; equal seeds give identical shards.")
    max_file_bytes: int = setting(ingest.MAX_FILE_BYTES, "Larger files are skipped.")
    dedup_threshold: float = setting(dedup.THRESHOLD, "Jaccard similarity above which repositories are "
                                                      "near-duplicates.")
    decontaminate: bool = setting(True, "Keep files sharing 10-grams with the evaluation benchmarks.",
                                  "--no-decontaminate")
    benchmark_data: str | None = setting(None, "Benchmark data directory for decontamination "
                                               "(default: the eval harness's, $DSCODER_DATA or ../shared/data).")
    redact_pii: bool = setting(True, "Do not redact emails, IP addresses and secrets.", "--no-pii")
    language_weights: str | None = setting(None, "Up/down-sample training documents by their main language: "
                                                 "LANGUAGE=FACTOR,... (Python=2,HTML=0.5); 2.5 writes a document 2 or "
                                                 "3 times, 0.3 keeps it with probability 0.3; seeded. Validation is "
                                                 "never resampled.")
    # How the work runs, not what it produces: free to change when resuming.
    workers: int = setting(help="Worker processes (or Ray actors).", run=True,
                           default_factory=lambda: os.cpu_count() or 1)
    part_bytes: int = setting(4 << 20, "Bytes of source per unit of parallel (and resumable) work.")
    engine: str = setting("local", "local (processes on this machine) or ray (Ray Data).", run=True)
    ray_address: str | None = setting(None, "Ray cluster to join (default: $RAY_ADDRESS, else a local instance). "
                                            "OUT must be on storage every node sees.", run=True)
    keep_work: bool = setting(False, "Keep OUT/work (the per-stage files) after a successful build.", run=True)
    library_encode: bool = setting(False, "Tokenize every document with the tokenizers library's own encode "
                                          "(4-7x slower for DeepSeek's and GPT-2-style tokenizers; the same "
                                          "ids: a check on the default path).", "--library-encode", run=True)

    def settings(self) -> dict:
        """What determines the output; a resumed build must match it exactly."""
        return identity(self)


# ---- scan -------------------------------------------------------------------------------------

def _scan_setup(arg: dict) -> dict:
    return arg


def scan_part(state: dict, task: dict) -> dict:
    """Read, identify, filter, decontaminate and redact one part's files; write what is kept."""
    work = Path(state["work"])
    decontaminator: Decontaminator | None = state["decontaminator"]
    dropped: Counter = Counter()
    dropped_bytes: Counter = Counter()
    notes: Counter = Counter()
    pii_counts: Counter = Counter()
    index, signatures, contaminated, drops = [], [], [], []
    bytes_in = bytes_skipped = 0
    path = work / "scan" / f"part-{task['part']:05d}.jsonl"
    with files.replacing(path) as tmp, open(tmp, "wb") as out, ingest.Trees() as trees:
        for repo, root, rel, _ in task["files"]:
            got = trees.read(root, rel, state["max_file_bytes"])
            text, why, size = got.text, got.why, got.size
            bytes_in += got.read
            bytes_skipped += size if got.read == 0 else 0
            if text is None:
                dropped[f"ingest.{why}"] += 1
                dropped_bytes[f"ingest.{why}"] += size
                drops.append((repo, rel, f"ingest.{why}"))
                continue
            if why:
                notes[why] += 1
            language = langid.identify(rel)
            rule = "langid.unknown_language" if language is None else None
            if rule is None:
                failed = filters.check(text, language)
                rule = f"filter.{failed}" if failed else None
            if rule is None and decontaminator is not None:
                hit = decontaminator.match(text)
                if hit:
                    rule = "decontam.benchmark_ngram"
                    contaminated.append({"repo": repo, "path": ingest.printable_path(rel), "problem": hit})
            if rule:
                dropped[rule] += 1
                dropped_bytes[rule] += size
                drops.append((repo, rel, rule))
                continue
            if state["redact_pii"]:
                text, found = pii.redact(text, ingest.printable_path(rel))
                pii_counts.update(found)
            data = json.dumps({"text": text}, ensure_ascii=False).encode() + b"\n"
            index.append({"repo": repo, "path": rel, "language": language, "bytes": len(text.encode()),
                          "sha1": dedup.content_hash(text), "offset": out.tell(), "length": len(data)})
            out.write(data)
            signatures.append(dedup.signature(text))
    with files.replacing(work / "scan" / f"part-{task['part']:05d}.sig.npy") as tmp, open(tmp, "wb") as sig:
        np.save(sig, np.stack(signatures) if signatures else np.zeros((0, dedup.NUM_PERM), np.uint64))
    record = {"part": task["part"], "files_in": len(task["files"]), "bytes_in": bytes_in,
              "bytes_skipped": bytes_skipped, "kept": len(index),
              "dropped": dict(dropped), "dropped_bytes": dict(dropped_bytes), "notes": dict(notes),
              "pii": dict(pii_counts), "contaminated": contaminated, "index": index, "drops": drops}
    _atomic_write(_marker(work / "scan", task["part"]), json.dumps(record).encode())
    return task["part"]


# ---- encode -----------------------------------------------------------------------------------

def _encode_setup(arg: dict) -> dict:
    from dscoder.tokenizer.tokenizer import Tokenizer

    tokenizer = Tokenizer.load(arg["tokenizer"])
    return {**arg, "encoder": DocumentEncoder(tokenizer, need_fim=arg["fim_rate"] > 0,
                                              library=arg["library_encode"])}


def _read_files(work: Path, refs: list[dict]) -> list[str]:
    texts = []
    handles: dict[int, object] = {}
    try:
        for ref in refs:
            f = handles.get(ref["part"])
            if f is None:
                f = handles[ref["part"]] = open(work / "scan" / f"part-{ref['part']:05d}.jsonl", "rb")
            f.seek(ref["offset"])
            texts.append(json.loads(f.read(ref["length"]))["text"])
    finally:
        for f in handles.values():
            f.close()
    return texts


def encode_part(state: dict, task: dict) -> dict:
    """One part's repositories as documents: dependency order, path comments, FIM, tokens."""
    work = Path(state["work"])
    encoder: DocumentEncoder = state["encoder"]
    documents, chunks = [], []
    for repo in task["repos"]:
        texts = _read_files(work, repo["files"])
        files = [(ref["path"], ref["language"], text) for ref, text in zip(repo["files"], texts)]
        order = deps.order(files)
        segments = [Segment(fim.file_block(files[i][0], files[i][2]), files[i][1]) for i in order]
        mode, parts = fim.rewrite(segments, repo["name"], seed=state["seed"], rate=state["fim_rate"],
                                  spm_rate=state["spm_rate"])
        ids, per_language = encoder.encode(mode, parts)
        chunks.append(ids)
        documents.append({"repo": repo["name"], "tokens": int(len(ids)), "fim": mode, "languages": per_language,
                          "files": len(files)})
    stream = np.concatenate(chunks) if chunks else np.empty(0, encoder.dtype)
    _atomic_write(work / "tokens" / f"part-{task['part']:05d}.bin", stream)
    record = {"part": task["part"], "documents": documents}
    _atomic_write(_marker(work / "tokens", task["part"]), json.dumps(record).encode())
    return task["part"]


# ---- the build --------------------------------------------------------------------------------

def _parts_by_size(items: list, size_of, limit: int) -> list[list]:
    parts, current, held = [], [], 0
    for item in items:
        current.append(item)
        held += size_of(item)
        if held >= limit:
            parts.append(current)
            current, held = [], 0
    if current:
        parts.append(current)
    return parts


def _plan(config: BuildConfig, work: Path) -> dict:
    path = work / "plan.json"
    if path.exists():
        return json.loads(path.read_text())
    repos = ingest.discover(config.sources, split=config.split, clone_dir=work / "clones")
    if not repos:
        raise BuildError(f"no repositories found in {', '.join(config.sources)}")
    files, skipped, skipped_bytes, skipped_files = [], Counter(), Counter(), []

    def skip(repo: ingest.Repository, rel: str, why: str, size: int = 0) -> None:
        skipped[f"ingest.{why}"] += 1
        if size:
            skipped_bytes[f"ingest.{why}"] += size
        skipped_files.append((repo.name, rel, f"ingest.{why}"))

    with ingest.Trees() as trees:
        for repo in repos:
            for rel, why in repo.skipped:
                skip(repo, rel, why)
            for rel in repo.files:
                why = ingest.skipped_path(rel)
                if why:
                    skip(repo, rel, why)
                    continue
                # Links, files outside the root and files over the limit are refused here, so the
                # scan's parts (and its bytes-per-second) hold only what will be read; the scan
                # checks again as it reads, since the tree may change in between.
                size, why = trees.check(repo.root, rel, config.max_file_bytes)
                if why:
                    skip(repo, rel, why, size)
                    continue
                files.append((repo.name, repo.root, rel, size))
    parts = _parts_by_size(files, lambda f: f[3], config.part_bytes)
    plan = {"repositories": [r.name for r in repos], "skipped": dict(skipped), "skipped_bytes": dict(skipped_bytes),
            "skipped_files": skipped_files,
            "files": len(files),
            "parts": parts}
    _atomic_write(path, json.dumps(plan).encode())
    return plan


def _changed_settings(before: dict, now: dict) -> list[str]:
    """The settings that differ, a setting added since `before` was written counting as unchanged
    when it has its default (a corpus built before `language_weights` existed was not resampled)."""
    defaults = {f.name: f.default for f in dataclasses.fields(BuildConfig)}
    return sorted(k for k in set(before) | set(now) if before.get(k, defaults.get(k)) != now.get(k))


def _check_settings(config: BuildConfig, out: Path, work: Path, restart: bool) -> None:
    settings = config.settings()
    recorded = work / "settings.json"
    if restart:
        shutil.rmtree(work, ignore_errors=True)
        (out / "manifest.json").unlink(missing_ok=True)
    if recorded.exists():
        changed = _changed_settings(json.loads(recorded.read_text()), settings)
        if changed:
            raise BuildError(f"{out} holds an unfinished build with other settings ({', '.join(changed)}); "
                             f"run it again with the same settings to resume, or pass --restart to start over")
    for sub in ("scan", "tokens"):
        (work / sub).mkdir(parents=True, exist_ok=True)
    _atomic_write(recorded, json.dumps(settings, indent=1).encode())


def _marker(directory: Path, part: int) -> Path:
    """A part's record, written last and atomically: the part is finished exactly when it exists."""
    return directory / f"part-{part:05d}.json"


def _run_stage(config: BuildConfig, label: str, work_fn, setup, arg, tasks: list, weight, progress) -> list[dict]:
    """Run the tasks not yet done, largest first; return every task's record, in part order.

    Largest first because a part is as big as its biggest repository: started last, one huge
    repository would run alone while the other workers idle.
    """
    directory = Path(arg["work"]) / label
    todo = sorted((t for t in tasks if not _marker(directory, t["part"]).exists()), key=lambda t: -weight(t))
    total = sum(weight(t) for t in tasks)
    bar = progress.add_task(f"{label:<6} ({config.engine}, {config.workers} workers)", total=total or 1,
                            completed=total - sum(weight(t) for t in todo))
    by_part = {t["part"]: t for t in todo}
    for part in engines.run(config.engine, work_fn, setup, arg, todo, config.workers, config.ray_address):
        progress.advance(bar, weight(by_part[part]))
    return [json.loads(_marker(directory, t["part"]).read_text()) for t in tasks]


def _dedup(scans: list[dict], work: Path, threshold: float) -> tuple[list[dict], dict]:
    """The kept repositories with their kept files (build order), and what dedup dropped."""
    files_by_repo: dict[str, list[dict]] = {}
    sigs: dict[str, list[np.ndarray]] = {}
    for scan in scans:
        matrix = np.load(work / "scan" / f"part-{scan['part']:05d}.sig.npy")
        for row, entry in zip(matrix, scan["index"]):
            files_by_repo.setdefault(entry["repo"], []).append({**entry, "part": scan["part"]})
            sigs.setdefault(entry["repo"], []).append(row)
    signatures = {name: dedup.union(rows) for name, rows in sigs.items()}
    sizes = {name: sum(f["bytes"] for f in files) for name, files in files_by_repo.items()}
    near = dedup.near_duplicate_repositories(signatures, sizes, threshold)
    seen: set[str] = set()
    kept, exact, exact_bytes, drops = [], 0, 0, []
    for name, files in files_by_repo.items():
        if name in near:
            drops.extend((name, f["path"], "dedup.near_duplicate_repository") for f in files)
            continue
        unique = []
        for f in files:
            if f["sha1"] in seen:
                exact += 1
                exact_bytes += f["bytes"]
                drops.append((name, f["path"], "dedup.exact_duplicate"))
                continue
            seen.add(f["sha1"])
            unique.append(f)
        if unique:
            kept.append({"name": name, "files": unique, "bytes": sum(f["bytes"] for f in unique)})
    report = {
        "near_duplicate_repositories": {k: near[k] for k in sorted(near)},
        "drops": drops,
        "dropped": {"dedup.near_duplicate_repository": sum(len(files_by_repo[n]) for n in near),
                    "dedup.exact_duplicate": exact},
        "dropped_bytes": {"dedup.near_duplicate_repository": sum(sizes[n] for n in near),
                          "dedup.exact_duplicate": exact_bytes},
    }
    return kept, report


def _validation(documents: list[tuple[str, int]], seed: int, fraction: float) -> set[str]:
    """Held-out repositories: whole ones, about `fraction` of the tokens, chosen by a seeded hash.

    Repositories are taken in hash order; one that would overshoot the target by half is
    passed over, so a single huge repository cannot swallow the split. At least one is held
    out whenever there are two or more and `fraction` > 0.
    """
    if fraction <= 0 or len(documents) < 2:
        return set()
    target = fraction * sum(n for _, n in documents)
    ranked = sorted(documents, key=lambda d: hashlib.sha1(f"{seed}/{d[0]}".encode()).hexdigest())
    held, total = set(), 0
    for name, n in ranked:
        if total >= target:
            break
        if total + n <= 1.5 * target:
            held.add(name)
            total += n
    return held or {min(ranked, key=lambda d: d[1])[0]}


def build(config: BuildConfig, *, restart: bool = False, progress=None) -> dict:
    """Run (or resume) a build; returns the manifest.

    The tokenizer argument is resolved first (a file as is, else the model `dscoder.hub.resolve`
    finds, the embedded one for None), so the settings written hold where it was read from.
    `restart` throws away an unfinished or finished build in `config.out` first.
    """
    from rich.progress import (BarColumn, DownloadColumn, Progress, TextColumn, TimeElapsedColumn,
                               TimeRemainingColumn, TransferSpeedColumn)

    from dscoder.tokenizer.tokenizer import Tokenizer

    config = dataclasses.replace(config, tokenizer=tokenizer_source(config.tokenizer),
                                 workers=max(1, config.workers), part_bytes=max(1, config.part_bytes))
    out = Path(config.out)
    work = out / "work"
    manifest_path = out / "manifest.json"
    if manifest_path.exists() and not restart:
        manifest = json.loads(manifest_path.read_text())
        if not _changed_settings(manifest.get("settings") or {}, config.settings()):
            return manifest
        raise BuildError(f"{out} already holds a corpus built with other settings; pass --restart to replace it")
    if not 0 <= config.fim_rate <= 1 or not 0 <= config.spm_rate <= 1 or not 0 <= config.val_fraction < 1:
        raise BuildError("--fim-rate and --spm-rate must lie in [0, 1], --val-fraction in [0, 1)")
    if config.engine not in engines.ENGINES:
        raise BuildError(f"--engine must be one of {', '.join(engines.ENGINES)}, got {config.engine!r}")
    if config.seq_len < 2:
        raise BuildError(f"--seq-len must be at least 2, got {config.seq_len}")
    resample.parse_language_weights(config.language_weights)  # a bad spec fails now, not after the scan
    tokenizer = Tokenizer.load(config.tokenizer)
    DocumentEncoder(tokenizer, need_fim=config.fim_rate > 0)  # fails now, not after the scan
    out.mkdir(parents=True, exist_ok=True)
    _check_settings(config, out, work, restart)
    started = time.perf_counter()

    decontaminator = None
    if config.decontaminate:
        data = Path(config.benchmark_data) if config.benchmark_data else None
        decontaminator = Decontaminator.from_benchmarks(data)
    plan = _plan(config, work)

    own = progress is None
    progress = progress or Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                                    TransferSpeedColumn(), TimeElapsedColumn(), TimeRemainingColumn())
    scan_tasks = [{"part": i, "files": part} for i, part in enumerate(plan["parts"])]
    scan_arg = {"work": str(work), "decontaminator": decontaminator, "redact_pii": config.redact_pii,
                "max_file_bytes": config.max_file_bytes}
    with progress if own else contextlib.nullcontext():
        t0 = time.perf_counter()
        scans = _run_stage(config, "scan", scan_part, _scan_setup, scan_arg, scan_tasks,
                           lambda t: sum(f[3] for f in t["files"]), progress)
        scan_seconds = time.perf_counter() - t0
        kept, dedup_report = _dedup(scans, work, config.dedup_threshold)
        encode_tasks = [{"part": i, "bytes": sum(r["bytes"] for r in part), "repos": [{"name": r["name"], "files": [
            {k: f[k] for k in ("part", "offset", "length", "path", "language")} for f in r["files"]]} for r in part]}
            for i, part in enumerate(_parts_by_size(kept, lambda r: r["bytes"], config.part_bytes))]
        encode_arg = {"work": str(work), "tokenizer": config.tokenizer, "seed": config.seed,
                      "fim_rate": config.fim_rate, "spm_rate": config.spm_rate,
                      "library_encode": config.library_encode}
        t0 = time.perf_counter()
        encoded = _run_stage(config, "tokens", encode_part, _encode_setup, encode_arg, encode_tasks,
                             lambda t: t["bytes"], progress)
        encode_seconds = time.perf_counter() - t0

    manifest = _pack(config, out, work, tokenizer, plan, scans, kept, dedup_report, encoded, decontaminator)
    manifest["timing"] = {"scan_seconds": round(scan_seconds, 2), "encode_seconds": round(encode_seconds, 2),
                          "total_seconds": round(time.perf_counter() - started, 2)}
    _atomic_write(manifest_path, json.dumps(manifest, indent=1).encode())
    if not config.keep_work:
        shutil.rmtree(work, ignore_errors=True)
    return manifest


def _pack(config: BuildConfig, out: Path, work: Path, tokenizer, plan: dict, scans: list[dict], kept: list[dict],
          dedup_report: dict, encoded: list[dict], decontaminator: Decontaminator | None) -> dict:
    dtype = token_dtype(tokenizer.vocab_size)
    documents = [(d["repo"], d["tokens"]) for part in encoded for d in part["documents"]]
    held = _validation(documents, config.seed, config.val_fraction)
    listed = plan["files"] + sum(plan["skipped"].values())
    for stale in list(out.glob("train-*.bin")) + list(out.glob("validation-*.bin")):
        stale.unlink()
    writers = {split: ShardWriter(out, split, seq_len=config.seq_len, shard_sequences=config.shard_sequences,
                                  dtype=dtype, eos=tokenizer.eos_id) for split in ("train", "validation")}
    languages: dict[str, dict[str, int]] = defaultdict(lambda: {"files": 0, "bytes": 0, "tokens": 0})
    fim_modes: Counter = Counter()
    factors = resample.parse_language_weights(config.language_weights)
    resampled: dict[str, dict[str, int]] = defaultdict(lambda: {"documents": 0, "written": 0})
    for part in encoded:
        stream = np.fromfile(work / "tokens" / f"part-{part['part']:05d}.bin", dtype=dtype)
        at = 0
        for doc in part["documents"]:
            ids = stream[at:at + doc["tokens"]]
            if doc["repo"] in held:
                writers["validation"].add(ids)
            else:
                written = 1
                if factors:
                    main = resample.main_language(doc["languages"])
                    written = resample.copies(doc["repo"], main, factors, config.seed)
                    resampled[main or "unknown"]["documents"] += 1
                    resampled[main or "unknown"]["written"] += written
                for _ in range(written):
                    writers["train"].add(ids)
            at += doc["tokens"]
            fim_modes[doc["fim"]] += 1
            for language, n in doc["languages"].items():
                languages[language]["tokens"] += n
    for repo in kept:
        for f in repo["files"]:
            languages[f["language"]]["files"] += 1
            languages[f["language"]]["bytes"] += f["bytes"]
    dropped: Counter = Counter(plan["skipped"])
    dropped_bytes: Counter = Counter(plan.get("skipped_bytes", {}))
    notes: Counter = Counter()
    pii_counts: Counter = Counter()
    contaminated = []
    for scan in scans:
        dropped.update(scan["dropped"])
        dropped_bytes.update(scan["dropped_bytes"])
        notes.update(scan["notes"])
        pii_counts.update(scan["pii"])
        contaminated.extend(scan["contaminated"])
    dropped.update(dedup_report["dropped"])
    dropped_bytes.update(dedup_report["dropped_bytes"])
    drops = [*plan["skipped_files"], *(d for scan in scans for d in scan["drops"]), *dedup_report["drops"]]
    _atomic_write(out / "dropped.jsonl", "".join(
        json.dumps({"repository": r, "path": ingest.printable_path(p), "rule": rule}) + "\n"
        for r, p, rule in drops).encode())
    if not documents:
        if not listed:
            raise BuildError(f"nothing to pack: no files found in {', '.join(config.sources)}")
        top = ", ".join(f"{k} {v}" for k, v in dropped.most_common(4) if v)
        raise BuildError(f"nothing to pack: all {listed} files of {', '.join(config.sources)} were dropped ({top}); "
                         f"{out / 'dropped.jsonl'} names the rule that dropped each")
    splits = {split: w.close() for split, w in writers.items()}
    return {
        "format": FORMAT,
        "dtype": dtype.name,
        "seq_len": config.seq_len,
        "tokenizer": {"source": str(tokenizer.source), "sha256": tokenizer_digest(tokenizer),
                      "vocab_size": tokenizer.vocab_size, "eos_id": tokenizer.eos_id},
        "settings": config.settings(),
        "splits": splits,
        "validation_repositories": sorted(held),
        "repositories": {"listed": len(plan["repositories"]), "near_duplicates": len(dedup_report["near_duplicate_repositories"]),
                         "kept": len(documents)},
        "files": {"listed": listed, "kept": sum(len(r["files"]) for r in kept)},
        # read: bytes really read from disk (what a scan rate is made of); skipped: the listed size
        # of files never read (too large, not a regular file), so a 2 GB sparse file counts here only.
        "bytes": {"read": sum(s["bytes_in"] for s in scans),
                  "skipped": sum(plan.get("skipped_bytes", {}).values()) + sum(s.get("bytes_skipped", 0) for s in scans),
                  "kept": sum(r["bytes"] for r in kept)},
        "dropped": dict(sorted(dropped.items())),
        "dropped_bytes": dict(sorted(dropped_bytes.items())),
        "notes": dict(notes),
        "pii_redacted": dict(pii_counts),
        "decontamination": {"benchmarks": decontaminator.sources if decontaminator else {},
                            "skipped": decontaminator.skipped if decontaminator else {},
                            "hits": contaminated},
        "near_duplicate_repositories": dedup_report["near_duplicate_repositories"],
        "fim": dict(fim_modes),
        "resampling": {"factors": factors, "by_main_language": dict(sorted(resampled.items()))} if factors else {},
        "languages": dict(sorted(languages.items(), key=lambda kv: -kv[1]["tokens"])),
    }
