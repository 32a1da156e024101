"""HumanEval+ and MBPP+ (EvalPlus, Liu et al. 2023): each sample judged on the base tests and on
base + plus tests, as the DeepSeek-Coder-V2 paper reports them (HumanEval+, MBPP+).

Protocol (evalplus 0.3.1, `evalplus.evaluate`): a sample passes an input set when its entry point,
called on every input in order, returns what the canonical solution returns (with EvalPlus's float
tolerance and special oracles) within each input's time limit. The main verdict is base + plus
(EvalPlus's "+" score, both sets passed); `checks["base"]` is the base set alone (the original
HumanEval / MBPP tests, as inputs). Inputs that break a task's contract are already filtered out of
the data, so the contract is not re-checked. Expected outputs, comparison and time limits are in
`evalplus_oracle` (computed once in the sandbox and written into each test program as literals).

Prompts:
- HumanEval+, base: the prompt is continued (trailing newline stripped, rejoined) and stopped by
  DeepSeek-Coder's Python stops, as our HumanEval; instruct: our HumanEval instruction
  (`humaneval.instruction`) and the fenced code spliced after the prompt's imports.
- MBPP+ (a docstring holding the task and one example assert, no function stub), base: the prompt
  is continued as EvalPlus's codegen does, stopped by EvalPlus's stops for MBPP (`\\n\"\"\"`,
  `\\nassert`, and its general `\\nif __name__`, `\\ndef main(`, `\\nprint(`); HumanEval's `\\ndef`
  stop would end the answer at its own function. Instruct: EvalPlus's instruction prefix with the
  prompt in a fence; the answer's fenced code is the whole solution (EvalPlus's assistant-side
  response prefix has no counterpart here: chat prompts end at the user turn).
- 768 new tokens at most (EvalPlus's `max_new_tokens`).

Where verdicts differ from evalplus 0.3.1's, on purpose or by the sandbox:
- HumanEval/32 (`find_zero`): 0.3.1 fails every sample, the canonical one too (its loop `continue`s past
  recording the input as passed; fixed upstream after 0.3.1); here a root within atol passes. The
  polynomial is rebuilt after the call, so a sample that zeroes its argument in place gains nothing.
- Returns must be plain data (the harness's guard), and a not-None task's return is typed by `type`,
  not by a `__class__` the sample may fake; dict subclasses compare as dicts (a Counter with explicit
  zero counts no longer equals one without).
- The base and plus inputs run in one process (EvalPlus: one each), and a sample gets the sandbox's
  limits: 1 GiB of memory where EvalPlus allows 4 GB (Mbpp/255's canonical solution needs 1.2 GB and
  fails here), and the `--timeout` wall clock per program, where EvalPlus allows up to 61 s per input
  set (`Problem.extra["timeout"]` is its figure for both sets).
- Model answers are not trimmed to the entry point and its dependencies (EvalPlus's `sanitize`): an
  instruct answer's own demo code runs too, as in our HumanEval.
"""

from __future__ import annotations

import functools
import gzip
import json
from pathlib import Path

from dscoder.errors import UserError
from dscoder.execute import harness
from dscoder.tasks import evalplus_oracle as oracle
from dscoder.tasks.humaneval import PYTHON_STOPS, instruction as humaneval_instruction
from dscoder.tasks.problem import Problem, code_from, data_file, function_preamble

DATA = {"humaneval": ("humanevalplus", "HumanEvalPlus-v0.1.10.jsonl.gz", 164),
        "mbpp": ("mbppplus", "MbppPlus-v0.2.0.jsonl.gz", 378)}
SUBSETS = tuple(DATA)
MBPP_STOPS = ('\n"""', "\nassert", "\nif __name__", "\ndef main(", "\nprint(")
# evalplus/codegen.py, the instruct prompt's first line.
INSTRUCTION_PREFIX = ("Please provide a self-contained Python script that solves the following problem in a "
                      "markdown code block:")
MAX_NEW_TOKENS = 768


def rows(dataset: str, data: Path | None = None) -> tuple[list[dict], str]:
    """The dataset's rows and its data file's SHA-256 (the ground truth's cache key)."""
    if dataset not in DATA:
        raise UserError(f"EvalPlus has no {dataset!r} set; choose from {', '.join(DATA)}")
    folder, name, count = DATA[dataset]
    path = data_file(folder, name, data=data)
    with gzip.open(path, "rt", encoding="utf-8") as f:
        found = [json.loads(line) for line in f if line.strip()]
    if len(found) != count:
        raise UserError(f"{path} holds {len(found)} tasks; {name} has {count}")
    return found, oracle.sha256_of(path)


# ---- MBPP+ inputs: JSON cannot hold tuples, sets or complex numbers ------------------------------

def _tuple_each(args):
    return [tuple(a) for a in args]


def _items_as_tuples(args):
    return [[tuple(item) for item in a] for a in args]


def _deep_tuples(x):
    return tuple(_deep_tuples(e) for e in x) if isinstance(x, list) else x


