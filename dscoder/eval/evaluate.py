"""`dscoder.eval.run(cfg)`: one whole evaluation, from settings to written report.

Chooses the subsets, skips languages whose toolchain is missing, loads the problems, takes
the completions from a file, from a model (through the serving engine, `cfg.batch` samples
at a time) or from an OpenAI-compatible server (`eval/api.py`), judges every sample in the
sandbox, and writes summary.json, report.md and the chart. `dscoder eval` is this plus option
parsing and a printed table.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

from dscoder.eval import report, runner
from dscoder.eval.config import EvalConfig, EvalError, default_out
from dscoder.execute import toolchains
from dscoder.files import write_atomic
from dscoder.tasks import BENCHMARKS, load, subsets
from dscoder.tasks.problem import Problem


@dataclass
class Summary:
    """What a run reports: summary.json's numbers (also by `summary[key]`), where its files are,
    and what this call added (a resumed run's earlier samples take no time)."""

    numbers: dict
    out: Path
    new_samples: int
    wall_seconds: float

    def __getitem__(self, key: str):
        return self.numbers[key]


def run(cfg: EvalConfig, *, on_skip: Callable[[str, str], None] | None = None) -> Summary:
    """Evaluate as `cfg` says, resuming the run already in `cfg.out` if there is one.

    `on_skip(subset, why)` hears of each subset skipped for a missing toolchain as it is skipped.
    EvalError (and the errors of loading data or a model) name what is wrong before any sample runs.
    """
    chosen = subsets(cfg.benchmark, cfg.subset)
    if BENCHMARKS[cfg.benchmark].runner is not None:
        raise EvalError(f"{cfg.benchmark} has a runner of its own (dscoder/eval/{BENCHMARKS[cfg.benchmark].runner}.py):"
                        f" run `dscoder eval {cfg.benchmark}`")
    asked_model = cfg.model
    cfg.check()  # before --model takes its default: --api beside --model is refused
    if cfg.api is not None:  # the model under test is the server's: its URL and model name are the identity
        from dscoder.eval import api

        cfg = replace(cfg, api=api.base_url(cfg.api))
        cfg = replace(cfg, api_model=api.resolve_model(cfg))
    cfg = replace(cfg, subset=cfg.subset or BENCHMARKS[cfg.benchmark].default,
                  model=str(cfg.model or "default") if cfg.completions is None and cfg.api is None else "")
    cfg.check()
    out = cfg.out or default_out(cfg)
    problems, skipped = _problems(cfg, chosen, on_skip)
    per_task = None
    with ExitStack() as stack:
        if cfg.completions is not None:
            in_groups: dict[str, set[str]] = {}
            for p in problems:
                in_groups.setdefault(p.task_id, set()).add(p.group)
            complete, per_task = runner.file_completer(cfg.completions, {p.group for p in problems} or set(chosen),
                                                       {t: g.pop() for t, g in in_groups.items() if len(g) == 1})
            unknown = sorted(set(per_task) - {(p.group, p.task_id) for p in problems})
            if unknown:
                names = [task if len(chosen) == 1 else f"{group}/{task}" for group, task in unknown[:5]]
                raise EvalError(f"{cfg.completions} names task_ids that {cfg.benchmark} does not have: {names}")
            problems = [p for p in problems if (p.group, p.task_id) in per_task]
        elif cfg.api is not None:
            from dscoder.eval.api import ApiCompleter

            runner.check_form(problems, cfg)
            _retry_server_errors(out, cfg)
            complete = ApiCompleter(cfg)
        else:
            complete, problems = stack.enter_context(_model_completer(cfg, asked_model, problems, skipped, on_skip))
        before, started = len(runner.read_samples(out)), time.perf_counter()
        rows = runner.run(problems, complete, cfg, out, samples_per_task=per_task, workers=cfg.workers,
                          timeout=cfg.timeout, progress=cfg.progress)
        wall = time.perf_counter() - started
    numbers = report.write(out, rows, cfg.identity(), skipped)
    return Summary(numbers, out, numbers["samples"] - before, wall)


@contextmanager
def _model_completer(cfg: EvalConfig, name: str | None, problems: list[Problem], skipped: dict[str, str],
                     on_skip: Callable[[str, str], None] | None
                     ) -> Iterator[tuple[runner.Completer | runner.BatchCompleter, list[Problem]]]:
    """The model's completer (the serving engine's, `cfg.batch` samples at once, or one sample at a
    time) and the problems it can be asked: a group whose every prompt is longer than the model's
    context (passkey's 16k on an 8K model) is skipped by name, never scored 0%."""
    from dscoder.hub import load

    runner.check_form(problems, cfg)  # before the model loads
    model, tokenizer = load(name, quant=cfg.quant, device=cfg.device, dtype=cfg.dtype)
    if any(p.fim is not None for p in problems):
        from dscoder.tokenizer.fim import fim_tokens

        fim_tokens(tokenizer, str(name or "the default model"))  # fail now, not after the first sample
    problems = _within_context(problems, cfg, tokenizer, model.config.max_position_embeddings, skipped, on_skip)
    if cfg.batch == 1:
        yield runner.model_completer(model, tokenizer, cfg), problems
        return
    from dscoder.eval.batched import EngineCompleter

    with EngineCompleter(model, tokenizer, cfg, problems) as complete:
        yield complete, problems


def _within_context(problems: list[Problem], cfg: EvalConfig, tokenizer, context: int, skipped: dict[str, str],
                    on_skip: Callable[[str, str], None] | None) -> list[Problem]:
    """`problems` less the groups none of whose prompts fits `context` tokens (each named in `skipped`).
    A group where only some prompts are too long keeps them: those samples are generation errors."""
    from dscoder.eval.requests import request

    too_long: dict[str, list[int]] = {}
    fits: set[str] = set()
    for p in problems:
        if p.group in fits:
            continue
        text = p.instruction if cfg.form == "instruct" and p.instruction else p.prompt
        if len(text.encode()) < context // 2:  # a byte-level BPE token is at least a byte; the template adds little
            fits.add(p.group)
            continue
        length = len(request(p, tokenizer, cfg).ids)
        if length < context:
            fits.add(p.group)
        else:
            too_long.setdefault(p.group, []).append(length)
    dropped = [group for group in too_long if group not in fits]  # in the problems' order (1k before 128k)
    for group in dropped:
        low, high = min(too_long[group]), max(too_long[group])
        skipped[group] = (f"every prompt ({low}{f'-{high}' if high > low else ''} tokens) is longer than the "
                          f"model's context of {context} tokens")
        if on_skip is not None:
            on_skip(group, skipped[group])
    return [p for p in problems if p.group not in set(dropped)]


def _retry_server_errors(out: Path, cfg: EvalConfig) -> None:
    """Drop the samples a server failed from a resumed --api run of the same settings, so it asks
    them again (a server that was down or overloaded is no verdict on the model)."""
    saved, rows = out / runner.CONFIG_FILE, runner.read_samples(out)
    if not rows or not saved.exists():
        return
    try:
        previous = json.loads(saved.read_text())
    except ValueError:
        return
    now = cfg.identity()
    if any(previous.get(k) != v for k, v in now.items() if k != "limit"):
        return  # another run's folder: runner.run refuses it, naming the settings that differ
    kept = [row for row in rows if not (row.get("status") == "error" and row.get("stage") == "generate")]
    if len(kept) < len(rows):
        write_atomic(out / runner.SAMPLES_FILE, "".join(json.dumps(row) + "\n" for row in kept))


def _problems(cfg: EvalConfig, chosen: list[str], on_skip: Callable[[str, str], None] | None
              ) -> tuple[list[Problem], dict[str, str]]:
    """The problems of every chosen subset whose toolchain is here (the first `cfg.limit` of each),
    and why each other subset was skipped."""
    problems, skipped = [], {}
    for name in chosen:
        language = BENCHMARKS[cfg.benchmark].language_of(name)
        why = toolchains.toolchain(language).missing()
        if why:
            skipped[name] = why
            if on_skip is not None:
                on_skip(name, why)
            continue
        loaded = load(cfg.benchmark, name, cfg.data)
        if getattr(loaded, "left_out", None):  # cases this machine cannot build (fim-lines: a source file absent)
            key = f"{name}: {len(loaded.left_out)} cases" if loaded else name
            skipped[key] = loaded.left_out_note()
            if on_skip is not None:
                on_skip(key, skipped[key])
        problems += loaded[:cfg.limit] if cfg.limit else loaded
    return problems, skipped
