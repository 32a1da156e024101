"""HumanEval-infilling (Bavarian et al. 2022): fill the hole, then run the function's tests.

The model sees the prefix and suffix through its own FIM tokens (PSM) and writes the
middle; pass@1 is by execution of prefix + middle + suffix + tests, as DeepSeek-Coder
reports its single-line and multi-line FIM numbers. The program is assembled by
`execute.harness.program` (a pass needs the checks to run to their end, returns plain data).

The single-line split also records `exact_match`, the papers' own metric for single-line
infilling (DeepSeek-Coder V1/V2 report SantaCoder's set that way): the first line of the
generated middle against the canonical middle's line, compared as bigcode-evaluation-harness's
`santacoder_fim` task compares (both sides `strip()`ped, then equal). The report averages it
beside pass@1.
"""

from __future__ import annotations

import gzip
import json
from functools import partial
from pathlib import Path

from dscoder.execute import harness
from dscoder.tasks.problem import Problem, data_file
from dscoder.errors import UserError

SPLITS = {"single-line": ("HumanEval-SingleLineInfilling.jsonl.gz", 128),
          "multi-line": ("HumanEval-MultiLineInfilling.jsonl.gz", 256),
          "random-span": ("HumanEval-RandomSpanInfillingLight.jsonl.gz", 256)}


def first_line(text: str) -> str:
    """The first line of `text` that holds anything but whitespace, stripped ("" if none).

    bigcode's santacoder_fim compares `generation.strip() == reference.strip()`, so the
    indentation, a leading blank line and the trailing newline never count; DeepSeek-Coder
    scores only the first generated line, so whatever the model writes after it does not either.
    """
    return next((line.strip() for line in text.split("\n") if line.strip()), "")


def exact_match(completion: str, reference: str) -> float:
    """1.0 when the completion's first line is the reference's (see `first_line`), else 0.0. Text only:
    the completion is compared, never run."""
    return float(first_line(completion) == first_line(reference) != "")


def problems(split: str = "single-line", data: Path | None = None) -> list[Problem]:
    if split not in SPLITS:
        raise UserError(f"unknown infilling split {split!r}; choose from {', '.join(SPLITS)}")
    name, max_new = SPLITS[split]
    with gzip.open(data_file("infilling", name, data=data), "rt", encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    problems = []
    for row in rows:
        prefix, suffix = row["prompt"], row["suffix"]
        entry = row["entry_point"]
        check = f"\n{row['test']}\ncheck({entry})\n"

        def program(middle: str, prefix=prefix, suffix=suffix, check=check, entry=entry) -> str:
            return harness.program("python", prefix + middle + suffix, check, guard=(entry,))

        measures = {"exact_match": partial(exact_match, reference=row["canonical_solution"])} \
            if split == "single-line" else {}
        problems.append(Problem(row["task_id"], "python", prefix, program, reference=row["canonical_solution"],
                                fim=(prefix, suffix), max_new_tokens=max_new, group=split, measures=measures))
    return problems
