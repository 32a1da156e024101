"""Loss by position: how well a model predicts a token given more and more of the file before it.

The measurement that shows a context extension works (YaRN or linear RoPE scaling, as
DeepSeek-Coder-V2 extends 16K to 128K): over long real files, the mean next-token loss at
position p of a window, bucketed by p on a log scale (1-127, 128-255, 256-511, ...). A model
that uses its context has a loss that keeps falling as p grows; past the context a model was
trained for, an unextended model's loss rises again, an extended one's keeps falling.

Each file is tokenized once and cut into windows of `max_len` tokens (the model's context by
default), each starting with BOS (when the tokenizer has one) so every window starts the way a
document does; position p is the index of the predicted token in its window. A window is fed
through the KV cache `chunk` tokens at a time, so only `chunk` rows of logits exist at once
(a 16K window's full logits would not fit in memory).

The default files are the longest modules of this machine's Python standard library
(`default_files`): real code, present wherever dscoder runs, long enough (tens of thousands
of tokens each) to fill a 16K window several times.
"""

from __future__ import annotations

import json
import math
import sysconfig
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from dscoder.errors import UserError
from dscoder.files import replacing, write_atomic

RESULT_FILE, CHART_FILE = "loss_by_position.json", "loss_by_position.png"
FIRST_EDGE = 128


