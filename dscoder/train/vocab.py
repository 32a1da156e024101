"""Teaching fill-in-the-middle to a model that was never given FIM tokens (`finetune --add-fim-tokens`).

DeepSeek-Coder marks a PSM document with three special tokens (`<｜fim▁begin｜>`, `<｜fim▁hole｜>`,
`<｜fim▁end｜>`); a model without them cannot be asked to infill at all. `add_fim_tokens` adds
the three to the tokenizer (as special tokens, so text never splits into them by accident) and
grows the embedding and the output head by as many rows, each new row the mean of the existing
ones (the usual choice: a new token starts where the average token is, so its first logits are
neither huge nor absurd). The rows then learn to tell the roles apart during fine-tuning
(`TrainConfig.trainable_tokens`), while `data build` writes FIM documents with the new tokens.
"""

from __future__ import annotations

import torch
from tokenizers import AddedToken
from tokenizers import Tokenizer as Backend

from dscoder.errors import UserError
from dscoder.model.transformer import Transformer
from dscoder.tokenizer.fim import DEEPSEEK_FIM, FimUnsupportedError, fim_tokens
from dscoder.tokenizer.tokenizer import Tokenizer


class FimTokensPresent(UserError):
    """--add-fim-tokens on a model whose vocabulary already has FIM tokens."""


def add_fim_tokens(net: Transformer, tokenizer: Tokenizer) -> tuple[Transformer, Tokenizer, list[int]]:
    """(grown network, tokenizer with the three FIM tokens, their ids). `net` and `tokenizer` are not
    changed; a model that has FIM tokens already (either spelling) is refused, naming them."""
    try:
        present = fim_tokens(tokenizer)
    except FimUnsupportedError:
        present = None
    if present is not None:
        raise FimTokensPresent(f"{tokenizer.source} already has FIM tokens ({present.prefix} {present.suffix} "
                               f"{present.middle}); drop --add-fim-tokens, its FIM documents use those")
    backend = Backend.from_str(tokenizer.backend.to_str())
    names = [DEEPSEEK_FIM.prefix, DEEPSEEK_FIM.suffix, DEEPSEEK_FIM.middle]
    backend.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in names])
    grown_tokenizer = Tokenizer(backend, bos_token=tokenizer.bos_token, eos_token=tokenizer.eos_token,
                                pad_token=tokenizer.pad_token, add_bos=tokenizer.add_bos,
                                chat_template=tokenizer.chat_template, model_max_length=tokenizer.model_max_length,
                                source=f"{tokenizer.source} + FIM tokens")
    ids = [backend.token_to_id(t) for t in names]
    vocab = max(net.config.vocab_size, max(ids) + 1)
    return _grown(net, vocab), grown_tokenizer, ids


@torch.no_grad()
def _grown(net: Transformer, vocab: int) -> Transformer:
    """A copy of `net` with `vocab` embedding/head rows, the new ones the mean of the old."""
    old = net.config.vocab_size
    grown = Transformer(net.config.replace(vocab_size=vocab))
    state = net.state_dict()
    for key in ("embed_tokens.weight", "lm_head.weight"):
        if key in state and state[key].shape[0] == old and vocab > old:
            rows = state[key]
            state[key] = torch.cat([rows, rows.mean(0, keepdim=True).expand(vocab - old, -1)])
    grown.load_state_dict(state, strict=False)  # a tied head shares the embedding's rows
    return grown
