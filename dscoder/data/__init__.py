"""The repository-level code data pipeline: raw repositories in, packed FIM-ready token shards out.

DeepSeek-Coder's data departs from file-level corpora: a repository is the unit. Its files are
filtered, near-deduplicated at repository level and concatenated in dependency order, so the
model sees a file's imports before the file. What a repository is (its files read safely, their
languages, their import graph) lives in `dscoder.repo`, which completion shares; the stages
here, one module each, with the three from `dscoder.repo` they use:

    ingest    (repo) repositories (local trees, git clones) -> decoded source files
    langid    (repo) file name -> language (DeepSeek-Coder V1's languages and V2's 338)
    filters   the papers' heuristic rules (line lengths, alphabetic share, XML/HTML/JSON/YAML, generated)
    pii       emails, IP addresses and secrets -> placeholders
    decontam  files sharing a 10-gram with an evaluation benchmark are dropped
    dedup     exact (content hash) and near-duplicate repositories (MinHash-LSH)
    deps      (repo) in-repository import graph -> the order files are concatenated in
    fim       fill-in-the-middle rewriting of documents (PSM/SPM)
    pack      tokens -> fixed-length sequences in uint16/uint32 shards + manifest.json
    pipeline  the stages run in parallel, resumably, deterministically (local processes or Ray)
    stats     what a built corpus holds, printed and plotted

Language names are GitHub Linguist's ("Python", "C++", "C#", "JavaScript", "JSON", ...), the
names DeepSeek-Coder's language table uses.

`build(config)` runs a build described by a `BuildConfig` (both from `pipeline`, imported when
first asked for, so that using one stage does not load them all).
"""

__all__ = ["BuildConfig", "build"]


def __getattr__(name: str):
    if name in __all__:
        from dscoder.data import pipeline
        return getattr(pipeline, name)
    raise AttributeError(f"module 'dscoder.data' has no attribute {name!r}")
