"""`dscoder eval repo-completion`: does the repository context help, and what does it cost?

Each case (`tasks/repo_cases.py`) is asked twice, greedily, stopped once a non-empty line is
finished (at most `--max-tokens`):

- **in-file**: `#<path>` and the file's text before the line (RepoBench's left context; with
  `--with-suffix` also the rest of the file after the line, through the model's FIM tokens);
- **repo**: the same, after the repository context `dscoder.repo.context.RepoIndex` chooses for
  that cursor (definitions of the names near it, then the files its file imports), given at most
  `--context-tokens` tokens, by default all the model's context leaves beside the file and the
  answer. The context is built from the text before the cursor only (and the suffix with
  `--with-suffix`), so the line itself never reaches it through the cursor's file.

The line's own file gets at most `--file-tokens` (default: half of what the window leaves beside
the answer), the repository context the rest: as RepoBench and CrossCodeEval give the in-file and
the cross-file context budgets of their own. A longer file loses whole lines from the top of its
prefix (the suffix, with `--with-suffix`, at most a third of the file's tokens, loses lines from its
end). Without the cap a file longer than the window would leave the context no room (`complete
--repo` keeps the file whole), and with a model of a 1K-4K window almost no case would have any.
Both settings get the same file text, so they differ only by the repository context.

Scored as RepoBench scores (`tasks/repo_completion.py`): exact match and edit similarity of the
first non-empty line; beside them the cost: prompt tokens and seconds per case (prefill and
decode of that one case, measured alone), and the gain of repo over in-file, overall and per
package. Cases whose repository is missing or changed are left out by name, never scored 0.

Why not `eval.run`'s runner: its problems are built before a model is chosen, and these prompts
are budgeted in the model's tokens; its report averages samples per group, and these measures pair
two settings of one case; its batched engine shares steps between samples, which would blur the
latency of one completion. Nothing is executed, so there is no sandbox either. The run is still
resumable like the others: each answer is appended to `samples.jsonl` as it is made, a rerun of
the same command goes on where it stopped, and other settings in the same folder are refused.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from dscoder.cache import sha256_file
from dscoder.eval.config import EvalConfig, EvalError, slug, without_auto_dtype
from dscoder.eval.runner import read_samples
from dscoder.files import remove_stale, replacing, write_atomic
from dscoder.repo.context import ContextConfig, RepoIndex, prompt_prefix
from dscoder.settings import identity, like, setting
from dscoder.tasks import repo_cases
from dscoder.tasks.infilling import exact_match, first_line
from dscoder.tasks.repo_completion import case_file, edit_similarity, header, line_finished

SETTINGS = ("in-file", "repo")
SAMPLES_FILE, CONFIG_FILE = "samples.jsonl", "config.json"
SUFFIX_SHARE = 3  # with --with-suffix the suffix takes at most 1/SUFFIX_SHARE of the file's tokens
SLACK = 8  # tokens kept free: a text's tokens counted in pieces may differ slightly from the whole's
# Indexing limits for the benchmark's repositories: time enough that no file of theirs is skipped on a loaded
# machine (a skipped file would change the prompts from one run to the next); the report names any that were.
CONTEXT = ContextConfig(max_seconds=300.0)


@dataclass
class RepoCompletionConfig:
    """One repo-completion run: the model, the context budget, the cases, where to write."""

    model: str | None = like(EvalConfig, "model")
    quant: str | None = like(EvalConfig, "quant")
    device: str = like(EvalConfig, "device")
    dtype: str = like(EvalConfig, "dtype")
    limit: int | None = setting(None, "Only the first N cases (the case file takes the packages in turn, so a "
                                      "few cases sample them all).", "--limit")
    context_tokens: int | None = setting(None, "Tokens of repository context at most (default: all that the model's "
                                               "context leaves beside the file and the answer).", "--context-tokens")
    file_tokens: int | None = setting(None, "Tokens of the line's own file at most, the same in both settings (its "
                                            "prefix loses lines from its top; default: half of what the window leaves "
                                            "beside the answer, so the repository context has the other half).",
                                      "--file-tokens")
    with_suffix: bool = setting(False, "Also give the rest of the file after the line, through the model's FIM "
                                       "tokens (a FIM model only).", "--with-suffix")
    max_new_tokens: int = setting(64, "Most new tokens per answer (only its first non-empty line is scored).",
                                  "--max-tokens")
    cases: Path | None = setting(None, "A case file (default: dscoder/tasks/data/repo-completion-python.jsonl, or "
                                       "DATA/repo-completion/python.jsonl under --data).", "--cases")
    data: Path | None = like(EvalConfig, "data")
    site: Path | None = setting(None, "A site-packages directory to find the packages in (default: this Python's). "
                                      "Files are checked by hash, so any copy of the same versions will do.",
                                "--site", run=True)
    out: Path | None = setting(None, "Results folder (default: eval-results/repo-completion-...). An interrupted "
                                     "run there is resumed.", "--out", "-o", run=True)
    progress: bool = setting(True, "Show a progress bar.", "--progress/--no-progress", run=True)

    def check(self) -> None:
        if self.limit is not None and self.limit < 1:
            raise EvalError(f"--limit must be at least 1, got {self.limit}")
        if self.file_tokens is not None and self.file_tokens < 1:
            raise EvalError(f"--file-tokens must be at least 1, got {self.file_tokens}")
        if self.context_tokens is not None and self.context_tokens < 0:
            raise EvalError(f"--context-tokens must be 0 or more, got {self.context_tokens}")
        if self.max_new_tokens < 1:
            raise EvalError(f"--max-tokens must be at least 1, got {self.max_new_tokens}")

    def case_path(self) -> Path:
        return Path(self.cases) if self.cases is not None else case_file("python", self.data)


def default_out(cfg: RepoCompletionConfig) -> Path:
    parts = ["repo-completion", slug(cfg.model or "default"), cfg.quant or "",
             "fim" if cfg.with_suffix else "", f"file{cfg.file_tokens}" if cfg.file_tokens is not None else "",
             f"ctx{cfg.context_tokens}" if cfg.context_tokens is not None else ""]
    return Path("eval-results") / "-".join(p for p in parts if p)


def identity_of(cfg: RepoCompletionConfig, cases: Path) -> dict:
    """What a resumed run must match: the settings that change an answer, the case file's hash (not its
    path) and the repository context's settings (less its time limit, which says how the work runs)."""
    found = json.loads(json.dumps(without_auto_dtype(identity(cfg)), default=str))
    found.pop("cases", None)
    found.pop("data", None)
    found["cases_sha256"] = sha256_file(cases)
    found["context_config"] = {k: v for k, v in dataclasses.asdict(CONTEXT).items() if k != "max_seconds"}
    found["context_code"] = context_code()
    return found


