"""FIM exact match, the papers' single-line metric: the first generated line against the reference
line, compared as bigcode-evaluation-harness's santacoder_fim task compares (`strip()` both, equal).

And fim-lines, our Java/JS single-line set: cases rebuilt from real files whose hashes are
checked, the reference middle judged passed and another line failed, a changed or missing file
left out by name, a set with no file left skipped (never 0%), the builder deterministic.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path

import pytest

from dscoder.eval import report, runner
from dscoder.eval.config import EvalConfig
from dscoder.eval.evaluate import run as evaluate
from dscoder.tasks import fim_lines, infilling, load, subsets
from dscoder.tasks.fim_lines import Source
from conftest import shared_data


def bigcode_exact_match(generation: str, reference: str) -> bool:
    """santacoder_fim's rule, as bigcode-evaluation-harness writes it: `g.strip() == reference.strip()`."""
    return generation.strip() == reference.strip()


# ---- the measure ---------------------------------------------------------------------------------

def test_whitespace_at_the_ends_never_counts_and_inside_it_does():
    reference = "        for idx, elem in enumerate(numbers):\n"
    same = ["        for idx, elem in enumerate(numbers):\n", "for idx, elem in enumerate(numbers):",
            "\tfor idx, elem in enumerate(numbers):   \r\n", "    for idx, elem in enumerate(numbers):"]
    for text in same:
        assert infilling.exact_match(text, reference) == 1.0, repr(text)
        assert bigcode_exact_match(text, reference), repr(text)  # the reference harness agrees on single lines
    different = ["        for idx, elem in  enumerate(numbers):\n", "        for i, elem in enumerate(numbers):\n",
                 "        for idx, elem in enumerate(numbers)\n", "", "\n\n", "pass\n"]
    for text in different:
        assert infilling.exact_match(text, reference) == 0.0, repr(text)
        assert not bigcode_exact_match(text, reference), repr(text)


def test_only_the_first_line_counts():
    reference = "    return a + b\n"
    # DeepSeek-Coder scores the first generated line: what follows it is not judged...
    assert infilling.exact_match("    return a + b\n    print('more')\n", reference) == 1.0
    # ...and a wrong first line is wrong whatever follows; leading blank lines are stripped as bigcode strips them.
    assert infilling.exact_match("    x = 1\n    return a + b\n", reference) == 0.0
    assert infilling.exact_match("\n\n    return a + b\n", reference) == 1.0
    assert bigcode_exact_match("\n\n    return a + b\n", reference)


def test_canonical_single_line_middles_score_1_and_wrong_lines_0():
    shared_data("infilling", "HumanEval-SingleLineInfilling.jsonl.gz")
    problems = infilling.problems("single-line")
    assert len(problems) == 1033
    sample = problems[::10]
    for problem in sample:
        measure = problem.measures["exact_match"]
        assert measure(problem.reference) == 1.0, problem.task_id
        assert measure(problem.reference.strip() + "\n" + "    pass\n") == 1.0, problem.task_id
        assert measure("    pass\n") == (problem.reference.strip() == "pass"), problem.task_id
    # Another problem's middle is another line: 0 (unless the two lines happen to be the same).
    for problem, other in zip(sample, sample[1:]):
        expected = float(problem.reference.strip() == other.reference.strip())
        assert problem.measures["exact_match"](other.reference) == expected
    # Exact match is the single-line split's metric only.
    shared_data("infilling", "HumanEval-MultiLineInfilling.jsonl.gz")
    assert not infilling.problems("multi-line")[0].measures


# ---- fim-lines on files we write ------------------------------------------------------------------

def js_source(functions: int = 30) -> str:
    """A JavaScript file of our own: many small functions, each line distinct."""
    parts = ["'use strict'", "// a file written for the test", ""]
    for i in range(functions):
        parts += [f"function step{i} (value, options) {{", f"  const scaled{i} = value * {i + 2}",
                  "  if (options.verbose) {", f"    console.log('step {i}', scaled{i})", "  }",
                  f"  return scaled{i} + options.offset{i}", "}", ""]
    return "\n".join(parts) + "\n"


def java_source(name: str, methods: int = 12) -> str:
    parts = ["package demo;", "", "import java.util.List;", "", f"public class {name} {{",
             "    private final int base;", ""]
    for i in range(methods):
        parts += [f"    public int method{i}(List<Integer> values) {{", f"        int total{i} = base + {i};",
                  "        for (int v : values) {", f"            total{i} += v * {i + 1};", "        }",
                  f"        return total{i};", "    }", ""]
    return "\n".join(parts + ["}"]) + "\n"


@pytest.fixture
def js_root(tmp_path) -> dict[str, Source]:
    lib = tmp_path / "nodejs" / "typescript" / "lib"
    lib.mkdir(parents=True)
    (lib / "typescript.js").write_text(js_source())
    return {"nodejs": Source("dir", str(tmp_path / "nodejs")), "jdk-src": Source("jdk-zip", str(tmp_path / "none"))}


