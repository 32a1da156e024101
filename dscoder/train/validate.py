"""Validation during training: loss and bits per byte on held-out rows, and FIM exact match.

Loss alone cannot compare runs with different tokenizers; bits per byte (the summed loss in
bits over the UTF-8 bytes the target tokens stand for, control tokens counting 0 bytes) can.
FIM exact match shows what the FIM half of the objective is for: from held-out documents that
`data build` rewrote in PSM form (`<fim_begin> prefix <fim_hole> suffix <fim_end> middle
<eos>`), the model is given everything up to `<fim_end>` and generates greedily; a hit is the
first non-empty line of its output equal to that of the true middle (the line-level FIM
metric of SantaCoder and DeepSeek-Coder's single-line infilling). An untrained model scores 0.

Every rank evaluates its share of the rows and the sums are reduced, so the numbers do not
depend on the number of processes; FIM generation runs the same examples on every rank (they
are few), which keeps FSDP's collectives in step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from dscoder.infer.generate import SamplingParams, stream
from dscoder.train import distributed
from dscoder.train.objective import next_token_loss


def token_losses(model: torch.nn.Module, rows: torch.Tensor, autocast) -> torch.Tensor:
    """Per-target cross-entropy (nats), (B, T-1), in fp32."""
    with torch.no_grad(), autocast():
        logits, _ = model(rows)
    return next_token_loss(logits, rows, reduction="none")


def validation_loss(model, batches, byte_lengths: torch.Tensor | None, device, autocast) -> dict[str, float]:
    """Mean loss and bits per byte over `batches` (this rank's share), reduced over ranks."""
    totals = torch.zeros(3, dtype=torch.float64)  # nats, targets, bytes
    for rows in batches:
        rows = rows.to(device)
        losses = token_losses(model, rows, autocast).double().cpu()
        targets = rows[:, 1:].cpu()
        totals[0] += losses.sum()
        totals[1] += losses.numel()
        if byte_lengths is not None:
            totals[2] += byte_lengths[targets].sum()
    totals = distributed.all_reduce_sum(totals.to(device)).cpu()
    nats, count, nbytes = totals.tolist()
    out = {"val_loss": nats / max(count, 1), "val_tokens": int(count)}
    if nbytes:
        out["val_bpb"] = nats / math.log(2) / nbytes
    return out


def masked_loss(model, batches, device, autocast) -> dict[str, float]:
    """Mean loss over the trained (not IGNORE) targets of fine-tuning batches, reduced over ranks."""
    totals = torch.zeros(2, dtype=torch.float64)  # nats, targets
    for batch in batches:
        extra = {} if batch.segments is None else {"segments": batch.segments.to(device)}
        with torch.no_grad(), autocast():
            logits, _ = model(batch.tokens.to(device), **extra)
        totals[0] += next_token_loss(logits, batch.labels.to(device), reduction="sum").double().cpu()
        totals[1] += batch.targets()
    nats, count = distributed.all_reduce_sum(totals.to(device)).cpu().tolist()
    return {"val_loss": nats / max(count, 1), "val_tokens": int(count)}


def loss_by_position(model, batches, seq_len: int, buckets: int, device, autocast) -> list[dict]:
    """Mean loss per span of positions (buckets of seq_len/buckets): how well a model uses a long context."""
    sums = torch.zeros(seq_len - 1, dtype=torch.float64)
    rows_seen = torch.zeros((), dtype=torch.float64)
    for rows in batches:
        losses = token_losses(model, rows.to(device), autocast).double().cpu()
        sums += losses.sum(0)
        rows_seen += losses.shape[0]
    sums = distributed.all_reduce_sum(sums.to(device)).cpu()
    rows_seen = distributed.all_reduce_sum(rows_seen.to(device)).cpu()
    targets = seq_len - 1
    buckets = min(buckets, targets)
    edges = [round(i * targets / buckets) for i in range(buckets + 1)]
    out = []
    for start, end in zip(edges, edges[1:]):
        chunk = sums[start:end]
        out.append({"from": start + 1, "to": end, "loss": float(chunk.sum() / (len(chunk) * rows_seen))})
    return out


def unigram_loss(train_sample: np.ndarray, val_targets: np.ndarray, vocab_size: int) -> float:
    """Cross-entropy of the validation targets under the training tokens' unigram distribution
    (add-one smoothed): the loss a model that ignores context entirely would reach."""
    counts = np.bincount(train_sample.astype(np.int64), minlength=vocab_size).astype(np.float64) + 1.0
    logp = np.log(counts / counts.sum())
    return float(-logp[val_targets.astype(np.int64)].mean())


@dataclass
class FimExample:
    prompt: list[int]  # <fim_begin> prefix <fim_hole> suffix <fim_end>
    middle: list[int]


def fim_examples(stream: np.ndarray, fim_ids: tuple[int, int, int], eos: int, count: int,
                 side_budget: int) -> list[FimExample]:
    """Up to `count` PSM documents found in a token stream, prefix cut to its last `side_budget`
    tokens and suffix to its first (so the prompt fits a small model's context)."""
    begin, hole, end = fim_ids
    out: list[FimExample] = []
    starts = np.flatnonzero(stream == begin)
    for i in starts:
        if len(out) >= count:
            break
        rest = stream[i + 1:]
        marks = {name: np.flatnonzero(rest == tok) for name, tok in (("hole", hole), ("end", end), ("eos", eos))}
        if not all(len(v) for v in marks.values()):
            break
        j, k = int(marks["hole"][0]), int(marks["end"][0])
        after = marks["eos"][marks["eos"] > k]
        if not j < k or not len(after):
            continue
        m = int(after[0])
        prefix, suffix, middle = rest[:j], rest[j + 1:k], rest[k + 1:m]
        if not len(middle) or (begin in prefix) or (begin in suffix):
            continue
        prompt = [begin, *prefix[-side_budget:].tolist(), hole, *suffix[:side_budget].tolist(), end]
        out.append(FimExample(prompt, middle.tolist()))
    return out


def first_line(text: str) -> str | None:
    for line in text.splitlines():
        if line.strip():
            return line.rstrip()
    return None


def fim_exact_match(net, tokenizer, examples: list[FimExample], max_new_tokens: int = 48) -> dict:
    """Greedy infilling of each example's middle (`dscoder.infer.generate.stream`, EOS stops it);
    exact match of the first non-empty line."""
    if not examples:
        return {}
    params = SamplingParams(max_new_tokens=max_new_tokens, stop_token_ids=(tokenizer.eos_id,))
    hits = scored = 0
    for ex in examples:
        want = first_line(tokenizer.decode(ex.middle, skip_special_tokens=True))
        if want is None or len(ex.prompt) + max_new_tokens > net.config.max_position_embeddings:
            continue
        scored += 1
        text = ""
        for delta in stream(net, tokenizer, ex.prompt, params):
            text += delta.text
            if "\n" in text.lstrip():
                break  # the first non-empty line is complete
        hits += first_line(text) == want
    return {"fim_exact_match": hits / scored if scored else 0.0, "fim_examples": scored}
