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
    forms: tuple[str, ...] = ("base", "instruct")  # the prompt forms its problems have (FIM: base only)
    # Whether training corpora are decontaminated against it (`data/decontam.py`); False for synthetic
    # probes (passkey's filler text) whose n-grams say nothing about leaked benchmark problems.
    decontaminate: bool = True
    # A runner of its own in `dscoder/eval/` (the module's name) instead of `eval.run`: repo-completion,
    # whose prompts are budgeted in the model's tokens and whose measures pair two settings per case.
    runner: str | None = None

    def language_of(self, subset: str) -> str:
        return self.language or subset


BENCHMARKS: dict[str, Benchmark] = {}


def register(name: str, benchmark: Benchmark) -> None:
    BENCHMARKS[name] = benchmark


def _languages() -> tuple[str, ...]:
    from dscoder.tasks.humaneval import LANGUAGES

    return LANGUAGES


register("humaneval", Benchmark("humaneval", _languages(), "python", None,
                                "HumanEval and its MultiPL-E translations, DeepSeek-Coder's prompts, judged in the "
                                "sandbox"))
register("mbpp", Benchmark("mbpp", help="MBPP test split (11-510), 3-shot as DeepSeek-Coder, judged in the sandbox"))
register("humaneval-infilling", Benchmark("infilling", ("single-line", "multi-line", "random-span"), "single-line",
                                          help="HumanEval infilling, pass@1 by execution (single-line also by "
                                               "exact match)", forms=("base",)))
register("gsm8k", Benchmark("gsm8k", ("pal", "cot"), "pal", help="GSM8K: program-aided (pal) or chain of thought"))
register("gsm-hard", Benchmark("gsm_hard", ("pal", "cot"), "pal", help="GSM-Hard: program-aided or chain of thought"))
register("math", Benchmark("math", ("test",), "test", help="MATH test set (5000), chain of thought, by subject"))
register("leetcode", Benchmark("leetcode", ("en", "zh", "en-cot", "zh-cot"), "en",
                                  help="LeetCode Contest (DeepSeek-Coder), 180 problems, pass@1 by difficulty; "
                                       "-cot asks for a step-by-step outline first"))
register("cruxeval", Benchmark("cruxeval", ("output", "input", "output-cot", "input-cot"), "output",
                                  help="CRUXEval-O / CRUXEval-I: predict a function's output or input, judged by "
                                       "execution; -cot: the chain-of-thought prompts"))
# EvalPlus: not a decontamination source, as its test programs are megabytes of generated inputs and outputs
# (n-grams of numbers). Its prompts are HumanEval's and MBPP's; 154 MBPP+ tasks lie outside MBPP's test split.
register("humaneval+", Benchmark("evalplus", ("humaneval",), "humaneval", decontaminate=False,
                                 help="HumanEval+ (EvalPlus): pass@1 on base + plus tests, and on base tests alone"))
register("mbpp+", Benchmark("evalplus", ("mbpp",), "mbpp", decontaminate=False,
                            help="MBPP+ (EvalPlus): pass@1 on base + plus tests, and on base tests alone"))

# Text-judged (no toolchain runs), so "python", which is always here, stands for their language.
register("fim-lines", Benchmark("fim_lines", ("java", "js"), "java,js", forms=("base",),
                                help="Single-line FIM in Java and JS, exact match of the first line (our "
                                     "construction from this machine's JDK and node-typescript sources)"))
# Its prompts are whole files of installed packages, not a benchmark's problems: a corpus must simply not be built
# from this machine's site-packages (docs/eval.md says so), rather than drop every file sharing a line with them.
register("repo-completion", Benchmark("repo_completion", ("python",), "python", forms=("base",), decontaminate=False,
                                      runner="repo_completion",
                                      help="Next line of real packages' code that uses a name from another file, "
                                           "with the file alone vs with the repository context (our RepoBench-style "
                                           "construction): exact match, edit similarity, prompt tokens, latency"))
register("passkey", Benchmark("passkey", ("1k", "2k", "4k", "8k", "16k", "32k", "64k", "128k"), "1k,2k,4k",
                              help="Pass-key retrieval in long filler text (synthetic), accuracy by context length",
                              decontaminate=False))


def subsets(benchmark: str, subset: str | None) -> list[str]:
    """The subsets to run: one by name (or several, comma-separated), every one for "all", or the default."""
    if benchmark not in BENCHMARKS:
        raise UserError(f"unknown benchmark {benchmark!r}; choose from {', '.join(BENCHMARKS)}")
    known = BENCHMARKS[benchmark].subsets
    if subset in (None, ""):
        default = BENCHMARKS[benchmark].default
        if "," not in default:
            return [default]
        subset = default  # a default of several subsets (passkey's "1k,2k,4k")
    if subset == "all":
        return list(known)
    asked = [s.strip() for s in subset.split(",") if s.strip()]
    unknown = [s for s in asked if s not in known]
    if (unknown or not asked) and not any(known):
        raise UserError(f"{benchmark} has no subsets (asked for {subset!r})")
    if unknown or not asked:
        raise UserError(f"{benchmark} has no subset {', '.join(map(repr, unknown)) or repr(subset)}; choose from "
                        f"{', '.join(s for s in known if s)} or all")
    return asked


def load(benchmark: str, subset: str, data: Path | None = None) -> list[Problem]:
    if benchmark not in BENCHMARKS:
        raise UserError(f"unknown benchmark {benchmark!r}; choose from {', '.join(BENCHMARKS)}")
    module = importlib.import_module(f"dscoder.tasks.{BENCHMARKS[benchmark].module}")
    return module.problems(subset, data)
