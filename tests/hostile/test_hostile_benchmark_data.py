"""A benchmark data file given with --data that is damaged (a truncated line, a line that is not an
object, a row missing its fields) stops the load with an error naming the file and the line: never a
traceback, never a silently shorter benchmark."""

import json

import pytest

from dscoder.errors import UserError
from dscoder.tasks import load

GOOD = {
    "cruxeval": ("cruxeval/cruxeval.jsonl",
                 {"id": "sample_0", "code": "def f(x):\n    return x + 1", "input": "1", "output": "2"}),
    "leetcode": ("leetcode/20240121-Jul.jsonl",
                 {"task_id": "x", "prompt": "p", "prompt_sft": "q", "test": "t", "meta": {"difficulty": "Easy"}}),
    "gsm8k": ("gsm8k/test.json", {"question": "What is 1 + 1?", "answer": "1 + 1 = <<1+1=2>>2\n#### 2"}),
    "gsm-hard": ("gsm-hard/test.json", {"input": "What is 1 + 1?", "target": 2, "code": "def solution():\n    return 2"}),
    "math": ("math/test.json", {"problem": "1 + 1?", "solution": "It is $\\boxed{2}$.", "type": "Algebra",
                                "level": "Level 1"}),
}
SUBSET = {"cruxeval": "output", "leetcode": "en", "gsm8k": "pal", "gsm-hard": "pal", "math": "test"}


def _write(tmp_path, bench, lines):
    relative, _ = GOOD[bench]
    path = tmp_path / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.mark.parametrize("bench", sorted(GOOD))
def test_a_good_row_loads(tmp_path, bench):
    """The minimal rows below are what each loader reads, so the failures that follow are the damage's."""
    _write(tmp_path, bench, [json.dumps(GOOD[bench][1])])
    assert len(load(bench, SUBSET[bench], tmp_path)) == 1


@pytest.mark.parametrize("bench", sorted(GOOD))
@pytest.mark.parametrize("damage", ["truncated", "not an object"])
def test_a_damaged_line_is_named(tmp_path, bench, damage):
    good = json.dumps(GOOD[bench][1])
    bad = good[: len(good) // 2] if damage == "truncated" else json.dumps([1, 2, 3])
    path = _write(tmp_path, bench, [good, "", bad])
    with pytest.raises(UserError, match=f"{path}:3: not a JSON"):
        load(bench, SUBSET[bench], tmp_path)


@pytest.mark.parametrize("bench", ["cruxeval", "leetcode"])
def test_a_row_without_its_fields_is_named(tmp_path, bench):
    row = dict(GOOD[bench][1])
    row.pop("code" if bench == "cruxeval" else "test")
    row["meta"] = "Easy"  # LeetCode's meta must be an object holding the difficulty
    path = _write(tmp_path, bench, [json.dumps(GOOD[bench][1]), json.dumps(row)])
    with pytest.raises(UserError, match=f"{path}:2: a (CRUXEval|LeetCode) problem needs"):
        load(bench, SUBSET[bench], tmp_path)
