"""Build and run whole programs in the sandbox, many at a time, and judge each one.

This is the one place that turns "a program and its tests" into a verdict; the
evaluation harness, GRPO rewards and verified generation all call it, so they agree.
"""

from __future__ import annotations

import os
import queue
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from dataclasses import dataclass

from dscoder.execute import sandbox
from dscoder.execute.toolchains import toolchain

STATUSES = ("passed", "failed", "timeout", "error")
STDERR_EXCERPT = 2000


@dataclass
class Program:
    """Source text in one language, complete with its tests: it passes iff it exits 0."""

    language: str
    source: str


@dataclass
class Verdict:
    """passed: built and exited 0 within the limits. failed: ran and exited non-zero (a
    failed assert, an exception, a killed-by-limit that was not time). timeout: stopped by
    the wall clock or CPU limit. error: did not build (compile error), or the toolchain
    could not run at all."""

    status: str
    stage: str  # "build" or "run"
    returncode: int | None
    stderr: str
    seconds: float


def _excerpt(outcome: sandbox.Outcome) -> str:
    text = (outcome.stderr or outcome.stdout).strip()
    return text if len(text) <= STDERR_EXCERPT else text[:STDERR_EXCERPT // 2] + "\n...\n" + text[-STDERR_EXCERPT // 2:]


def execute(program: Program, timeout: float = 10.0, uid: int | None = None) -> Verdict:
    """Build (if the language compiles) and run `program` in a fresh sandboxed directory,
    as the leased sandbox `uid` (None: lease one for this call)."""
    if uid is None:
        with sandbox.UidLease() as lease:
            return execute(program, timeout, lease.uid)
    tool = toolchain(program.language)
    files = {tool.filename: program.source, **tool.support_files()}
    with sandbox.Workdir(files) as workdir:
        seconds = 0.0
        if tool.build:
            built = sandbox.run(list(tool.build), workdir, tool.limits(tool.build_seconds), env=tool.env,
                                mounts=tool.mounts(), uid=uid)
            seconds += built.seconds
            if not built.ok:
                status = "timeout" if built.timed_out else "error"
                return Verdict(status, "build", built.returncode, _excerpt(built), seconds)
        ran = sandbox.run(list(tool.run), workdir, tool.limits(timeout), env=tool.env, mounts=tool.mounts(), uid=uid)
        seconds += ran.seconds
        output = ran.stdout + ran.stderr
        if ran.timed_out:
            return Verdict("timeout", "run", ran.returncode, _excerpt(ran), seconds)
        if ran.returncode != 0 and any(marker in output for marker in tool.build_failure_markers):
            return Verdict("error", "build", ran.returncode, _excerpt(ran), seconds)
        failed = ran.returncode != 0 or any(marker in output for marker in tool.failure_markers)
        return Verdict("failed" if failed else "passed", "run", ran.returncode, _excerpt(ran), seconds)


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

    def _one(self, program: Program) -> Verdict:
        uid = self._uids.get()
        try:
            return execute(program, self.timeout, uid)
        except (sandbox.SandboxError, OSError) as e:
            return Verdict("error", "run", None, f"sandbox: {e}", 0.0)
        finally:
            self._uids.put(uid)

    def submit(self, program: Program) -> Future:
        return self._pool.submit(self._one, program)

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
