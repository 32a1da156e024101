"""Each candidate run against the tests in the sandbox, and the one to return.

Every run goes through `execute.programs.Executor` (so `execute.programs.execute`, the one
verdict function evaluation and GRPO's rewards use too), several at once, each candidate
submitted as soon as it finishes decoding. Verdicts are yielded as they arrive.

The choice (`choose`), CodeT/AlphaCode-style filtering by execution:
1. the first candidate in candidate order that passes every check (candidate 0 is greedy, so
   a greedy answer that passes is what comes back);
2. else the candidate that passed the most individual checks, ties to the earliest; its
   failures are reported with it. The count is read from the runner's report (`program.outcome`:
   advisory, and a candidate that did not pass counts at most all checks less one).
With `stop_at_first` (the default) the loop ends as soon as the choice cannot change: a
candidate has passed and every earlier one has failed. The rest are cancelled: their decoding
stops (freeing the engine) and their runs are not started.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Future
from dataclasses import dataclass, field

from dscoder.execute.programs import Executor, Program, Verdict
from dscoder.verify.candidates import Candidate
from dscoder.verify.program import Outcome, outcome, program
from dscoder.verify.tests import TestSuite, TestsError


@dataclass
class Judged:
    """One candidate with its outcome."""

    candidate: Candidate
    outcome: Outcome

    @property
    def index(self) -> int:
        return self.candidate.index


Build = Callable[[Candidate], tuple[Program, TestSuite]]


class Judge:
    """Runs candidates' programs on a shared `Executor` (the caller's: it owns the sandboxes).

    `build` turns a candidate into its program and the suite it is scored on; by default the
    candidate's code followed by `suite`. A candidate `build` refuses (`TestsError`: say, a
    candidate test suite that does not parse) is an error outcome without a run."""

    def __init__(self, executor: Executor, suite: TestSuite | None, timeout: float, build: Build | None = None):
        if build is None and suite is None:
            raise ValueError("a Judge needs a suite or a build function")
        self.executor, self.timeout = executor, timeout
        self.build: Build = build or (lambda c: (program(c.code, suite), suite))

    def submit(self, candidate: Candidate) -> Future:
        """A future of the candidate's `Judged` (already done when `build` refused it)."""
        try:
            prog, suite = self.build(candidate)
        except TestsError as e:
            done: Future = Future()
            done.set_result(Judged(candidate, Outcome("error", 0, 0, [str(e)], str(e))))
            return done
        judged: Future = Future()

        def finished(run: Future) -> None:
            if run.cancelled():
                judged.cancel()
                return
            error = run.exception()
            if error is not None:
                judged.set_exception(error)
                return
            verdict: Verdict = run.result()
            judged.set_result(Judged(candidate, outcome(verdict, suite)))

        run = self.executor.submit(prog, self.timeout)
        judged.add_done_callback(lambda f: run.cancel() if f.cancelled() else None)
        run.add_done_callback(finished)
        return judged


def decided(judged: dict[int, Judged]) -> bool:
    """Whether the choice is fixed: some candidate passed and every earlier one has failed."""
    for i in range(len(judged) + 1):
        if i not in judged:
            return False
        if judged[i].outcome.passed:
            return True
    return False


def choose(judged: list[Judged]) -> Judged:
    """The first passing candidate in candidate order, else the most checks passed (ties: earliest)."""
    ordered = sorted(judged, key=lambda j: j.index)
    for j in ordered:
        if j.outcome.passed:
            return j
    return max(ordered, key=lambda j: (j.outcome.passed_checks, -j.index))


@dataclass
class Result:
    """What a verified generation returns."""

    chosen: Judged
    judged: list[Judged]  # in candidate order
    asked: int  # candidates asked for (some may not have run: stop_at_first)
    suite: TestSuite | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return self.chosen.outcome.passed

    def summary(self) -> str:
        """'3/8 passed; chose candidate 2' (candidates numbered from 1, the first greedy)."""
        ran = len(self.judged)
        passed = sum(j.outcome.passed for j in self.judged)
        text = f"{passed}/{ran} passed"
        if ran < self.asked:
            text += f" ({self.asked - ran} of {self.asked} not needed: stopped at the first pass)"
        chosen = self.chosen
        if chosen.outcome.passed:
            return text + f"; chose candidate {chosen.index + 1}"
        o = chosen.outcome
        return text + (f"; none passed: chose candidate {chosen.index + 1}, the most checks passed "
                       f"({o.passed_checks}/{o.total_checks})")


async def verify(candidates: AsyncIterator[Candidate], judge: Judge, asked: int, stop_at_first: bool = True
                 ) -> AsyncIterator[Judged | Result]:
    """Each candidate's `Judged` as its run ends (in the order runs end), then the `Result`.
    Runs overlap decoding: a candidate is submitted as soon as `candidates` yields it."""
    judged: dict[int, Judged] = {}
    pending: set[asyncio.Future] = set()
    source = aiter(candidates)
    following: asyncio.Future | None = asyncio.ensure_future(anext(source))
    try:
        while following is not None or pending:
            waiting = pending | ({following} if following is not None else set())
            done, _ = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
            if following in done:
                try:
                    candidate = following.result()
                except StopAsyncIteration:
                    following = None
                else:
                    pending.add(asyncio.wrap_future(judge.submit(candidate)))
                    following = asyncio.ensure_future(anext(source))
            for run in sorted(done & pending, key=lambda f: f.result().index):
                pending.discard(run)
                one = run.result()
                judged[one.index] = one
                yield one
            if stop_at_first and decided(judged):
                break
    finally:
        if following is not None:
            following.cancel()
            await asyncio.gather(following, return_exceptions=True)
        for run in pending:
            run.cancel()
        if hasattr(source, "aclose"):
            await source.aclose()  # cancels the candidates still decoding
    if not judged:
        raise TestsError("no candidate was generated")
    ordered = [judged[i] for i in sorted(judged)]
    yield Result(choose(ordered), ordered, asked)


__all__ = ["Judge", "Judged", "Result", "choose", "decided", "verify"]