def context_code() -> str:
    """sha256 over the source of the modules that choose the context (`dscoder/repo/`'s context, symbols, deps):
    a run resumed after they changed would mix two kinds of prompts, so it is refused like other settings."""
    from dscoder.repo import context, deps, symbols

    digest = hashlib.sha256()
    for module in (context, symbols, deps):
        digest.update(Path(module.__file__).read_bytes())
    return digest.hexdigest()


@dataclass
class RepoSummary:
    numbers: dict
    out: Path
    new_answers: int
    wall_seconds: float


# ---- prompts ---------------------------------------------------------------------------------------

def count_with(tokenizer) -> Callable[[str], int]:
    def count(text: str) -> int:
        return len(tokenizer.encode(text, add_bos=False))
    return count


def cut_top(text: str, limit: int, count: Callable[[str], int]) -> str:
    """`text` less whole lines from its top until it takes at most `limit` tokens ("" if none fits)."""
    if count(text) <= limit:
        return text
    lines = text.splitlines(keepends=True)
    low, high = 1, len(lines)  # the fewest lines dropped that fit: binary search, each try one count
    while low < high:
        mid = (low + high) // 2
        if count("".join(lines[mid:])) <= limit:
            high = mid
        else:
            low = mid + 1
    kept = "".join(lines[low:])
    return kept if count(kept) <= limit else ""