def write_cases(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def test_built_cases_load_back_with_the_reference_line_passed_and_another_failed(js_root, tmp_path):
    rows = fim_lines.build("js", count=8, seed=3, sources=js_root)
    assert rows == fim_lines.build("js", count=8, seed=3, sources=js_root)  # seeded: the same cases again
    assert rows != fim_lines.build("js", count=8, seed=4, sources=js_root)
    text = (Path(js_root["nodejs"].location) / "typescript/lib/typescript.js").read_text()
    for row in rows:  # no source text is stored: where it is, its hash, the line and the cut sizes
        assert set(row) == {"format", "task_id", "source", "path", "sha256", "line", "prefix_lines", "suffix_lines",
                            "built_from", "package"}
        assert row["sha256"] == hashlib.sha256(text.encode()).hexdigest()
    problems = fim_lines.load_cases(write_cases(tmp_path / "js.jsonl", rows), "js", js_root)
    assert len(problems) == 8 and not problems.left_out
    lines = text.split("\n")
    for row, problem in zip(rows, problems):
        prefix, suffix = problem.fim
        assert problem.reference == lines[row["line"] - 1] + "\n"
        assert prefix + problem.reference + suffix in text and prefix.endswith("\n")
        hole = problem.reference.strip()
        assert hole not in ("}", "") and not hole.startswith("//")  # a line of code, not a brace or a comment
        assert problem.judge(problem.reference) and problem.measures["exact_match"](problem.reference) == 1.0
        assert problem.judge(hole + "\n  more code")  # the first line decides
        previous = prefix.rstrip("\n").rsplit("\n", 1)[-1]
        assert not problem.judge(previous + "\n") and problem.measures["exact_match"](previous) == 0.0
        assert problem.program is None and problem.language == "js" and problem.group == "js"


def test_holes_sit_inside_function_bodies(tmp_path):
    text = java_source("Totals")
    archive = tmp_path / "jdk" / "lib" / "src.zip"
    archive.parent.mkdir(parents=True)
    with zipfile.ZipFile(archive, "w") as z:  # one hole per file, as the JDK's files give theirs
        for n in range(6):
            z.writestr(f"java.base/demo/Totals{n}.java", text.replace("Totals", f"Totals{n}"))
        z.writestr("java.base/module-info.java", "module java.base {}\n")
    sources = {"jdk-src": Source("jdk-zip", str(tmp_path / "*" / "lib" / "src.zip"))}
    rows = fim_lines.build("java", count=5, seed=0, sources={**sources, "nodejs": Source("dir", str(tmp_path))})
    lines = text.split("\n")
    body = {n for n, line in enumerate(lines, 1) if line.startswith("        ")}  # method bodies only
    assert {row["line"] for row in rows} <= body
    assert all(row["path"].startswith("java.base/demo/Totals") for row in rows)
    problems = fim_lines.load_cases(write_cases(tmp_path / "java.jsonl", rows), "java", sources)
    assert [p.reference for p in problems] == [lines[row["line"] - 1] + "\n" for row in rows]
    # Field declarations, signatures and braces are never holes.
    assert not {n for n in fim_lines.candidates(text, "java")} - body


def test_a_changed_or_missing_file_is_left_out_by_name(js_root, tmp_path):
    rows = fim_lines.build("js", count=4, seed=0, sources=js_root)
    other = tmp_path / "nodejs" / "typescript" / "lib" / "other.js"
    other.write_text(js_source())
    rows += [dict(row, path="typescript/lib/other.js", task_id=row["task_id"] + "-other",
                  sha256=hashlib.sha256(other.read_bytes()).hexdigest()) for row in rows[:2]]
    cases = write_cases(tmp_path / "js.jsonl", rows)
    assert len(fim_lines.load_cases(cases, "js", js_root)) == 6
    target = Path(js_root["nodejs"].location) / "typescript/lib/typescript.js"
    target.write_text(target.read_text().replace("scaled3", "scaledX"))  # tampered: the hash no longer matches
    other.unlink()  # missing
    problems = fim_lines.load_cases(cases, "js", js_root)
    assert len(problems) == 0
    assert sorted(problems.left_out) == sorted(row["task_id"] for row in rows)
    assert {why for why in problems.left_out.values()} == {"typescript/lib/typescript.js differs (sha256)",
                                                           "typescript/lib/other.js absent"}
    assert problems.left_out_note().startswith("6 of 6 cases left out: ")


def test_exact_match_is_recorded_per_sample_and_averaged_in_the_report(js_root, tmp_path):
    rows = fim_lines.build("js", count=4, seed=1, sources=js_root)
    problems = fim_lines.load_cases(write_cases(tmp_path / "js.jsonl", rows), "js", js_root)
    completions = tmp_path / "completions.jsonl"
    answers = [problems[0].reference, "  " + problems[1].reference.strip() + "  \nextra\n", "  wrong()\n", ""]
    completions.write_text("".join(json.dumps({"task_id": p.task_id, "completion": a}) + "\n"
                                   for p, a in zip(problems, answers)))
    complete, per_task = runner.file_completer(completions, {"js"})
    config = EvalConfig("fim-lines", completions=completions, subset="js")
    samples = runner.run(problems, complete, config, tmp_path / "out", samples_per_task=per_task, progress=False)
    assert [row["measures"]["exact_match"] for row in samples] == [1.0, 1.0, 0.0, 0.0]
    assert [row["status"] for row in samples] == ["passed", "passed", "failed", "failed"]
    summary = report.summarize(samples, config.identity())
    assert summary["measures"]["exact_match"] == 0.5 and summary["pass@1"] == 0.5

    # A sample that could not be generated (its prompt past the context) counts 0, not left out of the mean.
    from dscoder.infer.generate import ContextLengthError

    def complete(problem, index):
        if problem is problems[1]:
            raise ContextLengthError("prompt of 9999 tokens exceeds the model's context of 512 tokens")
        return problem.prompt, problem.reference, 3

    samples = runner.run(problems[:2], complete, EvalConfig("fim-lines", subset="js", model="m"), tmp_path / "gen",
                         progress=False)
    assert [(row["status"], row["measures"]["exact_match"]) for row in samples] == [("passed", 1.0), ("error", 0.0)]
    assert report.summarize(samples, {})["measures"]["exact_match"] == 0.5


# ---- the shipped sets --------------------------------------------------------------------------

def shipped(subset: str):
    problems = fim_lines.problems(subset)
    if not problems:
        pytest.skip(f"no fim-lines {subset} source file here: {problems.left_out_note()}")
    return problems


@pytest.mark.parametrize("subset", fim_lines.SUBSETS)
def test_shipped_cases_load_from_this_machines_files_with_verified_hashes(subset):
    problems = shipped(subset)
    cases = fim_lines.read_cases(fim_lines.case_file(subset))
    assert len(cases) == 200 and len(problems) + len(problems.left_out) == 200
    by_id = {c.task_id: c for c in cases}
    for problem in problems[::10]:
        case = by_id[problem.task_id]
        assert problem.judge(problem.reference) and not problem.judge("}\n")
        previous = problem.fim[0].rstrip("\n").rsplit("\n", 1)[-1]
        assert problem.judge(previous) == (previous.strip() == problem.reference.strip())
        assert problem.fim[0].count("\n") == case.prefix_lines and problem.fim[1].count("\n") <= case.suffix_lines
    assert subsets("fim-lines", None) == ["java", "js"]


def test_a_set_with_every_file_absent_is_skipped_not_scored(tmp_path):
    cases = fim_lines.read_cases(fim_lines.case_file("js"))[:3]
    data = tmp_path / "data" / "fim-lines"
    data.mkdir(parents=True)
    write_cases(data / "js.jsonl", [{"format": 1, **c.__dict__, "path": "typescript/lib/not-here-" + c.path[-8:]}
                                    for c in cases])
    assert load("fim-lines", "js", tmp_path / "data").left_out  # --data's case file is the one read
    completions = tmp_path / "completions.jsonl"
    completions.write_text("")
    summary = evaluate(EvalConfig("fim-lines", subset="js", completions=completions, data=tmp_path / "data",
                                  out=tmp_path / "out", progress=False))
    assert summary["samples"] == 0 and "js" not in summary["groups"]
    assert summary["skipped"]["js"].startswith("3 of 3 cases left out: ")
    assert "skipped" in (tmp_path / "out" / "report.md").read_text()


def test_cases_left_out_are_reported_beside_the_scored_ones(tmp_path):
    shipped("js")
    cases = fim_lines.read_cases(fim_lines.case_file("js"))[:5]
    rows = [{"format": 1, **c.__dict__} for c in cases]
    rows[1]["path"] = "typescript/lib/gone.js"
    rows[3]["sha256"] = "f" * 64
    data = tmp_path / "data" / "fim-lines"
    data.mkdir(parents=True)
    write_cases(data / "js.jsonl", rows)
    completions = tmp_path / "completions.jsonl"
    problems = load("fim-lines", "js", tmp_path / "data")
    completions.write_text("".join(json.dumps({"task_id": p.task_id, "completion": p.reference}) + "\n"
                                   for p in problems))
    summary = evaluate(EvalConfig("fim-lines", subset="js", completions=completions, data=tmp_path / "data",
                                  out=tmp_path / "out", progress=False))
    assert summary["groups"]["js"]["problems"] == 3 and summary["pass@1"] == 1.0
    assert summary["measures"]["exact_match"] == 1.0
    note = summary["skipped"]["js: 2 cases"]
    assert note.startswith("2 of 5 cases left out: ") and cases[1].task_id in note and cases[3].task_id in note
    assert "typescript/lib/gone.js absent" in note and "differs (sha256)" in note
