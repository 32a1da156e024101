"""HumanEval+ and MBPP+ (EvalPlus): canonical solutions pass the base and the plus tests, a solution
right on the base tests but wrong on the plus tests is scored so, and our verdicts agree with
evalplus's own checker (`evalplus.evaluate.check_correctness`) sample by sample.

The expected outputs come from the canonical solutions run once in the sandbox and cached (the
user's cache, as in an evaluation); the default run samples the light tasks, `-m slow` runs all.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter

import pytest

from dscoder.execute.programs import Program, execute_many
from dscoder.tasks import BENCHMARKS, evalplus
from dscoder.tasks import evalplus_oracle as oracle
from dscoder.tasks.humaneval import PYTHON_STOPS
from conftest import shared_data

# Tasks whose canonical solution alone runs for seconds (large plus inputs): left to the slow run.
HEAVY = {"HumanEval/14", "HumanEval/15", "HumanEval/36", "HumanEval/59", "HumanEval/83", "HumanEval/94",
         "HumanEval/96", "HumanEval/100", "HumanEval/130", "HumanEval/139"}


def data(dataset: str) -> None:
    folder, name, _ = evalplus.DATA[dataset]
    shared_data(folder, name)


def statuses(programs: list[Program], timeout: float = 30.0) -> list[str]:
    got = dict(execute_many(programs, timeout=timeout))
    return [got[i].status for i in range(len(programs))]


def verdicts(problem, completion: str, form: str = "base") -> tuple[str, str]:
    """(base + plus, base) statuses of one completion."""
    main, base = statuses([Program("python", problem.source(completion, form)),
                           Program("python", problem.source(completion, form, "base"))])
    return main, base


def sample_ids(dataset: str, every: int) -> list[str]:
    rows, _ = evalplus.rows(dataset)
    return [r["task_id"] for r in rows[::every] if r["task_id"] not in HEAVY]


# ---- values written as literals -------------------------------------------------------------------

VALUES = [None, True, 0, -7, 2 ** 64 + 1, -(10 ** 1200), 1.5, -0.0, 1e16, math.inf, -math.inf, complex(-1.0, -0.0),
          complex(math.inf, math.nan), "", "it's \"quoted\"\n\t\u00e9\udc80", b"\x00\xff'", [], (), (1,), {*()}, {1, 2},
          {}, {"a": [1, (2.5, "x")], (1, 2): {3}}, [[1.0], [2.0, [3]]]]


@pytest.mark.parametrize("value", VALUES, ids=repr)
def test_literals_need_no_names_and_round_trip_exactly(value):
    """Each value evaluates back from its literal with no builtins at all (so nothing a sample can
    rebind), equal and of the same types, floats bit for bit; the tagged JSON of the sandboxed
    ground-truth program decodes to the same value."""
    source = oracle.literal(value)
    back = eval(compile(source, "<literal>", "eval"), {"__builtins__": {}})
    assert repr(back) == repr(value) and type(back) is type(value)
    if isinstance(value, complex):  # signed zeros kept (a nan's sign means nothing)
        signs = [[math.copysign(1, x) for x in (v.real, v.imag) if not math.isnan(x)] for v in (back, value)]
        assert signs[0] == signs[1]


def test_decode_refuses_what_the_ground_truth_program_never_writes():
    assert oracle.decode({"tuple": [1, {"float": "nan"}, {"int": "-0x10"}]})[2] == -16
    for bad in ([1, 2], {"list": 1}, {"eval": "__import__('os')"}, {"float": "1e5"}, {"dict": [[1]]},
                {"complex": [1, 2]}, {"a": 1, "b": 2}):
        with pytest.raises(ValueError):
            oracle.decode(bad)


# ---- protocol ----------------------------------------------------------------------------------------

def test_both_sets_are_registered_with_their_prompts():
    data("humaneval")
    data("mbpp")
    assert (BENCHMARKS["humaneval+"].module, BENCHMARKS["humaneval+"].subsets) == ("evalplus", ("humaneval",))
    assert (BENCHMARKS["mbpp+"].module, BENCHMARKS["mbpp+"].subsets) == ("evalplus", ("mbpp",))
    assert [len(evalplus.rows(d)[0]) for d in ("humaneval", "mbpp")] == [164, 378]
    he, = evalplus.problems("humaneval", task_ids=["HumanEval/53"])
    assert he.prompt.rstrip().endswith('"""') and he.strip_prompt and he.stops == PYTHON_STOPS
    assert he.instruction.startswith("Please continue to complete the function.") and "def add(" in he.instruction
    assert set(he.checks) == {"base"} and he.max_new_tokens == 768
    assert he.extra["inputs"] == {"base": 105, "plus": 866}
    mb, = evalplus.problems("mbpp", task_ids=["Mbpp/2"])
    assert mb.prompt.startswith('"""\nWrite a function to find the shared elements') and not mb.strip_prompt
    assert mb.stops == evalplus.MBPP_STOPS and "\ndef" not in mb.stops
    assert mb.instruction == (evalplus.INSTRUCTION_PREFIX + "\n```\n" + mb.prompt.strip() + "\n```\n")


