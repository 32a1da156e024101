"""The numbers of a run: `summary.json`, a Markdown report and a PNG chart a person can read."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from dscoder.execute.programs import STATUSES
from dscoder.eval.passk import mean_pass_at_k
from dscoder.eval.runner import iter_groups
from dscoder.files import replacing, write_atomic


def _counts(rows: list[dict], check: str = "") -> list[tuple[int, int]]:
    per_task: dict[tuple[str, str], list[int]] = {}
    for row in rows:
        n_c = per_task.setdefault((row["group"], row["task_id"]), [0, 0])
        n_c[0] += 1
        n_c[1] += (row.get("checks", {}).get(check) if check else row["status"]) == "passed"
    return [(n, c) for n, c in per_task.values()]


def _block(rows: list[dict]) -> dict:
    """pass@k and verdict counts of some rows; with the pass@k of each extra check (EvalPlus's base
    tests) and the mean of each measure (exact match) where the rows have them."""
    statuses = Counter(row["status"] for row in rows)
    block = {"problems": len({(row["group"], row["task_id"]) for row in rows}), "samples": len(rows),
             **mean_pass_at_k(_counts(rows)), "statuses": {s: statuses.get(s, 0) for s in STATUSES}}
    checks = sorted({name for row in rows for name in row.get("checks", {})})
    if checks:
        block["checks"] = {name: mean_pass_at_k(_counts(rows, name)) for name in checks}
    measures = sorted({name for row in rows for name in row.get("measures", {})})
    if measures:
        block["measures"] = {}
        for name in measures:
            values = [row["measures"][name] for row in rows if name in row.get("measures", {})]
            block["measures"][name] = sum(values) / len(values)
    return block


def extra_columns(block: dict) -> dict[str, float]:
    """A block's check pass@1s and measures as flat columns ("base pass@1", "exact_match"), in percent."""
    columns = {f"{name} pass@1": 100 * values["pass@1"] for name, values in block.get("checks", {}).items()
               if "pass@1" in values}
    columns.update({name: 100 * value for name, value in block.get("measures", {}).items()})
    return columns


def summarize(rows: list[dict], config: dict, skipped: dict[str, str] | None = None) -> dict:
    """pass@k overall and per group (language or split), status counts, and what it cost."""
    tokens = sum(row.get("gen_tokens", 0) for row in rows)
    gen_seconds = sum(row.get("gen_seconds", 0.0) for row in rows)
    groups = {group: _block(items) for group, items in iter_groups(rows)}
    summary = {"config": config, **_block(rows), "groups": groups, "skipped": skipped or {},
               "generation": {"tokens": tokens, "seconds": round(gen_seconds, 1),
                              "tokens_per_second": round(tokens / gen_seconds, 1) if gen_seconds else None},
               "execution_seconds": round(sum(row.get("exec_seconds", 0.0) for row in rows), 1)}
    if len(groups) > 1:  # MultiPL-E style: the mean of the per-language scores
        summary["mean_over_groups"] = {k: sum(g[k] for g in groups.values()) / len(groups)
                                       for k in groups[next(iter(groups))] if k.startswith("pass@")}
    return summary


def title(config: dict) -> str:
    subset = f" ({config['subset']})" if config.get("subset") else ""
    api = f"{config.get('api_model')} at {config['api']}" if config.get("api") else None
    who = config.get("completions") or api or config.get("model") or "?"
    quant = f", {config['quant']}" if config.get("quant") else ""
    return f"{config['benchmark']}{subset}: {who} [{config['form']}{quant}]"


def markdown(summary: dict, chart: str | None) -> str:
    cfg = summary["config"]
    ks = [k for k in summary if k.startswith("pass@")]
    lines = [f"# {title(cfg)}", "",
             f"{summary['problems']} problems, {summary['samples']} samples, temperature {cfg['temperature']}; "
             + ", ".join(f"**{k} = {100 * summary[k]:.2f}%**" for k in ks), ""]
    extras = list(extra_columns(summary))
    if extras:
        lines[-2] += "; " + ", ".join(f"**{k} = {v:.2f}%**" for k, v in extra_columns(summary).items())
    header = "| group | problems | " + " | ".join(ks + extras) + " | " + " | ".join(STATUSES) + " |"
    lines += [header, "|" + "---|" * (2 + len(ks) + len(extras) + len(STATUSES))]
    for group, block in summary["groups"].items():
        more = extra_columns(block)
        lines.append(f"| {group} | {block['problems']} | " + " | ".join(f"{100 * block[k]:.2f}%" for k in ks)
                     + "".join(f" | {more[k]:.2f}%" if k in more else " | " for k in extras)
                     + " | " + " | ".join(str(block["statuses"][s]) for s in STATUSES) + " |")
    for group, why in summary["skipped"].items():
        lines.append(f"| {group} | skipped: {why} |" + " |" * (len(ks) + len(extras) + len(STATUSES)))
    if "mean_over_groups" in summary:
        lines += ["", "Mean over groups: " + ", ".join(f"{k} = {100 * v:.2f}%"
                                                       for k, v in summary["mean_over_groups"].items())]
    gen = summary["generation"]
    if gen["tokens"]:
        lines += ["", f"Generation: {gen['tokens']} tokens in {gen['seconds']} s ({gen['tokens_per_second']} tok/s). "
                      f"Execution: {summary['execution_seconds']} s of sandbox time."]
    if chart:
        lines += ["", f"![pass rate per group]({chart})"]
    return "\n".join(lines) + "\n"


def plot(summary: dict, path: Path) -> None:
    """pass@1 per group beside each group's status counts; skipped groups are labelled, not drawn as 0."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = list(summary["groups"]) + list(summary["skipped"])
    fig, (left, right) = plt.subplots(1, 2, figsize=(max(8, 1.1 * len(groups) + 6), 4.2))
    rates = [100 * summary["groups"][g]["pass@1"] if g in summary["groups"] else 0 for g in groups]
    bars = left.bar(groups, rates, color=["#3b7dd8" if g in summary["groups"] else "#cccccc" for g in groups])
    for bar, group, rate in zip(bars, groups, rates):
        label = "skipped" if group in summary["skipped"] else f"{rate:.1f}"
        left.text(bar.get_x() + bar.get_width() / 2, rate + 1, label, ha="center", fontsize=8)
    left.set_ylim(0, 105)
    left.set_ylabel("pass@1 (%)")
    left.set_title("pass@1")
    colors = {"passed": "#2e9e4f", "failed": "#d9534f", "timeout": "#f0ad4e", "error": "#777777"}
    bottom = [0] * len(summary["groups"])
    names = list(summary["groups"])
    for status in STATUSES:
        counts = [summary["groups"][g]["statuses"][status] for g in names]
        right.bar(names, counts, bottom=bottom, label=status, color=colors[status])
        bottom = [b + c for b, c in zip(bottom, counts)]
    right.set_title("samples by verdict")
    right.legend(fontsize=8)
    for axis in (left, right):
        axis.tick_params(axis="x", rotation=45 if len(groups) > 4 else 0)
    fig.suptitle(title(summary["config"]), fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110, format="png")  # by type, not name: `write` hands it a temporary name
    plt.close(fig)


def write(out: Path, rows: list[dict], config: dict, skipped: dict[str, str] | None = None) -> dict:
    summary = summarize(rows, config, skipped)
    write_atomic(out / "summary.json", json.dumps(summary, indent=2) + "\n")
    chart = None
    if rows:
        with replacing(out / "chart.png") as tmp:
            plot(summary, tmp)
        chart = "chart.png"
    write_atomic(out / "report.md", markdown(summary, chart))
    return summary
