"""`dscoder data build` and `dscoder data stats`: the corpus pipeline from the command line."""

from __future__ import annotations

import os
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console

from dscoder.data import dedup, ingest, pipeline

data_app = typer.Typer(help="Build and inspect repository-level training corpora.", no_args_is_help=True)
out_console = Console()
err = Console(stderr=True, soft_wrap=True)


@data_app.command("build")
def build_command(
    sources: List[str] = typer.Argument(..., help="Repositories: directories, git work trees or git URLs."),
    out: Path = typer.Option(..., "--out", "-o", help="Output directory: shards, manifest.json, and work/ while building."),
    tokenizer: Optional[str] = typer.Option(None, "--tokenizer", "-t", help="tokenizer.json, model directory, .gguf, "
                                            "preset or HF repo id (default: the embedded model's)."),
    split: bool = typer.Option(False, "--split", help="Each child directory of a source is its own repository "
                               "(a stdlib or site-packages tree)."),
    seq_len: int = typer.Option(4096, help="Tokens per packed training sequence."),
    shard_sequences: int = typer.Option(8192, help="Sequences per shard file."),
    fim_rate: float = typer.Option(0.5, help="Share of documents rewritten for fill-in-the-middle (0 turns FIM off)."),
    spm_rate: float = typer.Option(0.0, help="Share of FIM documents in SPM order instead of PSM."),
    val_fraction: float = typer.Option(0.01, help="Share of tokens held out for validation, as whole repositories."),
    seed: int = typer.Option(0, help="Seeds FIM and the validation split; equal seeds give identical shards."),
    max_file_bytes: int = typer.Option(ingest.MAX_FILE_BYTES, help="Larger files are skipped."),
    dedup_threshold: float = typer.Option(dedup.THRESHOLD, help="Jaccard similarity above which repositories are "
                                          "near-duplicates."),
    no_decontaminate: bool = typer.Option(False, "--no-decontaminate", help="Keep files sharing 10-grams with the "
                                          "evaluation benchmarks."),
    benchmark_data: Optional[Path] = typer.Option(None, help="Benchmark data directory for decontamination "
                                                  "(default: the eval harness's, $DSCODER_DATA or ../shared/data)."),
    no_pii: bool = typer.Option(False, "--no-pii", help="Do not redact emails, IP addresses and secrets."),
    workers: int = typer.Option(os.cpu_count() or 1, help="Worker processes (or Ray actors)."),
    part_bytes: int = typer.Option(4 << 20, help="Bytes of source per unit of parallel (and resumable) work."),
    engine: str = typer.Option("local", help="local (processes on this machine) or ray (Ray Data)."),
    ray_address: Optional[str] = typer.Option(None, help="Ray cluster to join (default: $RAY_ADDRESS, else a local "
                                              "instance). OUT must be on storage every node sees."),
    keep_work: bool = typer.Option(False, help="Keep OUT/work (the per-stage files) after a successful build."),
    restart: bool = typer.Option(False, "--restart", help="Throw away an unfinished or finished build in OUT and start over."),
) -> None:
    """Repositories in, packed FIM-ready token shards out. Run the same command again to resume."""
    from dscoder.cli.app import USER_ERRORS, _fail
    from dscoder.hub import resolve

    try:
        tokenizer_path = tokenizer if tokenizer and Path(tokenizer).is_file() else str(resolve(tokenizer))
        config = pipeline.BuildConfig(
            sources=list(sources), out=str(out), tokenizer=tokenizer_path, split=split, seq_len=seq_len,
            shard_sequences=shard_sequences, fim_rate=fim_rate, spm_rate=spm_rate, val_fraction=val_fraction, seed=seed,
            max_file_bytes=max_file_bytes, dedup_threshold=dedup_threshold, decontaminate=not no_decontaminate,
            benchmark_data=str(benchmark_data) if benchmark_data else None, redact_pii=not no_pii,
            part_bytes=max(1, part_bytes), workers=max(1, workers), engine=engine, ray_address=ray_address, keep_work=keep_work)
        manifest = pipeline.build(config, restart=restart)
    except USER_ERRORS as e:
        _fail(e)
    except KeyboardInterrupt:
        err.print(f"[yellow]interrupted[/]: finished parts are kept in {out}/work; run the same command to resume")
        raise typer.Exit(130)
    except BrokenProcessPool:
        err.print(f"[bold red]error:[/] a worker process died (killed, or out of memory: try fewer --workers or a "
                  f"smaller --part-bytes); finished parts are kept in {out}/work; run the same command to resume")
        raise typer.Exit(1)
    from dscoder.data.stats import plot, print_stats

    print_stats(manifest, out_console)
    png = plot(manifest, out / "stats.png")
    timing = manifest.get("timing", {})
    read = manifest["bytes"]["read"]
    seconds = timing.get("scan_seconds") or 0
    rate = f"; scan {read / 1e6 / seconds:.2f} MB/s" if seconds else ""
    err.print(f"wrote {out}/manifest.json and {png}{rate}")


@data_app.command("stats")
def stats_command(
    directory: Path = typer.Argument(..., help="A corpus built by `dscoder data build`."),
    png: Optional[Path] = typer.Option(None, help="Where to write the chart (default: DIRECTORY/stats.png)."),
) -> None:
    """Print a corpus's composition (splits, languages, drops by rule) and plot it as a PNG."""
    from dscoder.cli.app import USER_ERRORS, _fail
    from dscoder.data.stats import load_manifest, plot, print_stats

    try:
        manifest = load_manifest(directory)
        print_stats(manifest, out_console)
        err.print(f"wrote {plot(manifest, png or directory / 'stats.png')}")
    except USER_ERRORS as e:
        _fail(e)