def test_mbpp_inputs_become_the_types_evalplus_calls_with():
    data("mbpp")
    rows = {r["task_id"]: r for r in evalplus.rows("mbpp")[0]}
    assert evalplus.inputs("mbpp", rows["Mbpp/2"])["base"][0] == [(3, 4, 5, 6), (5, 7, 4, 10)]
    assert evalplus.inputs("mbpp", rows["Mbpp/124"])["base"][0] == (0.0, 1j)
    assert evalplus.inputs("mbpp", rows["Mbpp/252"])["plus"][0] == [complex(1, 2)]
    assert evalplus.inputs("mbpp", rows["Mbpp/793"])["plus"] == []  # `{}` in the data: no plus inputs


def test_canonical_solutions_pass_base_and_plus_sampled():
    """Every 24th HumanEval+ task and every 54th MBPP+ task (the light ones; all in the slow run): the
    canonical solution passes both verdicts, and as an instruct answer; an empty body fails."""
    data("humaneval")
    data("mbpp")
    problems = (evalplus.problems("humaneval", task_ids=sample_ids("humaneval", 24))
                + evalplus.problems("mbpp", task_ids=sample_ids("mbpp", 54)))
    programs = []
    for p in problems:
        fenced = f"```python\n{p.prompt + p.reference if p.task_id.startswith('Human') else p.reference}\n```"
        programs += [Program("python", p.source(p.reference, "base")),
                     Program("python", p.source(p.reference, "base", "base")),
                     Program("python", p.source(fenced, "instruct")),
                     Program("python", p.source("\ndef nothing():\n    pass\n", "base"))]
    got = statuses(programs)
    assert [got[i:i + 4] for i in range(0, len(got), 4)] == [["passed"] * 3 + ["failed"]] * len(problems), \
        [(p.task_id, got[4 * i:4 * i + 4]) for i, p in enumerate(problems) if got[4 * i:4 * i + 4][:3] != ["passed"] * 3]


# Mbpp/255 combinations_colors(["Dog", "Cat", "CatBird", "Bird", "Fish"], 77) returns 1.66 million 77-tuples,
# 1.2 GB: past the sandbox's 1 GiB per sample (EvalPlus allows 4 GB), so even the canonical solution fails there.
OVER_THE_MEMORY_LIMIT = {"Mbpp/255"}


@pytest.mark.slow
@pytest.mark.parametrize("dataset", ["humaneval", "mbpp"])
def test_every_canonical_solution_passes_base_and_plus(dataset):
    data(dataset)
    problems = evalplus.problems(dataset)
    programs = [Program("python", p.source(p.reference, "base", check)) for p in problems for check in ("", "base")]
    got = dict(execute_many(programs, timeout=max(p.extra["timeout"] for p in problems)))
    failing = {p.task_id: [got[2 * i].status, got[2 * i + 1].status] for i, p in enumerate(problems)
               if [got[2 * i].status, got[2 * i + 1].status] != ["passed"] * 2}
    memory = {i for i, p in enumerate(problems) if p.task_id in OVER_THE_MEMORY_LIMIT}
    assert failing == {problems[i].task_id: ["failed", "passed"] for i in memory}
    assert all("memory limit" in got[2 * i].stderr for i in memory)


# ---- right on base, wrong on plus -------------------------------------------------------------------

