"""`dscoder finetune --repo`'s before/after measures: a per-file split, fixed cases, and what they measure.

The measures are checked on real models over the training tests' tokenizer: a tiny Transformer
trained until it reproduces one small file scores next-line exact match 1.0 and a perplexity
near 1 on it, where the same model freshly initialised scores 0 and a perplexity near the
vocabulary size.
"""

from __future__ import annotations

import sysconfig
from pathlib import Path

import pytest
import torch

from dscoder.model.presets import get_preset
from dscoder.model.transformer import Transformer
from dscoder.tokenizer.tokenizer import Tokenizer
from dscoder.train.objective import next_token_loss
from dscoder.train.repo_eval import (FimCase, RepoCases, RepoEvalError, draw_cases, evaluate_repo, format_comparison,
                                     is_nontrivial, split_files)

# Short lines: the 512-token vocabulary spends many tokens per line, and the budget must hold one.
MEMO = '''import json


class Shelf:
    def __init__(self, path):
        self.path = path
        self.counts = {}

    def add(self, name):
        total = self.counts.get(name, 0)
        self.counts[name] = total + 1
        return total + 1

    def save(self):
        with open(self.path, "w") as out:
            json.dump(self.counts, out)
'''
MAX_NEW = 32


def _stdlib_files(*names: str) -> dict[str, str]:
    root = Path(sysconfig.get_paths()["stdlib"])
    return {name: (root / name).read_text() for name in names}


@pytest.fixture(scope="module")
def tok(tiny_tokenizer) -> Tokenizer:
    return Tokenizer.load(tiny_tokenizer / "tokenizer.json")


