"""The `dscoder eval` loop: pass@k, resuming, scoring files of completions, reports, bad input,
and real models in each prompt form (base, instruct, FIM)."""

from __future__ import annotations

import json
import math
from itertools import combinations
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dscoder.execute import toolchains as languages
from dscoder.cli.app import app
from dscoder.eval import runner
from dscoder.tasks import humaneval
from dscoder.eval.passk import mean_pass_at_k, pass_at_k
from dscoder.infer.generate import GenerationError
from conftest import shared_data

cli = CliRunner()


def test_pass_at_k_is_the_exact_expectation_over_subsets():
    """pass@k is the chance that a random k-subset of the n samples holds a passing one."""
    for n, c, k in [(5, 2, 1), (5, 2, 3), (10, 3, 10), (7, 0, 2), (6, 6, 4), (12, 1, 5)]:
        outcomes = [True] * c + [False] * (n - c)
        subsets = list(combinations(outcomes, k))
        assert math.isclose(pass_at_k(n, c, k), sum(any(s) for s in subsets) / len(subsets), rel_tol=1e-12)
    assert pass_at_k(200, 37, 1) == pytest.approx(37 / 200)
    assert mean_pass_at_k([(10, 1), (10, 0)]) == {"pass@1": pytest.approx(0.05), "pass@10": pytest.approx(0.5)}
    with pytest.raises(ValueError, match="pass@10 needs at least 10 samples"):
        pass_at_k(5, 1, 10)


def _write_completions(path: Path, problems, completion_of) -> None:
    with open(path, "w") as f:
        for p in problems:
            f.write(json.dumps({"task_id": p.task_id, "completion": completion_of(p)}) + "\n")


