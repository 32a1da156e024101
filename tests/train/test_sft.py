"""SFT data: loss masks on real vocabularies and templates, and the packed, resumable, sharded stream.

The official instruction form is checked against the construction `finetune_deepseekcoder.py`
does with a transformers tokenizer (built from our tokenizer's own tokenizer.json, as the
DeepSeek-Coder instruct tokenizer is configured); chat rows are checked by decoding what is
trained, which must be exactly each answer and its end-of-turn token.
"""

from __future__ import annotations

import json

import pytest
import torch

from conftest import SHARED_DATA, shared_data
from dscoder.hub import load_tokenizer
from dscoder.tokenizer.chat import render_chat, template_for
from dscoder.tokenizer.tokenizer import Tokenizer
from dscoder.train.objective import IGNORE
from dscoder.train.objective import Batch
from dscoder.train.sft import (SftData, SftError, SftSample, SftStream, build_instruction_prompt,
                               read_sft)

CONVERSATION = [
    {"role": "system", "content": "You answer in one line."},
    {"role": "user", "content": "How do I reverse a list in Python?"},
    {"role": "assistant", "content": "Use `xs[::-1]` or `xs.reverse()`."},
    {"role": "user", "content": "And a string?\n"},
    {"role": "assistant", "content": "def rev(s):\n    return s[::-1]"},
]
INSTRUCTIONS = [
    {"instruction": "Write a function that adds two numbers.", "output": "def add(a, b):\n    return a + b"},
    {"instruction": "  \n Explain `yield`. \n", "output": "It makes a generator."},
    {"instruction": "Sort 3,1,2 — in Führer's order 😀", "output": "```python\nsorted([3, 1, 2])\n```\n"},
    {"instruction": "Say nothing.", "output": ""},
]


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def trained_spans(tok, sample: SftSample) -> list[str]:
    """The decoded runs of trained tokens, in order."""
    spans, run = [], []
    for t, label in zip(sample.tokens, sample.labels):
        if label != IGNORE:
            assert label == t
            run.append(t)
        elif run:
            spans.append(tok.decode(run))
            run = []
    if run:
        spans.append(tok.decode(run))
    return spans


@pytest.fixture(scope="module")
def v1() -> Tokenizer:
    return Tokenizer.from_gguf(shared_data("tokenizers", "ggml-vocab-deepseek-coder.gguf"))


@pytest.fixture(scope="module")
def smol(smollm2_gguf) -> Tokenizer:
    return load_tokenizer(None)


@pytest.fixture(scope="module")
def hf_v1(v1, tmp_path_factory):
    """transformers' tokenizer over the same tokenizer.json, set up as deepseek-coder-*-instruct's is."""
    transformers = pytest.importorskip("transformers")
    directory = v1.save(tmp_path_factory.mktemp("v1-tokenizer"))
    return transformers.PreTrainedTokenizerFast(tokenizer_file=str(directory / "tokenizer.json"),
                                                bos_token="<｜begin▁of▁sentence｜>", eos_token="<|EOT|>",
                                                pad_token="<｜end▁of▁sentence｜>")


def finetune_deepseekcoder(hf, rows, max_length):
    """finetune_deepseekcoder.py's train_tokenize_function / preprocess / _tokenize_fn, on `rows`."""
    sources = [build_instruction_prompt(r["instruction"]) for r in rows]
    targets = [f"{r['output']}\n<|EOT|>" for r in rows]

    def tokenize_fn(strings):
        tokenized = [hf(text, return_tensors="pt", padding="longest", max_length=max_length, truncation=True)
                     for text in strings]
        ids = [t.input_ids[0] for t in tokenized]
        lens = [t.input_ids.ne(hf.pad_token_id).sum().item() for t in tokenized]
        return ids, lens

    input_ids, _ = tokenize_fn([s + t for s, t in zip(sources, targets)])
    _, source_lens = tokenize_fn(sources)
    labels = [ids.clone() for ids in input_ids]
    for label, n in zip(labels, source_lens):
        label[:n] = IGNORE
    return [ids.tolist() for ids in input_ids], [label.tolist() for label in labels]


# ------------------------------------------------------------------------------ the official form
def test_build_instruction_prompt_is_the_official_text():
    assert build_instruction_prompt("  Do it.\n") == (
        "You are an AI programming assistant, utilizing the DeepSeek Coder model, developed by DeepSeek Company, "
        "and you only answer questions related to computer science. For politically sensitive questions, "
        "security and privacy issues, and other non-computer science questions, you will refuse to answer.\n"
        "### Instruction:\nDo it.\n### Response:\n")