@pytest.fixture(scope="module")
def tok_without_fim(tiny_tokenizer, tmp_path_factory) -> Tokenizer:
    """The same vocabulary with its FIM tokens renamed: same ids and text tokens, no FIM spelling."""
    out = tmp_path_factory.mktemp("no-fim")
    for path in tiny_tokenizer.iterdir():
        (out / path.name).write_text(path.read_text().replace("fim▁", "nofim▁"))
    renamed = Tokenizer.load(out / "tokenizer.json")
    assert renamed.token_to_id("<｜fim▁begin｜>") is None and renamed.encode(MEMO) == Tokenizer.load(
        tiny_tokenizer / "tokenizer.json").encode(MEMO)
    return renamed


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """A 64-wide model gains nothing from a second thread, and on a busy machine the threads' waiting
    for each other costs more than the work (several times the time to train)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _fresh(tok: Tokenizer) -> Transformer:
    cfg = get_preset("tiny-llama").config.replace(vocab_size=tok.vocab_size, bos_token_id=tok.bos_id,
                                                  eos_token_id=tok.eos_id, rope_scaling=None)
    return Transformer(cfg).init_weights(generator=torch.Generator().manual_seed(0))


@pytest.fixture(scope="module")
def memorised(tok) -> Transformer:
    """Trained on MEMO alone (plain AdamW on the next-token loss) until greedy decoding reproduces it."""
    torch.manual_seed(0)
    net = _fresh(tok)
    row = torch.tensor([tok.encode(MEMO)])
    opt = torch.optim.AdamW(net.parameters(), lr=5e-3, weight_decay=0.0)
    for _ in range(150):
        logits, _ = net(row)
        loss = next_token_loss(logits, row)
        if loss.item() < 0.1 and bool((logits[0, :-1].argmax(-1) == row[0, 1:]).all()):
            return net.eval()
        opt.zero_grad()
        loss.backward()
        opt.step()
    pytest.fail(f"the tiny model did not learn the file in 150 steps (loss {loss.item():.3f})")


# ------------------------------------------------------------------------------------------ split
def test_split_is_seeded_per_file_and_disjoint():
    files = {f"pkg/mod_{i}.py": f"value = {i}\n" for i in range(60)}
    train, held = split_files(files, 0.25, seed=7)
    assert (train, held) == split_files(dict(reversed(files.items())), 0.25, seed=7)
    assert not set(train) & set(held) and set(train) | set(held) == set(files)
    assert 5 <= len(held) <= 30 and train == sorted(train) and held == sorted(held)
    assert split_files(files, 0.25, seed=8) != (train, held)

    edited = {**files, "pkg/mod_3.py": "value = 'something else entirely'\n" * 50}
    assert split_files(edited, 0.25, seed=7) == (train, held)
    grown = {**files, "pkg/new.py": "x = 1\n"}
    new_train, new_held = split_files(grown, 0.25, seed=7)
    assert set(new_train) - {"pkg/new.py"} == set(train) and set(new_held) - {"pkg/new.py"} == set(held)
    shrunk = {p: t for p, t in files.items() if p != held[0]}
    assert split_files(shrunk, 0.25, seed=7) == (train, held[1:])


def test_split_puts_a_file_on_each_side_and_checks_the_fraction():
    two = {"a.py": "a = 1\n", "b.py": "b = 2\n"}
    for seed in range(10):
        for fraction in (0.001, 0.999):
            train, held = split_files(two, fraction, seed)
            assert len(train) == len(held) == 1 and set(train + held) == set(two)
    train, held = split_files({"only.py": ""}, 0.5, 0)  # one file: the hash decides alone
    assert sorted(train + held) == ["only.py"]
    with pytest.raises(RepoEvalError, match="between 0 and 1"):
        split_files(two, 1.0, 0)


# ------------------------------------------------------------------------------------------ cases
def test_nontrivial_lines():
    for line in ("        return self.counts[name]", "#include <stdio.h>", "*ptr = value + 1;", "#[derive(Debug)]"):
        assert is_nontrivial(line), line
    for line in ("    }", "        return x", "    # a long comment about things", "// also a comment line",
                 " * continuation of a block comment", "-- select everything", ""):
        assert not is_nontrivial(line), line


def _line_start(text: str, line: int) -> int:
    return sum(len(l) + 1 for l in text.split("\n")[:line - 1])


def test_cases_are_deterministic_and_point_at_their_lines(tok):
    files = _stdlib_files("json/decoder.py", "json/encoder.py")
    budget = 96
    cases = draw_cases(files, 12, 12, seed=3, tokenizer=tok, context_tokens=budget)
    assert len(cases.next_line) == len(cases.fim) == 12
    assert cases == draw_cases(files, 12, 12, seed=3, tokenizer=tok, context_tokens=budget)
    assert cases != draw_cases(files, 12, 12, seed=4, tokenizer=tok, context_tokens=budget)
    assert draw_cases(files, 12, 5, seed=3, tokenizer=tok, context_tokens=budget).next_line == cases.next_line
    assert RepoCases.from_json(cases.to_json()) == cases

    def count(text: str) -> int:
        return len(tok.encode(text, add_bos=False))

    for case in cases.next_line:
        text = files[case.path]
        assert text.split("\n")[case.line - 1] == case.reference and is_nontrivial(case.reference)
        before = text[:_line_start(text, case.line)]
        assert case.context and before.endswith(case.context) and 0 < count(case.context) <= budget
        assert count(case.context) >= budget - 2 or case.context == before  # trimmed to the budget, not below
    for case in cases.fim:
        text = files[case.path]
        start = _line_start(text, case.line)
        assert text.split("\n")[case.line - 1] == case.middle and is_nontrivial(case.middle)
        assert text[:start].endswith(case.prefix) and text[start + len(case.middle):].startswith(case.suffix)
        assert case.suffix.startswith("\n") and count(case.prefix) + count(case.suffix) <= budget

    whole = draw_cases({"memo.py": MEMO}, 5, 5, seed=1, tokenizer=tok, context_tokens=400)
    assert all(c.prefix + c.middle + c.suffix == MEMO for c in whole.fim)
    assert all(MEMO.startswith(c.context + c.reference + "\n") for c in whole.next_line)


# ------------------------------------------------------------------------------------ measures
@pytest.fixture(scope="module")
def memo_cases(tok) -> RepoCases:
    return draw_cases({"memo.py": MEMO}, 5, 3, seed=0, tokenizer=tok, context_tokens=400)


def test_a_model_that_memorised_the_file_scores_it_perfectly(memorised, tok, tok_without_fim, memo_cases):
    memorised.train()  # evaluate_repo measures in eval mode and gives the model back as it came
    after = evaluate_repo(memorised, tok, {"memo.py": MEMO}, memo_cases, seq_len=512, max_new_tokens=MAX_NEW)
    assert memorised.training
    assert after["next_line_exact_match"] == 1.0 and after["next_line_mismatches"] == []
    assert after["perplexity"] < 1.5 and after["tokens"] == len(tok.encode(MEMO)) - 1
    assert after["fim_mode"] == "fim" and 0.0 <= after["fim_exact_match"] <= 1.0
    assert (after["n_next_line"], after["n_fim"]) == (5, 3)

    # Without FIM tokens the FIM cases continue their prefix, which this model knows by heart.
    prefix_only = evaluate_repo(memorised, tok_without_fim, {"memo.py": MEMO}, memo_cases, seq_len=512,
                                max_new_tokens=MAX_NEW)
    assert prefix_only["fim_mode"] == "prefix-only" and prefix_only["fim_exact_match"] == 1.0
    assert prefix_only["perplexity"] == pytest.approx(after["perplexity"])
    # FIM tokens added by the fine-tuning: the table says the two FIM numbers are not measured alike
    assert "FIM exact match (prefix-only -> fim, n=3)" in format_comparison(prefix_only, after)


def test_a_fresh_model_scores_nothing_and_the_table_shows_the_change(memorised, tok, memo_cases):
    seen = []
    before = evaluate_repo(_fresh(tok).eval(), tok, {"memo.py": MEMO}, memo_cases, seq_len=512, max_new_tokens=MAX_NEW,
                           progress=lambda stage, done, total: seen.append((stage, done, total)))
    assert before["next_line_exact_match"] == 0.0 and before["fim_exact_match"] == 0.0
    assert before["perplexity"] > 100  # about the vocabulary's 512: every token a guess
    assert len(before["next_line_mismatches"]) == 3 and {"where", "reference", "generated"} <= set(
        before["next_line_mismatches"][0])
    assert [s for s in seen if s[1] == s[2]] == [("held-out perplexity", 1, 1), ("next-line exact match", 5, 5),
                                                 ("FIM exact match (fim)", 3, 3)]

    after = evaluate_repo(memorised, tok, {"memo.py": MEMO}, memo_cases, seq_len=512, max_new_tokens=MAX_NEW)
    table = format_comparison(before, after).splitlines()
    assert table[0].split() == ["metric", "before", "after", "change"]
    row = next(line for line in table if line.startswith("next-line exact match (n=5)"))
    assert row.split()[-4:] == ["0.0%", "100.0%", "+100.0", "pts"]
    assert any(line.startswith("FIM exact match (fim, n=3)") for line in table)
    perplexity = next(line for line in table if line.startswith("held-out perplexity")).split()
    assert float(perplexity[2]) > 100 and float(perplexity[3]) < 1.5 and perplexity[4].startswith("-")


def test_windows_score_every_token_but_the_first(memorised, tok):
    """Windows shorter than the file change the context, not which tokens are scored."""
    one = evaluate_repo(memorised, tok, {"memo.py": MEMO}, RepoCases(), seq_len=512, progress=True)  # own bars
    windowed = evaluate_repo(memorised, tok, {"memo.py": MEMO, "empty.py": ""}, RepoCases(), seq_len=50,
                             progress=False)
    assert one["tokens"] == windowed["tokens"] == len(tok.encode(MEMO)) - 1
    assert windowed["perplexity"] > one["perplexity"]  # each window after the first starts from scratch
    assert one["next_line_exact_match"] is None and "-" in format_comparison(one, windowed)


def test_a_prompt_longer_than_the_context_is_refused_before_any_work(tok):
    files = _stdlib_files("json/decoder.py")
    cases = draw_cases(files, 12, 0, seed=0, tokenizer=tok, context_tokens=500)
    with pytest.raises(RepoEvalError, match="smaller context_tokens"):
        evaluate_repo(_fresh(tok), tok, files, cases, seq_len=512)
    too_long = RepoCases(fim=[FimCase("x.py", 1, "x = 1\n" * 400, "y = 2 + 3", "\n")])
    with pytest.raises(RepoEvalError, match="x.py:1"):
        evaluate_repo(_fresh(tok), tok, files, too_long, seq_len=512)
