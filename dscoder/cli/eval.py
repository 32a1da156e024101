"""`dscoder eval BENCHMARK` and `dscoder toolchains`: the harness from the command line.

`dscoder eval` is a group with one command per benchmark of `dscoder.tasks.BENCHMARKS`, each
taking every option of `EvalConfig` (so `dscoder eval --help` lists the benchmarks, and
`dscoder eval mbpp --help` the options), beside the commands that act on several benchmarks.
"""

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
from dscoder.tasks import Benchmark

err = Console(stderr=True, soft_wrap=True)
out = Console(soft_wrap=True)


def benchmark_command(name: str, benchmark: Benchmark):
    """The command `dscoder eval NAME`: EvalConfig's options with the benchmark fixed, and the
    subset option's help listing this benchmark's own subsets."""

    def command(cfg: evaluation.EvalConfig) -> None:
        _evaluate(cfg)

    command.__doc__ = f"{benchmark.help or name}: DeepSeek-Coder's protocol, every sample judged in the sandbox."
    command.__name__ = f"eval_{name.replace('-', '_')}"
    named = [s for s in benchmark.subsets if s]
    overrides = {"subset": {"help": f"One of {', '.join(named)}, several comma-separated, or all (default "
                                    f"{benchmark.default})."}} if named else {}
    return from_settings(evaluation.EvalConfig, fixed={"benchmark": name}, overrides=overrides)(command)


def _evaluate(cfg: evaluation.EvalConfig) -> None:
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