def test_official_form_gives_the_ids_and_labels_of_finetune_deepseekcoder(v1, hf_v1, tmp_path):
    data = read_sft(write_jsonl(tmp_path / "sft.jsonl", INSTRUCTIONS), v1, max_len=4096)
    ids, labels = finetune_deepseekcoder(hf_v1, INSTRUCTIONS, 4096)
    assert [s.tokens for s in data.samples] == ids
    assert [s.labels for s in data.samples] == labels
    assert [s.line for s in data.samples] == [1, 2, 3, 4]
    assert (data.truncated, data.dropped) == (0, 0)
    for sample, row in zip(data.samples, INSTRUCTIONS):
        assert sample.tokens.count(v1.bos_id) == 1 and sample.tokens[0] == v1.bos_id
        assert trained_spans(v1, sample) == [row["output"] + "\n<|EOT|>"]


def test_official_form_truncates_as_the_script_does(v1, hf_v1, tmp_path):
    """Cut to max_len keeping the start; a row whose prompt fills max_len has nothing left to train: the
    script would train on it for nothing, we drop it and count it."""
    rows = [INSTRUCTIONS[0], {"instruction": "x " * 200, "output": "y"}, INSTRUCTIONS[1]]
    prompt = len(v1.encode(build_instruction_prompt(INSTRUCTIONS[0]["instruction"])))
    max_len = prompt + 3
    data = read_sft(write_jsonl(tmp_path / "sft.jsonl", rows), v1, max_len=max_len)
    ids, labels = finetune_deepseekcoder(hf_v1, rows, max_len)
    assert all(label == IGNORE for label in labels[1])  # what the script keeps for row 2
    assert [s.line for s in data.samples] == [1, 3]
    assert [s.tokens for s in data.samples] == [ids[0], ids[2]]
    assert [s.labels for s in data.samples] == [labels[0], labels[2]]
    assert all(len(s.tokens) == max_len for s in data.samples)
    assert (data.truncated, data.dropped) == (3, 1)
    assert data.samples[0].targets == 3


# ------------------------------------------------------------------------------ chat rows
def test_chat_rows_on_the_v1_vocabulary_train_each_answer_and_its_eot(v1, tmp_path):
    data = read_sft(write_jsonl(tmp_path / "chat.jsonl", [{"messages": CONVERSATION}]), v1, max_len=4096)
    (sample,) = data.samples
    answers = [m["content"] for m in CONVERSATION if m["role"] == "assistant"]
    assert trained_spans(v1, sample) == [a + "\n<|EOT|>" for a in answers]
    assert sample.tokens.count(v1.bos_id) == 1 and sample.tokens[0] == v1.bos_id  # the template's, not encode's
    # The prompt before the first answer is what inference feeds the model for it.
    first = sample.labels.index(next(label for label in sample.labels if label != IGNORE))
    prompt = render_chat(CONVERSATION[:2], template_for(v1), bos_token=v1.bos_token, eos_token=v1.eos_token)
    assert sample.tokens[:first] == v1.encode(prompt, add_bos=False)
    # The whole sample is the conversation as rendered, up to the last end-of-turn token.
    whole = render_chat(CONVERSATION, template_for(v1), bos_token=v1.bos_token, eos_token=v1.eos_token,
                        add_generation_prompt=False)
    assert whole == v1.decode(sample.tokens) + "\n"


def test_the_published_v1_template_is_prefix_stable_and_masks_the_same(v1, tmp_path):
    published = (SHARED_DATA / "templates" / "deepseek-coder-instruct.jinja")
    if not published.is_file():
        shared_data("templates", "deepseek-coder-instruct.jinja")
    path = write_jsonl(tmp_path / "chat.jsonl", [{"messages": CONVERSATION}])
    ours = read_sft(path, v1, max_len=4096).samples[0]
    theirs = read_sft(path, v1, max_len=4096, template=published.read_text()).samples[0]
    assert (theirs.tokens, theirs.labels) == (ours.tokens, ours.labels)


