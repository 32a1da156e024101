"""`dscoder eval all`: one table across benchmarks, the papers' numbers beside ours, absent data named."""

from __future__ import annotations

import json
import shutil

import pytest
from typer.testing import CliRunner

from conftest import SHARED_DATA, requires
from dscoder.cli.app import app
from dscoder.eval.published import PUBLISHED, lookup, model_key
from dscoder.tokenizer.tokenizer import Tokenizer
from training_data import random_model_dir


def test_published_numbers_are_found_for_every_way_of_naming_a_deepseek_model():
    for name in ("deepseek-coder-33b-instruct", "deepseek-ai/deepseek-coder-33b-instruct",
                 "/models/deepseek-coder-33b-instruct/", "deepseek-coder-33b-instruct-gguf"):
        assert model_key(name) == "deepseek-coder-33b-instruct", name
    assert model_key("deepseek-coder-33b") == "deepseek-coder-33b-base"  # the alias
    assert model_key("/models/DeepSeek-Coder-V2-Lite-Instruct") == "deepseek-coder-v2-lite-instruct"
    assert model_key(None) is model_key("default") is model_key("tiny-llama") is None
    # The numbers of DeepSeek's tables, checked against the source they cite.
    assert lookup("deepseek-coder-33b-instruct", "leetcode", "en", "instruct").value == 27.8
    assert lookup("deepseek-coder-6.7b-base", "humaneval", "cpp", "base").value == 50.3
    assert lookup("deepseek-coder-6.7b-base", "humaneval", "cpp", "instruct") is None  # another protocol
    assert lookup("deepseek-coder-v2-instruct", "mbpp+", "", "instruct").value == 76.2
    assert all(0 < p.value < 100 and p.source for table in PUBLISHED.values() for p in table.values())


@pytest.fixture(scope="module")
def deepseek_named_model(tmp_path_factory, tiny_tokenizer):
    """A tiny random model in a folder named like DeepSeek's 1.3B base: the suite must look its papers' numbers up.
    Its context (4096) holds MBPP's 3-shot prompts in the tiny vocabulary; at the preset's 512 MBPP is skipped."""
    return random_model_dir(tmp_path_factory.mktemp("m") / "deepseek-coder-1.3b-base",
                            Tokenizer.load(tiny_tokenizer / "tokenizer.json"), std=0.02, context=4096)


def test_eval_all_writes_one_table_with_the_paper_beside_ours_and_names_what_it_skipped(deepseek_named_model,
                                                                                      tmp_path):
    if not (SHARED_DATA / "mbpp" / "mbpp.jsonl").is_file():
        requires("shared-data", "MBPP's data")
    data = tmp_path / "data"  # MBPP present, GSM8K absent: the suite runs one and names the other
    (data / "mbpp").mkdir(parents=True)
    shutil.copy(SHARED_DATA / "mbpp" / "mbpp.jsonl", data / "mbpp" / "mbpp.jsonl")
    out = tmp_path / "suite"
    result = CliRunner().invoke(app, ["eval", "all", "--model", str(deepseek_named_model), "--only",
                                      "humaneval:python,mbpp,gsm8k:pal", "--limit", "2", "--data", str(data),
                                      "--out", str(out), "--no-progress", "--workers", "2"])
    assert result.exit_code == 0, result.output
    table = json.loads((out / "suite.json").read_text())
    by_name = {(row["benchmark"], row["group"] or row["subset"]): row for row in table["rows"]}
    humaneval, mbpp, gsm8k = by_name["humaneval", "python"], by_name["mbpp", ""], by_name["gsm8k", "pal"]
    assert humaneval["form"] == mbpp["form"] == "base"  # a base model: the base form
    assert humaneval["problems"] == mbpp["problems"] == 2
    assert (humaneval["published"], mbpp["published"]) == (34.8, 46.8)
    assert "not found" in gsm8k["skipped"] and "gsm8k" in gsm8k["skipped"]
    # Each benchmark ran as an ordinary, resumable evaluation in its own folder.
    assert len((out / "humaneval-python-base" / "samples.jsonl").read_text().splitlines()) == 2
    report = (out / "suite.md").read_text()
    assert "| humaneval (python) | base | 2 |" in report and "34.8 [1]" in report
    assert "Evaluation/HumanEval/README.md" in report and "skipped: benchmark data" in report
    assert (out / "suite.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # Run again: everything is resumed, nothing regenerated, the same table.
    again = CliRunner().invoke(app, ["eval", "all", "--model", str(deepseek_named_model), "--only",
                                     "humaneval:python,mbpp,gsm8k:pal", "--limit", "2", "--data", str(data),
                                     "--out", str(out), "--no-progress"])
    assert again.exit_code == 0, again.output
    assert json.loads((out / "suite.json").read_text())["rows"] == table["rows"]


def test_eval_all_refuses_an_unknown_benchmark_by_name(tmp_path):
    result = CliRunner().invoke(app, ["eval", "all", "--only", "humaneval,nosuch", "--out", str(tmp_path)])
    assert result.exit_code == 2
    assert "unknown benchmark 'nosuch'" in result.output
