"""Text generation: sampling, stop rules and streaming on top of the cached forward.

One prompt at a time: prefill the prompt into a fresh cache, then one token per step.  Each
step yields a `Delta` with the new text, so callers stream by iterating and collect by
joining.  Text is released only when it is final: never half a UTF-8 character (the
tokenizer's stream decoder holds those back) and never the beginning of a stop string that
might still complete (held back until it either completes, and is dropped, or diverges).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import torch

from dscoder.model.transformer import Transformer
from dscoder.errors import UserError
from dscoder.tokenizer.tokenizer import Tokenizer


class GenerationError(UserError):
    """A request that cannot be served as asked (too long, bad parameter); the message names it."""


class ContextLengthError(GenerationError):
    """The prompt plus the tokens asked for do not fit the context (or the server's KV cache)."""


@dataclass(frozen=True)
class SamplingParams:
    max_new_tokens: int = 256
    temperature: float = 0.0  # 0: greedy
    top_k: int = 0  # 0: off
    top_p: float = 1.0
    min_p: float = 0.0
    repetition_penalty: float = 1.0  # CTRL / HF style, over prompt and output tokens
    frequency_penalty: float = 0.0  # OpenAI style, over output tokens
    presence_penalty: float = 0.0
    seed: int | None = None
    stop_token_ids: tuple[int, ...] = ()
    stop: tuple[str, ...] = ()  # stop strings; never part of the returned text
    logprobs: bool = False

    def validate(self) -> None:
        checks = [
            ("max_new_tokens", self.max_new_tokens >= 1, "at least 1"),
            ("temperature", self.temperature >= 0, ">= 0"),
            ("top_k", self.top_k >= 0, ">= 0"),
            ("top_p", 0 < self.top_p <= 1, "in (0, 1]"),
            ("min_p", 0 <= self.min_p <= 1, "in [0, 1]"),
            ("repetition_penalty", self.repetition_penalty > 0, "> 0"),
            ("frequency_penalty", -2 <= self.frequency_penalty <= 2, "in [-2, 2]"),
            ("presence_penalty", -2 <= self.presence_penalty <= 2, "in [-2, 2]"),
        ]
        for name, ok, rule in checks:
            if not ok:
                raise GenerationError(f"{name} must be {rule}, got {getattr(self, name)!r}")
        if any(not s for s in self.stop):
            raise GenerationError("stop strings must not be empty")


@dataclass
class Delta:
    """One generation step: the text it releases (possibly ""), its token and why it ended, if it did."""

    text: str
    token_id: int | None  # None for the step that ends on a stop token (it is not output)
    logprob: float | None = None
    finish_reason: str | None = None  # "stop" (stop token or string) or "length"


@dataclass
class Completion:
    text: str
    token_ids: list[int] = field(default_factory=list)
    logprobs: list[float] | None = None
    finish_reason: str = "length"
    prompt_tokens: int = 0


def next_token_scores(logits: torch.Tensor, history: Sequence[int], output: Counter, params: SamplingParams) -> torch.Tensor:
    """Penalised, temperature-scaled and truncated logits (fp32, -inf where excluded) for one row.

    The truncations are transformers' warpers, in its order and arithmetic (temperature,
    top-k, top-p, min-p; llama.cpp's chain also runs top-p before min-p), so a request keeps
    the same candidates here as there.  One deliberate difference: tokens tied with the
    least likely token top-p keeps are all kept (as top-k keeps ties), where transformers
    keeps whichever of them its sort happens to put last, so its set depends on token ids.
    """
    scores = logits.float().clone()
    if params.repetition_penalty != 1.0 and history:
        seen = torch.tensor(sorted(set(history)), device=scores.device)
        picked = scores[seen]
        scores[seen] = torch.where(picked > 0, picked / params.repetition_penalty, picked * params.repetition_penalty)
    if output and (params.frequency_penalty or params.presence_penalty):
        ids = torch.tensor(list(output), device=scores.device)
        counts = torch.tensor(list(output.values()), dtype=scores.dtype, device=scores.device)
        scores[ids] -= params.frequency_penalty * counts + params.presence_penalty
    if params.temperature == 0:
        return scores
    scores = scores / params.temperature
    if params.top_k and params.top_k < scores.numel():
        kth = scores.topk(params.top_k).values[-1]
        scores = scores.masked_fill(scores < kth, float("-inf"))
    if params.top_p < 1.0:
        ascending = scores.sort().values
        # the least likely tokens whose mass together is at most 1 - top_p go (the token that
        # crosses top_p stays); the mass grows along the sort, so they are a prefix of it
        dropped = int((ascending.softmax(-1).cumsum(-1) <= 1 - params.top_p).sum())
        lowest_kept = ascending[min(dropped, ascending.numel() - 1)]  # the likeliest always stays
        scores = scores.masked_fill(scores < lowest_kept, float("-inf"))
    if params.min_p > 0:
        probs = scores.softmax(-1)
        scores = scores.masked_fill(probs < params.min_p * probs.max(), float("-inf"))
    return scores


def choose(scores: torch.Tensor, params: SamplingParams, generator: torch.Generator | None) -> int:
    if params.temperature == 0:
        return int(scores.argmax())
    return int(torch.multinomial(scores.softmax(-1), 1, generator=generator))


def first_stop(text: str, stops: Sequence[str]) -> int | None:
    """Where the earliest stop string in `text` begins, or None."""
    hits = [i for i in (text.find(s) for s in stops) if i >= 0]
    return min(hits) if hits else None


def _held_back(text: str, stops: Sequence[str]) -> int:
    """Length of the longest end of `text` that is the start of some stop string."""
    best = 0
    for stop in stops:
        for n in range(min(len(stop) - 1, len(text)), best, -1):
            if text.endswith(stop[:n]):
                best = n
                break
    return best


class TextReleaser:
    """Token ids in, final text out: holds back half UTF-8 characters and possible starts of stop strings.

    `push` returns (text now final, whether a stop string completed); the text before a
    stop string is released and the stop string itself never is.
    """

    def __init__(self, tokenizer: Tokenizer, stops: Sequence[str]):
        self.decoder, self.stops, self.pending = tokenizer.stream(skip_special_tokens=True), stops, ""

    def push(self, token: int) -> tuple[str, bool]:
        self.pending += self.decoder.push(token)
        cut = first_stop(self.pending, self.stops)
        if cut is not None:
            return self.pending[:cut], True
        keep = _held_back(self.pending, self.stops)
        release, self.pending = self.pending[:len(self.pending) - keep], self.pending[len(self.pending) - keep:]
        return release, False

    def flush(self) -> str:
        """Everything held back (the generation ended without completing a stop string)."""
        text, self.pending = self.pending + self.decoder.flush(), ""
        return text


def check_length(prompt_tokens: int, max_new_tokens: int, limit: int) -> None:
    if prompt_tokens + max_new_tokens > limit:
        raise ContextLengthError(f"prompt of {prompt_tokens} tokens + max_new_tokens={max_new_tokens} exceeds "
                              f"the model's context of {limit} tokens")


@torch.no_grad()
def stream(model: Transformer, tokenizer: Tokenizer, prompt: str | Sequence[int],
           params: SamplingParams = SamplingParams()) -> Iterator[Delta]:
    """Generate from one prompt (text, or token ids), yielding each step's released text."""
    params.validate()
    ids = tokenizer.encode(prompt) if isinstance(prompt, str) else [int(i) for i in prompt]
    if not ids:
        raise GenerationError("the prompt is empty (no tokens)")
    check_length(len(ids), params.max_new_tokens, model.config.max_position_embeddings)
    device = model.embed_tokens.weight.device
    generator = torch.Generator(device=device).manual_seed(params.seed) if params.seed is not None else None
    cache = model.new_cache(1, len(ids) + params.max_new_tokens)
    logits, _ = model(torch.tensor([ids], device=device), 0, cache, logits_to_keep=1)
    logits = logits[0, -1]
    history, output = list(ids), Counter()
    releaser = TextReleaser(tokenizer, params.stop)
    stop_ids = set(params.stop_token_ids)
    for step in range(params.max_new_tokens):
        token = choose(next_token_scores(logits, history, output, params), params, generator)
        logprob = float(logits.float().log_softmax(-1)[token]) if params.logprobs else None
        if token in stop_ids:  # not part of the output; release what was held back for stop strings
            yield Delta(releaser.flush(), None, None, "stop")
            return
        history.append(token)
        output[token] += 1
        text, stopped = releaser.push(token)
        if stopped:
            yield Delta(text, token, logprob, "stop")
            return
        if step == params.max_new_tokens - 1:
            yield Delta(text + releaser.flush(), token, logprob, "length")
            return
        yield Delta(text, token, logprob)
        logits, _ = model(torch.tensor([[token]], device=device), len(history) - 1, cache)
        logits = logits[0, -1]


def generate(model: Transformer, tokenizer: Tokenizer, prompts: str | Sequence[str],
             params: SamplingParams = SamplingParams()) -> list[Completion]:
    """Complete each prompt (one at a time; the serving engine batches them)."""
    results = []
    for prompt in [prompts] if isinstance(prompts, str) else prompts:
        ids = tokenizer.encode(prompt)
        completion = Completion(text="", logprobs=[] if params.logprobs else None, prompt_tokens=len(ids))
        for delta in stream(model, tokenizer, ids, params):
            completion.text += delta.text
            if delta.token_id is not None:
                completion.token_ids.append(delta.token_id)
                if completion.logprobs is not None:
                    completion.logprobs.append(delta.logprob)
            completion.finish_reason = delta.finish_reason or completion.finish_reason
        results.append(completion)
    return results
