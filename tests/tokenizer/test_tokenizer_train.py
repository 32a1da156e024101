"""Training a byte-level BPE on real source files (the running interpreter's standard library)."""

from __future__ import annotations

import sysconfig
from pathlib import Path

import pytest

from dscoder.tokenizer.tokenizer import Tokenizer, TokenizerError
from dscoder.tokenizer.train import SPECIAL_TOKENS, train_tokenizer

STDLIB = Path(sysconfig.get_paths()["stdlib"])


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """~80 stdlib modules to train on and 10 different ones held out, plus files that must be skipped."""
    files = sorted(p for p in STDLIB.glob("*.py") if 2_000 < p.stat().st_size < 60_000)
    if len(files) < 90:
        pytest.skip("not enough standard-library sources")
    train = tmp_path_factory.mktemp("train")
    for p in files[:80]:
        (train / p.name).write_text(p.read_text(encoding="utf-8"), encoding="utf-8")
    (train / "blob.bin").write_bytes(b"\x00\x01\x02binary")
    (train / "latin1.txt").write_bytes("caf\xe9".encode("latin-1"))
    (train / ".git").mkdir()
    (train / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    held_out = [p.read_text(encoding="utf-8") for p in files[-10:]]
    return train, held_out


@pytest.fixture(scope="module")
def trained(corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("tok")
    tok, stats = train_tokenizer([corpus[0]], vocab_size=2000, out=out, show_progress=False)
    return tok, stats, out


def test_trained_vocabulary_layout_and_corpus_accounting(trained):
    tok, stats, out = trained
    assert tok.vocab_size == 2000
    assert stats.files == 80 and stats.skipped == {"binary": 1, "not UTF-8": 1}
    assert [tok.token_to_id(t) for t in SPECIAL_TOKENS] == list(range(2000 - len(SPECIAL_TOKENS), 2000))
    assert (out / "tokenizer.json").is_file() and (out / "tokenizer_config.json").is_file()


def test_round_trip_special_tokens_and_compression_on_held_out_files(trained, corpus):
    tok = Tokenizer.load(trained[2])  # what was written, not the object in memory
    held_out = corpus[1]
    for text in held_out:
        assert tok.decode(tok.encode(text, add_bos=False)) == text
    special = "".join(SPECIAL_TOKENS)
    assert tok.encode(special, add_bos=False) == [tok.token_to_id(t) for t in SPECIAL_TOKENS]
    assert tok.encode("x = 1", add_bos=None)[0] == tok.token_to_id(SPECIAL_TOKENS[0])
    n_bytes = sum(len(t.encode()) for t in held_out)
    n_tokens = sum(len(tok.encode(t, add_bos=False)) for t in held_out)
    assert n_tokens / n_bytes < 0.45  # a byte-level baseline spends 1 token per byte
    assert tok.encode("2024", add_bos=False) == [tok.token_to_id(d) for d in "2024"]  # digits one by one


def test_transformers_loads_the_trained_tokenizer(trained):
    from transformers import AutoTokenizer

    tok = Tokenizer.load(trained[2])
    theirs = AutoTokenizer.from_pretrained(trained[2])
    text = "def f(x):\n    return x ** 2  # 12 squared\n"
    assert theirs.encode(text) == tok.encode(text)
    chat = [{"role": "user", "content": "hi"}]
    from dscoder.tokenizer.chat import chat_prompt
    assert theirs.apply_chat_template(chat, tokenize=False, add_generation_prompt=True) == chat_prompt(tok, chat)


def test_bad_training_input(tmp_path):
    with pytest.raises(TokenizerError, match="is not a directory"):
        train_tokenizer([tmp_path / "missing"], 1000, tmp_path / "out", show_progress=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(TokenizerError, match="no UTF-8 text files found"):
        train_tokenizer([tmp_path / "empty"], 1000, tmp_path / "out", show_progress=False)
    with pytest.raises(TokenizerError, match="vocab size 100 is too small"):
        train_tokenizer([tmp_path / "empty"], 100, tmp_path / "out", show_progress=False)
