"""`dscoder train plot RUN`: a run's curves as one PNG a person can look at.

Three panels: training and validation loss against tokens seen (with the unigram baseline as
a line: a model below it has learned more than token frequencies), the learning rate against
steps, and FIM exact match against tokens. A context-extension run adds a fourth: validation
loss by position before and after (`extension.json`).
"""

from __future__ import annotations

import json
from pathlib import Path

from dscoder.errors import UserError


def read_metrics(run_dir: Path) -> list[dict]:
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        raise UserError(f"{run_dir} has no metrics.jsonl; it is not a `dscoder train` run directory")
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def plot_run(run_dir: str | Path, png: str | Path | None = None) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run_dir = Path(run_dir)
    records = read_metrics(run_dir)
    extension = run_dir / "extension.json"
    panels = 4 if extension.is_file() else 3
    fig, axes = plt.subplots(1, panels, figsize=(5 * panels, 4))
    train = [r for r in records if "loss" in r]
    val = [r for r in records if "val_loss" in r]
    ax = axes[0]
    ax.plot([r["tokens"] for r in train], [r["loss"] for r in train], label="train", lw=1)
    if val:
        ax.plot([r["tokens"] for r in val], [r["val_loss"] for r in val], "o-", label="validation")
    baseline = next((r["unigram_loss"] for r in records if "unigram_loss" in r), None)
    if baseline is not None:
        ax.axhline(baseline, color="grey", ls="--", label=f"unigram {baseline:.2f}")
    ax.set(xlabel="tokens", ylabel="loss (nats/token)", title="loss")
    ax.legend()
    axes[1].plot([r["step"] for r in train], [r["lr"] for r in train])
    axes[1].set(xlabel="step", ylabel="learning rate", title="schedule")
    fim = [r for r in records if "fim_exact_match" in r]
    axes[2].plot([r["tokens"] for r in fim], [r["fim_exact_match"] for r in fim], "o-")
    axes[2].set(xlabel="tokens", ylabel="exact match", title="FIM first line, greedy", ylim=(-0.02, 1.02))
    if panels == 4:
        ext = json.loads(extension.read_text())
        for label in ("before", "after"):
            points = ext.get(label) or []
            axes[3].plot([p["to"] for p in points], [p["loss"] for p in points], "o-", label=label)
        axes[3].axvline(ext.get("original_context", 0), color="grey", ls="--", label="original context")
        axes[3].set(xlabel="position", ylabel="validation loss", title="loss by position")
        axes[3].legend()
    fig.suptitle(str(run_dir))
    fig.tight_layout()
    out = Path(png) if png else run_dir / "curves.png"
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def plot_finetune(out_dir: str | Path, png: str | Path | None = None) -> Path:
    """`dscoder finetune`'s picture: the training loss, and before/after on the held-out files."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    summary = json.loads((out_dir / "finetune.json").read_text())
    train = [r for r in read_metrics(out_dir / "run") if "loss" in r]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    axes[0].plot([r["tokens"] for r in train], [r["loss"] for r in train], lw=1)
    axes[0].set(xlabel="tokens", ylabel="loss (nats/token)", title="training loss (LoRA)")
    before, after = summary["before"], summary["after"]
    axes[1].bar(["before", "after"], [before.get("perplexity") or 0, after.get("perplexity") or 0],
                color=["grey", "tab:blue"])
    axes[1].set(ylabel="perplexity", title=f"held-out files ({summary['held_out_files']})")
    names = [("next_line_exact_match", "next line"), ("fim_exact_match", "FIM middle line")]
    xs = range(len(names))
    axes[2].bar([x - 0.2 for x in xs], [100 * (before.get(k) or 0) for k, _ in names], 0.4, label="before",
                color="grey")
    axes[2].bar([x + 0.2 for x in xs], [100 * (after.get(k) or 0) for k, _ in names], 0.4, label="after",
                color="tab:blue")
    axes[2].set_xticks(list(xs), [label for _, label in names])
    axes[2].set(ylabel="exact match (%)", title=f"FIM: {before.get('fim_mode')} -> {after.get('fim_mode')}")
    axes[2].legend()
    fig.suptitle(f"dscoder finetune --repo {summary['repo']}")
    fig.tight_layout()
    out = Path(png) if png else out_dir / "finetune.png"
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def plot_grpo(run_dir: str | Path, png: str | Path | None = None) -> Path:
    """A GRPO run: reward and pass rate, KL to the reference, and the sandbox's verdicts, against steps."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run_dir = Path(run_dir)
    records = [r for r in read_metrics(run_dir) if "reward" in r]
    if not records:
        raise UserError(f"{run_dir}/metrics.jsonl has no GRPO step yet")
    steps = [r["step"] for r in records]
    fig, axes = plt.subplots(1, 3, figsize=(16, 4))
    ax = axes[0]
    ax.plot(steps, [r["reward"] for r in records], "o-", label="mean reward")
    ax.plot(steps, [r["pass_rate"] for r in records], "s-", label="pass rate (all tests)")
    ax.plot(steps, [r["tests_passed"] for r in records], ":", label="tests passed")
    ax.set(xlabel="step", ylabel="reward / rate", title="reward")
    ax.legend()
    axes[1].plot(steps, [r["zero_variance_groups"] for r in records], ":", color="tab:orange",
                 label="groups with no signal")
    axes[1].plot(steps, [r["clip_fraction"] for r in records], "--", color="tab:green", label="clipped tokens")
    axes[1].set(xlabel="step", ylabel="fraction", title="KL, groups without signal, clipping", ylim=(-0.02, 1.02))
    axes[1].legend(loc="upper left")
    kl = axes[1].twinx()  # its own scale: a KL of 0.01 is already a real move
    kl.plot(steps, [r["kl"] for r in records], "o-", color="tab:blue", label="KL to reference (k3)")
    kl.set_ylabel("KL (nats/token)", color="tab:blue")
    kl.legend(loc="upper right")
    bottom = [0.0] * len(records)
    for category in records[0]["verdicts"]:
        values = [r["verdicts"].get(category, 0) for r in records]
        if any(values):
            axes[2].bar(steps, values, bottom=bottom, label=category)
            bottom = [b + v for b, v in zip(bottom, values)]
    axes[2].set(xlabel="step", ylabel="samples", title="sandbox verdicts")
    axes[2].legend(fontsize="small")
    fig.suptitle(str(run_dir))
    fig.tight_layout()
    out = Path(png) if png else run_dir / "grpo.png"
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
