"""GRPO's rewards: an answer's code run against its problem's tests in the sandbox.

Every run goes through `dscoder.execute.programs.execute`, the one verdict function that
evaluation also uses: a pass means the program exited 0 *and* the harness saw its checks run
to their end, so a policy cannot learn to pass by `sys.exit(0)`, `os._exit(0)` or an object
whose `__eq__` is always true. Such a verdict is "refused" here (scored `reward_refused`,
below a plain failure) and every refused sample is written to the run's samples.jsonl and
shown in its report.

The score of one answer, by category (each counted apart in the step's metrics):
- passed: all tests pass in one run → 1.0
- failed: the tests run one by one (one sandboxed run each) → the fraction that pass
- syntax_error: the code does not parse or build → `reward_syntax_error`
- timeout: stopped by the time limit → `reward_timeout`
- no_code: an instruct answer without a fenced code block → `reward_no_code`
- refused: left before its checks finished, or returned a value that is not plain data →
  `reward_refused`
- sandbox_error: the sandbox itself failed (not the program) → 0, and the run stops if most of
  a step's samples meet it, since then the rewards measure the machine, not the policy.
`format_reward` is added to every answer that is well formed (a closed fenced block; a base
completion ended by its stop string).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from dscoder.execute import sandbox
from dscoder.execute.programs import Executor, Program, Verdict
from dscoder.train.config import TrainConfig, TrainConfigError
from dscoder.train.rl_prompts import Task

CATEGORIES = ("passed", "failed", "syntax_error", "timeout", "no_code", "refused", "sandbox_error")
_SYNTAX = re.compile(r"^(SyntaxError|IndentationError|TabError)\b", re.M)
# the harness's own reasons (an early exit, a value that is not plain data) are lines that start so; a sample
# that prints such a line itself only scores itself lower
_REFUSAL = re.compile(r"^(NotPlainData: )?dscoder: ", re.M)


@dataclass
class Scored:
    reward: float
    category: str
    passed: int = 0  # tests passed
    total: int = 0
    detail: str = ""  # the verdict's reason (stderr excerpt) for anything but a pass


def check_sandbox(cfg: TrainConfig) -> str:
    """The sandbox's layers; refuses a weakened one unless --allow-weak-sandbox."""
    iso = sandbox.isolation()
    if iso.warning and not cfg.allow_weak_sandbox:
        raise TrainConfigError(f"{iso.warning}\nGRPO runs untrusted model-written code by the thousands; fix the "
                               "sandbox (install bubblewrap, enable cgroups and seccomp) or pass "
                               "--allow-weak-sandbox to accept the risk")
    return iso.describe()


def well_formed(completion: str, form: str, finish_reason: str | None) -> bool:
    if form == "instruct":
        return completion.count("```") >= 2
    return finish_reason == "stop"


def _category(verdict: Verdict) -> str:
    if verdict.status == "passed":
        return "passed"
    if verdict.status == "timeout":
        return "timeout"
    if verdict.stderr.startswith("sandbox:"):
        return "sandbox_error"
    if verdict.status == "error" or _SYNTAX.search(verdict.stderr):
        return "syntax_error"
    if _REFUSAL.search(verdict.stderr):
        return "refused"
    return "failed"


class SandboxReward:
    """Scores answers by running them; `score` blocks (call it from a worker thread)."""

    def __init__(self, cfg: TrainConfig, executor: Executor):
        self.cfg, self.executor = cfg, executor

    def _run(self, task: Task, code: str, tests) -> Verdict:
        return self.executor.submit(Program(task.language, task.program(code, tests))).result()

    def score(self, task: Task, completion: str, finish_reason: str | None) -> Scored:
        cfg = self.cfg
        bonus = cfg.format_reward if well_formed(completion, cfg.prompt_form, finish_reason) else 0.0
        code = task.code(completion, cfg.prompt_form)
        if code is None:
            return Scored(cfg.reward_no_code, "no_code", 0, len(task.tests), "no fenced code block in the answer")
        verdict = self._run(task, code, task.tests)
        category = _category(verdict)
        total = len(task.tests)
        if category == "passed":
            return Scored(1.0 + bonus, "passed", total, total)
        fixed = {"timeout": cfg.reward_timeout, "syntax_error": cfg.reward_syntax_error,
                 "refused": cfg.reward_refused, "sandbox_error": 0.0}
        if category in fixed:
            return Scored(fixed[category] + (bonus if category != "sandbox_error" else 0.0), category, 0, total,
                          verdict.stderr)
        passed = 0
        if total > 1:  # which of the tests pass, each in a run of its own
            for test in task.tests:
                one = self._run(task, code, (test,))
                if _category(one) == "refused":  # a refusal anywhere is a refusal
                    return Scored(cfg.reward_refused + bonus, "refused", 0, total, one.stderr)
                passed += one.status == "passed"
        return Scored(passed / total + bonus, "failed", passed, total, verdict.stderr)


class ContainsReward:
    """1 when the completion contains `text`, else 0: the synthetic task that shows the loop learns."""

    def __init__(self, text: str):
        self.text = text

    def score(self, task: Task, completion: str, finish_reason: str | None) -> Scored:
        hit = self.text in completion
        return Scored(1.0 if hit else 0.0, "passed" if hit else "failed", int(hit), 1)


__all__ = ["CATEGORIES", "Scored", "SandboxReward", "ContainsReward", "check_sandbox", "well_formed"]
