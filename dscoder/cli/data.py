"""`dscoder data build` and `dscoder data stats`: the corpus pipeline from the command line.

The build's options are generated from `dscoder.data.pipeline.BuildConfig`, where each
setting's default and help live.
"""

from __future__ import annotations

import contextlib
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Optional

import typer

from dscoder import data
from dscoder.cli.common import err, out
from dscoder.cli.options import from_settings
from dscoder.data.pipeline import BuildConfig


@contextlib.contextmanager
def _resumable(directory: str):
    """A build stopped half way keeps its finished parts: say so, and how to resume, instead of a traceback."""
    try:
        yield
    except KeyboardInterrupt:
        err.print(f"[yellow]interrupted[/]: finished parts are kept in {directory}/work; run the same command to resume")
        raise typer.Exit(130) from None
    except BrokenProcessPool:
        err.print(f"[bold red]error:[/] a worker process died (killed, or out of memory: try fewer --workers or a "
                  f"smaller --part-bytes); finished parts are kept in {directory}/work; run the same command to resume")
        raise typer.Exit(1) from None


@from_settings(BuildConfig)
def build_command(
    cfg: BuildConfig,
    restart: bool = typer.Option(False, "--restart", help="Throw away an unfinished or finished build in OUT and "
                                                          "start over."),
) -> None:
    """Repositories in, packed FIM-ready token shards out. Run the same command again to resume."""
    from dscoder.data.stats import plot, print_stats

    with _resumable(cfg.out):
        manifest = data.build(cfg, restart=restart)
    print_stats(manifest, out)
    png = plot(manifest, Path(cfg.out) / "stats.png")
    seconds = manifest.get("timing", {}).get("scan_seconds") or 0
    rate = f"; scan {manifest['bytes']['read'] / 1e6 / seconds:.2f} MB/s" if seconds else ""
    err.print(f"wrote {cfg.out}/manifest.json and {png}{rate}")


def stats_command(
    directory: Path = typer.Argument(..., help="A corpus built by `dscoder data build`."),
    png: Optional[Path] = typer.Option(None, help="Where to write the chart (default: DIRECTORY/stats.png)."),
) -> None:
    """Print a corpus's composition (splits, languages, drops by rule) and plot it as a PNG."""
    from dscoder.data.stats import load_manifest, plot, print_stats

    manifest = load_manifest(directory)
    print_stats(manifest, out)
    err.print(f"wrote {plot(manifest, png or directory / 'stats.png')}")
