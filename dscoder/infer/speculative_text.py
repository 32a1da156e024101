"""Speculative decoding from text to text: what `dscoder complete --draft/--lookup` runs.

`speculative.py` works on token ids; this turns a prompt and `SamplingParams` into the verified
text, cut at the first stop string, with the counts the command reports. Greedy only: the
verified output equals plain greedy decoding, which is the point of speculating.
"""

from __future__ import annotations

from dataclasses import dataclass

from dscoder.infer.generate import GenerationError, SamplingParams, first_stop
from dscoder.infer.speculative import SpeculativeStats, prompt_lookup_generate, speculative_generate
from dscoder.model.transformer import Transformer
from dscoder.tokenizer.tokenizer import Tokenizer

DRAFT_K, LOOKUP_K = 4, 8  # tokens proposed per step by default: a draft model, or prompt lookup


@dataclass
class Speculated:
    text: str  # the verified text, cut at the first stop string
    tokens: int  # tokens generated (before the cut)
    stats: SpeculativeStats


def require_greedy(temperature: float, lookup: bool) -> None:
    """Refuse sampling (before any model loads, when called early): speculation here verifies greedy tokens."""
    if temperature != 0:
        flag = "--lookup" if lookup else "--draft"
        raise GenerationError(f"speculative decoding here is greedy: use --temperature 0 with {flag}")


def speculate(target: Transformer, tok: Tokenizer, prompt: str, params: SamplingParams,
              draft: Transformer | None = None, k: int | None = None) -> Speculated:
    """Greedy decoding of `prompt` with a draft model's proposals, or (no draft) n-grams looked up in the prompt."""
    require_greedy(params.temperature, lookup=draft is None)
    if draft is None:
        tokens, stats = prompt_lookup_generate(target, tok.encode(prompt), params.max_new_tokens,
                                               LOOKUP_K if k is None else k, stop_token_ids=params.stop_token_ids)
    else:
        tokens, stats = speculative_generate(target, draft, tok.encode(prompt), params.max_new_tokens,
                                             DRAFT_K if k is None else k, params.stop_token_ids)
    text = tok.decode(tokens, skip_special_tokens=True)
    return Speculated(text[:first_stop(text, params.stop)], len(tokens), stats)