def cut_bottom(text: str, limit: int, count: Callable[[str], int]) -> str:
    """`text` less whole lines from its end until it takes at most `limit` tokens."""
    if count(text) <= limit:
        return text
    lines = text.splitlines(keepends=True)
    low, high = 0, len(lines) - 1  # the most lines kept that fit
    while low < high:
        mid = (low + high + 1) // 2
        if count("".join(lines[:mid])) <= limit:
            low = mid
        else:
            high = mid - 1
    return "".join(lines[:low])


@dataclass
class Prompts:
    """A case's two prompts (text given to the tokenizer) and what went into them."""

    in_file: str
    repo: str
    prefix_cut: int  # lines of the file's prefix left out to fit the window
    context_tokens: int
    blocks: list[tuple[str, str, int]]  # (path, kind, tokens) of the context's blocks
    defined_in_context: bool  # the definition's file is among the context's blocks


class PromptBuilder:
    """Builds both prompts of a case for one model: its tokenizer, window and FIM tokens."""

    def __init__(self, tokenizer, window: int, cfg: RepoCompletionConfig):
        self.count = count_with(tokenizer)
        self.window, self.cfg = window, cfg
        self.fim = None
        if cfg.with_suffix:
            from dscoder.tokenizer.fim import fim_tokens

            self.fim = fim_tokens(tokenizer)
        # BOS, and the three FIM markers, beside the answer
        self.reserve = cfg.max_new_tokens + 1 + (3 if self.fim is not None else 0) + SLACK

    def _text(self, before: str, suffix: str) -> str:
        if self.fim is None:
            return before
        from dscoder.tokenizer.fim import fim_prompt

        return fim_prompt(before, suffix, self.fim)

    def build(self, case: repo_cases.Case, files: repo_cases.Files, index: RepoIndex) -> Prompts:
        prefix, _, suffix = repo_cases.pieces(case, files)
        room = self.window - self.reserve
        own = min(room, self.cfg.file_tokens if self.cfg.file_tokens is not None else room // 2)
        suffix = cut_bottom(suffix, own // SUFFIX_SHARE, self.count) if self.fim is not None else ""
        head = header(case)
        kept = cut_top(prefix, own - self.count(head) - self.count(suffix), self.count)
        cut = prefix[:len(prefix) - len(kept)].count("\n")
        in_file = self._text(head + kept, suffix)
        budget = max(0, room - self.count(in_file))
        if self.cfg.context_tokens is not None:
            budget = min(budget, self.cfg.context_tokens)
        # The context reads the whole prefix (the file's imports are at its top) and the suffix given to the
        # model: never the line itself, nor (without --with-suffix) anything after it.
        context = index.context(case.path, prefix, suffix, budget, self.count)
        repo = self._text(prompt_prefix(context, case.path, kept), suffix)
        blocks = [(b.path, b.kind, b.tokens) for b in context.blocks]
        defined = f"{case.root}/{case.defined_in}"
        return Prompts(in_file, repo, cut, context.tokens, blocks, any(path == defined for path, _, _ in blocks))


# ---- answers ---------------------------------------------------------------------------------------

def complete(model, tokenizer, text: str, max_new_tokens: int) -> tuple[str, int, int, float]:
    """(answer, prompt tokens, new tokens, seconds): greedy, stopped at EOS or once a non-empty line is done."""
    from dscoder.infer.generate import SamplingParams, stream

    ids = tokenizer.encode(text)
    eos = (tokenizer.eos_id,) if tokenizer.eos_id is not None else ()
    params = SamplingParams(max_new_tokens=max_new_tokens, stop_token_ids=eos)
    answer, new = "", 0
    start = time.perf_counter()
    steps = stream(model, tokenizer, ids, params)
    try:
        for delta in steps:
            answer += delta.text
            new += delta.token_id is not None
            if line_finished(answer):
                break
    finally:
        steps.close()
    return answer, len(ids), new, time.perf_counter() - start


def score(row: dict, answer: str, target: str) -> dict:
    row.update(completion=answer, first_line=first_line(answer), exact_match=exact_match(answer, target),
               edit_similarity=round(edit_similarity(answer, target), 4))
    return row


# ---- the run ---------------------------------------------------------------------------------------

def read_rows(out: Path) -> list[dict]:
    """The answers `samples.jsonl` holds (`runner.read_samples`: a line cut short by a kill is asked again)."""
    return [row for row in read_samples(out)
            if isinstance(row, dict) and "task_id" in row and row.get("setting") in SETTINGS]


def _prepare(out: Path, settings: dict) -> set[tuple[str, str]]:
    """The folder ready for appending, with the (task_id, setting) pairs already answered; a folder
    holding a run of other settings is refused, naming them."""
    out.mkdir(parents=True, exist_ok=True)
    remove_stale(out)
    saved = out / CONFIG_FILE
    if saved.exists() and (out / SAMPLES_FILE).exists():
        try:
            previous = json.loads(saved.read_text())
        except ValueError:
            previous = {}
        differing = {k: (previous.get(k), v) for k, v in settings.items() if previous.get(k) != v and k != "limit"}
        if differing:
            detail = ", ".join(f"{k}: {old!r} there, {new!r} now" for k, (old, new) in differing.items())
            raise EvalError(f"{out} holds a run with other settings ({detail}); use another --out")
    write_atomic(saved, json.dumps(settings, indent=2) + "\n")
    rows = read_rows(out)
    write_atomic(out / SAMPLES_FILE, "".join(json.dumps(row) + "\n" for row in rows))
    return {(row["task_id"], row["setting"]) for row in rows}


@contextmanager
def _staged(loaded: repo_cases.Loaded) -> Iterator[Callable[[str], RepoIndex]]:
    """index(root): a RepoIndex per repository, built on first use over a copy of exactly its hashed files."""
    indexes: dict[str, RepoIndex] = {}
    with tempfile.TemporaryDirectory(prefix="dscoder-repo-completion-") as tmp:
        def index(root: str):
            if root not in indexes:
                into = repo_cases.stage(loaded.files[root], root, Path(tmp) / slug(root))
                indexes[root] = RepoIndex(into, CONTEXT)
            return indexes[root]

        index.indexes = indexes  # type: ignore[attr-defined]
        yield index


def run(cfg: RepoCompletionConfig, *, on_left_out: Callable[[int, str], None] | None = None) -> RepoSummary:
    """Answer every case not yet in `cfg.out` in both settings, then write summary.json, report.md and
    chart.png. `on_left_out(count, note)` hears of cases left out before any model loads."""
    cfg.check()
    cases_path = cfg.case_path()
    loaded = repo_cases.load(cases_path, repo_cases.site_dirs([cfg.site] if cfg.site else []))
    if loaded.left_out and on_left_out is not None:
        on_left_out(len(loaded.left_out), left_out_note(loaded.left_out))
    if not loaded.cases:
        raise EvalError(f"no case of {cases_path} can run here: {left_out_note(loaded.left_out)}")
    cases = loaded.cases[:cfg.limit] if cfg.limit else loaded.cases
    settings = identity_of(cfg, cases_path)
    out = cfg.out or default_out(cfg)
    done = _prepare(out, settings)
    todo = [case for case in cases if any((case.task_id, s) not in done for s in SETTINGS)]
    started, fresh, skipped_files = time.perf_counter(), 0, {}
    if todo:
        fresh, skipped_files = _answer(cfg, todo, loaded, done, out)
    wall = time.perf_counter() - started
    asked = {case.task_id for case in cases}
    rows = [row for row in read_rows(out) if row["task_id"] in asked]
    numbers = summarize(rows, settings, loaded.left_out, skipped_files)
    write(out, numbers)
    return RepoSummary(numbers, out, fresh, wall)


def _answer(cfg: RepoCompletionConfig, todo: list[repo_cases.Case], loaded: repo_cases.Loaded,
            done: set[tuple[str, str]], out: Path) -> tuple[int, dict[str, list]]:
    from dscoder.hub import load
    from dscoder.infer.generate import GenerationError

    model, tokenizer = load(cfg.model, quant=cfg.quant, device=cfg.device, dtype=cfg.dtype)
    builder = PromptBuilder(tokenizer, model.config.max_position_embeddings, cfg)
    fresh = 0
    with _staged(loaded) as index, open(out / SAMPLES_FILE, "a", encoding="utf-8") as sink, \
            _progress(len(todo), cfg.progress) as advance:
        for case in todo:
            prompts = builder.build(case, loaded.files[case.root], index(case.root))
            for setting_name, text in zip(SETTINGS, (prompts.in_file, prompts.repo)):
                if (case.task_id, setting_name) in done:
                    continue
                row = {"task_id": case.task_id, "setting": setting_name, "package": case.root,
                       "repo": f"{case.dist}=={case.version}", "file": case.file, "line": case.line,
                       "name": case.name, "defined_in": case.defined_in, "target": case.target,
                       "prefix_lines_cut": prompts.prefix_cut}
                if setting_name == "repo":
                    row.update(context_tokens=prompts.context_tokens, context_blocks=prompts.blocks,
                               defined_in_context=prompts.defined_in_context)
                try:
                    answer, prompt_tokens, new, seconds = complete(model, tokenizer, text, cfg.max_new_tokens)
                    row.update(prompt_tokens=prompt_tokens, gen_tokens=new, seconds=round(seconds, 4), error=None)
                except GenerationError as e:  # scored as the empty answer it is, not left out
                    answer = ""
                    row.update(prompt_tokens=len(tokenizer.encode(text)), gen_tokens=0, seconds=0.0, error=str(e))
                sink.write(json.dumps(score(row, answer, case.target + "\n")) + "\n")
                sink.flush()
                fresh += 1
            advance()
        skipped = {root: list(ix.skipped) for root, ix in index.indexes.items() if ix.skipped}
    return fresh, skipped


@contextmanager
def _progress(total: int, enabled: bool) -> Iterator[Callable[[], None]]:
    if not enabled or total == 0:
        yield lambda: None
        return
    import sys

    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, \
        TimeRemainingColumn

    bar = Progress(TextColumn("[bold]repo-completion"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                   TimeRemainingColumn(), console=Console(file=sys.stderr))
    with bar:
        task = bar.add_task("cases", total=total)
        yield lambda: bar.advance(task)


def left_out_note(left_out: dict[str, str], shown: int = 3) -> str:
    """How many cases were left out and why, the reasons grouped (one package's cases share one)."""
    reasons: dict[str, list[str]] = {}
    for task, why in left_out.items():
        reasons.setdefault(why, []).append(task)
    parts = [f"{len(tasks)} ({why}; e.g. {tasks[0]})" for why, tasks in list(reasons.items())[:shown]]
    more = f" and {len(reasons) - shown} more reasons" if len(reasons) > shown else ""
    return f"{len(left_out)} cases left out: " + "; ".join(parts) + more


# ---- numbers, report, chart ------------------------------------------------------------------------

def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def _block(rows: list[dict]) -> dict:
    return {"cases": len(rows), "exact_match": 100 * _mean([r["exact_match"] for r in rows]),
            "edit_similarity": _mean([r["edit_similarity"] for r in rows]),
            "prompt_tokens": _mean([r["prompt_tokens"] for r in rows]),
            "seconds": _mean([r["seconds"] for r in rows]),
            "errors": sum(r.get("error") is not None for r in rows)}


def _gain(a: dict, b: dict) -> dict:
    return {k: b[k] - a[k] for k in ("exact_match", "edit_similarity", "prompt_tokens", "seconds")}


def summarize(rows: list[dict], config: dict, left_out: dict[str, str], skipped_files: dict | None = None) -> dict:
    """Per setting: EM %, mean ES, mean prompt tokens, mean seconds; the gain (repo - in-file); the same per
    package. Only cases answered in both settings count, so the two settings see the same cases."""
    by_case: dict[str, dict[str, dict]] = {}
    for row in rows:
        by_case.setdefault(row["task_id"], {})[row["setting"]] = row
    paired = {task: pair for task, pair in by_case.items() if all(s in pair for s in SETTINGS)}
    settings = {s: _block([pair[s] for pair in paired.values()]) for s in SETTINGS}
    packages: dict[str, dict] = {}
    for pair in paired.values():
        packages.setdefault(pair["repo"]["package"], []).append(pair)
    per_package = {}
    for package, pairs in sorted(packages.items()):
        blocks = {s: _block([p[s] for p in pairs]) for s in SETTINGS}
        per_package[package] = {"dist": pairs[0]["repo"]["repo"], **blocks,
                                "gain": _gain(blocks["in-file"], blocks["repo"])}
    repo_rows = [pair["repo"] for pair in paired.values()]
    return {"config": config, "cases": len(paired), "settings": settings,
            "gain": _gain(settings["in-file"], settings["repo"]) if paired else {},
            "context": {"tokens": _mean([r.get("context_tokens", 0) for r in repo_rows]),
                        "defined_in_context": 100 * _mean([float(bool(r.get("defined_in_context"))) for r in repo_rows]),
                        "prefix_cut_cases": sum(r.get("prefix_lines_cut", 0) > 0 for r in repo_rows),
                        "no_context_cases": sum(not r.get("context_tokens") for r in repo_rows),
                        "files_skipped": {root: _reasons(items) for root, items in (skipped_files or {}).items()}},
            "packages": per_package, "left_out": left_out}


def _reasons(items: list) -> dict[str, int]:
    counts: dict[str, int] = {}
    for _, why in items:
        counts[why] = counts.get(why, 0) + 1
    return counts


def title(config: dict) -> str:
    model = config.get("model") or "default"
    extra = [config["quant"]] if config.get("quant") else []
    extra += ["FIM with suffix"] if config.get("with_suffix") else []
    extra += [f"file <= {config['file_tokens']} tokens"] if config.get("file_tokens") is not None else []
    extra += [f"context <= {config['context_tokens']} tokens"] if config.get("context_tokens") is not None else []
    return f"repo-completion: {model}" + (f" [{', '.join(extra)}]" if extra else "")


def table_rows(numbers: dict) -> list[list[str]]:
    """setting, cases, EM %, ES, prompt tokens, seconds per case: the two settings and the gain."""
    rows = []
    for name in SETTINGS:
        b = numbers["settings"][name]
        rows.append([name, str(b["cases"]), f"{b['exact_match']:.1f}", f"{b['edit_similarity']:.1f}",
                     f"{b['prompt_tokens']:.0f}", f"{b['seconds']:.2f}"])
    g = numbers["gain"]
    if g:
        rows.append(["gain (repo - in-file)", "", f"{g['exact_match']:+.1f}", f"{g['edit_similarity']:+.1f}",
                     f"{g['prompt_tokens']:+.0f}", f"{g['seconds']:+.2f}"])
    return rows


COLUMNS = ["setting", "cases", "EM %", "ES", "prompt tokens", "s / case"]


def markdown(numbers: dict, chart: str | None) -> str:
    lines = [f"# {title(numbers['config'])}", "",
             f"{numbers['cases']} cases, each answered with the file alone (in-file) and after its repository's "
             f"context (repo); greedy, the first non-empty line scored: exact match (EM) and edit similarity (ES, "
             f"RepoBench's fuzz.ratio). Mean context {numbers['context']['tokens']:.0f} tokens; the definition's "
             f"file was in it for {numbers['context']['defined_in_context']:.1f}% of the cases.", "",
             "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(row) + " |" for row in table_rows(numbers)]
    lines += ["", "## Per package", "", "| package | cases | EM in-file | EM repo | ES in-file | ES repo | ES gain |",
              "|---|---|---|---|---|---|---|"]
    for package, p in numbers["packages"].items():
        lines.append(f"| {p['dist']} ({package}) | {p['in-file']['cases']} | {p['in-file']['exact_match']:.1f} | "
                     f"{p['repo']['exact_match']:.1f} | {p['in-file']['edit_similarity']:.1f} | "
                     f"{p['repo']['edit_similarity']:.1f} | {p['gain']['edit_similarity']:+.1f} |")
    context = numbers["context"]
    if context["prefix_cut_cases"]:
        lines += ["", f"{context['prefix_cut_cases']} cases' files were longer than the file's budget: their prefix "
                      f"lost lines from its top (in both settings)."]
    if context["no_context_cases"]:
        lines += ["", f"{context['no_context_cases']} cases got no repository context (nothing chosen fitted)."]
    if context["files_skipped"]:
        lines += ["", "Files the repository index skipped (not read for any context): " + "; ".join(
            f"{root}: " + ", ".join(f"{n} {why}" for why, n in reasons.items())
            for root, reasons in context["files_skipped"].items())]
    if numbers["left_out"]:
        lines += ["", left_out_note(numbers["left_out"])]
    if chart:
        lines += ["", f"![EM and ES per setting]({chart})"]
    return "\n".join(lines) + "\n"


def plot(numbers: dict, path: Path) -> None:
    """EM and ES per setting (left), ES per package and setting (right)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = {"in-file": "#9aa5b1", "repo": "#3b7dd8"}
    packages = list(numbers["packages"])
    fig, (left, right) = plt.subplots(1, 2, figsize=(max(10, 4 + 1.0 * len(packages)), 4.4),
                                      gridspec_kw={"width_ratios": [1, max(2, len(packages) / 2)]})
    width = 0.38
    for k, name in enumerate(SETTINGS):
        block = numbers["settings"][name]
        values = [block["exact_match"], block["edit_similarity"]]
        bars = left.bar([x + (k - 0.5) * width for x in range(2)], values, width, label=name, color=colours[name])
        for bar, value in zip(bars, values):
            left.text(bar.get_x() + bar.get_width() / 2, value + 1, f"{value:.1f}", ha="center", fontsize=8)
        per = [numbers["packages"][p][name]["edit_similarity"] for p in packages]
        right.bar([x + (k - 0.5) * width for x in range(len(packages))], per, width, label=name, color=colours[name])
    left.set_xticks(range(2), ["EM %", "ES"])
    left.set_ylim(0, 105)
    left.set_title(f"{numbers['cases']} cases")
    left.legend(fontsize=8)
    right.set_xticks(range(len(packages)), packages, rotation=30, ha="right", fontsize=8)
    right.set_ylim(0, 105)
    right.set_title("edit similarity per package")
    fig.suptitle(title(numbers["config"]), fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110, format="png")
    plt.close(fig)


def write(out: Path, numbers: dict) -> None:
    write_atomic(out / "summary.json", json.dumps(numbers, indent=2) + "\n")
    chart = None
    if numbers["cases"]:
        with replacing(out / "chart.png") as tmp:
            plot(numbers, tmp)
        chart = "chart.png"
    write_atomic(out / "report.md", markdown(numbers, chart))
