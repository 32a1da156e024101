"""Long context: loss by position (`dscoder eval loss-by-position`) and the passkey probe.

Loss by position on a tiny random model checks the bookkeeping (every scored token lands in one
bucket, chunked scoring through the KV cache equals one plain forward, a file shorter than the
window, the JSON and PNG); on the embedded SmolLM2 it checks the behaviour the measurement exists
for: with more of a real file before it, a real model predicts the next token better.
"""

from __future__ import annotations

import json
import re
import sysconfig
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from typer.testing import CliRunner

from dscoder.cli.app import app
from dscoder.eval import long_context
from dscoder.eval.config import EvalConfig
from dscoder.eval.evaluate import run as evaluate
from dscoder.hub import load
from dscoder.tasks import passkey, subsets
from dscoder.tokenizer.tokenizer import Tokenizer
from training_data import random_model_dir

STDLIB = Path(sysconfig.get_paths()["stdlib"])


@pytest.fixture(scope="module")
def tiny(tiny_tokenizer, tmp_path_factory):
    """A random tiny-llama over the tiny BPE vocabulary: (directory, model, tokenizer)."""
    tok = Tokenizer.load(tiny_tokenizer / "tokenizer.json")
    directory = random_model_dir(tmp_path_factory.mktemp("tiny-model"), tok, std=0.05)
    model, tokenizer = load(str(directory))
    return directory, model, tokenizer


def test_windows_cover_the_file_once_each_led_by_bos():
    ids = list(range(10, 35))  # 25 tokens
    cut = long_context.windows(ids, 8, bos=1)
    assert [w[0] for w in cut] == [1] * 4 and [len(w) for w in cut] == [8, 8, 8, 5]
    assert [t for w in cut for t in w[1:]] == ids
    assert long_context.windows(ids, 8, bos=None) == [ids[0:8], ids[8:16], ids[16:24]]  # a 1-token tail: nothing
    assert long_context.bucket_edges(300) == [1, 128, 256, 300] and long_context.bucket_edges(100) == [1, 100]
    assert long_context.bucket_edges(16384)[-3:] == [4096, 8192, 16384]


def test_chunked_scoring_through_the_cache_equals_one_forward(tiny):
    _, model, tokenizer = tiny
    ids = tokenizer.encode((STDLIB / "json" / "decoder.py").read_text())[:150]
    with torch.no_grad():
        logits, _ = model(torch.tensor([ids]))
    plain = F.cross_entropy(logits[0, :-1].float(), torch.tensor(ids[1:]), reduction="none").double()
    for chunk in (7, 64, 1000):
        assert torch.allclose(long_context.window_losses(model, ids, chunk), plain, atol=1e-4)


def test_every_scored_token_lands_in_one_bucket_and_short_files_work(tiny, tmp_path):
    _, model, tokenizer = tiny
    long_file, short_file = STDLIB / "json" / "scanner.py", tmp_path / "short.py"  # ~3 windows of 300, and less
    short_file.write_text("def add(a, b):\n    return a + b\n")
    result = long_context.loss_by_position(model, tokenizer, [long_file, short_file], max_len=300, chunk=64)
    long_ids = tokenizer.encode(long_file.read_text(), add_bos=False)
    short_ids = tokenizer.encode(short_file.read_text(), add_bos=False)
    expected = sum(len(w) - 1 for ids in (long_ids, short_ids)
                   for w in long_context.windows(ids, 300, tokenizer.bos_id))
    assert result.tokens == expected == sum(b["tokens"] for b in result.buckets)
    assert [(b["from"], b["to"]) for b in result.buckets] == [(1, 127), (128, 255), (256, 299)]
    assert result.files[1] == {"path": str(short_file), "tokens": len(short_ids), "windows": 1}
    # A random model over a 512-token vocabulary: about log(512) per token, everywhere.
    assert all(abs(b["loss"] - 6.24) < 0.5 for b in result.buckets)

    only_short = long_context.loss_by_position(model, tokenizer, [short_file], max_len=300)
    assert only_short.buckets[0]["tokens"] == len(short_ids)  # BOS + the file: every token after BOS scored
    assert [b["tokens"] for b in only_short.buckets[1:]] == [0, 0]
    assert [b["loss"] for b in only_short.buckets[1:]] == [None, None]
    capped = long_context.loss_by_position(model, tokenizer, [long_file, short_file], max_len=300, max_windows=2)
    assert [f["windows"] for f in capped.files] == [2, 0] and capped.tokens == 2 * 299


