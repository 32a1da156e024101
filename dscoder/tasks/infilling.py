"""HumanEval-infilling (Bavarian et al. 2022): fill the hole, then run the function's tests.

The model sees the prefix and suffix through its own FIM tokens (PSM) and writes the
middle; pass@1 is by execution of prefix + middle + suffix + tests, as DeepSeek-Coder
reports its single-line and multi-line FIM numbers. The program is assembled by
`execute.harness.program` (a pass needs the checks to run to their end, returns plain data).
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

from dscoder.execute import harness
from dscoder.tasks.problem import Problem, data_file
from dscoder.errors import UserError

SPLITS = {"single-line": ("HumanEval-SingleLineInfilling.jsonl.gz", 128),
          "multi-line": ("HumanEval-MultiLineInfilling.jsonl.gz", 256),
          "random-span": ("HumanEval-RandomSpanInfillingLight.jsonl.gz", 256)}


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

        problems.append(Problem(row["task_id"], "python", prefix, program, reference=row["canonical_solution"],
                                fim=(prefix, suffix), max_new_tokens=max_new, group=split))
    return problems
