"""What a built corpus holds: tables for the terminal and one PNG a person can look at.

Everything comes from `manifest.json`, which the build wrote from the same counts it acted on;
the shards are only checked to exist with the size the manifest says, so a truncated copy of a
corpus is caught here before a trainer trips over it.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from dscoder.errors import UserError


class CorpusError(UserError):
    """A corpus directory is missing its manifest or a shard, or a shard has the wrong size."""


def load_manifest(directory: Path) -> dict:
    path = directory / "manifest.json"
    if not path.exists():
        raise CorpusError(f"{directory} has no manifest.json; it is not a finished `dscoder data build` output")
    manifest = json.loads(path.read_text())
    itemsize = np.dtype(manifest["dtype"]).itemsize
    for split in manifest["splits"].values():
        for shard in split["shards"]:
            file = directory / shard["file"]
            if not file.exists():
                raise CorpusError(f"shard {file} listed in the manifest is missing")
            if file.stat().st_size != shard["tokens"] * itemsize:
                raise CorpusError(f"shard {file} holds {file.stat().st_size} bytes; the manifest says "
                                  f"{shard['tokens']} tokens of {manifest['dtype']} ({shard['tokens'] * itemsize} bytes)")
    return manifest


def summary_rows(manifest: dict) -> dict[str, list[tuple]]:
    total_tokens = sum(v["tokens"] for v in manifest["languages"].values()) or 1
    languages = [(name, v["files"], v["bytes"], v["tokens"], 100 * v["tokens"] / total_tokens)
                 for name, v in manifest["languages"].items()]
    dropped = [(rule, n, manifest["dropped_bytes"].get(rule, 0)) for rule, n in
               sorted(manifest["dropped"].items(), key=lambda kv: -kv[1])]
    splits = [(name, s["documents"], s["tokens"], s["sequences"], len(s["shards"]))
              for name, s in manifest["splits"].items()]
    return {"languages": languages, "dropped": dropped, "splits": splits}


def print_stats(manifest: dict, console) -> None:
    from rich.table import Table

    rows = summary_rows(manifest)
    files, repos = manifest["files"], manifest["repositories"]
    console.print(f"[bold]{manifest['format']}[/] {manifest['dtype']} x {manifest['seq_len']}; "
                  f"repositories {repos['kept']:,} kept of {repos['listed']:,} ({repos['near_duplicates']:,} near-duplicates); "
                  f"files {files['kept']:,} kept of {files['listed']:,}; FIM {manifest['fim']}")
    size = manifest.get("bytes", {})
    if "skipped" in size:  # manifests before the skipped count counted a skipped file's size as read
        console.print(f"bytes {size['read']:,} read from disk, {size['skipped']:,} listed but not read "
                      f"(too large, links, not regular files), {size['kept']:,} kept")
    table = Table(title="splits")
    for column in ("split", "documents", "tokens", "sequences", "shards"):
        table.add_column(column, justify="left" if column == "split" else "right")
    for row in rows["splits"]:
        table.add_row(row[0], *(f"{v:,}" for v in row[1:]))
    console.print(table)
    table = Table(title="languages")
    for column in ("language", "files", "bytes", "tokens", "% tokens"):
        table.add_column(column, justify="left" if column == "language" else "right")
    for name, n_files, n_bytes, tokens, share in rows["languages"]:
        table.add_row(name, f"{n_files:,}", f"{n_bytes:,}", f"{tokens:,}", f"{share:.2f}")
    console.print(table)
    table = Table(title="dropped (stage.rule)")
    for column in ("rule", "files", "bytes"):
        table.add_column(column, justify="left" if column == "rule" else "right")
    for rule, n, n_bytes in rows["dropped"]:
        table.add_row(rule, f"{n:,}", f"{n_bytes:,}")
    console.print(table)
    if manifest["pii_redacted"]:
        console.print("PII redacted: " + ", ".join(f"{k} {v:,}" for k, v in sorted(manifest["pii_redacted"].items())))


def plot(manifest: dict, path: Path, top: int = 20) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = summary_rows(manifest)
    languages = rows["languages"][:top][::-1]
    dropped = rows["dropped"][:top][::-1]
    fig, (left, right) = plt.subplots(1, 2, figsize=(14, max(4, 0.32 * max(len(languages), len(dropped)) + 1.5)))
    left.barh([r[0] for r in languages], [r[3] for r in languages], color="#3b6ea8")
    left.set_title(f"tokens per language (top {len(languages)})")
    left.set_xlabel("tokens")
    left.set_xscale("log" if languages and languages[-1][3] > 100 * max(languages[0][3], 1) else "linear")
    for y, r in enumerate(languages):
        left.text(r[3], y, f" {r[4]:.1f}%", va="center", fontsize=8)
    right.barh([r[0] for r in dropped], [r[1] for r in dropped], color="#b5533c")
    right.set_title("files dropped, by stage.rule")
    right.set_xlabel("files")
    right.set_xscale("log" if dropped and max(r[1] for r in dropped) > 100 * max(min(r[1] for r in dropped), 1) else "linear")
    splits = manifest["splits"]
    fig.suptitle(f"{splits['train']['tokens']:,} train + {splits['validation']['tokens']:,} validation tokens; "
                 f"{manifest['repositories']['kept']:,} repositories, {manifest['files']['kept']:,} files")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
