"""`dscoder eval all`: every benchmark for one model, in one table beside the papers' numbers.

Each benchmark is an ordinary evaluation run (`evaluate.run`) in its own folder under the
suite's `--out`, so an interrupted suite resumes benchmark by benchmark and sample by sample,
and each folder keeps its own samples, report and chart. The suite then writes one table
(`suite.md`, `suite.json`) with a row per benchmark (per language for HumanEval, per split
for FIM) and, where the model is one of DeepSeek's, the number its paper published for the
same protocol (`published.py`), and a chart of both (`suite.png`).

A benchmark that cannot run here (its data absent, its toolchain missing) is a row that says
why, never a 0%, and the suite goes on with the next one.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from dscoder.errors import UserError
from dscoder.eval.config import EvalConfig, slug
from dscoder.eval.published import lookup
from dscoder.files import replacing, write_atomic
from dscoder.settings import like, setting
from dscoder.tasks import BENCHMARKS


@dataclass(frozen=True)
class Entry:
    """One benchmark of the suite: which subsets, and whether each group (language, split) gets its own row."""

    benchmark: str
    subset: str
    per_group: bool = False


# The papers' table, in their order: code generation, then reasoning about code, math, infilling, long context.
SUITE = (
    Entry("humaneval", "all", per_group=True),
    Entry("mbpp", ""),
    Entry("humaneval+", ""),
    Entry("mbpp+", ""),
    Entry("leetcode", "en"),
    Entry("cruxeval", "output"),
    Entry("cruxeval", "input"),
    Entry("gsm8k", "pal"),
    Entry("gsm8k", "cot"),
    Entry("gsm-hard", "pal"),
    Entry("math", "test"),
    Entry("humaneval-infilling", "single-line,multi-line", per_group=True),
    Entry("fim-lines", "java,js", per_group=True),
    Entry("passkey", "all", per_group=True),
)


@dataclass
class SuiteConfig:
    """Every benchmark for one model (or one server, with --api)."""

    model: str | None = like(EvalConfig, "model")
    quant: str | None = like(EvalConfig, "quant")
    device: str = like(EvalConfig, "device")
    dtype: str = like(EvalConfig, "dtype")
    form: str = setting("auto", "auto: the instruct form for a model whose name says instruct or chat (and the "
                                "embedded default), where a benchmark has one; else base.", "--form",
                        choices=("auto", "base", "instruct"))
    only: str | None = setting(None, "Only these benchmarks, comma-separated (e.g. humaneval,mbpp+); "
                                     "`bench:subset` picks a subset.", "--only")
    limit: int | None = setting(None, "Only the first N problems of each benchmark (a quick look; the full suite "
                                      "takes hours on a CPU).", "--limit")
    out: Path | None = setting(None, "Suite folder (default: eval-results/all-<model>[-<quant>]); each benchmark "
                                     "runs in a folder inside, resumed when interrupted.", "--out", "-o", run=True)
    workers: int | None = like(EvalConfig, "workers")
    timeout: float = like(EvalConfig, "timeout")
    data: Path | None = like(EvalConfig, "data")
    progress: bool = like(EvalConfig, "progress")
    api: str | None = like(EvalConfig, "api")
    api_model: str | None = like(EvalConfig, "api_model")
    api_params: str | None = like(EvalConfig, "api_params")
    concurrency: int = like(EvalConfig, "concurrency")
    api_timeout: float = like(EvalConfig, "api_timeout")

    def entries(self) -> list[Entry]:
        """The suite's entries, those of --only, each a registered benchmark."""
        if not self.only:
            return [e for e in SUITE if e.benchmark in BENCHMARKS]
        chosen = []
        for item in (x.strip() for x in self.only.split(",") if x.strip()):
            name, _, subset = item.partition(":")
            if name not in BENCHMARKS:
                raise UserError(f"--only: unknown benchmark {name!r}; choose from {', '.join(BENCHMARKS)}")
            if subset:
                chosen.append(Entry(name, subset, per_group=True))
            else:
                chosen += [e for e in SUITE if e.benchmark == name] or [Entry(name, "")]
        return chosen


def form_for(cfg: SuiteConfig, benchmark: str) -> str:
    forms = BENCHMARKS[benchmark].forms
    if cfg.form != "auto":
        return cfg.form if cfg.form in forms else forms[0]
    name = (cfg.api_model or cfg.api or "") if cfg.api else (cfg.model or "default")
    name = name.lower()
    wants_instruct = name == "default" or re.search(r"instruct|chat", name) is not None
    return "instruct" if wants_instruct and "instruct" in forms else "base"


def _folder(entry: Entry, form: str) -> str:
    return slug("-".join(p for p in (entry.benchmark, entry.subset.replace(",", "_"), form) if p))