# Real mistakes the base tests miss, each one character off the canonical solution: HumanEval/0 with
# `<=` (two numbers exactly `threshold` apart are not "closer than" it), Mbpp/66 counting 0 as
# positive, Mbpp/605 calling 1 a prime.
PLUS_ONLY_WRONG = {
    "HumanEval/0": ("humaneval", "< threshold", "<= threshold"),
    "Mbpp/66": ("mbpp", "x > 0", "x >= 0"),
    "Mbpp/605": ("mbpp", "num <= 1", "num < 1"),
}


@pytest.mark.parametrize("task_id", list(PLUS_ONLY_WRONG))
def test_a_solution_right_on_base_but_wrong_on_plus_is_scored_so(task_id):
    dataset, right, wrong = PLUS_ONLY_WRONG[task_id]
    data(dataset)
    problem, = evalplus.problems(dataset, task_ids=[task_id])
    assert problem.reference.count(right) == 1
    broken = problem.reference.replace(right, wrong)
    assert verdicts(problem, broken) == ("failed", "passed")
    assert verdicts(problem, problem.reference) == ("passed", "passed")


# ---- agreement with evalplus's own checker ----------------------------------------------------------

# task -> samples (completions after the prompt; "{ref:a->b}" is the canonical solution with a made b):
# right, wrong, wrong on the plus inputs only, raising, not parsing, looping past the time limit, and
# EvalPlus's special comparisons: float tolerance (atol, and 1e-6 for floats), set equality (Mbpp/2), a
# Counter against a dict (Mbpp/88), a second accepted answer (Mbpp/558, Mbpp/581), not-None (Mbpp/737).
AGREEMENT = {
    "HumanEval/0": ["{ref}", "    return None\n", "{ref:< threshold->:<= threshold}", "    return (\n",
                    "    while True:\n        pass\n"],
    "HumanEval/2": ["{ref}", "    return number % 1.0 + 1e-7\n", "    return number % 1.0 + 1e-5\n"],
    "HumanEval/53": ["{ref}", "    return float(x + y)\n", "    return x + y if x < 900 else 0\n"],
    "Mbpp/2": ["{ref}", "{ref:tuple(set(test_tup1) & set(test_tup2))->sorted(set(test_tup1) & set(test_tup2), reverse=True)}",
               "{ref:set(test_tup1) & set(test_tup2)->[x for x in test_tup1 if x in test_tup2]}",
               "\ndef similar_elements(a, b):\n  return 0\n"],
    "Mbpp/82": ["{ref}", "\nimport math\ndef volume_sphere(r):\n  return (4./3.) * 3.14159265 * (r**3)\n",
                "\nimport math\ndef volume_sphere(r):\n  return (4/3) * math.pi * r * r * r\n"],
    "Mbpp/88": ["{ref}", "\ndef freq_count(list1):\n  d = {}\n  for x in list1:\n    d[x] = d.get(x, 0) + 1\n  return d\n",
                "\ndef freq_count(list1):\n  return {x: 1 for x in list1}\n"],
    "Mbpp/558": ["{ref}", "\ndef digit_distance_nums(n1, n2):\n  a, b = str(n1), str(n2)\n  w = max(len(a), len(b))\n"
                 "  return sum(abs(int(p) - int(q)) for p, q in zip(a.zfill(w), b.zfill(w)))\n",
                 "\ndef digit_distance_nums(n1, n2):\n  return abs(n1 - n2)\n"],
    "Mbpp/581": ["{ref}", "\nimport math\ndef surface_Area(b, h):\n  return round(b * b + 2 * b * math.sqrt(b * b / 4 + h * h))\n",
                 "\ndef surface_Area(b, s):\n  return b * s\n"],
    "Mbpp/737": ["{ref}", "\nimport re\ndef check_str(string):\n  return bool(re.search('^[aeiouAEIOU]', string))\n",
                 "\ndef check_str(string):\n  raise ValueError(string)\n", "\ndef check_str(string):\n  return 'yes'\n"],
}


def _expand(template: str, reference: str) -> str:
    if template == "{ref}":
        return reference
    if template.startswith("{ref:"):
        old, new = template[5:-1].split("->")
        assert old in reference, (old, reference)
        return reference.replace(old, new)
    return template


