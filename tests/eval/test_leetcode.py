"""LeetCode Contest (DeepSeek-Coder's `Evaluation/LeetCode`): the prompts are the rows' own, the
code is extracted as DeepSeek's `extract_python_code` does, solutions written for this test pass
all 100 asserts (within the default timeout) and wrong ones fail, and the report groups by
difficulty. The data has no reference solutions, so the right ones here are our own."""

from __future__ import annotations

import json
from collections import Counter

import pytest
from typer.testing import CliRunner

from dscoder.cli.app import app
from dscoder.execute.programs import Program, execute_many
from dscoder.tasks import leetcode, load
from conftest import shared_data

DEFAULT_TIMEOUT = 10.0  # EvalConfig's --timeout default (DeepSeek's evaluation used 10 s too)


def verdicts(programs: list[Program], timeout: float = DEFAULT_TIMEOUT) -> list[str]:
    got = dict(execute_many(programs, timeout=timeout, workers=2))
    return [got[i].status for i in range(len(programs))]


def rows(language: str) -> list[dict]:
    path = shared_data("leetcode", leetcode.FILES[language])
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def by_id(subset: str = "en") -> dict:
    shared_data("leetcode", leetcode.FILES[subset.split("-")[0]])
    return {p.task_id: p for p in load("leetcode", subset)}


@pytest.mark.parametrize("subset", leetcode.SUBSETS)
def test_groups_are_the_difficulties_45_91_44(subset):
    problems = by_id(subset)
    assert len(problems) == 180
    assert Counter(p.group for p in problems.values()) == {"Easy": 45, "Medium": 91, "Hard": 44}
    assert list(problems) == [row["task_id"] for row in rows("en")]  # zh: the same problems, in the same order
    # Every row is the dataset's shape: 100 asserts on one compared expression, so every problem is guarded.
    assert all(p.extra["guarded"] for p in problems.values())
    assert {row["test"].count("\nassert ") for row in rows(subset.split("-")[0])} == {100}


def test_prompts_are_deepseeks_on_a_real_row():
    row = rows("en")[0]  # weekly-contest-381-minimum-number-of-pushes-to-type-word-i
    plain, cot = by_id("en")[row["task_id"]], by_id("en-cot")[row["task_id"]]
    # vllm_inference.py: the user message is prompt_sft; with --cot, this sentence is appended.
    assert plain.instruction == row["prompt_sft"]
    assert cot.instruction == (row["prompt_sft"]
                               + "\nYou need first write a step-by-step outline and then write the code.")
    assert plain.instruction.endswith("```python\nclass Solution:\n    def minimumPushes(self, word: str) -> int:\n"
                                      "        \n```")
    assert plain.max_new_tokens == 1024
    # The base form continues the row's prompt (the statement as a docstring, then the stub).
    assert plain.prompt == cot.prompt == row["prompt"] and plain.strip_prompt
    assert plain.stops == ("\ndef", "\nclass", "\nif", "\n#", "\nprint")
    zh_row = rows("zh")[0]
    zh = by_id("zh-cot")[zh_row["task_id"]]
    assert zh.instruction == zh_row["prompt_sft"] + leetcode.COT and "请完成下面的代码" in zh.instruction
    # The program: DeepSeek's imports, the code, the row's asserts (compared through the guarded entry).
    source = plain.answer_program("```python\nclass Solution:\n    pass\n```")
    assert source.startswith("import math\nimport re\nimport sys\nimport copy\n")
    assert "import numpy as np\n" in source and "from functools import *\n" in source
    assert source.count(f"assert {leetcode.ENTRY}(**test_input) == ") == 100
    assert "guard=dscoder_leetcode_entry>" in source


def test_code_is_extracted_as_deepseek_extracts_it():
    stub = "class Solution:\n    def f(self) -> int:\n        "
    prompt_sft = f"Solve it.\n\nPlease complete the code below to solve above prblem:\n```python\n{stub}\n```"
    cases = {
        # The first ```python block, without the fences.
        "Sure:\n```python\nclass A:\n    x = 1\n```\nor\n```python\nclass B:\n    pass\n```": "class A:\n    x = 1",
        # [PYTHON] tags count as a ```python fence.
        "[PYTHON]\nclass A:\n    pass\n[/PYTHON]": "class A:\n    pass",
        # No fence: everything before the first top-level def/class/if/#/print.
        "class A:\n    def g(self):\n        if 1:\n            pass\nprint(A())": "class A:\n    def g(self):\n"
                                                                           "        if 1:\n            pass",
        "x = 1\n# a comment\ny = 2": "x = 1",
        # A ```python fence that never closes: DeepSeek's `except` keeps the raw output.
        "```python\nclass A:\n    pass": "```python\nclass A:\n    pass",
        # A fence of another language is not a ```python one: cut at the first top-level line instead.
        "```py\nx = 1\n```\nclass B: pass": "```py\nx = 1\n```",
    }
    for answer, code in cases.items():
        assert leetcode.answer_code(answer, prompt_sft) == code, answer
    # An answer that carries straight on with the body is put after the prompt's stub, stripped.
    body = "\n        return 1\n"
    assert leetcode.answer_code(body, prompt_sft) == "class Solution:\n    def f(self) -> int:" + "\n" + body