def test_scoring_a_completions_file_writes_samples_summary_report_and_chart(tmp_path):
    problems = humaneval.problems("python")[:10]
    completions = tmp_path / "samples.jsonl"
    _write_completions(completions, problems, lambda p: p.reference if int(p.task_id.split("/")[1]) % 2 == 0
                       else "    return None\n")
    out = tmp_path / "run"
    result = cli.invoke(app, ["eval", "humaneval", "--completions", str(completions), "--out", str(out),
                              "--no-progress"])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    assert sorted(r["task_id"] for r in rows) == sorted(p.task_id for p in problems)
    assert {r["task_id"]: r["status"] for r in rows} == {
        p.task_id: "passed" if int(p.task_id.split("/")[1]) % 2 == 0 else "failed" for p in problems}
    failed = next(r for r in rows if r["status"] == "failed")
    assert "AssertionError" in failed["stderr"] and failed["completion"] == "    return None\n"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["pass@1"] == 0.5 and summary["problems"] == 10
    assert summary["statuses"] == {"passed": 5, "failed": 5, "timeout": 0, "error": 0}
    assert "pass@1 = 50.00%" in (out / "report.md").read_text()
    assert (out / "chart.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "pass@1 = 50.00%" in result.output


def test_many_samples_per_task_give_pass_at_k(tmp_path):
    problems = humaneval.problems("python")[:3]
    completions = tmp_path / "c.jsonl"
    with open(completions, "w") as f:
        for p in problems:  # 10 samples each; problem i has i+1 right ones
            for j in range(10):
                right = j <= problems.index(p)
                f.write(json.dumps({"task_id": p.task_id, "completion": p.reference if right else "    pass\n"}) + "\n")
    out = tmp_path / "run"
    result = cli.invoke(app, ["eval", "humaneval", "--completions", str(completions), "--out", str(out), "--no-progress"])
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["pass@1"] == pytest.approx((1 + 2 + 3) / 30)
    assert summary["pass@10"] == 1.0 and "pass@100" not in summary


def test_an_interrupted_run_resumes_without_redoing_or_losing_samples(tmp_path):
    problems = humaneval.problems("python")[:6]
    asked: list[str] = []

    def complete(problem, index):
        asked.append(problem.task_id)
        return problem.prompt, problem.reference, 0

    out = tmp_path / "run"
    runner.run(problems[:4], complete, runner.EvalConfig("humaneval", subset="python", model="fake", limit=4), out,
               progress=False)
    config = runner.EvalConfig("humaneval", subset="python", model="fake")  # the quick look grows into the full run
    # A kill mid-write leaves a torn last line; that sample is redone, the others kept.
    lines = (out / "samples.jsonl").read_text().splitlines()
    (out / "samples.jsonl").write_text("\n".join(lines[:3]) + "\n" + lines[3][:25])
    asked.clear()
    rows = runner.run(problems, complete, config, out, progress=False)
    done_before = {json.loads(line)["task_id"] for line in lines[:3]}
    assert sorted(asked) == sorted(p.task_id for p in problems if p.task_id not in done_before)
    assert sorted(r["task_id"] for r in rows) == sorted(p.task_id for p in problems)
    assert all(r["status"] == "passed" for r in rows)
    def too_long(problem, index):
        raise GenerationError("prompt of 9000 tokens exceeds the model's context of 8192 tokens")

    rows = runner.run(humaneval.problems("python")[:8], too_long, config, out, progress=False)
    for row in [r for r in rows if r["task_id"] in ("HumanEval/6", "HumanEval/7")]:  # the new ones only
        assert (row["status"], row["stage"]) == ("error", "generate") and "exceeds the model's context" in row["stderr"]
    assert sum(r["status"] == "passed" for r in rows) == 6
    with pytest.raises(runner.EvalError, match="temperature: 0.0 there, 0.8 now"):
        runner.run(problems, complete, runner.EvalConfig("humaneval", subset="python", model="fake", temperature=0.8), out,
                   progress=False)


def test_bad_requests_are_named(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"task_id": "HumanEval/0", "completion": "x"}\nnot json\n')
    cases = [
        (["eval", "nosuch"], "No such command 'nosuch'"),
        (["eval", "humaneval", "--language", "cobol"], "humaneval has no subset 'cobol'"),
        (["eval", "humaneval", "--form", "chatty", "--completions", str(bad)], "--form must be one of base, instruct"),
        (["eval", "humaneval", "--samples", "4"], "--samples > 1 with --temperature 0"),
        (["eval", "humaneval", "--completions", str(bad), "--out", str(tmp_path / "o")], "bad.jsonl:2: not a sample line"),
    ]
    for argv, message in cases:
        result = cli.invoke(app, argv)
        assert result.exit_code == 2, (argv, result.output)
        assert message in result.output, (argv, result.output)
    unknown = tmp_path / "unknown.jsonl"
    unknown.write_text('{"task_id": "HumanEval/999", "completion": "x"}\n')
    result = cli.invoke(app, ["eval", "humaneval", "--completions", str(unknown), "--out", str(tmp_path / "u")])
    assert result.exit_code == 2 and "does not have: ['HumanEval/999']" in result.output


def test_the_instruct_form_of_a_benchmark_without_one_is_refused():
    shared_data("infilling")  # what the benchmark has is learnt from its problems
    result = cli.invoke(app, ["eval", "humaneval-infilling", "--form", "instruct"])
    assert result.exit_code == 2, result.output
    assert "humaneval-infilling has no instruct form" in result.output


def test_a_language_without_its_toolchain_is_skipped_not_scored_zero(tmp_path, monkeypatch):
    shared_data("humaneval", "humaneval-go.jsonl")
    real = languages._resolve
    monkeypatch.setattr(languages, "_resolve", lambda exe: None if exe == "php" else real(exe))
    completions = tmp_path / "c.jsonl"
    # MultiPL-E names a problem alike in every language: with several, each line says its language.
    strlen = {"sh": '    echo -n "$1" | wc -c\n', "js": "  return string.length;\n}\n"}
    completions.write_text("".join(json.dumps({"task_id": "HumanEval_23_strlen", "language": lang, "completion": c})
                                   + "\n" for lang, c in strlen.items()))
    out = tmp_path / "run"
    result = cli.invoke(app, ["eval", "humaneval", "--language", "all", "--completions", str(completions),
                              "--out", str(out), "--no-progress"])
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    # php is hidden here; Julia and Swift have no Debian package, so they are skipped wherever they are absent.
    assert summary["skipped"]["php"] == "php not found on PATH"
    assert set(summary["skipped"]) - {"php"} == {lang for lang in ("jl", "swift") if languages.toolchain(lang).missing()}
    assert "php" not in summary["groups"] and "| php | skipped: php not found on PATH |" in (out / "report.md").read_text()
    assert {g: b["statuses"]["passed"] for g, b in summary["groups"].items()} == {"js": 1, "sh": 1}
    unlabelled = tmp_path / "u.jsonl"
    unlabelled.write_text(json.dumps({"task_id": "HumanEval_23_strlen", "completion": "x"}) + "\n")
    result = cli.invoke(app, ["eval", "humaneval", "--language", "all", "--completions", str(unlabelled),
                              "--out", str(tmp_path / "u")])
    assert result.exit_code == 2 and "each line needs a 'language' field" in result.output


def test_instruct_form_with_the_embedded_chat_model(smollm2_gguf, tmp_path):
    """The real chat model, asked in the chat template; its fenced code is judged in the sandbox."""
    out = tmp_path / "run"
    result = cli.invoke(app, ["eval", "humaneval", "--model", str(smollm2_gguf), "--form", "instruct", "--limit", "2",
                              "--max-tokens", "48", "--out", str(out), "--no-progress"])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    assert len(rows) == 2
    base = tmp_path / "base"
    result = cli.invoke(app, ["eval", "humaneval", "--model", str(smollm2_gguf), "--limit", "1", "--max-tokens", "24",
                              "--out", str(base), "--no-progress"])
    assert result.exit_code == 0, result.output
    row = json.loads((base / "samples.jsonl").read_text())
    problem = humaneval.problems("python")[0]  # DeepSeek's way: prompt stripped, output joined after a newline
    assert row["prompt"] == problem.prompt.rstrip() and row["completion"].startswith("\n")
    assert not any(stop in row["completion"][1:] for stop in humaneval.PYTHON_STOPS)
    for row in rows:
        assert "<|im_start|>user\nPlease continue to complete the function" in row["prompt"]
        assert row["prompt"].endswith("<|im_start|>assistant\n")
        assert 0 < row["gen_tokens"] <= 48 and row["completion"]
        assert row["status"] in ("passed", "failed", "error", "timeout") and row["stage"] == "run"


def test_infilling_a_model_without_fim_tokens_is_refused_before_any_sample(smollm2_gguf, tmp_path):
    shared_data("infilling")
    result = cli.invoke(app, ["eval", "humaneval-infilling", "--model", str(smollm2_gguf), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and "has no fill-in-the-middle tokens" in result.output
    assert not (tmp_path / "o" / "samples.jsonl").exists()


def test_fim_generation_for_infilling(fim_model_dir, tmp_path):
    """Infilling asks through the model's FIM tokens; the generated middle lands in the program."""
    from dscoder.tasks import infilling
    from dscoder.execute.programs import Program, execute
    from dscoder.hub import load_model
    from dscoder.tokenizer.tokenizer import Tokenizer

    shared_data("infilling")
    tok = Tokenizer.load(fim_model_dir)
    model = load_model(fim_model_dir)
    config = runner.EvalConfig("humaneval-infilling", subset="single-line", model="tiny", max_new_tokens=8)
    complete = runner.model_completer(model, tok, config)
    problem = infilling.problems("single-line")[0]
    prompt, middle, tokens = complete(problem, 0)
    assert prompt == f"<｜fim▁begin｜>{problem.fim[0]}<｜fim▁hole｜>{problem.fim[1]}<｜fim▁end｜>"
    assert 0 < tokens <= 8
    verdict = execute(Program("python", problem.program(middle)))
    assert verdict.status == "failed"  # random weights: whatever it wrote, the tests run and reject it
