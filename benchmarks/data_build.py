"""The corpus pipeline end to end on real code nobody here wrote: the Python stdlib and site-packages.

Two parts, one run, appended to RESULTS.md:

1. **Scaling** on the stdlib (each top-level package a repository): the same build with one
   local worker, two local workers, and Ray Data with two actors; wall time, MB/s and files/s
   of source read, and each run's ratio to the one-worker build. The shards of the three are
   compared byte for byte (they must be identical).
2. **The full corpus**: stdlib + this environment's site-packages (each installed package a
   repository), two local workers: throughput, files and repositories dropped per rule,
   near-duplicate clusters, PII redactions, and tokens per language.

The tokenizer is DeepSeek-Coder's own vocabulary from ../shared/data/tokenizers (32K BPE with
FIM tokens); without it, the embedded model's tokenizer with FIM off.

    python benchmarks/data_build.py                       # both parts, appends to RESULTS.md
    python benchmarks/data_build.py --skip-full --no-save # scaling only
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import site
import sys
import sysconfig
import tempfile
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).with_name("RESULTS.md")
DEEPSEEK_VOCAB = ROOT.parent / "shared" / "data" / "tokenizers" / "ggml-vocab-deepseek-coder.gguf"


def _build(sources: list[str], out: Path, tokenizer: str, fim_rate: float, **run) -> tuple[dict, float]:
    from dscoder.data import pipeline

    config = pipeline.BuildConfig(sources=sources, out=str(out), tokenizer=tokenizer, split=True, fim_rate=fim_rate,
                                  **run)
    start = time.perf_counter()
    manifest = pipeline.build(config, restart=True)
    return manifest, time.perf_counter() - start


def _shards(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(out.glob("*.bin"))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--skip-scaling", action="store_true")
    parser.add_argument("--skip-full", action="store_true")
    parser.add_argument("--no-save", action="store_true")
    parser.add_argument("--workdir", default=None, help="Where the corpora are written (default: a temp dir).")
    args = parser.parse_args()

    from dscoder.hub import default_model_path

    stdlib = sysconfig.get_paths()["stdlib"]
    site_packages = site.getsitepackages()[0]
    tokenizer, fim_rate = (str(DEEPSEEK_VOCAB), 0.5) if DEEPSEEK_VOCAB.exists() else (str(default_model_path()), 0.0)
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="dscoder-data-bench-"))
    lines = [f"### data_build.py — {date.today()} — {platform.machine()}, {os.cpu_count()} cores, "
             f"Python {platform.python_version()}", "",
             f"Tokenizer `{Path(tokenizer).name}`, FIM rate {fim_rate}, seq_len 4096, decontamination against the "
             f"eval harness's benchmarks, PII redaction on.", ""]

    if not args.skip_scaling:
        runs = [("local, 1 worker", dict(engine="local", workers=1)),
                ("local, 2 workers", dict(engine="local", workers=2)),
                ("ray data, 2 actors", dict(engine="ray", workers=2))]
        lines += [f"**Scaling** on the stdlib ({stdlib}, each child directory a repository):", "",
                  "| engine | wall s | scan s | tokens s | MB/s read | files/s | vs 1 worker | shards identical |",
                  "|---|---:|---:|---:|---:|---:|---:|:-:|"]
        base_seconds = reference = None
        for label, run in runs:
            try:
                manifest, seconds = _build([stdlib], workdir / "scaling", tokenizer, fim_rate, **run)
            except RuntimeError as e:  # Ray missing
                lines.append(f"| {label} | — | — | — | — | — | — | {e} |")
                continue
            shards = _shards(workdir / "scaling")
            reference = reference or shards
            base_seconds = base_seconds or seconds
            mb = manifest["bytes"]["read"] / 1e6
            timing = manifest["timing"]
            row = (f"| {label} | {seconds:.1f} | {timing['scan_seconds']:.1f} | {timing['encode_seconds']:.1f} | "
                   f"{mb / seconds:.2f} | {manifest['files']['listed'] / seconds:.0f} | "
                   f"{base_seconds / seconds:.2f}× | {'yes' if shards == reference else 'NO'} |")
            lines.append(row)
            print(row, flush=True)
        lines.append("")

    if not args.skip_full:
        manifest, seconds = _build([stdlib, site_packages], workdir / "full", tokenizer, fim_rate, engine="local",
                                   workers=os.cpu_count() or 1)
        mb = manifest["bytes"]["read"] / 1e6
        timing = manifest["timing"]
        repos, files = manifest["repositories"], manifest["files"]
        train, val = manifest["splits"]["train"], manifest["splits"]["validation"]
        lines += [f"**Full corpus**: stdlib + site-packages ({site_packages}), {os.cpu_count()} local workers.", "",
                  "| | value |", "|---|---:|",
                  f"| wall time | {seconds:.0f} s (scan {timing['scan_seconds']:.0f} s, tokens {timing['encode_seconds']:.0f} s) |",
                  f"| source read | {mb:.0f} MB in {files['listed']:,} files: {mb / seconds:.2f} MB/s, "
                  f"{files['listed'] / seconds:.0f} files/s |",
                  f"| repositories | {repos['listed']:,} listed, {repos['near_duplicates']:,} near-duplicates, "
                  f"{repos['kept']:,} kept |",
                  f"| files kept | {files['kept']:,} ({manifest['bytes']['kept'] / 1e6:.0f} MB) |",
                  f"| tokens | {train['tokens']:,} train + {val['tokens']:,} validation "
                  f"({train['tokens'] / max(manifest['bytes']['kept'], 1) * 1e6 / 1e6:.3f} per byte kept) |",
                  f"| FIM documents | {manifest['fim']} |",
                  f"| PII redacted | {manifest['pii_redacted']} |",
                  f"| decontamination hits | {len(manifest['decontamination']['hits'])} files |", "",
                  "| dropped by | files | MB |", "|---|---:|---:|"]
        for rule, n in sorted(manifest["dropped"].items(), key=lambda kv: -kv[1]):
            size = manifest["dropped_bytes"].get(rule)  # files skipped by path are never opened, so not sized
            lines.append(f"| {rule} | {n:,} | {'(not read)' if size is None else f'{size / 1e6:.1f}'} |")
        lines += ["", "| language | files | MB | tokens | share |", "|---|---:|---:|---:|---:|"]
        total = sum(v["tokens"] for v in manifest["languages"].values()) or 1
        for name, v in list(manifest["languages"].items())[:25]:
            lines.append(f"| {name} | {v['files']:,} | {v['bytes'] / 1e6:.1f} | {v['tokens']:,} | "
                         f"{100 * v['tokens'] / total:.2f}% |")
        hits = manifest["decontamination"]["hits"][:10]
        if hits:
            lines += ["", "Decontamination hits (first 10): " + "; ".join(
                f"`{h['repo']}/{h['path']}` ({h['problem']})" for h in hits)]
        lines.append("")
    lines += ["Command:", "", "    python benchmarks/data_build.py", ""]
    text = "\n".join(lines)
    print(text)
    if not args.no_save:
        with open(RESULTS, "a") as f:
            f.write("\n" + text)
    if not args.workdir:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
