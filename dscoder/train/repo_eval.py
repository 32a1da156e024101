"""Before/after measurements of `dscoder finetune --repo`: does the model know this repository better?

Fine-tuning on a repository is only worth its cost if the model then predicts code it has
not seen from that repository better, so whole files are held out (`split_files`) rather
than random windows: a window's neighbours would leak most of its content into training.
Three measures, run once before and once after fine-tuning:

- perplexity of the held-out files (the model's surprise, token by token);
- next-line exact match: given the file up to a line, the model's greedy first line equals it;
- FIM exact match: given the text before and after a line, the model fills in that line
  (DeepSeek-Coder's single-line infilling metric), or, for a tokenizer without FIM tokens,
  continues from the text before it alone ("prefix-only", reported as `fim_mode`).

The cases are drawn once, from a seed, and recorded (`RepoCases.to_json`) so that "before"
and "after" measure exactly the same lines, and a run directory says what was measured.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import re
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F

from dscoder.errors import UserError
from dscoder.infer.generate import SamplingParams, stream
from dscoder.tokenizer.fim import FimUnsupportedError, fim_prompt, fim_tokens
from dscoder.train.validate import first_line

MIN_LINE_CHARS = 8  # non-space characters a line needs to be worth predicting
MISMATCH_EXAMPLES = 3  # mismatches kept per measure, for the report
FIM_SPECIALS = 4  # what a FIM prompt adds to its prefix and suffix tokens: BOS and three markers


class RepoEvalError(UserError):
    """The held-out files or the cases cannot be measured as asked; the message says what to change."""


# ---------------------------------------------------------------------------------------- split
def _unit_hash(path: str, seed: int) -> float:
    """A number in [0, 1) fixed by the path and seed alone: stable across runs, machines and Python
    processes (unlike `hash`, which is salted), and independent of every other file."""
    digest = hashlib.blake2b(f"{seed}:{path}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2 ** 64


def split_files(files: dict[str, str], held_out_fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """(train paths, held-out paths), each sorted: a file is held out when its path's seeded hash
    falls below `held_out_fraction`.

    Deciding per path (not by shuffling the list) means adding, removing or editing one file never
    moves another, so a repository that changed between runs keeps its split. Content plays no
    part. With two files or more each side gets at least one: if the hash left a side empty, the
    file whose hash came closest to the threshold crosses over (the only case where the presence
    of other files matters).
    """
    if not 0 < held_out_fraction < 1:
        raise RepoEvalError(f"the held-out fraction must be between 0 and 1 (exclusive), got {held_out_fraction}")
    # repository-relative paths spelled with '/', so Windows and POSIX checkouts split alike
    score = {path: _unit_hash(path.replace("\\", "/"), seed) for path in files}
    held = {path for path, h in score.items() if h < held_out_fraction}
    if len(files) >= 2:
        if not held:
            held.add(min(score, key=lambda p: (score[p], p)))
        elif len(held) == len(files):
            held.discard(max(score, key=lambda p: (score[p], p)))
    return sorted(p for p in files if p not in held), sorted(held)


# ---------------------------------------------------------------------------------------- cases
_PREPROCESSOR = re.compile(r"#\s*(include|define|undef|ifn?def|if|elif|else|endif|pragma|error|warning|import|"
                           r"region|endregion)\b|#!?\[")  # C/C# directives, Rust attributes: code, not comments
_COMMENT = re.compile(r"(#|//|/\*|\*/|\*(\s|$)|--|<!--|;|%)")


def is_comment_only(stripped: str) -> bool:
    """The stripped line is a comment in one of the common line-comment spellings (or a block comment's
    continuation): predicting prose is not what these measures are for."""
    return bool(_COMMENT.match(stripped)) and not _PREPROCESSOR.match(stripped)


def is_nontrivial(line: str) -> bool:
    """Worth a case: at least MIN_LINE_CHARS non-space characters and not a comment-only line.
    (A `}` or `return` is guessed from syntax alone and would flatter every model alike.)"""
    stripped = line.strip()
    return len("".join(stripped.split())) >= MIN_LINE_CHARS and not is_comment_only(stripped)


@dataclass
class NextLineCase:
    path: str
    line: int  # 1-based
    context: str  # the file before the line (its last `context_tokens` tokens), ending with "\n"
    reference: str  # the line, without its newline


@dataclass
class FimCase:
    path: str
    line: int  # 1-based
    prefix: str  # text before the line (its end, trimmed)
    middle: str  # the line, without its newline
    suffix: str  # text after the line, starting with its newline (its start, trimmed)


@dataclass
class RepoCases:
    """The fixed cases before and after measure; `to_json`/`from_json` record them in the run directory."""

    next_line: list[NextLineCase] = field(default_factory=list)
    fim: list[FimCase] = field(default_factory=list)
    seed: int = 0
    context_tokens: int = 0

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False, indent=1)

    @classmethod
    def from_json(cls, text: str) -> "RepoCases":
        data = json.loads(text)
        return cls(next_line=[NextLineCase(**c) for c in data["next_line"]], fim=[FimCase(**c) for c in data["fim"]],
                   seed=data.get("seed", 0), context_tokens=data.get("context_tokens", 0))


def _count(tokenizer, text: str) -> int:
    return len(tokenizer.encode(text, add_bos=False))


def _offsets(tokenizer, text: str) -> list[tuple[int, int]]:
    """Character spans of `text`'s tokens (the backend's own alignment: byte-level tokens that split
    a character all span that whole character)."""
    return tokenizer.backend.encode(text, add_special_tokens=False).offsets


def _window(tokenizer, text: str, budget: int, at_end: bool) -> str:
    """The end (or start) of `text` holding more than `budget` tokens, or all of it: what a budget is
    cut from, so that a case in a large file does not tokenize the whole file (a 100 kB file takes
    a quarter of a second, several times per case)."""
    chars = 4 * (budget + 1)
    while chars < len(text):
        piece = text[-chars:] if at_end else text[:chars]
        if _count(tokenizer, piece) > budget:
            return piece
        chars *= 4
    return text


def keep_tail(tokenizer, text: str, budget: int) -> str:
    """The end of `text` holding its last `budget` tokens (fewer when a character straddles the cut).

    Cut at a token's first character, then re-counted: tokenizing the kept text alone could
    merge differently at its new start, and a case must never exceed the budget it was drawn for.
    """
    text = _window(tokenizer, text, budget, at_end=True)
    spans = _offsets(tokenizer, text)
    if len(spans) <= budget:
        return text
    k = len(spans) - budget
    while k < len(spans):
        cut = spans[k][0]
        if cut >= spans[k - 1][1] and _count(tokenizer, text[cut:]) <= budget:
            return text[cut:]
        k += 1
    return ""


def keep_head(tokenizer, text: str, budget: int) -> str:
    """The start of `text` holding its first `budget` tokens (fewer when a character straddles the cut)."""
    text = _window(tokenizer, text, budget, at_end=False)
    spans = _offsets(tokenizer, text)
    if len(spans) <= budget:
        return text
    k = budget
    while k > 0:
        cut = spans[k][0]
        if _count(tokenizer, text[:cut]) <= budget:
            return text[:cut]
        k -= 1
    return ""


def _lines(files: dict[str, str]) -> Iterator[tuple[str, int, int, str]]:
    """(path, 0-based line index, offset of the line's start, line without newline), in path order."""
    for path in sorted(files):
        offset = 0
        for index, line in enumerate(files[path].split("\n")):
            yield path, index, offset, line
            offset += len(line) + 1


def draw_cases(files: dict[str, str], n_next_line: int, n_fim: int, seed: int, tokenizer,
               context_tokens: int) -> RepoCases:
    """Draw the cases from the held-out files (path -> text): up to `n_next_line` and `n_fim` distinct
    non-trivial lines each, uniformly over all such lines, so a big file weighs what its lines do.

    Next-line: the context is the file before the line (a first line has none, so is not drawn),
    cut to its last `context_tokens` tokens. FIM: the line is the middle; prefix and suffix share
    `context_tokens`, half each, a side that needs less leaving the rest to the other. Prompts add
    at most FIM_SPECIALS tokens to that. The two draws use separate seeded streams, so asking for
    more of one kind never changes the other's cases.
    """
    if context_tokens < 1:
        raise RepoEvalError(f"context_tokens must be at least 1, got {context_tokens}")
    if n_next_line < 0 or n_fim < 0:
        raise RepoEvalError(f"case counts cannot be negative (next-line {n_next_line}, FIM {n_fim})")
    candidates = [(path, index, start, line) for path, index, start, line in _lines(files) if is_nontrivial(line)]
    # str seeds go through SHA-512 in `random`, so the streams do not depend on PYTHONHASHSEED
    next_rng, fim_rng = random.Random(f"{seed}:next-line"), random.Random(f"{seed}:fim")

    with_context = [c for c in candidates if c[1] > 0]
    next_line = []
    for path, index, start, line in next_rng.sample(with_context, min(n_next_line, len(with_context))):
        context = keep_tail(tokenizer, files[path][:start], context_tokens)
        next_line.append(NextLineCase(path, index + 1, context, line))

    # without BOS, a first line's prefix-only prompt (no FIM tokens) would hold no token at all
    fim_candidates = candidates if tokenizer.encode("") else with_context
    fim = []
    for path, index, start, line in fim_rng.sample(fim_candidates, min(n_fim, len(fim_candidates))):
        text = files[path]
        prefix, suffix = text[:start], text[start + len(line):]
        # counts up to just past the budget: enough to share it out
        n_prefix = _count(tokenizer, _window(tokenizer, prefix, context_tokens, at_end=True))
        n_suffix = _count(tokenizer, _window(tokenizer, suffix, context_tokens, at_end=False))
        if n_prefix + n_suffix > context_tokens:
            prefix_budget = min(n_prefix, max(context_tokens // 2, context_tokens - n_suffix))
            prefix = keep_tail(tokenizer, prefix, prefix_budget)
            suffix = keep_head(tokenizer, suffix, context_tokens - _count(tokenizer, prefix))
        fim.append(FimCase(path, index + 1, prefix, line, suffix))
    return RepoCases(next_line=next_line, fim=fim, seed=seed, context_tokens=context_tokens)


# ------------------------------------------------------------------------------------ measuring
class _Progress:
    """The caller's progress display, or nothing: a started rich `Progress` (a task per stage is added
    to it) or a callable `(stage, done, total)`; None or False shows nothing."""

    def __init__(self, target):
        self.target, self.task = target, None

    def start(self, stage: str, total: int) -> None:
        self.stage, self.total, self.done = stage, total, 0
        if hasattr(self.target, "add_task"):
            self.task = self.target.add_task(stage, total=total or 1)
        elif self.target:
            self.target(stage, 0, total)

    def advance(self) -> None:
        self.done += 1
        if self.task is not None:
            self.target.advance(self.task)
        elif self.target:
            self.target(self.stage, self.done, self.total)


@torch.no_grad()
def held_out_nll(net, tokenizer, files: dict[str, str], seq_len: int, progress: _Progress) -> tuple[float, int]:
    """(summed NLL in nats, tokens scored) over the files, each tokenized alone (BOS as the model adds it).

    Windows of `seq_len` input tokens that do not overlap, each from a fresh context; window k
    predicts the tokens k*seq_len+1 .. (k+1)*seq_len, so every token after a file's first is
    scored exactly once (the window's first target has one token of context). This is not
    `dscoder.infer.perplexity`, which leaves each window's first token unscored and returns only
    the ratio, where files of a repository have to be pooled.
    """
    device = net.embed_tokens.weight.device
    seq_len = min(seq_len, net.config.max_position_embeddings)
    total, count = 0.0, 0
    progress.start("held-out perplexity", len(files))
    for path in sorted(files):
        ids = tokenizer.encode(files[path])
        for start in range(0, len(ids) - 1, seq_len):
            targets = ids[start + 1:start + seq_len + 1]
            inputs = torch.tensor([ids[start:start + len(targets)]], device=device)
            logits, _ = net(inputs)
            total += float(F.cross_entropy(logits[0].float(), torch.tensor(targets, device=device), reduction="sum"))
            count += len(targets)
        progress.advance()
    return total, count


def greedy_line(net, tokenizer, prompt: list[int], max_new_tokens: int, healed: bool = False) -> str:
    """The model's greedy first line after the prompt (KV-cached `stream`): generation stops at EOS,
    at the first newline after non-whitespace output, or after `max_new_tokens`.

    `healed`: the prompt is a context whose final newline was taken off (see `heal`); the model's
    answer then starts by ending that line, and the line compared is the first non-empty one
    after the first newline it writes."""
    eos = (tokenizer.eos_id,) if tokenizer.eos_id is not None else ()
    text = ""
    for delta in stream(net, tokenizer, prompt, SamplingParams(max_new_tokens=max_new_tokens, stop_token_ids=eos)):
        text += delta.text
        rest = text.split("\n", 1)[1] if healed and "\n" in text else ("" if healed else text)
        if "\n" in rest.lstrip():
            break
    if healed:
        text = text.split("\n", 1)[1] if "\n" in text else ""
    return (first_line(text) or "").strip()  # validate's rule for FIM exact match: the first non-empty line


def heal(context: str) -> tuple[str, bool]:
    """A left context without its final newline, and whether one was taken off.

    Byte-level BPE vocabularies for code merge a newline with the indentation after it (one
    token for "\n" + eight spaces), so a prompt that ends in a bare newline token is one the
    model rarely saw in training except before unindented text (a new definition, a `#path`
    header): it would be asked to continue from a tokenization it does not know. Ending the
    prompt at the end of the previous line lets the model write the newline and the indentation
    as it learned them (the "token healing" of guidance-style decoding, done by backing off a
    whole line end)."""
    return (context[:-1], True) if context.endswith("\n") and context[:-1] else (context, False)


def _fit(prompts: list[tuple[str, list[int]]], max_new_tokens: int, limit: int) -> None:
    """Refuse before generating anything when a prompt cannot fit the context with its answer."""
    longest = max(prompts, key=lambda p: len(p[1]), default=None)
    if longest is not None and len(longest[1]) + max_new_tokens > limit:
        raise RepoEvalError(f"{longest[0]}: a prompt of {len(longest[1])} tokens + max_new_tokens={max_new_tokens} "
                            f"exceeds the model's context of {limit} tokens; draw the cases with a smaller "
                            f"context_tokens (at most {limit - max_new_tokens - FIM_SPECIALS})")


def _exact_match(net, tokenizer, named_prompts, references, max_new_tokens, progress, stage, healed=None):
    progress.start(stage, len(named_prompts))
    hits, mismatches = 0, []
    healed = healed or [False] * len(named_prompts)
    for (name, prompt), reference, was_healed in zip(named_prompts, references, healed):
        got = greedy_line(net, tokenizer, prompt, max_new_tokens, was_healed)
        if got == reference.strip():
            hits += 1
        elif len(mismatches) < MISMATCH_EXAMPLES:
            mismatches.append({"where": name, "reference": reference.strip(), "generated": got})
        progress.advance()
    return (hits / len(named_prompts) if named_prompts else None), mismatches


def evaluate_repo(net, tokenizer, files: dict[str, str], cases: RepoCases, seq_len: int, max_new_tokens: int = 48,
                  progress=None) -> dict:
    """Perplexity of the held-out `files` and exact match on the drawn `cases` (see the module docstring).

    `progress`: a started rich `Progress` to add a task per stage to, a callable
    `(stage, done, total)`, True for bars of its own (the `progress: bool` of `train`), or
    None/False to show nothing. The model is put in eval mode for the
    measurement and given back in the mode it came in. Exact match compares the first non-empty
    generated line with the reference line, both stripped; an exact-match value is None when
    there were no cases of that kind, the perplexity None when no token was scored.
    """
    if progress is True:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      transient=True) as own:
            return evaluate_repo(net, tokenizer, files, cases, seq_len, max_new_tokens, own)
    try:
        fim_spelling, fim_mode = fim_tokens(tokenizer), "fim"
    except FimUnsupportedError:
        # No FIM tokens: continue the prefix alone. `dscoder infill` refuses such a model outright;
        # here the FIM cases still say something, as next-line cases at other positions.
        fim_spelling, fim_mode = None, "prefix-only"
    next_texts = [heal(c.context) for c in cases.next_line]
    next_prompts = [(f"{c.path}:{c.line}", tokenizer.encode(text)) for c, (text, _) in zip(cases.next_line, next_texts)]
    # FIM: the prompt text `dscoder infill` writes (PSM); without FIM tokens the prefix alone, healed
    fim_texts = [(fim_prompt(c.prefix, c.suffix, fim_spelling, "psm"), False) if fim_spelling else heal(c.prefix)
                 for c in cases.fim]
    fim_prompts = [(f"{c.path}:{c.line}", tokenizer.encode(text)) for c, (text, _) in zip(cases.fim, fim_texts)]
    if any(not ids for _, ids in next_prompts + fim_prompts):
        raise RepoEvalError("a case's prompt is empty (a line at the top of a file, and a tokenizer that adds no "
                            "BOS): draw the cases with this tokenizer, which leaves such lines out")
    _fit(next_prompts + fim_prompts, max_new_tokens, net.config.max_position_embeddings)

    was_training = net.training
    net.eval()
    try:
        shown = _Progress(progress)
        nll, tokens = held_out_nll(net, tokenizer, files, seq_len, shown)
        next_em, next_bad = _exact_match(net, tokenizer, next_prompts, [c.reference for c in cases.next_line],
                                         max_new_tokens, shown, "next-line exact match")
        fim_em, fim_bad = _exact_match(net, tokenizer, fim_prompts, [c.middle for c in cases.fim],
                                       max_new_tokens, shown, f"FIM exact match ({fim_mode})")
    finally:
        net.train(was_training)
    return {"perplexity": math.exp(nll / tokens) if tokens else None, "tokens": tokens,
            "next_line_exact_match": next_em, "fim_exact_match": fim_em, "fim_mode": fim_mode,
            "n_next_line": len(cases.next_line), "n_fim": len(cases.fim),
            "next_line_mismatches": next_bad, "fim_mismatches": fim_bad}


# -------------------------------------------------------------------------------------- report
def _cell(value, percent: bool) -> str:
    if value is None:
        return "-"
    return f"{100 * value:.1f}%" if percent else f"{value:.3f}"


def _change(before, after, percent: bool) -> str:
    if before is None or after is None:
        return "-"
    if percent:
        return f"{100 * (after - before):+.1f} pts"
    relative = f" ({(after - before) / before:+.1%})" if before else ""
    return f"{after - before:+.3f}{relative}"


def format_comparison(before: dict, after: dict) -> str:
    """A text table of the measures before and after fine-tuning (perplexity: lower is better)."""
    modes = [m for m in (before.get("fim_mode"), after.get("fim_mode")) if m]
    # a model given FIM tokens by the fine-tuning infills after but only continued the prefix before
    mode = " -> ".join(modes) if len(set(modes)) > 1 else (modes or ["-"])[0]
    rows = [("held-out perplexity", "perplexity", False),
            (f"next-line exact match (n={after.get('n_next_line', before.get('n_next_line'))})",
             "next_line_exact_match", True),
            (f"FIM exact match ({mode}, n={after.get('n_fim', before.get('n_fim'))})", "fim_exact_match", True)]
    table = [("metric", "before", "after", "change")]
    table += [(label, _cell(before.get(key), pct), _cell(after.get(key), pct),
               _change(before.get(key), after.get(key), pct)) for label, key, pct in rows]
    widths = [max(len(row[i]) for row in table) for i in range(4)]
    lines = ["  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths)))
             for row in table]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(line.rstrip() for line in lines)
