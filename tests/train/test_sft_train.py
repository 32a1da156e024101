"""SFT on the training loop: the loss mask is the official script's, packing changes nothing, LoRA resumes exactly.

The reference for the mask is DeepSeek-Coder's own `finetune_deepseekcoder.py`: each
instruction/output row is tokenized as prompt + answer with transformers' tokenizer, the
prompt's tokens get label -100, rows are padded to the longest (labels -100, attention mask 0),
and transformers' model computes the loss with `labels=`. Our first SFT step over the same rows
must report the same loss.
"""

from __future__ import annotations

import json
import math

import pytest
import torch

from dscoder.formats.hf import load_hf_dir
from dscoder.model.lora import lora_modules
from dscoder.tokenizer.tokenizer import Tokenizer
from dscoder.train import checkpoint
from dscoder.train.config import TrainConfig, build
from dscoder.train.loop import Trainer, train
from dscoder.train.sft import build_instruction_prompt
from conftest import shared_data, trainable_reference_dir
from training_data import tiny_settings

ROWS = [
    {"instruction": "Write a Python function that adds two numbers.", "output": "def add(a, b):\n    return a + b"},
    {"instruction": "Reverse a string s.", "output": "s[::-1]"},
    {"instruction": "Explain what a list comprehension is, briefly.",
     "output": "A compact way to build a list: [f(x) for x in xs if cond(x)]."},
    {"instruction": "Return the maximum of a list xs.", "output": "def biggest(xs):\n    return max(xs)"},
    {"instruction": "Read a file and count its lines.",
     "output": "def count(path):\n    with open(path) as f:\n        return sum(1 for _ in f)"},
    {"instruction": "Is 7 prime?", "output": "Yes: its only divisors are 1 and 7."},
]


def _write_jsonl(path, rows) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def _deepseek_reference(tmp_path):
    """transformers' Llama over the real DeepSeek-Coder vocabulary, saved where our trainer starts."""
    tok = Tokenizer.load(shared_data("tokenizers", "ggml-vocab-deepseek-coder.gguf"))
    return trainable_reference_dir(tmp_path / "reference", "tiny-llama", tok, 5, rope_scaling=None)


def _official_batch(directory, rows, max_len):
    """input_ids, labels, attention_mask exactly as finetune_deepseekcoder.py builds and collates them."""
    from transformers import PreTrainedTokenizerFast

    hf_tok = PreTrainedTokenizerFast.from_pretrained(directory)
    sources = [build_instruction_prompt(r["instruction"]) for r in rows]
    targets = [f"{r['output']}\n<|EOT|>" for r in rows]
    ids, labels = [], []
    for s, t in zip(sources, targets):
        example = hf_tok(s + t, max_length=max_len, truncation=True)["input_ids"]
        source_len = len(hf_tok(s, max_length=max_len, truncation=True)["input_ids"])
        ids.append(example)
        labels.append([-100] * source_len + example[source_len:])
    width = max(map(len, ids))
    pad = hf_tok.pad_token_id if hf_tok.pad_token_id is not None else hf_tok.eos_token_id
    input_ids = torch.tensor([x + [pad] * (width - len(x)) for x in ids])
    label_t = torch.tensor([x + [-100] * (width - len(x)) for x in labels])
    mask = torch.tensor([[1] * len(x) + [0] * (width - len(x)) for x in ids])
    return input_ids, label_t, mask


def _sft_settings(**changes):
    return tiny_settings(**{"seq_len": 128, "global_batch": len(ROWS), "micro_batch": 2, "steps": 4, "lr": 1e-3,
                            "warmup_steps": 0, "pack": False, "sft_val_fraction": 0.0, **changes})


def test_first_sft_step_loss_equals_transformers_with_the_official_masking(tmp_path):
    ref, start = _deepseek_reference(tmp_path)
    data = _write_jsonl(tmp_path / "rows.jsonl", ROWS)
    input_ids, labels, mask = _official_batch(start, ROWS, 128)
    assert (labels != -100).sum() > 20 and (labels == -100).sum() > 100  # prompts masked, answers trained
    with torch.no_grad():
        expected = ref(input_ids=input_ids, attention_mask=mask, labels=labels).loss.item()

    cfg = build(TrainConfig(data=data, out=str(tmp_path / "run"), model=str(start)), None, _sft_settings())
    trainer = Trainer(cfg, progress=False, task="sft")
    assert trainer.data_summary["samples"] == len(ROWS) and trainer.cfg.global_batch == len(ROWS)
    record = trainer.train_step()  # the whole epoch in one step: the loss does not depend on the row order
    assert math.isfinite(expected) and expected > 1.0
    assert record["loss"] == pytest.approx(expected, rel=1e-5)
    assert record["tokens"] == int(mask.sum())  # padding is not counted as trained-on text


