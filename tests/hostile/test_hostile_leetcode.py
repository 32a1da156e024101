"""LeetCode answers that make the 100 asserts pass without solving the problem are failed.

DeepSeek's program (its imports, the code, the tests; exit status 0 a pass) accepts each of these
answers: the method returns an object equal to everything, on a plain problem and on a
linked-list one (whose tests turn the returned list into a Python list first), or the answer
takes over the name the asserts are compared through. Ours compares through a guarded entry
whose return must be plain data (`dscoder.tasks.leetcode`).
"""

from __future__ import annotations

import json

from dscoder.execute.programs import Program, execute_many
from dscoder.tasks import leetcode, load
from conftest import shared_data

EQ = "class Eq:\n    def __eq__(self, other):\n        return True\n\n"


def naive(problem, row: dict, code: str) -> Program:
    """DeepSeek's LeetCode program for `code`: imports, code, tests; passed when it exits 0."""
    return Program("python", "\n".join(leetcode.IMPORTS) + "\n" + code + "\n" + row["test"] + "\n")


def test_answers_that_lie_about_equality_are_failed():
    path = shared_data("leetcode", leetcode.FILES["en"])
    rows = {r["task_id"]: r for r in map(json.loads, path.read_text(encoding="utf-8").splitlines())}
    problems = {p.task_id: p for p in load("leetcode", "en")}
    plain, linked = ("weekly-contest-381-minimum-number-of-pushes-to-type-word-i",
                     "biweekly-contest-110-insert-greatest-common-divisors-in-linked-list")
    answers = [
        (plain, EQ + "class Solution:\n    def minimumPushes(self, word):\n        return Eq()\n"),
        # The list the tests rebuild from the returned nodes holds liars, as many as the answer has values.
        (linked, EQ + "class ListNode:\n    def __init__(self, val=0, next=None):\n        self.val = val\n"
                      "        self.next = next\n"
                      "class Solution:\n    def insertGreatestCommonDivisors(self, head):\n"
                      "        n, out = 0, None\n        while head:\n            n, head = n + 1, head.next\n"
                      "        for _ in range(2 * n - 1):\n            out = ListNode(Eq(), out)\n"
                      "        return out\n"),
        # The answer defines the entry itself (ours, defined after it, replaces it), then rebinds it
        # while running (right for the first assert, "abcde": 5): the guard follows the new binding.
        (plain, EQ + f"def {leetcode.ENTRY}(**kwargs):\n    return Eq()\n\n"
                     "class Solution:\n    def minimumPushes(self, word):\n"
                     f"        globals()['{leetcode.ENTRY}'] = lambda **kwargs: Eq()\n        return len(word)\n"),
    ]
    programs = [Program("python", problems[t].answer_program(f"```python\n{code}```")) for t, code in answers]
    programs += [naive(problems[t], rows[t], code) for t, code in answers[:2]]
    got = dict(execute_many(programs, timeout=10.0, workers=2))
    ours, theirs = [got[i] for i in range(len(answers))], [got[i] for i in range(len(answers), len(programs))]
    assert [v.status for v in theirs] == ["passed", "passed"]  # DeepSeek's program accepts them
    assert [v.status for v in ours] == ["failed"] * len(answers), [v.stderr[-300:] for v in ours]
    assert all("not plain data" in v.stderr and "Eq" in v.stderr for v in ours), [v.stderr[-300:] for v in ours]