def test_verdicts_agree_with_evalplus_check_correctness(tmp_path, monkeypatch):
    """evalplus 0.3.1's checker (its ground truth from `get_groundtruth`, its `check_correctness`) and
    ours judge every sample alike: base verdict, and base + plus verdict."""
    evaluate = pytest.importorskip("evalplus.evaluate")
    from evalplus.data.mbpp import mbpp_deserialize_inputs
    from evalplus.eval._special_oracle import MBPP_OUTPUT_NOT_NONE_TASKS

    data("humaneval")
    data("mbpp")
    monkeypatch.setattr(evaluate, "CACHE_DIR", str(tmp_path))  # its ground-truth pickle, not the user's
    programs, theirs = [], []
    for dataset in ("humaneval", "mbpp"):
        ids = [t for t in AGREEMENT if t.startswith("Human" if dataset == "humaneval" else "Mbpp")]
        problems = {p.task_id: p for p in evalplus.problems(dataset, task_ids=ids)}
        rows = {r["task_id"]: dict(r) for r in evalplus.rows(dataset)[0] if r["task_id"] in ids}
        for row in rows.values():
            if dataset == "mbpp":
                row["base_input"] = mbpp_deserialize_inputs(row["task_id"], row["base_input"])
                row["plus_input"] = mbpp_deserialize_inputs(row["task_id"], row["plus_input"] or [])
        expected = evaluate.get_groundtruth(rows, f"dscoder-agreement-{dataset}",
                                            MBPP_OUTPUT_NOT_NONE_TASKS if dataset == "mbpp" else [])
        for task_id in ids:
            problem, row = problems[task_id], rows[task_id]
            for template in AGREEMENT[task_id]:
                completion = _expand(template, problem.reference)
                result = evaluate.check_correctness(dataset, 0, row, row["prompt"] + completion, expected[task_id],
                                                    fast_check=True)  # as `evalplus.evaluate` calls it
                base, plus = result["base"][0], result["plus"][0]
                theirs.append((task_id, template[:40], base == "pass" and plus == "pass", base == "pass"))
                programs += [Program("python", problem.source(completion, "base", check)) for check in ("", "base")]
    got = statuses(programs)
    mine = [(task_id, short, got[2 * i] == "passed", got[2 * i + 1] == "passed")
            for i, (task_id, short, _, _) in enumerate(theirs)]
    assert mine == theirs
    assert {(m[2], m[3]) for m in mine} >= {(True, True), (False, True), (False, False)}  # each kind is there


def test_find_zero_is_judged_as_evalplus_means_not_as_0_3_1_counts():
    """HumanEval/32 (any x with |poly(xs, x)| <= atol): evalplus 0.3.1 judges each input right but
    then `continue`s past its bookkeeping, so every sample, the canonical one too, fails there (fixed
    upstream in commit 26d6d00, after 0.3.1). Ours passes a right root and fails a wrong one."""
    evaluate = pytest.importorskip("evalplus.evaluate")
    data("humaneval")
    problem, = evalplus.problems("humaneval", task_ids=["HumanEval/32"])
    row = next(r for r in evalplus.rows("humaneval")[0] if r["task_id"] == "HumanEval/32")
    from evalplus.gen.util import trusted_exec

    expected, seconds = trusted_exec(row["prompt"] + row["canonical_solution"], row["base_input"], "find_zero",
                                     record_time=True)
    theirs = evaluate.untrusted_check("humaneval", row["prompt"] + problem.reference, row["base_input"], "find_zero",
                                      expected, row["atol"], seconds)
    assert theirs[0] == "fail" and len(theirs[1]) == 0  # no input recorded as run: their defect, not the answer
    assert verdicts(problem, problem.reference) == ("passed", "passed")
    assert verdicts(problem, "    return 0.0\n") == ("failed", "failed")
    assert verdicts(problem, "    return [0.0]\n") == ("failed", "failed")


# ---- the cache ------------------------------------------------------------------------------------