def test_chatml_multi_turn_with_system_trains_exactly_the_answers(smol, tmp_path):
    rows = [{"messages": CONVERSATION},
            {"messages": CONVERSATION[1:3]},  # no system: the template adds its default one
            {"messages": CONVERSATION + [{"role": "user", "content": "unanswered"}]},
            INSTRUCTIONS[0]]  # no <|EOT|> in this vocabulary: the template renders it
    data = read_sft(write_jsonl(tmp_path / "chat.jsonl", rows), smol, max_len=4096)
    answers = [m["content"] + "<|im_end|>" for m in CONVERSATION if m["role"] == "assistant"]
    spans = [trained_spans(smol, s) for s in data.samples]
    assert spans == [answers, answers[:1], answers, [INSTRUCTIONS[0]["output"] + "<|im_end|>"]]
    assert data.samples[2].tokens == data.samples[0].tokens  # the unanswered turn trains nothing: left out
    text = smol.decode(data.samples[0].tokens)
    assert text.startswith("<|im_start|>system\nYou answer in one line.<|im_end|>\n")
    assert "You are a helpful AI assistant" in smol.decode(data.samples[1].tokens)
    # Prompt parts and answers are tokenized apart, as inference tokenizes the prompt and then generates;
    # the newline the template writes after the last <|im_end|> is left out.
    template = template_for(smol)
    cuts = [""] + [render_chat(CONVERSATION[:n], template, add_generation_prompt=gen)
                   for n, gen in ((2, True), (3, False), (4, True), (5, False))]
    expected = [t for a, b in zip(cuts, cuts[1:]) for t in smol.encode(b[len(a):], add_bos=False)]
    assert smol.decode(expected[-1:]) == "\n" and data.samples[0].tokens == expected[:-1]


# ------------------------------------------------------------------------------ SftData
def test_documents_are_trained_whole_and_cut_to_max_len():
    data = SftData(max_len=5)
    data.add_documents([[1, 2, 3], list(range(10, 20)), [7]])
    assert [(s.tokens, s.labels, s.line) for s in data.samples] == [([1, 2, 3], [1, 2, 3], 0),
                                                                  ([10, 11, 12, 13, 14], [10, 11, 12, 13, 14], 0)]
    assert (data.truncated, data.dropped) == (1, 1)  # [7] alone predicts nothing
    with pytest.raises(SftError, match="document 0 is not a list of token ids"):
        data.add_documents([["a"]])


# ------------------------------------------------------------------------------ the stream
def synthetic(n=40, seed=0) -> SftData:
    """Samples whose ids name them: sample j's tokens are 1000*j + 1, + 2, ...; a prompt of a few tokens."""
    g = torch.Generator().manual_seed(seed)
    data = SftData()
    for j in range(n):
        length = int(torch.randint(3, 30, (1,), generator=g))
        prompt = int(torch.randint(1, length - 1, (1,), generator=g))
        tokens = [1000 * (j + 1) + t for t in range(length)]
        data.add(SftSample(tokens, [IGNORE] * prompt + tokens[prompt:], j + 1))
    return data


def sample_of(token: int) -> int:
    return token // 1000 - 1


def epoch_rows(stream: SftStream) -> list[Batch]:
    """One batch of a row at a time until the epoch ends."""
    start, rows = stream.epoch, []
    while stream.epoch == start:
        rows.append(stream.next_batch(1))
    return rows


def test_packing_fills_rows_with_whole_samples_once_per_epoch():
    data = synthetic()
    stream = SftStream(data, seq_len=64, pack=True, seed=3, pad_id=7)
    orders = []
    for epoch in range(3):
        expected_rows = stream.rows_per_epoch
        rows = epoch_rows(stream)
        assert len(rows) == expected_rows
        seen = []
        for r, batch in enumerate(rows):
            tokens, labels, segments = batch.tokens[0].tolist(), batch.labels[0].tolist(), batch.segments[0].tolist()
            assert batch.tokens.shape == (1, 64) and batch.tokens.dtype == torch.int64
            used = sum(1 for s in segments if s)
            assert segments[:used] == sorted(segments[:used]) and set(segments[used:]) <= {0}
            assert all(t == 7 for t in tokens[used:]) and all(label == IGNORE for label in labels[used:])
            for k in range(1, max(segments) + 1):
                at = [i for i, s in enumerate(segments) if s == k]
                j = sample_of(tokens[at[0]])
                sample = data.samples[j]
                assert tokens[at[0]:at[-1] + 1] == sample.tokens  # whole, never split
                assert labels[at[0]] == IGNORE  # not predicted from the previous sample
                assert labels[at[0] + 1:at[-1] + 1] == sample.labels[1:]
                seen.append(j)
            if r + 1 < len(rows):  # greedy: the next row's first sample did not fit here
                nxt = data.samples[sample_of(rows[r + 1].tokens[0, 0].item())]
                assert used + len(nxt.tokens) > 64
        assert sorted(seen) == list(range(len(data.samples)))
        orders.append(seen)
    assert orders[0] != orders[1] != orders[2]
    assert stream.epoch == 3


