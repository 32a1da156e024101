"""Problem sets: benchmark (and, later, training) problems with the checks that judge an answer.

`BENCHMARKS` names each benchmark and its subsets; `load` gives its problems. Each
`Problem` knows its prompt in every form and builds the program that checks a completion;
`execute/` runs that program and returns the verdict that evaluation (and RL rewards) use.
"""

from __future__ import annotations

from pathlib import Path

from dscoder.tasks import gsm8k, humaneval, infilling, mbpp
from dscoder.tasks.problem import Problem
from dscoder.errors import UserError

BENCHMARKS = {
    "humaneval": {"subsets": humaneval.LANGUAGES, "default": "python"},
    "mbpp": {"subsets": ("",), "default": ""},
    "humaneval-infilling": {"subsets": tuple(infilling.SPLITS), "default": "single-line"},
    "gsm8k": {"subsets": ("",), "default": ""},
}


def subsets(benchmark: str, subset: str | None) -> list[str]:
    """The subsets to run: one by name, every one for "all", or the benchmark's default."""
    if benchmark not in BENCHMARKS:
        raise UserError(f"unknown benchmark {benchmark!r}; choose from {', '.join(BENCHMARKS)}")
    known = BENCHMARKS[benchmark]["subsets"]
    if subset in (None, ""):
        return [BENCHMARKS[benchmark]["default"]]
    if subset == "all":
        return list(known)
    if subset not in known:
        raise UserError(f"{benchmark} has no subset {subset!r}; choose from {', '.join(s for s in known if s)} or all")
    return [subset]


def load(benchmark: str, subset: str, data: Path | None = None) -> list[Problem]:
    if benchmark == "humaneval":
        return humaneval.problems(subset, data)
    if benchmark == "mbpp":
        return mbpp.problems(data)
    if benchmark == "humaneval-infilling":
        return infilling.problems(subset, data)
    if benchmark == "gsm8k":
        return gsm8k.problems(data)
    raise UserError(f"unknown benchmark {benchmark!r}; choose from {', '.join(BENCHMARKS)}")