def test_ground_truth_is_cached_by_data_hash_and_a_damaged_cache_is_computed_again(tmp_path, monkeypatch):
    data("mbpp")
    monkeypatch.setenv("DSCODER_CACHE", str(tmp_path))
    first, = evalplus.problems("mbpp", task_ids=["Mbpp/88"])
    _, sha = evalplus.rows("mbpp")
    cached = tmp_path / "evalplus" / sha / "Mbpp_88.json"
    record = json.loads(cached.read_text())
    assert record["format"] == oracle.FORMAT and record["task_id"] == "Mbpp/88"
    # The canonical solution returns a Counter: kept as a plain dict (equal to it, as EvalPlus compares).
    counts = {"dict": [[10, 4], [20, 4], [40, 2], [50, 2], [30, 1]]}
    assert record["oracle"]["sections"]["base"][0]["v"] == counts
    for damage in ('{"format": 2, "oracle": ', json.dumps({**record, "oracle": {**record["oracle"], "sections": {
            "base": [{"t": 0, "v": {"eval": "1"}}] * 3, "plus": record["oracle"]["sections"]["plus"]}}})):
        cached.write_text(damage)
        again, = evalplus.problems("mbpp", task_ids=["Mbpp/88"])
        assert json.loads(cached.read_text())["oracle"]["sections"]["base"][0]["v"] == counts
        assert _same_but_limits(first.program(first.reference), again.program(again.reference))
    assert statuses([Program("python", again.program(again.reference))]) == ["passed"]


def _same_but_limits(a: str, b: str) -> bool:
    """Two checks programs alike but for the time limits (the canonical solution timed twice)."""
    limits = re.compile(r"run\([0-9.e-]+, ")
    return limits.sub("run(L, ", a) == limits.sub("run(L, ", b)


# ---- large outputs, compared by hash --------------------------------------------------------------

SIEVE = ("    flags = [True] * max(n, 2)\n    for i in range(2, int(n ** 0.5) + 1):\n        if flags[i]:\n"
         "            flags[i * i::i] = [False] * len(flags[i * i::i])\n"
         "    primes = [i for i in range(2, n) if flags[i]]\n")


def test_large_outputs_are_compared_by_a_hash_that_follows_python_equality():
    """HumanEval/96 count_up_to(n) for n up to 15,700 returns over a thousand primes, past what is written
    as a literal: compared by hash, where 2.0 == 2 still holds (EvalPlus compares with ==), while one
    prime dropped, or a tuple for the list, still fails (and only on the plus inputs, where n is large)."""
    data("humaneval")
    problem, = evalplus.problems("humaneval", task_ids=["HumanEval/96"])
    assert "same(run(" in problem.program("")
    samples = {"right": SIEVE + "    return primes\n", "floats": SIEVE + "    return [float(p) for p in primes]\n",
               "one_prime_short": SIEVE + "    return primes[:-1] if n > 5000 else primes\n",
               "tuple": SIEVE + "    return tuple(primes) if n > 5000 else primes\n"}
    got = {name: verdicts(problem, body) for name, body in samples.items()}
    assert got == {"right": ("passed", "passed"), "floats": ("passed", "passed"),
                   "one_prime_short": ("failed", "passed"), "tuple": ("failed", "passed")}


def test_the_digest_is_equal_exactly_for_equal_values():
    """The hash's canonical form (run here on our own values): equal values hash alike across int,
    float and bool, dict order, set and frozenset, dict and Counter; list and tuple, str and bytes,
    and unequal values do not."""
    namespace: dict = {}
    exec(compile(oracle.TYPES + oracle.DIGEST, "<digest>", "exec"), namespace)
    digest = namespace["digest"]
    equal = [([1, 2.0, True], [1.0, 2, 1]), ([-1, 2], [-1.0, 2]), ({"a": 1, "b": [2]}, {"b": [2.0], "a": True}), ({1, 2}, frozenset({2, 1})),
             (Counter("aab"), {"b": 1, "a": 2}), ([["x", None]], [["x", None]]), ((1, "s"), (1.0, "s"))]
    unequal = [([1, 2], (1, 2)), (["a"], [b"a"]), ([1, 2], [2, 1]), ({"a": 1}, {"a": 2}), ([None], [0]),
               ([[1], [2]], [[1, 2]]), ("ab", ["a", "b"]), (-1, -2), ([3, -1], [3, -2]), ([-1.0], [-2])]
    assert all(digest(a) == digest(b) for a, b in equal)
    assert all(digest(a) != digest(b) for a, b in unequal)