# Task number -> how its JSON arguments become the values EvalPlus calls it with
# (evalplus/data/mbpp.py, `mbpp_deserialize_inputs`).
_MBPP_ARGS = {
    **dict.fromkeys((2, 116, 132, 143, 222, 261, 273, 394, 399, 421, 424, 429, 470, 560, 579, 596, 616, 630, 726,
                     740, 744, 809), _tuple_each),
    **dict.fromkeys((63, 64, 70, 94, 120, 237, 272, 299, 400, 409, 417, 438, 473, 614, 780), _items_as_tuples),
    **dict.fromkeys((75, 413, 444, 753), lambda a: [[tuple(item) for item in a[0]], a[1]]),
    **dict.fromkeys((106, 750), lambda a: [a[0], tuple(a[1])]),
    # A non-empty list becomes a set, anything else an empty dict (sic: EvalPlus writes `{}`).
    115: lambda a: [[set(item) if isinstance(item, list) and item else {} for item in a[0]]],
    124: lambda a: (float(a[0]), complex(a[1])),
    **dict.fromkeys((250, 405, 446, 617, 720, 763, 808), lambda a: [tuple(a[0]), a[1]]),
    **dict.fromkeys((259, 401, 445), lambda a: [tuple(tuple(item) for item in arg) for arg in a]),
    278: lambda a: [tuple(tuple(item) if isinstance(item, list) else item for item in a[0])],
    307: lambda a: [tuple(a[0]), a[1], a[2]],
    722: lambda a: [{key: tuple(value) for key, value in a[0].items()}, *a[1:]],
    252: lambda a: [complex(a[0])],
    **dict.fromkeys((580, 615, 791), _deep_tuples),
}


def inputs(dataset: str, row: dict) -> dict[str, list]:
    """{"base": [...], "plus": [...]}: each input the argument list the entry point is called with."""
    found = {}
    for section in ("base", "plus"):
        given = row[f"{section}_input"]
        if given in ({}, None):  # Mbpp/793 has `{}` for no plus inputs
            given = []
        if not isinstance(given, list):
            raise UserError(f"{row['task_id']}: {section}_input is not a list")
        if dataset == "mbpp":
            convert = _MBPP_ARGS.get(int(row["task_id"].split("/")[1]))
            given = [convert(args) for args in given] if convert else given
        found[section] = given
    return found


# ---- prompts ---------------------------------------------------------------------------------------

def mbpp_instruction(prompt: str) -> str:
    """EvalPlus's instruct prompt (its chat-template form, evalplus/provider/utility.py)."""
    return f"{INSTRUCTION_PREFIX}\n```\n{prompt.strip()}\n```\n"


def _problem(dataset: str, row: dict, given: dict[str, list], truth: oracle.Oracle) -> Problem:
    task_id, prompt, entry, atol = row["task_id"], row["prompt"], row["entry_point"], row["atol"]
    mode = oracle.mode_of(dataset, entry)
    if mode == oracle.NOT_NONE and atol != 0:
        raise UserError(f"{task_id}: a not-None oracle with atol {atol}")
    guard = () if mode == oracle.NOT_NONE else (entry,)  # a re.Match is a right answer there: see `problems`
    preamble = function_preamble(prompt, f"def {entry}") if dataset == "humaneval" else ""

    @functools.cache
    def tests(name: str) -> str:  # written when first needed (a --limit run needs few)
        sections = ("base", "plus") if name == "main" else ("base",)
        return oracle.checks_source(dataset, entry, atol, given, truth, sections)

    def both(name: str):
        def program(completion: str) -> str:
            return harness.program("python", prompt + completion, tests(name), guard=guard)

        def answer_program(answer: str) -> str:
            return harness.program("python", preamble + "\n" + code_from(answer, "python"), tests(name), guard=guard)

        return program, answer_program

    main, main_answer = both("main")
    if dataset == "humaneval":
        stops, ask, strip = PYTHON_STOPS, humaneval_instruction("python", prompt), True
    else:
        stops, ask, strip = MBPP_STOPS, mbpp_instruction(prompt), False
    budget = {s: truth.time_budget(s) for s in ("base", "plus")}
    return Problem(task_id, "python", prompt, main, stops, ask, main_answer, reference=row["canonical_solution"],
                   max_new_tokens=MAX_NEW_TOKENS, group="python", strip_prompt=strip,
                   checks={"base": both("base")},
                   extra={"entry_point": entry, "atol": atol, "inputs": {s: len(v) for s, v in given.items()},
                          # EvalPlus's wall-clock cap per input set (seconds); the main program runs both sets
                          "time_budget": budget, "timeout": round(budget["base"] + budget["plus"] + 1.0, 1)})


def problems(subset: str = "humaneval", data: Path | None = None, task_ids: list[str] | None = None,
             workers: int | None = None) -> list[Problem]:
    """HumanEval+ (`subset` "humaneval") or MBPP+ ("mbpp"), every task or those in `task_ids`.

    The first call for a data file computes the expected outputs of the tasks asked for in the
    sandbox (seconds to minutes: HumanEval+ has 122,683 plus inputs) and caches them in
    `evalplus_oracle.cache_dir()`; later calls read the cache.

    Mbpp/737, 787 and 794 return a `re.Match` (or None): EvalPlus only checks that the return is (not)
    None, and the checks compare nothing else, so those entry points are not held to plain data."""
    found, sha256 = rows(subset, data)
    if task_ids is not None:
        known = {row["task_id"] for row in found}
        unknown = [t for t in task_ids if t not in known]
        if unknown:
            raise UserError(f"EvalPlus {subset} has no task {', '.join(unknown[:5])}")
        found = [row for row in found if row["task_id"] in set(task_ids)]
    given = {row["task_id"]: inputs(subset, row) for row in found}
    tasks = [oracle.Task(row["task_id"], row["prompt"] + row["canonical_solution"], row["entry_point"], row["atol"],
                         oracle.mode_of(subset, row["entry_point"]), given[row["task_id"]]["base"],
                         given[row["task_id"]]["plus"]) for row in found]
    truth = oracle.oracles(tasks, sha256, workers)
    return [_problem(subset, row, given[row["task_id"]], truth[row["task_id"]]) for row in found]


__all__ = ["problems", "rows", "inputs", "mbpp_instruction", "SUBSETS", "MBPP_STOPS", "INSTRUCTION_PREFIX"]