def test_packed_rows_give_the_loss_of_one_sample_per_row(tmp_path):
    """Attention confined to each packed sample (and no label across samples) makes packing invisible."""
    _, start = _deepseek_reference(tmp_path)
    data = _write_jsonl(tmp_path / "rows.jsonl", ROWS)
    losses = {}
    for pack in (False, True):
        cfg = build(TrainConfig(data=data, out=str(tmp_path / f"run-{pack}"), model=str(start)), None,
                    _sft_settings(pack=pack, seq_len=256))
        probe = Trainer(cfg, progress=False, task="sft")
        rows = probe.stream.rows_per_epoch
        if pack:
            assert rows < len(ROWS)  # several samples really share a row
        cfg = build(cfg, None, {"global_batch": rows, "micro_batch": 1, "out": str(tmp_path / f"run2-{pack}")})
        losses[pack] = Trainer(cfg, progress=False, task="sft").train_step()["loss"]
    assert losses[True] == pytest.approx(losses[False], rel=1e-5)


def test_lora_sft_trains_only_the_adapters_and_a_resumed_run_continues_exactly(tmp_path):
    _, start = _deepseek_reference(tmp_path)
    data = _write_jsonl(tmp_path / "rows.jsonl", ROWS * 4)
    settings = _sft_settings(global_batch=4, micro_batch=2, steps=6, lora_rank=4, lora_alpha=8.0, lora_dropout=0.0,
                             save_every=3, pack=True)
    straight = train(build(TrainConfig(data=data, out=str(tmp_path / "straight"), model=str(start)), None,
                           settings), progress=False, task="sft")
    assert straight.losses[-1] < straight.losses[0]

    # a run stopped after 3 steps (its checkpoint of step 3 written), then resumed to 6
    half = build(TrainConfig(data=data, out=str(tmp_path / "resumed"), model=str(start)), None, settings)
    trainer = Trainer(half, progress=False, task="sft")
    stopped_losses = [trainer.train_step()["loss"] for _ in range(3)]
    trainer.save()
    trainer.log.close()
    del trainer
    saved = checkpoint.latest(tmp_path / "resumed")
    assert saved.name == "step-0000003" and checkpoint.is_adapter(saved)
    assert not (saved / "model.safetensors").exists()  # a LoRA checkpoint is the adapter, not the model
    resumed = train(build(half, None, {"resume": True}), progress=False, task="sft")
    assert resumed.step == 6
    assert stopped_losses + resumed.losses == straight.losses  # bit for bit: same data order, same optimizer state

    # only the adapters moved: the base weights inside the trained network are the starting ones
    tuned = Trainer(build(half, None, {"resume": True, "steps": 6}), progress=False, task="sft").net
    base = load_hf_dir(start).state_dict()
    adapters = lora_modules(tuned)
    assert adapters
    for name, layer in adapters.items():
        assert torch.equal(layer.base.weight, base[f"{name}.weight"]), name
        assert layer.lora_B.weight.abs().max() > 0
    assert torch.equal(tuned.embed_tokens.weight, base["embed_tokens.weight"])


def test_corpus_rows_with_fim_documents_are_mixed_into_sft_fully_trained(tiny_corpus, llama_dir, tmp_path):
    chats = [{"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": f"{i} + {i}?"},
                           {"role": "assistant", "content": f"{2 * i}"}]} for i in range(30)]
    data = _write_jsonl(tmp_path / "chats.jsonl", chats)
    cfg = build(TrainConfig(data=data, out=str(tmp_path / "run"), model=str(llama_dir), scratch=True,
                            fim_data=str(tiny_corpus)),
                None, tiny_settings(seq_len=512, pack=True, fim_fraction=0.5, sft_val_fraction=0.0, lr=1e-3))
    trainer = Trainer(cfg, progress=False, task="sft")
    mixed = [s for s in trainer.stream.data.samples if s.line == 0]
    assert len(mixed) == trainer.data_summary["documents_mixed_in"] == 30  # as many as the chats: half the samples
    begin = trainer.tokenizer.token_to_id("<｜fim▁begin｜>")
    assert any(begin in s.tokens for s in mixed)  # FIM documents among them, in the corpus's PSM form
    assert all(s.labels == s.tokens for s in mixed)  # every token of a document is a target
    assert all(len(s.tokens) == cfg.seq_len for s in mixed)  # rows of the corpus, as pretraining reads it
    assert math.isfinite(trainer.train_step()["loss"])
