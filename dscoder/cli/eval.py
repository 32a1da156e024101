"""`dscoder eval` and `dscoder toolchains`: the harness from the command line."""

from __future__ import annotations

import sys
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from dscoder import eval as evaluation
from dscoder.cli.options import from_settings
from dscoder.eval import report
from dscoder.execute import sandbox
from dscoder.execute import toolchains as languages

err = Console(stderr=True, soft_wrap=True)
out = Console(soft_wrap=True)


@from_settings(evaluation.EvalConfig)
def eval_command(cfg: evaluation.EvalConfig) -> None:
    """Run a benchmark with DeepSeek-Coder's protocol and judge every sample in the sandbox."""
    summary = evaluation.run(cfg, on_skip=lambda name, why: err.print(f"[yellow]skipping {name}:[/] {why}"))
    _print(summary.numbers, summary.out)
    fresh, wall = summary.new_samples, summary.wall_seconds
    err.print(f"[dim]{fresh} samples in {wall:.1f} s wall ({fresh / max(wall, 1e-9):.1f}/s, generation and sandboxed "
              f"execution overlapped; resumed samples take no time)[/]")


def _print(summary: dict, target: Path) -> None:
    ks = [k for k in summary if k.startswith("pass@")]
    table = Table(title=escape(report.title(summary["config"])))
    for column in ["group", "problems", *ks, "passed", "failed", "timeout", "error"]:
        table.add_column(column, justify="left" if column == "group" else "right")
    for group, block in summary["groups"].items():
        table.add_row(group, str(block["problems"]), *(f"{100 * block[k]:.2f}%" for k in ks),
                      *(str(block["statuses"][s]) for s in ("passed", "failed", "timeout", "error")))
    for group, why in summary["skipped"].items():
        table.add_row(group, "skipped", why)
    out.print(table)
    out.print(" ".join(f"{k} = {100 * summary[k]:.2f}%" for k in ks) if ks else "no samples")
    err.print(f"[dim]results in {target}/ (samples.jsonl, summary.json, report.md, chart.png)[/]")


def toolchains_command() -> None:
    """Which benchmark languages can run here, and how strongly the sandbox isolates them."""
    iso = sandbox.isolation()
    table = Table(title="benchmark languages")
    table.add_column("language")
    table.add_column("status")
    for name, why in languages.available().items():
        table.add_row(name, "[green]ready[/]" if why is None else f"[yellow]missing:[/] {why}")
    out.print(table)
    out.print(f"sandbox: {iso.describe()}")
    if iso.warning:
        print(iso.warning, file=sys.stderr)
