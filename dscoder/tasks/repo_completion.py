"""repo-completion: the next line of real repository code, with the file alone and with its repository.

OUR CONSTRUCTION in RepoBench's style (Liu et al. 2023, "cross-file-first"; also CrossCodeEval):
each case is a line whose first use of a name refers to a definition in another file of the same
repository (`tasks/repo_cases.py` says how the lines and the repositories were chosen). The model
is asked for the line twice: with the text of its file before the line ("in-file"), and with the
same text after the repository context that `dscoder.repo.context` chooses ("repo"). Only the
first non-empty line of the answer counts, against the target, both stripped, as RepoBench
scores:

- exact match: the two lines are equal (`infilling.exact_match`, the FIM benchmarks' measure);
- edit similarity: RepoBench's `fuzz.ratio`, 100 * (1 - d / (len(a) + len(b))) with d the Indel
  distance (insertions and deletions; a substitution costs 2), i.e. python-Levenshtein's and
  rapidfuzz's `ratio` (RepoBench's fuzzywuzzy rounds it to an integer; we keep the fraction).

The run itself, with both settings, the prompt-token and latency costs and the report, is
`dscoder/eval/repo_completion.py` (`dscoder eval repo-completion`): the repository context is
budgeted in the model's own tokens, so its prompts exist only once a model is chosen. `problems`
gives the in-file prompts as ordinary problems (judged by exact match, edit similarity beside it)
for the benchmark registry.
"""

from __future__ import annotations

from functools import partial
from importlib import resources
from pathlib import Path

from dscoder.errors import UserError
from dscoder.tasks import repo_cases
from dscoder.tasks.infilling import exact_match, first_line
from dscoder.tasks.problem import Problem, Problems

SUBSETS = ("python",)
MAX_NEW_TOKENS = 64  # only the first line is judged


def indel_distance(a: str, b: str) -> int:
    """Insertions plus deletions turning `a` into `b`: len(a) + len(b) - 2 * LCS(a, b)."""
    if len(a) < len(b):
        a, b = b, a
    previous = [0] * (len(b) + 1)  # LCS lengths of a[:i] against every prefix of b
    for ch in a:
        current = [0]
        for j, other in enumerate(b):
            current.append(previous[j] + 1 if ch == other else max(previous[j + 1], current[j]))
        previous = current
    return len(a) + len(b) - 2 * previous[-1]


def ratio(a: str, b: str) -> float:
    """rapidfuzz's `fuzz.ratio` (python-Levenshtein's `ratio` times 100): 100 for two empty strings."""
    total = len(a) + len(b)
    return 100.0 if total == 0 else 100.0 * (1 - indel_distance(a, b) / total)


def edit_similarity(completion: str, target: str) -> float:
    """RepoBench's edit similarity (0-100) of the completion's first non-empty line against the target's."""
    return ratio(first_line(completion), first_line(target))


def line_finished(text: str) -> bool:
    """Whether generated `text` holds a whole non-empty line (what is scored): stop generating then."""
    return "\n" in text.lstrip()


def case_file(subset: str = "python", data: Path | None = None) -> Path:
    """`DATA/repo-completion/<subset>.jsonl` when --data holds one (cases built on another machine), else
    the case file shipped with the package."""
    if data is not None and (Path(data) / "repo-completion" / f"{subset}.jsonl").is_file():
        return Path(data) / "repo-completion" / f"{subset}.jsonl"
    return Path(str(resources.files("dscoder.tasks") / "data" / f"repo-completion-{subset}.jsonl"))


def header(case: repo_cases.Case) -> str:
    """The `#path` line before the cursor's file, as the data pipeline lays files out."""
    return f"#{case.path}\n"


def problem(case: repo_cases.Case, files: repo_cases.Files) -> Problem:
    """The in-file setting of a case as an ordinary problem: the `#path` line and the file before the line."""
    prefix, middle, _ = repo_cases.pieces(case, files)
    return Problem(case.task_id, "python", header(case) + prefix, None, reference=middle,
                   max_new_tokens=MAX_NEW_TOKENS, group=case.root, judge=partial(_judge, middle),
                   measures={"exact_match": partial(exact_match, reference=middle),
                             "edit_similarity": lambda completion, m=middle: edit_similarity(completion, m) / 100},
                   extra={"case": case})


def _judge(reference: str, completion: str) -> bool:
    return exact_match(completion, reference) == 1.0


def problems(subset: str = "python", data: Path | None = None) -> Problems:
    """The in-file prompts of the cases whose repository is installed here unchanged; the others in
    `left_out`, by name."""
    if subset not in SUBSETS:
        raise UserError(f"unknown repo-completion subset {subset!r}; choose from {', '.join(SUBSETS)}")
    loaded = repo_cases.load(case_file(subset, data))
    found = Problems(problem(case, loaded.files[case.root]) for case in loaded.cases)
    found.left_out.update(loaded.left_out)
    return found
