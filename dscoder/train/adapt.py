"""What a fine-tuning run trains: the whole network, or LoRA adapters on a frozen (maybe int8) base.

LoRA is a transform of the model, not a second loop: `prepare` wraps the projections (see
`dscoder.model.lora`) and freezes the rest, the loop's optimizer then sees only the adapters,
and a checkpoint of such a run is a peft adapter directory (`dscoder.formats.peft`) instead of
a full model. With `base_quant=int8` the frozen base is quantized first (QLoRA-style: only int8
weights stay resident; the adapters and their optimizer state are fp32).

`trainable_tokens` trains chosen rows of the embedding (and of the output head when it is not
tied to it) beside the adapters: `finetune --add-fim-tokens` grows the vocabulary by three FIM
tokens whose rows start as the mean embedding, so they must learn to differ from each other,
which no adapter on the projections can do for them. A gradient hook zeroes every other row,
and the rows are exempt from weight decay, so AdamW (whose update is exactly 0 where every
gradient so far was 0) leaves the rest of the vocabulary bit for bit as it was. The trained
rows are written next to the adapter (`token_rows.safetensors`, see `dscoder.formats.peft`), so
every loader of the adapter (`train merge`, `--lora`) puts them in.
"""

from __future__ import annotations

from pathlib import Path

import torch

from dscoder.formats.peft import load_adapter, row_parameters, save_adapter, save_token_rows
from dscoder.model.lora import DEFAULT_TARGETS, apply_lora, lora_modules
from dscoder.model.quant import QuantConfig, QuantLinear, quantize_model
from dscoder.model.transformer import Transformer
from dscoder.train.config import TrainConfig, TrainConfigError


def lora_targets(net: Transformer, cfg: TrainConfig) -> list[str]:
    """The configured target names this architecture has (V1 has no q_a_proj, MLA no k_proj)."""
    wanted = [t.strip() for t in cfg.lora_targets.split(",") if t.strip()]
    present = {name.rpartition(".")[2] for name, m in net.named_modules()
               if isinstance(m, (torch.nn.Linear, QuantLinear))}
    found = [t for t in wanted if t in present]
    if not found:
        raise TrainConfigError(f"lora_targets {cfg.lora_targets!r} name no layer of this model; its projections "
                               f"are {', '.join(sorted(present & set(DEFAULT_TARGETS)))}")
    return found


def _quantize_base(net: Transformer, cfg: TrainConfig) -> None:
    if cfg.base_quant == "int8":  # the head stays full precision: it may be tied to the embedding, or train rows
        quantize_model(net, QuantConfig("int8", head=None))


def _train_rows(net: Transformer, ids: tuple[int, ...]) -> None:
    vocab = net.embed_tokens.weight.shape[0]
    bad = [i for i in ids if not 0 <= i < vocab]
    if bad:
        raise TrainConfigError(f"trainable_tokens {bad} lie outside the model's vocabulary of {vocab}")
    for p in row_parameters(net):
        mask = torch.zeros(p.shape[0], 1, dtype=p.dtype, device=p.device)
        mask[list(ids)] = 1
        p.requires_grad_(True)
        p.register_hook(lambda grad, mask=mask: grad * mask)
        p.trained_rows = tuple(ids)  # optim.parameter_groups exempts these from weight decay


def prepare(net: Transformer, cfg: TrainConfig) -> Transformer:
    """Make `net` a fresh fine-tuning model per `cfg` (no-op for full training)."""
    if not cfg.lora_rank:
        return net
    _quantize_base(net, cfg)
    apply_lora(net, cfg.lora_rank, cfg.lora_alpha, cfg.lora_dropout, lora_targets(net, cfg),
               generator=torch.Generator().manual_seed(cfg.seed))
    if cfg.trainable_tokens:
        _train_rows(net, tuple(cfg.trainable_tokens))
    return net


def restore(net: Transformer, cfg: TrainConfig, checkpoint_dir: Path) -> Transformer:
    """A LoRA run resumed: the same base, the adapters and trained rows of `checkpoint_dir`."""
    _quantize_base(net, cfg)
    load_adapter(net, checkpoint_dir)  # with the trained token rows, when the run trains some
    if cfg.trainable_tokens:
        _train_rows(net, tuple(cfg.trainable_tokens))
    return net


def is_adapted(net: torch.nn.Module) -> bool:
    return bool(lora_modules(net))


def save(net: Transformer, directory: Path, cfg: TrainConfig, base: str | None) -> None:
    """The adapter in peft's format (+ the trained token rows) into `directory`."""
    save_adapter(net, directory, base)
    if cfg.trainable_tokens:
        save_token_rows(net, directory, cfg.trainable_tokens)