def default_files(count: int = 4) -> list[Path]:
    """The `count` largest .py files of this Python's standard library, largest first, leaving out its
    tests, IDLE, site-packages and the modules that are data more than code (pydoc's topics, the codec
    tables): on CPython 3.11, _pydecimal.py, tkinter/__init__.py, turtle.py, typing.py."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    skip = {"test", "tests", "idlelib", "site-packages", "dist-packages", "lib2to3", "__pycache__", "pydoc_data",
            "encodings"}
    found = [p for p in stdlib.rglob("*.py")
             if not skip.intersection(p.relative_to(stdlib).parts) and p.is_file() and not p.is_symlink()]
    return sorted(found, key=lambda p: (-p.stat().st_size, str(p)))[:count]


def bucket_edges(limit: int) -> list[int]:
    """Bucket boundaries over positions 1..limit-1: [1, 128, 256, 512, ..., limit]; each bucket is [a, b)."""
    edges, edge = [1], FIRST_EDGE
    while edge < limit:
        edges.append(edge)
        edge *= 2
    return edges + [limit]


@dataclass
class Result:
    model: str
    max_len: int
    context: int  # the model's max_position_embeddings
    original_context: int | None  # the context before a RoPE extension, when the config says (YaRN)
    files: list[dict] = field(default_factory=list)
    buckets: list[dict] = field(default_factory=list)

    @property
    def tokens(self) -> int:
        return sum(b["tokens"] for b in self.buckets)

    def as_dict(self) -> dict:
        return {"model": self.model, "max_len": self.max_len, "context": self.context,
                "original_context": self.original_context, "tokens_scored": self.tokens, "files": self.files,
                "buckets": self.buckets}


def windows(ids: Sequence[int], max_len: int, bos: int | None) -> list[list[int]]:
    """`ids` (no BOS) cut into windows of at most `max_len` tokens, each led by `bos` when there is one;
    windows of fewer than 2 tokens (nothing to predict) are dropped."""
    step = max_len - (bos is not None)
    lead = [bos] if bos is not None else []
    cut = [lead + list(ids[start:start + step]) for start in range(0, len(ids), step)]
    return [w for w in cut if len(w) >= 2]


def window_losses(model, ids: list[int], chunk: int = 512):
    """Next-token loss at each position 1..len(ids)-1 of one window (a float64 CPU tensor), the window fed
    through the KV cache `chunk` tokens at a time."""
    import torch
    import torch.nn.functional as F

    device = model.embed_tokens.weight.device
    tokens = torch.tensor([ids], device=device)
    n = len(ids)
    losses = torch.empty(n - 1, dtype=torch.float64)
    with torch.inference_mode():
        if n - 1 <= chunk:  # one piece: a plain forward, no cache to fill
            logits, _ = model(tokens[:, :n - 1])
            losses[:] = F.cross_entropy(logits[0].float(), tokens[0, 1:], reduction="none").double().cpu()
            return losses
        cache = model.new_cache(1, n)
        for start in range(0, n - 1, chunk):
            stop = min(start + chunk, n - 1)  # predict tokens start+1..stop from logits at start..stop-1
            logits, _ = model(tokens[:, start:stop], start, cache)
            nll = F.cross_entropy(logits[0].float(), tokens[0, start + 1:stop + 1], reduction="none")
            losses[start:stop] = nll.double().cpu()
    return losses


def loss_by_position(model, tokenizer, files: Sequence[Path], *, max_len: int | None = None, chunk: int = 512,
                     max_windows: int | None = None, name: str = "",
                     on_file: Callable[[Path, int, int], None] | None = None) -> Result:
    """Mean next-token loss per position bucket over `files` (see the module's docstring).

    `max_windows` caps the windows scored in all (taken in file order);
    `on_file(path, tokens, windows)` hears of each file as it starts."""
    import torch

    context = model.config.max_position_embeddings
    max_len = max_len or context
    if max_len < 2 or max_len > context:
        raise UserError(f"--max-len must be between 2 and the model's context of {context} tokens, got {max_len}")
    if chunk < 1:
        raise UserError(f"--chunk must be at least 1, got {chunk}")
    if not files:
        raise UserError("no files to score")
    totals = torch.zeros(max_len, dtype=torch.float64)  # summed loss by position
    counts = torch.zeros(max_len, dtype=torch.int64)
    result = Result(name, max_len, context, (model.config.rope_scaling or {}).get("original_max_position_embeddings"))
    left = max_windows
    for path in files:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise UserError(f"cannot read {path} as UTF-8 text: {e}") from None
        ids = tokenizer.encode(text, add_bos=False)
        cut = windows(ids, max_len, tokenizer.bos_id)
        if left is not None:
            cut, left = cut[:left], left - min(left, len(cut))
        if on_file is not None:
            on_file(Path(path), len(ids), len(cut))
        for window in cut:
            losses = window_losses(model, window, chunk)
            totals[1:len(window)] += losses
            counts[1:len(window)] += 1
        result.files.append({"path": str(path), "tokens": len(ids), "windows": len(cut)})
    edges = bucket_edges(max_len)
    for low, high in zip(edges, edges[1:]):
        n = int(counts[low:high].sum())
        loss = float(totals[low:high].sum()) / n if n else None
        result.buckets.append({"from": low, "to": high - 1, "tokens": n, "loss": loss,
                               "perplexity": math.exp(loss) if loss is not None else None})
    return result


def table(result: Result) -> list[tuple[str, str, str, str]]:
    """Rows (positions, tokens, mean loss, perplexity) for printing."""
    return [(f"{b['from']}-{b['to']}", str(b["tokens"]), "-" if b["loss"] is None else f"{b['loss']:.4f}",
             "-" if b["perplexity"] is None else f"{b['perplexity']:.2f}") for b in result.buckets]


def plot(result: Result, path: Path) -> None:
    """Mean loss per bucket against position (log x), with the model's context (and the context before an
    extension, when known) marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scored = [b for b in result.buckets if b["loss"] is not None]
    xs = [math.sqrt(max(b["from"], 1) * (b["to"] + 1)) for b in scored]  # geometric middle of the bucket
    fig, axis = plt.subplots(figsize=(7, 4.2))
    axis.plot(xs, [b["loss"] for b in scored], marker="o", color="#3b7dd8")
    for b, x in zip(scored, xs):
        axis.annotate(f"{b['loss']:.2f}", (x, b["loss"]), textcoords="offset points", xytext=(0, 6),
                      ha="center", fontsize=7)
    axis.set_xscale("log", base=2)
    axis.set_xlabel("position in the window (tokens, log scale)")
    axis.set_ylabel("mean next-token loss (nats)")
    if result.original_context:
        axis.axvline(result.original_context, color="#d9534f", linestyle="--", linewidth=1,
                     label=f"original context {result.original_context}")
        axis.legend(fontsize=8)
    axis.set_title(f"loss by position: {result.model or 'model'} ({result.tokens} tokens, "
                   f"{sum(f['windows'] for f in result.files)} windows of up to {result.max_len})", fontsize=9)
    axis.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110, format="png")  # by type: `replacing` hands a temporary name
    plt.close(fig)


def write(result: Result, out: Path) -> tuple[Path, Path]:
    """loss_by_position.json and loss_by_position.png in `out` (each written whole or not at all)."""
    out.mkdir(parents=True, exist_ok=True)
    write_atomic(out / RESULT_FILE, json.dumps(result.as_dict(), indent=2) + "\n")
    with replacing(out / CHART_FILE) as tmp:
        plot(result, tmp)
    return out / RESULT_FILE, out / CHART_FILE
