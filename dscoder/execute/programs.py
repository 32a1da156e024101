"""Build and run whole programs in the sandbox, many at a time, and judge each one.

`execute` is the one verdict function: the evaluation harness, GRPO rewards and verified
generation all call it (through `Executor` when many run at once), so a reward can never
count a sample that evaluation would fail, or the other way round. Keep it one function.
"""

from __future__ import annotations

import os
import queue
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from dataclasses import dataclass

from dscoder.execute import harness, sandbox
from dscoder.execute.toolchains import toolchain

STATUSES = ("passed", "failed", "timeout", "error")
STDERR_EXCERPT = 2000


@dataclass
class Program:
    """Source text in one language, complete with its tests.

    A benchmark program (assembled by `harness.program`, as every `dscoder.tasks` problem
    does) passes only when it exits 0 *and* its checks ran to their end in that process,
    which it proves by printing a per-run token it is given at run time. Any other program
    (the sandbox's own tests, a user's script) passes iff it exits 0."""

    language: str
    source: str


@dataclass
class Verdict:
    """passed: built, exited 0 within the limits, and (a benchmark program) said its checks ran
    to their end. failed: ran and exited non-zero (a failed assert, an exception, a limit that
    was not time), or exited 0 before its checks finished, or (Python) returned a value that is
    not plain data. timeout: stopped by the wall clock or CPU limit. error: did not build
    (compile error), or the toolchain could not run at all. `stderr` starts with the reason
    when it is the harness's (an early exit, a sample limit)."""

    status: str
    stage: str  # "build" or "run"
    returncode: int | None
    stderr: str
    seconds: float


EARLY_EXIT = ("dscoder: exited {code} before its checks finished (no end-of-checks marker): a pass needs the "
              "checks to run to their end")


def _clip(text: str) -> str:
    text = text.strip()
    return text if len(text) <= STDERR_EXCERPT else text[:STDERR_EXCERPT // 2] + "\n...\n" + text[-STDERR_EXCERPT // 2:]


def _excerpt(outcome: sandbox.Outcome, stdout: str | None = None, reason: str | None = None) -> str:
    text = _clip(outcome.stderr or (outcome.stdout if stdout is None else stdout))
    return f"{reason}\n{text}".strip() if reason else text


def execute(program: Program, timeout: float = 10.0, uid: int | None = None) -> Verdict:
    """The verdict on `program`: build it (if the language compiles) and run it in a fresh
    sandboxed directory, as the leased sandbox `uid` (None: lease one for this call).

    This is the reward function as well as the evaluation's judge (see the module docstring).
    A benchmark program (`harness.checked`) gets a fresh token for this run only, through a
    channel its source never holds (`harness.launch`), and passes only with exit status 0 and
    the end-of-checks line carrying that token, which is then cut from the recorded output."""
    if uid is None:
        with sandbox.UidLease() as lease:
            return execute(program, timeout, lease.uid)
    tool = toolchain(program.language)
    token = harness.new_token() if harness.checked(program.language, program.source) else None
    if token is None:
        launch = harness.Launch({tool.filename: program.source})
    else:
        launch = harness.launch(program.language, program.source, tool.filename, token)
    files = {**launch.files, **tool.support_files()}
    with sandbox.Workdir(files) as workdir:
        seconds = 0.0
        if tool.build:
            built = sandbox.run(list(tool.build), workdir, tool.limits(tool.build_seconds), env=tool.env,
                                mounts=tool.mounts(), uid=uid)
            seconds += built.seconds
            if not built.ok:
                status = "timeout" if built.timed_out else "error"
                return Verdict(status, "build", built.returncode, _excerpt(built, reason=built.limit),
                               seconds)
        ran = sandbox.run(list(tool.run), workdir, tool.limits(timeout), env={**tool.env, **launch.env},
                          mounts=tool.mounts(), uid=uid, stdin=launch.stdin)
        seconds += ran.seconds
        limit = ran.limit  # a whole-sample limit the sandbox names ("memory limit ... exceeded")
        reached, stdout = harness.reached_end(ran.stdout, token) if token is not None else (True, ran.stdout)
        output = stdout + ran.stderr
        if ran.timed_out:
            return Verdict("timeout", "run", ran.returncode, _excerpt(ran, stdout, limit), seconds)
        if ran.returncode != 0 and any(marker in output for marker in tool.build_failure_markers):
            return Verdict("error", "build", ran.returncode, _excerpt(ran, stdout), seconds)
        failed = ran.returncode != 0 or limit is not None or any(marker in output for marker in tool.failure_markers)
        if not failed and not reached:
            return Verdict("failed", "run", ran.returncode,
                           _excerpt(ran, stdout, EARLY_EXIT.format(code=ran.returncode)), seconds)
        return Verdict("failed" if failed else "passed", "run", ran.returncode, _excerpt(ran, stdout, limit), seconds)


def default_workers() -> int:
    return max(1, len(os.sched_getaffinity(0)))


class Executor:
    """A pool of sandbox workers that programs can be submitted to while other work (such
    as generating the next completion) goes on.

    Each worker leases its own sandbox uid (when root) for the pool's lifetime, so one
    sample's fork bomb counts against its own process limit only and the post-run reaping
    cannot touch a neighbour, in this process or in another evaluation running beside it.
    """

    def __init__(self, workers: int | None = None, timeout: float = 10.0):
        self.workers = workers or default_workers()
        self.timeout = timeout
        sandbox.isolation()  # probe (and warn) once, before any thread starts
        self._leases = [sandbox.UidLease() for _ in range(self.workers)]
        self._uids: queue.Queue[int] = queue.Queue()
        for lease in self._leases:
            self._uids.put(lease.uid)
        self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="sandbox")

    def _one(self, program: Program, timeout: float) -> Verdict:
        uid = self._uids.get()
        try:
            return execute(program, timeout, uid)
        except (sandbox.SandboxError, OSError) as e:
            return Verdict("error", "run", None, f"sandbox: {e}", 0.0)
        finally:
            self._uids.put(uid)

    def submit(self, program: Program, timeout: float | None = None) -> Future:
        """Queue `program`; `timeout` (default: the pool's) bounds its run, so one pool can serve
        callers with limits of their own (the server's verified requests)."""
        return self._pool.submit(self._one, program, self.timeout if timeout is None else timeout)

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
        for lease in self._leases:
            lease.close()

    def __enter__(self) -> "Executor":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def execute_many(programs: Iterable[Program], *, timeout: float = 10.0, workers: int | None = None,
                 ) -> Iterator[tuple[int, Verdict]]:
    """Yield (index, verdict) in the order programs finish, `workers` at a time."""
    with Executor(workers, timeout) as pool:
        futures = {pool.submit(p): i for i, p in enumerate(programs)}
        for future in as_completed(futures):
            yield futures[future], future.result()


__all__ = ["Program", "Verdict", "Executor", "execute", "execute_many", "default_workers", "STATUSES"]