def test_the_command_writes_json_and_png_and_prints_the_table(tiny, tmp_path):
    directory, _, _ = tiny
    short = tmp_path / "short.py"
    short.write_text("x = 1\n" * 50)
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["eval", "loss-by-position", str(STDLIB / "json" / "encoder.py"), str(short),
                                      "--model", str(directory), "--max-len", "200", "--out", str(out)])
    assert result.exit_code == 0, result.output
    saved = json.loads((out / "loss_by_position.json").read_text())
    assert saved["max_len"] == 200 and [b["from"] for b in saved["buckets"]] == [1, 128]
    assert saved["tokens_scored"] == sum(b["tokens"] for b in saved["buckets"]) > 0
    assert (out / "loss_by_position.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert re.search(r"1-127 +│ +\d+ +│ +\d+\.\d{4}", result.output), result.output
    # A window past the model's context is refused, naming the limit.
    context = saved["context"]
    refused = CliRunner().invoke(app, ["eval", "loss-by-position", str(short), "--model", str(directory),
                                       "--max-len", str(context + 1), "--out", str(out)])
    assert refused.exit_code == 2 and f"context of {context} tokens" in refused.output


@pytest.mark.slow  # loading SmolLM2 and scoring 256 tokens: seconds on an idle machine, a minute on a busy one
def test_a_real_model_predicts_better_with_more_of_the_file_before_it(smollm2_gguf):
    model, tokenizer = load(str(smollm2_gguf))
    result = long_context.loss_by_position(model, tokenizer, [STDLIB / "argparse.py"], max_len=256, max_windows=1,
                                           chunk=256)
    first, later = result.buckets
    assert first["tokens"] == 127 and later["tokens"] == 128
    assert later["loss"] < first["loss"] - 0.2, result.buckets


# ---- passkey ------------------------------------------------------------------------------------

def test_passkey_problems_are_seeded_and_sized_by_length():
    one = passkey.problems("2k")
    assert [p.prompt for p in one] == [p.prompt for p in passkey.problems("2k")]
    assert len(one) == 20 and {p.group for p in one} == {"2k"}
    assert len({p.extra["key"] for p in one}) == 20
    for p in one:
        key = p.extra["key"]
        assert p.prompt.count(f"The pass key is {key}.") == 1 and p.prompt.endswith("The pass key is")
        assert f"The pass key is {key}." in p.instruction and p.program is None
        assert abs(p.extra["approx_tokens"] - 2048) < 40 and p.extra["chars"] == len(p.prompt)
        assert p.judge(f" {key}. Remember it.") and not p.judge(f" {key + 1}.") and not p.judge("I do not know")
    depths = [p.prompt.index("The pass key is") / len(p.prompt) for p in one]
    assert min(depths) < 0.05 and max(depths) > 0.9  # the needle at the start, the middle and the end
    assert len(passkey.problems("16k")[0].prompt) > 8 * len(one[0].prompt)
    assert subsets("passkey", None) == ["1k", "2k", "4k"] and subsets("passkey", "8k,16k") == ["8k", "16k"]


def test_passkey_accuracy_by_length_and_lengths_beyond_the_context_are_skipped_by_name(tmp_path, tiny):
    """Completions scored through the harness: grouped by length. A length none of whose prompts fits the
    model's context is skipped by name, never scored 0%; a prompt that fits but leaves too little room for
    the answer is that sample's generation error, not a crash."""
    problems = passkey.problems("1k") + passkey.problems("2k")
    completions = tmp_path / "completions.jsonl"
    lines = [{"task_id": p.task_id, "language": p.group,
              "completion": f" {p.extra['key']}." if p.group == "1k" or i % 2 else " 12345."}
             for i, p in enumerate(problems)]
    completions.write_text("".join(json.dumps(line) + "\n" for line in lines))
    summary = evaluate(EvalConfig("passkey", subset="1k,2k", completions=completions, out=tmp_path / "scored",
                                  progress=False))
    assert summary["groups"]["1k"]["pass@1"] == 1.0 and summary["groups"]["2k"]["pass@1"] == 0.5

    directory, model, _ = tiny
    too_long = model.config.max_position_embeddings < 4096
    assert too_long, "the tiny model's context must be shorter than the 4k prompts"
    for batch in (1, 4):  # one sample at a time, and through the serving engine
        summary = evaluate(EvalConfig("passkey", subset="4k", model=str(directory), limit=2, batch=batch,
                                      out=tmp_path / f"model-{batch}", progress=False))
        assert summary["samples"] == 0 and "4k" not in summary["groups"]
        assert re.fullmatch(r"every prompt \(\d+(-\d+)? tokens\) is longer than the model's context of 512 tokens",
                            summary["skipped"]["4k"])

    context = model.config.max_position_embeddings
    summary = evaluate(EvalConfig("humaneval", model=str(directory), limit=2, batch=1, max_new_tokens=context,
                                  out=tmp_path / "no-room", progress=False))
    assert summary["statuses"]["error"] == 2 and summary["pass@1"] == 0.0
    rows = [json.loads(line) for line in (tmp_path / "no-room" / "samples.jsonl").read_text().splitlines()]
    assert {row["stage"] for row in rows} == {"generate"} and all("context" in row["stderr"] for row in rows)


def test_passkey_has_an_instruct_form_and_fim_lines_has_none(tmp_path):
    from dscoder.eval import runner
    from dscoder.eval.config import EvalError

    instruct = EvalConfig("passkey", form="instruct")
    runner.check_form(passkey.problems("1k"), instruct)  # judged by text: the chat answer is judged the same way
    from dscoder.tasks import fim_lines

    line = fim_lines.problem("js/x", "js", "a\n", "  run(value)\n", "b\n")
    with pytest.raises(EvalError, match="no instruct form"):
        runner.check_form([line], EvalConfig("fim-lines", form="instruct"))
    problems = passkey.problems("1k")[:2]
    completions = tmp_path / "answers.jsonl"
    completions.write_text(json.dumps({"task_id": problems[0].task_id,
                                       "completion": f"Sure! The pass key is {problems[0].extra['key']}."}) + "\n"
                           + json.dumps({"task_id": problems[1].task_id, "completion": "I could not find it."}) + "\n")
    summary = evaluate(EvalConfig("passkey", subset="1k", form="instruct", completions=completions,
                                  out=tmp_path / "out", progress=False))
    assert summary["pass@1"] == 0.5
