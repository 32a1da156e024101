"""Problem sets: benchmark (and, later, training) problems with the checks that judge an answer.

`BENCHMARKS` names each benchmark, its subsets and the module that loads it; `load` gives its
problems. Each `Problem` knows its prompt in every form and builds the program that checks a
completion (or, for benchmarks scored by comparison, judges the text itself); `execute/` runs
that program and returns the verdict that evaluation (and RL rewards) use.

A benchmark's module is imported only when it is loaded, so listing benchmarks (the CLI's
help) costs nothing, and each module exposes `problems(subset, data) -> list[Problem]`.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path

from dscoder.errors import UserError
from dscoder.tasks.problem import Problem


@dataclass(frozen=True)
class Benchmark:
    """One benchmark: the module that loads it, its subsets (languages, splits, variants) and the
    default subset. `language` is the execution language of a subset (None: the subset's own name,
    as MultiPL-E's languages are), so a subset whose toolchain is missing is skipped by name."""

    module: str
    subsets: tuple[str, ...] = ("",)
    default: str = ""
    language: str | None = "python"
    help: str = ""

    def language_of(self, subset: str) -> str:
        return self.language or subset


BENCHMARKS: dict[str, Benchmark] = {}


def register(name: str, benchmark: Benchmark) -> None:
    BENCHMARKS[name] = benchmark


def _languages() -> tuple[str, ...]:
    from dscoder.tasks.humaneval import LANGUAGES

    return LANGUAGES


register("humaneval", Benchmark("humaneval", _languages(), "python", None, "HumanEval and its MultiPL-E translations"))
register("mbpp", Benchmark("mbpp", help="MBPP test split (11-510), 3-shot"))
register("humaneval-infilling", Benchmark("infilling", ("single-line", "multi-line", "random-span"), "single-line",
                                          help="HumanEval infilling, pass@1 by execution (single-line also by "
                                               "exact match)"))
register("gsm8k", Benchmark("gsm8k", help="GSM8K, program-aided (PAL)"))


def subsets(benchmark: str, subset: str | None) -> list[str]:
    """The subsets to run: one by name (or several, comma-separated), every one for "all", or the default."""
    if benchmark not in BENCHMARKS:
        raise UserError(f"unknown benchmark {benchmark!r}; choose from {', '.join(BENCHMARKS)}")
    known = BENCHMARKS[benchmark].subsets
    if subset in (None, ""):
        return [BENCHMARKS[benchmark].default]
    if subset == "all":
        return list(known)
    asked = [s.strip() for s in subset.split(",") if s.strip()]
    unknown = [s for s in asked if s not in known]
    if unknown or not asked:
        raise UserError(f"{benchmark} has no subset {', '.join(map(repr, unknown)) or repr(subset)}; choose from "
                        f"{', '.join(s for s in known if s)} or all")
    return asked


def load(benchmark: str, subset: str, data: Path | None = None) -> list[Problem]:
    if benchmark not in BENCHMARKS:
        raise UserError(f"unknown benchmark {benchmark!r}; choose from {', '.join(BENCHMARKS)}")
    module = importlib.import_module(f"dscoder.tasks.{BENCHMARKS[benchmark].module}")
    return module.problems(subset, data)