# Solutions written for this test (the data has none): each right one, and a plausible wrong one.
SOLUTIONS = {
    "weekly-contest-381-minimum-number-of-pushes-to-type-word-i": (
        "class Solution:\n    def minimumPushes(self, word: str) -> int:\n"
        "        return sum(i // 8 + 1 for i in range(len(word)))\n",
        ("// 8", "// 9")),
    "weekly-contest-380-count-elements-with-maximum-frequency": (
        "class Solution:\n    def maxFrequencyElements(self, nums: List[int]) -> int:\n"
        "        counts = Counter(nums)\n        top = max(counts.values())\n"
        "        return sum(c for c in counts.values() if c == top)\n",
        ("sum(c for c in counts.values() if c == top)", "len([c for c in counts.values() if c == top])")),
    "weekly-contest-378-check-if-bitwise-or-has-trailing-zeros": (
        "class Solution:\n    def hasTrailingZeros(self, nums: List[int]) -> bool:\n"
        "        return sum(x % 2 == 0 for x in nums) >= 2\n",
        (">= 2", ">= 1")),
    # Linked lists: the tests turn the returned list into a Python list with their own helper.
    "biweekly-contest-110-insert-greatest-common-divisors-in-linked-list": (
        "class ListNode:\n    def __init__(self, val=0, next=None):\n        self.val = val\n        self.next = next\n"
        "class Solution:\n    def insertGreatestCommonDivisors(self, head: Optional[ListNode]) -> Optional[ListNode]:\n"
        "        node = head\n        while node.next:\n"
        "            node.next = ListNode(math.gcd(node.val, node.next.val), node.next)\n"
        "            node = node.next.next\n        return head\n",
        ("math.gcd(", "max(")),
    # The largest tests of the set (45 kB): a reference-quality solution fits the default timeout.
    "biweekly-contest-108-number-of-black-blocks": (
        "class Solution:\n    def countBlackBlocks(self, m: int, n: int, coordinates: List[List[int]]) -> List[int]:\n"
        "        blocks = Counter()\n        for x, y in coordinates:\n"
        "            for a in (x - 1, x):\n                for b in (y - 1, y):\n"
        "                    if 0 <= a < m - 1 and 0 <= b < n - 1:\n                        blocks[a, b] += 1\n"
        "        result = [0] * 5\n        for count in blocks.values():\n            result[count] += 1\n"
        "        result[0] = (m - 1) * (n - 1) - len(blocks)\n        return result\n",
        ("(m - 1) * (n - 1) - len(blocks)", "m * n - len(blocks)")),
}


def test_written_solutions_pass_every_assert_and_wrong_ones_fail():
    problems = by_id("en")
    programs, expected = [], []
    for task_id, (right, (old, new)) in SOLUTIONS.items():
        problem = problems[task_id]
        wrong = right.replace(old, new)
        assert wrong != right
        programs += [Program("python", problem.answer_program(f"Here is the code:\n```python\n{right}```\nIt works.")),
                     Program("python", problem.answer_program(f"```python\n{wrong}```"))]
        expected += ["passed", "failed"]
    # The other shapes of an answer on the first problem: [PYTHON] tags, a bare continuation of the
    # body, and a base-form completion (after the stripped prompt, and relative to the original one).
    first = problems["weekly-contest-381-minimum-number-of-pushes-to-type-word-i"]
    right = SOLUTIONS[first.task_id][0]
    body = "\n        return sum(i // 8 + 1 for i in range(len(word)))\n"
    programs += [Program("python", first.answer_program(f"[PYTHON]\n{right}[/PYTHON]")),
                 Program("python", first.answer_program(body)),
                 Program("python", first.program("\n" + body)),  # what `ask` records: "\n" + output
                 Program("python", first.program(body.lstrip(" \n"))),  # a completions file, after the 8 spaces
                 Program("python", first.program("\n        return len(word)\n"))]
    expected += ["passed", "passed", "passed", "passed", "failed"]
    assert verdicts(programs) == expected


def test_the_chinese_problems_run_the_same_tests():
    task_id = "weekly-contest-378-check-if-bitwise-or-has-trailing-zeros"
    problem = by_id("zh")[task_id]
    assert verdicts([Program("python", problem.answer_program(f"```python\n{SOLUTIONS[task_id][0]}```"))]) == ["passed"]


def test_an_empty_answer_fails_every_sampled_problem():
    """No problem passes on the stub alone (every 45th, 4 problems)."""
    sample = list(by_id("en").values())[::45]
    statuses = verdicts([Program("python", p.program("pass\n")) for p in sample])
    assert "passed" not in statuses, [p.task_id for p, s in zip(sample, statuses) if s == "passed"]


def test_dscoder_eval_reports_pass_at_1_by_difficulty(tmp_path):
    """Instruct answers from a file (DeepSeek's `output` field, here two right and one wrong) through
    `dscoder eval leetcode`: the summary has pass@1 overall and for each difficulty."""
    problems = by_id("en")
    easy, medium = ("weekly-contest-381-minimum-number-of-pushes-to-type-word-i",
                    "biweekly-contest-108-number-of-black-blocks")
    hard = next(p.task_id for p in problems.values() if p.group == "Hard")
    answers = {easy: f"```python\n{SOLUTIONS[easy][0]}```", medium: f"```python\n{SOLUTIONS[medium][0]}```",
               hard: "```python\nclass Solution:\n    pass\n```"}
    completions = tmp_path / "answers.jsonl"
    completions.write_text("".join(json.dumps({"task_id": t, "completion": a}) + "\n" for t, a in answers.items()))
    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["eval", "leetcode", "--form", "instruct", "--completions", str(completions),
                                      "--out", str(out), "--no-progress"])
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["problems"] == 3 and abs(summary["pass@1"] - 2 / 3) < 1e-9
    assert {group: block["pass@1"] for group, block in summary["groups"].items()} == \
        {"Easy": 1.0, "Medium": 1.0, "Hard": 0.0}