def test_unpacked_rows_hold_one_sample_padded_to_the_batch_longest():
    data = synthetic()
    stream = SftStream(data, seq_len=30, pack=False, seed=1)
    assert stream.rows_per_epoch == 40
    seen = []
    for _ in range(10):
        batch = stream.next_batch(4)
        lengths = [int((row != 0).sum()) for row in batch.segments]
        assert batch.tokens.shape[1] == min(30, -(-max(lengths) // 8) * 8)
        assert batch.segments.max() == 1 and (batch.labels[:, 0] == IGNORE).all()
        seen += [sample_of(t) for t in batch.tokens[:, 0].tolist()]
    assert sorted(seen) == list(range(40)) and stream.epoch == 1
    micro = stream.next_batch(4).split(3)
    assert [m.tokens.shape[0] for m in micro] == [3, 1]
    assert all(m.tokens.shape == m.labels.shape == m.segments.shape for m in micro)


def test_a_sample_longer_than_seq_len_is_refused_naming_its_line():
    data = synthetic()
    with pytest.raises(SftError, match=r"longer than seq_len 20: line \d+ \(2\d tokens\)"):
        SftStream(data, seq_len=20, pack=True, seed=0)
    with pytest.raises(SftError, match="no SFT sample"):
        SftStream(SftData(), seq_len=20, pack=True, seed=0)


@pytest.mark.parametrize("pack", [True, False])
def test_resume_mid_epoch_continues_exactly(pack):
    data = synthetic()
    full = SftStream(data, seq_len=64, pack=pack, seed=5)
    for _ in range(3):
        full.next_batch(2)
    state = json.loads(json.dumps(full.state_dict()))
    assert 0 < state["cursor"] and state["epoch"] == 0
    resumed = SftStream(data, seq_len=64, pack=pack, seed=5)
    resumed.load_state_dict(state)
    for _ in range(24):  # well past the end of the epoch
        a, b = full.next_batch(2), resumed.next_batch(2)
        assert torch.equal(a.tokens, b.tokens) and torch.equal(a.labels, b.labels)
        assert torch.equal(a.segments, b.segments)
    assert full.state_dict() == resumed.state_dict() and full.epoch >= 1

    with pytest.raises(SftError, match="seed 5 \\(this stream: 6\\)"):
        SftStream(data, seq_len=64, pack=pack, seed=6).load_state_dict(state)
    with pytest.raises(SftError, match="samples of .* tokens, fingerprint"):
        SftStream(synthetic(seed=1), seq_len=64, pack=pack, seed=5).load_state_dict(state)
    with pytest.raises(SftError, match="inconsistent"):
        SftStream(data, seq_len=64, pack=pack, seed=5).load_state_dict({**state, "position": state["position"] + 1})


@pytest.mark.parametrize("pack", [True, False])
def test_ranks_get_disjoint_slices_of_the_one_process_batch(pack):
    data = synthetic()
    one = SftStream(data, seq_len=64, pack=pack, seed=2)
    ranks = [SftStream(data, seq_len=64, pack=pack, seed=2, rank=r, world_size=2) for r in range(2)]
    for _ in range(8):
        whole = one.next_batch(4)
        parts = [s.next_batch(4) for s in ranks]
        assert all(p.tokens.shape[0] == 2 for p in parts)
        for name in ("tokens", "labels", "segments"):
            assert torch.equal(torch.cat([getattr(p, name) for p in parts]), getattr(whole, name))
        mine = [{sample_of(t) for t in p.tokens[p.segments > 0].tolist()} for p in parts]
        assert not mine[0] & mine[1]
    assert ranks[0].state_dict() == ranks[1].state_dict() == one.state_dict()
    with pytest.raises(SftError, match="does not split over 2 ranks"):
        ranks[0].next_batch(3)


def test_describe_counts(smol, tmp_path):
    data = read_sft(write_jsonl(tmp_path / "chat.jsonl", [{"messages": CONVERSATION}] * 3), smol, max_len=4096)
    data.add_documents([list(range(100, 150))])
    stream = SftStream(data, seq_len=256, pack=True, seed=0)
    info = stream.describe()
    length = len(data.samples[0].tokens)
    assert info["samples"] == 4 and info["tokens"] == 3 * length + 50
    assert info["trained_tokens"] == 3 * data.samples[0].targets + 49
    assert (info["truncated"], info["dropped"]) == (0, 0)
    assert info["rows_per_epoch"] == stream.rows_per_epoch
    assert info["padding_fraction"] == pytest.approx(1 - info["tokens"] / (256 * info["rows_per_epoch"]))
    assert json.loads(json.dumps(info)) == info
    unpacked = SftStream(data, seq_len=256, pack=False, seed=0).describe()
    assert unpacked["rows_per_epoch"] == 4 and 0 <= unpacked["padding_fraction"] < 0.1