def run(cfg: SuiteConfig, *, on_start=None, on_skip=None) -> dict:
    """Run (or resume) every entry; return the suite's table, also written to suite.json/.md/.png."""
    from dscoder.eval import evaluate

    entries = cfg.entries()
    who = (cfg.api_model or "api") if cfg.api else (cfg.model or "default")
    out = cfg.out or Path("eval-results") / "-".join(p for p in ("all", slug(who), cfg.quant) if p)
    out.mkdir(parents=True, exist_ok=True)
    rows: list[dict] = []
    for entry in entries:
        form = form_for(cfg, entry.benchmark)
        if on_start is not None:
            on_start(entry, form)
        eval_cfg = EvalConfig(entry.benchmark, model=cfg.model, quant=cfg.quant, device=cfg.device, dtype=cfg.dtype,
                              subset=entry.subset or None,
                              form=form, limit=cfg.limit, out=out / _folder(entry, form), workers=cfg.workers,
                              timeout=cfg.timeout, data=cfg.data, progress=cfg.progress, api=cfg.api,
                              api_model=cfg.api_model, api_params=cfg.api_params, concurrency=cfg.concurrency,
                              api_timeout=cfg.api_timeout)
        try:
            summary = evaluate.run(eval_cfg, on_skip=on_skip).numbers
        except (UserError, FileNotFoundError) as e:  # data absent, a bad subset: this benchmark only
            rows.append(dict(benchmark=entry.benchmark, subset=entry.subset, group="", form=form, skipped=str(e)))
            if on_skip is not None:
                on_skip(entry.benchmark, str(e))
            continue
        rows += _rows(cfg, entry, form, summary, eval_cfg.out)
    table = {"model": who + (f" at {cfg.api}" if cfg.api else ""), "quant": cfg.quant, "limit": cfg.limit, "rows": rows}
    write_atomic(out / "suite.json", json.dumps(table, indent=2) + "\n")
    chart = None
    if any("pass@1" in row for row in rows):
        with replacing(out / "suite.png") as tmp:
            plot(table, tmp)
        chart = "suite.png"
    write_atomic(out / "suite.md", markdown(table, chart))
    table["out"] = str(out)
    return table


def _rows(cfg: SuiteConfig, entry: Entry, form: str, summary: dict, folder: Path) -> list[dict]:
    from dscoder.eval.report import extra_columns

    def row(group: str, block: dict, key_subset: str) -> dict:
        published = lookup(cfg.api_model if cfg.api else cfg.model, entry.benchmark, key_subset, form)
        return dict(benchmark=entry.benchmark, subset=entry.subset, group=group, form=form,
                    problems=block["problems"], **{"pass@1": 100 * block["pass@1"]}, extras=extra_columns(block),
                    published=published.value if published else None,
                    source=published.source if published else None, note=published.note if published else "",
                    folder=str(folder))

    if entry.per_group:
        rows = [row(group, block, group) for group, block in summary["groups"].items()]
        rows += [dict(benchmark=entry.benchmark, subset=entry.subset, group=group, form=form, skipped=why)
                 for group, why in summary["skipped"].items()]
        return rows
    if not summary["samples"]:
        why = "; ".join(summary["skipped"].values()) or "no problems"
        return [dict(benchmark=entry.benchmark, subset=entry.subset, group="", form=form, skipped=why)]
    return [row("", summary, entry.subset)]


def name_of(row: dict) -> str:
    detail = row["group"] or row["subset"]
    return f"{row['benchmark']} ({detail})" if detail else row["benchmark"]


def also_of(row: dict) -> str:
    """The row's other scores (EvalPlus's base tests, exact match), as the table shows them."""
    return ", ".join(f"{k} {v:.1f}" for k, v in row["extras"].items())


def markdown(table: dict, chart: str | None) -> str:
    quant = f", {table['quant']}" if table.get("quant") else ""
    limit = f"; the first {table['limit']} problems of each benchmark" if table.get("limit") else ""
    lines = [f"# All benchmarks: {table['model']}{quant}", "",
             f"pass@1 (%), greedy{limit}. \"paper\" is DeepSeek's published number for this model and protocol, "
             "with its source below.", "",
             "| benchmark | form | problems | pass@1 | also | paper |", "|---|---|---:|---:|---|---:|"]
    sources: list[str] = []
    for row in table["rows"]:
        if "skipped" in row:
            lines.append(f"| {name_of(row)} | {row['form']} | | skipped: {row['skipped']} | | |")
            continue
        also = also_of(row)
        paper = ""
        if row["published"] is not None:
            if row["source"] not in sources:
                sources.append(row["source"])
            mark = "*" if row["note"] else ""
            paper = f"{row['published']:.1f} [{sources.index(row['source']) + 1}]{mark}"
        lines.append(f"| {name_of(row)} | {row['form']} | {row['problems']} | {row['pass@1']:.2f} | {also} | {paper} |")
    if sources:
        lines += ["", *(f"[{i}] {source}" for i, source in enumerate(sources, 1))]
    notes = sorted({row["note"] for row in table["rows"] if row.get("note")})
    lines += [f"\n\\* {note}" for note in notes]
    if chart:
        lines += ["", f"![pass@1 per benchmark]({chart})"]
    return "\n".join(lines) + "\n"


def plot(table: dict, path: Path) -> None:
    """Horizontal bars: ours per benchmark row, the paper's beside it where there is one."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [row for row in table["rows"] if "pass@1" in row]
    names = [name_of(row) for row in rows]
    fig, axis = plt.subplots(figsize=(9, 0.32 * len(rows) + 1.6))
    y = list(range(len(rows)))
    axis.barh([i + 0.2 for i in y], [row["pass@1"] for row in rows], height=0.4, color="#3b7dd8", label="ours")
    papers = [(i, row["published"]) for i, row in enumerate(rows) if row["published"] is not None]
    if papers:
        axis.barh([i - 0.2 for i, _ in papers], [v for _, v in papers], height=0.4, color="#bbbbbb", label="paper")
    for i, row in enumerate(rows):
        axis.text(row["pass@1"] + 0.5, i + 0.2, f"{row['pass@1']:.1f}", va="center", fontsize=7)
    axis.set_yticks(y)
    axis.set_yticklabels(names, fontsize=8)
    axis.invert_yaxis()
    axis.set_xlim(0, 105)
    axis.set_xlabel("pass@1 (%)")
    axis.legend(fontsize=8, loc="lower right")
    quant = f", {table['quant']}" if table.get("quant") else ""
    axis.set_title(f"{table['model']}{quant}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110, format="png")
    plt.close(fig)


__all__ = ["SUITE", "Entry", "SuiteConfig", "run", "markdown", "plot", "name_of", "also_of"]
