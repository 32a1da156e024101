"""`dscoder eval BENCHMARK` and `dscoder toolchains`: the harness from the command line.

`dscoder eval` is a group with one command per benchmark of `dscoder.tasks.BENCHMARKS`, each
taking every option of `EvalConfig` (so `dscoder eval --help` lists the benchmarks, and
`dscoder eval mbpp --help` the options), beside the commands that act on several benchmarks.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from dscoder import eval as evaluation
from dscoder.cli.common import DEVICE, DTYPE, MODEL, QUANT
from dscoder.cli.options import from_settings
from dscoder.eval import report
from dscoder.execute import sandbox
from dscoder.execute import toolchains as languages
from dscoder.eval.repo_completion import RepoCompletionConfig
from dscoder.eval.suite import SuiteConfig
from dscoder.tasks import Benchmark

err = Console(stderr=True, soft_wrap=True)
out = Console(soft_wrap=True)


def benchmark_command(name: str, benchmark: Benchmark):
    """The command `dscoder eval NAME`: EvalConfig's options with the benchmark fixed, and the
    subset option's help listing this benchmark's own subsets."""

    if benchmark.runner == "repo_completion":  # a runner of its own, with settings of its own
        return repo_completion_command

    def command(cfg: evaluation.EvalConfig) -> None:
        _evaluate(cfg)

    command.__doc__ = f"{benchmark.help or name}."
    command.__name__ = f"eval_{name.replace('-', '_')}"
    named = [s for s in benchmark.subsets if s]
    overrides = {"subset": {"help": f"One of {', '.join(named)}, several comma-separated, or all (default "
                                    f"{benchmark.default})."}} if named else {}
    return from_settings(evaluation.EvalConfig, fixed={"benchmark": name}, overrides=overrides)(command)


def _evaluate(cfg: evaluation.EvalConfig) -> None:
    summary = evaluation.run(cfg, on_skip=lambda name, why: err.print(f"[yellow]skipping {name}:[/] {why}"))
    _print(summary.numbers, summary.out)
    _generation_errors(summary.out, api=cfg.api is not None)
    fresh, wall = summary.new_samples, summary.wall_seconds
    err.print(f"[dim]{fresh} samples in {wall:.1f} s wall ({fresh / max(wall, 1e-9):.1f}/s, generation and sandboxed "
              f"execution overlapped; resumed samples take no time)[/]")


def _generation_errors(target: Path, api: bool) -> None:
    """How many samples got no completion (a server's error, a prompt too long), and the first one's reason."""
    from dscoder.eval.runner import read_samples

    failed = [row for row in read_samples(target) if row["status"] == "error" and row.get("stage") == "generate"]
    if failed:
        why = "".join(c if c.isprintable() else " " for c in str(failed[0]["stderr"]))[:400]
        where = "at the server (the same command asks them again)" if api else "to generate"
        err.print(f"[yellow]{len(failed)} sample{'s' * (len(failed) != 1)} failed {where}:[/] first error: "
                  f"{escape(why)}")


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


@from_settings(RepoCompletionConfig)
def repo_completion_command(cfg: RepoCompletionConfig) -> None:
    """Next line of real packages' code that uses a name from another file: the file alone vs with the repository
    context (our RepoBench-style construction); exact match, edit similarity, prompt tokens and latency."""
    from dscoder.eval import repo_completion

    summary = repo_completion.run(cfg, on_left_out=lambda n, note: err.print(f"[yellow]left out:[/] {escape(note)}"))
    numbers = summary.numbers
    table = Table(title=escape(repo_completion.title(numbers["config"])))
    for column in repo_completion.COLUMNS:
        table.add_column(column, justify="left" if column == "setting" else "right")
    for row in repo_completion.table_rows(numbers):
        table.add_row(*map(escape, row))
    out.print(table)
    packages = Table(title="per package: EM % and ES, in-file -> repo")
    for column in ("package", "cases", "EM %", "ES"):
        packages.add_column(column, justify="left" if column == "package" else "right")
    for p in numbers["packages"].values():
        packages.add_row(escape(p["dist"]), str(p["in-file"]["cases"]),
                         f"{p['in-file']['exact_match']:.1f} -> {p['repo']['exact_match']:.1f}",
                         f"{p['in-file']['edit_similarity']:.1f} -> {p['repo']['edit_similarity']:.1f}")
    out.print(packages)
    err.print(f"[dim]{summary.new_answers} answers in {summary.wall_seconds:.1f} s; mean context "
              f"{numbers['context']['tokens']:.0f} tokens, the definition's file in it for "
              f"{numbers['context']['defined_in_context']:.1f}% of cases; results in {summary.out}/ (samples.jsonl, "
              f"summary.json, report.md, chart.png)[/]")


@from_settings(SuiteConfig)
def all_command(cfg: SuiteConfig) -> None:
    """Every benchmark for one model: one table (and chart) beside the papers' numbers where the model is theirs."""
    from dscoder.eval import suite

    table = suite.run(cfg, on_start=lambda entry, form: err.print(
                          f"[bold]{entry.benchmark}[/] {entry.subset} [{form}]"),
                      on_skip=lambda name, why: err.print(f"[yellow]skipping {name}:[/] {why}"))
    shown = Table(title=escape(f"all benchmarks: {table['model']}" + (f", {table['quant']}" if table["quant"] else "")))
    for column in ("benchmark", "form", "problems", "pass@1", "also", "paper"):
        shown.add_column(column, justify="left" if column in ("benchmark", "form", "also") else "right")
    for row in table["rows"]:
        name = suite.name_of(row)
        if "skipped" in row:
            shown.add_row(escape(name), row["form"], "", "skipped", escape(row["skipped"][:80]), "")
            continue
        paper = "" if row["published"] is None else f"{row['published']:.1f}" + ("*" if row["note"] else "")
        shown.add_row(escape(name), row["form"], str(row["problems"]), f"{row['pass@1']:.2f}",
                      suite.also_of(row), paper)
    out.print(shown)
    err.print(f"[dim]table in {table['out']}/suite.md (sources of the paper column there), chart suite.png[/]")


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


def fetch_command(
    benchmarks: list[str] = typer.Argument(None, help="Benchmarks whose data to download (default: all): "
                                                      "humaneval, mbpp, humaneval-infilling, gsm8k, humaneval+, mbpp+, "
                                                      "leetcode, cruxeval, math, gsm-hard."),
    force: bool = typer.Option(False, "--force", help="Download again even the files already cached."),
    list_only: bool = typer.Option(False, "--list", help="Only list the files, their sizes, sources and where "
                                                         "each would be read from now; download nothing."),
) -> None:
    """Download benchmark data into the cache (~/.cache/dscoder/data), each file checked against its pinned SHA-256."""
    from dscoder.tasks import fetch

    if list_only:  # one line per file, never cut: the URLs are long
        err.print(f"[dim]file, bytes, benchmarks, where it is read from now, source; cache: {fetch.cache_dir()}[/]")
        for source in fetch.for_benchmarks(benchmarks):
            out.print(escape(f"{source.path:<52} {source.size:>9,}  {','.join(source.benchmarks):<19} "
                             f"{fetch.status(source):<17} {fetch.url_of(source) or 'not pinned: ' + source.origin}"))
        return
    try:
        results, error = fetch.fetch(benchmarks, force=force), None
    except fetch.FetchError as e:
        results, error = e.results, e
    colour = {"cached": "green", "downloaded": "green", "refused": "bold red", "failed": "red", "not pinned": "yellow"}
    table = Table(title=escape(f"benchmark data in {fetch.cache_dir()}"))
    for column in ("file", "size", "status"):
        table.add_column(column, justify="right" if column == "size" else "left")
    for r in results:
        table.add_row(r.source.path, f"{r.source.size:,}", f"[{colour[r.status]}]{r.status}[/]")
    out.print(table)
    for r in results:
        if r.status == "not pinned":
            err.print(f"[yellow]not pinned:[/] {escape(r.error)}; pass --data DIR or set DSCODER_DATA for it")
    if error is not None:
        raise error  # every message, after the table: exit code 2


def loss_by_position_command(
    files: Optional[list[Path]] = typer.Argument(None, help="Long source files to score (default: the 4 longest "
                                                            "modules of this Python's standard library)."),
    model: Optional[str] = MODEL, quant: Optional[str] = QUANT,
    max_len: Optional[int] = typer.Option(None, "--max-len", help="Window length in tokens (default: the model's "
                                                                  "context)."),
    max_windows: Optional[int] = typer.Option(8, "--max-windows", help="Most windows scored in all, in file order "
                                                                       "(0: every window of every file)."),
    chunk: int = typer.Option(512, "--chunk", help="Tokens fed through the KV cache at once (only this many rows "
                                                   "of logits are held)."),
    device: str = DEVICE, dtype: str = DTYPE,
    target: Optional[Path] = typer.Option(None, "--out", help="Folder for loss_by_position.json and .png "
                                                              "(default: eval-results/loss-by-position-<model>)."),
) -> None:
    """Mean next-token loss by position bucket on long files: a context extension works when it keeps falling."""
    from dscoder.eval import long_context
    from dscoder.eval.config import slug
    from dscoder.cli.common import load_timed

    chosen = list(files) if files else long_context.default_files()
    net, tok, _ = load_timed(model, quant, device=device, dtype=dtype)
    target = target or Path("eval-results") / f"loss-by-position-{slug(model or 'default')}"
    result = long_context.loss_by_position(
        net, tok, chosen, max_len=max_len, chunk=chunk, max_windows=max_windows or None, name=model or "default",
        on_file=lambda path, n, w: err.print(f"[dim]{escape(str(path))}: {n} tokens, {w} windows[/]"))
    json_path, _ = long_context.write(result, target)
    table = Table(title=escape(f"loss by position: {result.model} (windows of up to {result.max_len} tokens, "
                               f"context {result.context})"))
    for column in ("positions", "tokens", "mean loss", "perplexity"):
        table.add_column(column, justify="left" if column == "positions" else "right")
    for row in long_context.table(result):
        table.add_row(*row)
    out.print(table)
    err.print(f"[dim]results in {json_path.parent}/ ({long_context.RESULT_FILE}, {long_context.CHART_FILE})[/]")
