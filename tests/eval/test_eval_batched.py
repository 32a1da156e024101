"""`dscoder eval` through the serving engine: the batched path writes exactly the samples the
one-at-a-time path writes (greedy and seeded sampling; base, instruct and FIM prompts; stop
strings and stop tokens), `dscoder.eval.run` is the whole run as a library call, and an eval
killed with SIGKILL resumes to the same summary as one never interrupted."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from dscoder import eval as evaluation
from dscoder.eval import runner
from dscoder.eval.batched import EngineCompleter
from dscoder.eval.config import EvalConfig
from dscoder.hub import load
from dscoder.tasks import humaneval
from dscoder.tokenizer.tokenizer import Tokenizer
from conftest import ROOT, code_like_model_dir, shared_data, wait_for


@pytest.fixture(scope="module")
def smollm2(smollm2_gguf):
    return load(smollm2_gguf)


@pytest.fixture(scope="module")
def tiny_dir(smollm2_gguf, tmp_path_factory) -> Path:
    """A random tiny Llama over SmolLM2's vocabulary, saved as an HF directory: milliseconds a token,
    and its head lets only code-like pieces win, so completions have lines for the stop strings to cut."""
    pieces = ["\n", "\n", "    ", "    ", "return", " a", " +", " b", "x", "print", "(", ")", " =", " 1", "#"]
    return code_like_model_dir(tmp_path_factory.mktemp("tiny-smollm2-vocab"), Tokenizer.load(smollm2_gguf), pieces,
                               seed=7, head_seed=3)


def per_sample_and_batched(model, tok, config: EvalConfig, problems, samples: int = 1):
    """(prompt, completion, tokens) of every (problem, sample), from the one-at-a-time path and the engine."""
    todo = [(p, i) for p in problems for i in range(samples)]
    complete = runner.model_completer(model, tok, config)
    one_at_a_time = [complete(p, i) for p, i in todo]
    with EngineCompleter(model, tok, config, problems) as engine:
        finished = {(s.problem.task_id, s.index): s for s in engine.completions(todo)}
    assert len(finished) == len(todo) and all(s.error is None for s in finished.values())
    batched = [(s.prompt, s.completion, s.tokens) for s in (finished[(p.task_id, i)] for p, i in todo)]
    return one_at_a_time, batched


@pytest.mark.parametrize("form", ["base", "instruct"])
def test_greedy_samples_are_the_per_sample_paths_own(smollm2, form):
    """The embedded model, first four HumanEval problems: the same prompt, text and token count each."""
    model, tok = smollm2
    problems = humaneval.problems("python")[:4]
    config = EvalConfig("humaneval", subset="python", form=form, max_new_tokens=20)
    reference, batched = per_sample_and_batched(model, tok, config, problems)
    assert batched == reference
    if form == "base":  # stop strings went through the engine: a sample ends before the budget
        assert any(tokens < 20 for _, _, tokens in batched)
        assert all(prompt == p.prompt.rstrip() and text.startswith("\n")
                   for (prompt, text, _), p in zip(batched, problems))
    else:  # the prompt is the chat template's
        assert all(prompt.endswith("<|im_start|>assistant\n") for prompt, _, _ in batched)


def test_seeded_sampling_gives_the_same_samples_batched(tiny_dir):
    """Sample i draws with seed + i on either path, so temperature > 0 is reproducible too."""
    model, tok = load(tiny_dir)
    config = EvalConfig("humaneval", subset="python", samples=4, temperature=1.0, seed=5, max_new_tokens=12)
    reference, batched = per_sample_and_batched(model, tok, config, humaneval.problems("python")[:3], samples=4)
    assert batched == reference
    assert len({text for _, text, _ in batched[:4]}) > 1  # the seeds differ: so do the samples


def test_fim_prompts_go_through_the_engine(fim_model_dir):
    from dscoder.tasks import infilling

    shared_data("infilling")
    model, tok = load(fim_model_dir)
    config = EvalConfig("humaneval-infilling", subset="single-line", model="tiny", max_new_tokens=8)
    reference, batched = per_sample_and_batched(model, tok, config, infilling.problems("single-line")[:3])
    assert batched == reference
    assert all(prompt.startswith("<｜fim▁begin｜>") for prompt, _, _ in batched)


def test_a_request_too_long_for_the_context_is_that_samples_error_row(smollm2, tmp_path):
    model, tok = smollm2
    config = EvalConfig("humaneval", subset="python", max_new_tokens=9000)  # SmolLM2's context: 8192
    problems = humaneval.problems("python")[:2]
    with EngineCompleter(model, tok, config, problems) as engine:
        rows = runner.run(problems, engine, config, tmp_path / "run", progress=False)
    assert [(r["status"], r["stage"]) for r in rows] == [("error", "generate")] * 2
    assert all("exceeds the model's context of 8192 tokens" in r["stderr"] for r in rows)


def test_the_library_run_is_the_whole_evaluation(tiny_dir, tmp_path):
    """`dscoder.eval.run(cfg)`: problems, model, engine, sandbox and report; batch 1 (no engine) agrees."""
    config = EvalConfig("humaneval", model=str(tiny_dir), limit=5, max_new_tokens=16, out=tmp_path / "batched",
                        progress=False)
    summary = evaluation.run(config)
    assert summary.out == tmp_path / "batched" and summary.new_samples == 5 and summary["problems"] == 5
    assert json.loads((summary.out / "summary.json").read_text()) == summary.numbers
    assert summary.numbers["config"]["subset"] == "python" and "out" not in summary.numbers["config"]
    one = evaluation.run(EvalConfig("humaneval", model=str(tiny_dir), limit=5, max_new_tokens=16, batch=1,
                                    out=tmp_path / "one", progress=False))
    assert samples_by_task(summary.out) == samples_by_task(one.out)
    # Run settings may change on resume (more sandboxes, another timeout); what defines the numbers may not.
    again = evaluation.run(EvalConfig("humaneval", model=str(tiny_dir), limit=5, max_new_tokens=16, workers=1,
                                      timeout=20.0, out=tmp_path / "batched", progress=False))
    assert again.new_samples == 0 and again.numbers == summary.numbers
    with pytest.raises(evaluation.EvalError, match="max_new_tokens: 16 there, 17 now"):
        evaluation.run(EvalConfig("humaneval", model=str(tiny_dir), limit=5, max_new_tokens=17,
                                  out=tmp_path / "batched", progress=False))


def samples_by_task(out: Path) -> dict:
    rows = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    return {(r["task_id"], r["sample"]): (r["prompt"], r["completion"], r["gen_tokens"], r["status"]) for r in rows}


def test_an_eval_killed_with_sigkill_resumes_to_the_summary_of_an_uninterrupted_one(tiny_dir, tmp_path):
    n = 24
    out = tmp_path / "killed"
    argv = [sys.executable, "-m", "dscoder.cli", "eval", "humaneval", "--limit", str(n), "--model", str(tiny_dir),
            "--max-tokens", "16", "--workers", "1", "--out", str(out), "--no-progress"]
    samples = out / "samples.jsonl"

    def rows_written() -> int:
        return len(samples.read_text().splitlines()) if samples.exists() else 0

    process = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_for(lambda: rows_written() >= 1 or process.poll() is not None, 180, "the first sample row")
        process.send_signal(signal.SIGKILL)
        _, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == -signal.SIGKILL, stderr.decode()[-2000:]
    assert 1 <= rows_written() < n  # killed mid-run: some samples written, not all
    assert not (out / "summary.json").exists()

    resumed = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    reference = evaluation.run(EvalConfig("humaneval", model=str(tiny_dir), limit=n, max_new_tokens=16,
                                          out=tmp_path / "uninterrupted", progress=False))
    summary = json.loads((out / "summary.json").read_text())
    assert summary["pass@1"] == reference["pass@1"] and summary["statuses"] == reference["statuses"]
    assert summary["samples"] == n and rows_written() == n  # nothing redone twice, nothing lost
    assert samples_by_task(out) == samples_by_task(reference.out)
