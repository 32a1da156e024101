"""One optimizer step of our loop equals the same step of transformers' own models.

transformers builds and randomizes the reference (`LlamaForCausalLM`, `DeepseekV2ForCausalLM`),
saves it with `save_pretrained`, and our trainer starts from that directory. Both then take one
AdamW step on the same rows (ours through `Trainer.train_step`, with gradient accumulation over
two micro-batches; theirs on the whole batch with `labels=`, the loss transformers computes):
the loss, every gradient and every updated weight must agree to fp32 tolerance. Gradients and
weights are compared by saving transformers' tensors with its own `save_pretrained` and reading
them with our loader, so no name or layout mapping is written here (V2's fused experts included).

transformers' DeepseekV2 has no MoE balance loss, so the V2 comparison sets its α to 0; that the
balance loss is added and logged is tested apart.
"""

from __future__ import annotations

import math

import pytest
import torch

from dscoder.formats.hf import load_hf_dir
from dscoder.tokenizer.tokenizer import Tokenizer
from dscoder.train.config import TrainConfig, build
from dscoder.train.corpus import Corpus, RowStream
from dscoder.train.loop import Trainer
from dscoder.train.optim import parameter_groups
from dscoder.train.schedule import lr_at
from conftest import trainable_reference_dir
from training_data import tiny_settings

LR = 1e-3


def _reference_dir(tmp_path, preset: str, tokenizer_dir, **changes):
    return trainable_reference_dir(tmp_path / "reference", preset, Tokenizer.load(tokenizer_dir / "tokenizer.json"),
                                   3, **changes)


def _ours_as_hf(ref, tensors: dict[str, torch.Tensor], tmp_path, name: str):
    """transformers' parameters replaced by `tensors` (by parameter name), saved by transformers, read by us."""
    clone = type(ref)(ref.config)
    clone.load_state_dict(ref.state_dict())
    with torch.no_grad():
        for pname, p in clone.named_parameters():
            p.copy_(tensors[pname])
    clone.save_pretrained(tmp_path / name)
    return load_hf_dir(tmp_path / name).state_dict()


@pytest.mark.parametrize("preset,changes", [("tiny-llama-gqa", {}), ("tiny-v2", {"aux_loss_alpha": 0.0})],
                         ids=["llama", "deepseek-v2"])
def test_one_step_equals_transformers(preset, changes, tiny_corpus, tiny_tokenizer, tmp_path):
    ref, start = _reference_dir(tmp_path, preset, tiny_tokenizer, rope_scaling=None, **changes)
    cfg = build(TrainConfig(data=str(tiny_corpus), out=str(tmp_path / "run"), model=str(start)), None,
                tiny_settings(lr=LR, warmup_steps=0, steps=10, global_batch=4, micro_batch=2))
    trainer = Trainer(cfg, progress=False)
    rows = RowStream({"corpus": Corpus(tiny_corpus)}, None, cfg.seq_len, cfg.seed).next_batch(cfg.global_batch)

    # ---- transformers: loss and gradients on the same rows, then AdamW with our groups and LR
    out = ref(input_ids=rows, labels=rows)
    out.loss.backward()
    ref_norm = torch.nn.utils.clip_grad_norm_(ref.parameters(), cfg.grad_clip).item()
    assert ref_norm > cfg.grad_clip  # so clipping is part of what is compared
    grads = {n: p.grad.clone() for n, p in ref.named_parameters()}  # clipped, as the optimizer sees them
    groups = parameter_groups(ref, cfg.weight_decay)
    torch.optim.AdamW(groups, lr=lr_at(cfg, 0), betas=(cfg.beta1, cfg.beta2), eps=cfg.eps).step()

    # ---- ours: capture the gradients the optimizer steps with (after clipping)
    captured = {}
    trainer.optimizer.register_step_pre_hook(lambda opt, args, kwargs: captured.update(
        {n: p.grad.clone() for n, p in trainer.net.named_parameters()}))
    record = trainer.train_step()

    assert math.isfinite(out.loss.item()) and out.loss.item() > 1.0
    assert record["loss"] == pytest.approx(out.loss.item(), rel=1e-5, abs=1e-6)
    expected_grads = _ours_as_hf(ref, grads, tmp_path, "grads")
    assert set(expected_grads) == set(captured)
    for name, g in expected_grads.items():
        scale = g.abs().max().item() + 1e-8
        assert (captured[name] - g).abs().max().item() <= 2e-4 * scale + 1e-7, name
    assert record["grad_norm"] == pytest.approx(ref_norm, rel=1e-4)
    updated = _ours_as_hf(ref, dict(ref.named_parameters()), tmp_path, "updated")
    ours = trainer.net.state_dict()
    moved = 0.0
    for name, w in updated.items():
        assert (ours[name] - w).abs().max().item() <= 1e-5 * (1 + w.abs().max().item()), name
        moved = max(moved, (w - load_hf_dir(start).state_dict()[name]).abs().max().item())
    assert moved > 0.5 * LR  # the step really moved the weights (AdamW's first step is about lr per element)


def test_moe_balance_loss_is_added_and_logged(tiny_corpus, v2_dir, tmp_path):
    cfg = build(TrainConfig(data=str(tiny_corpus), out=str(tmp_path / "run"), model=str(v2_dir), scratch=True),
                None, tiny_settings())
    trainer = Trainer(cfg, progress=False)
    alpha = trainer.model_cfg.aux_loss_alpha
    assert alpha == 0.001
    record = trainer.train_step()
    # Uniform routing gives exactly alpha per MoE layer (f_i = 1, mean P_i = 1/E); an untrained router is near it.
    moe_layers = sum(trainer.model_cfg.is_moe_layer(i) for i in range(trainer.model_cfg.num_hidden_layers))
    assert record["moe_aux_loss"] == pytest.approx(alpha * moe_layers, rel=0.5)
    load = record["moe_max_over_mean"]
    assert set(load) == {str(i) for i in range(trainer.model_cfg.num_hidden_layers) if trainer.model_cfg.is_moe_layer(i)}
    assert all(1.0 <= v <= trainer.model_cfg.n_routed_experts / trainer.model_cfg.num_experts_per_tok for v in load.values())
