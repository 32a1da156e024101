"""From a request body to engine requests: its sampling parameters, and the submission of all
of a request's sequences (n samples, several prompts) or none, with the engine's refusals
turned into the API's errors (400 naming the field, 429 with Retry-After).
"""

from __future__ import annotations

from dataclasses import replace

from dscoder.infer.generate import ContextLengthError, GenerationError, SamplingParams
from dscoder.serve.engine import Engine, EngineBusy, RequestHandle
from dscoder.serve.errors import ApiError
from dscoder.tokenizer.tokenizer import Tokenizer

# Sampling runs in float32, where a tiny (or denormal) parameter becomes inf or 0 and the
# probabilities NaN.  Below 1e-5 a temperature is greedy decoding (vLLM's rule); below 1e-6
# top_p keeps only the likeliest token anyway (no vocabulary is large enough for that token to
# be less likely), so raising it there changes nothing; a repetition penalty below 1e-6 is as
# extreme as any smaller one.
_GREEDY_BELOW, _FLOAT32_SAFE = 1e-5, 1e-6


def sampling_params(body, max_tokens: int, stop_ids: list[int], logprobs: bool) -> SamplingParams:
    """The engine's parameters for an OpenAI or /infill body (/infill has no penalties: their defaults)."""
    temperature = body.temperature if body.temperature >= _GREEDY_BELOW else 0.0
    return SamplingParams(max_new_tokens=max_tokens, temperature=temperature, top_k=body.top_k,
                          top_p=max(body.top_p, _FLOAT32_SAFE), min_p=body.min_p,
                          repetition_penalty=max(getattr(body, "repetition_penalty", 1.0), _FLOAT32_SAFE),
                          frequency_penalty=getattr(body, "frequency_penalty", 0.0),
                          presence_penalty=getattr(body, "presence_penalty", 0.0),
                          seed=body.seed if body.seed is None or body.seed >= 0 else None,
                          stop_token_ids=tuple(stop_ids), stop=tuple(body.stop) if isinstance(body.stop, list)
                          else ((body.stop,) if body.stop else ()), logprobs=logprobs)


def eos_stop(tok: Tokenizer) -> list[int]:
    """Completions and /infill end at the end-of-text token (chat ends at its template's stop tokens)."""
    return [tok.eos_id] if tok.eos_id is not None else []


def cancel_all(handles: list[RequestHandle]) -> None:
    for h in handles:
        h.cancel()


def submit(engine: Engine, ids: list[int], params: SamplingParams, count: int, prompt_field: str, **kwargs
           ) -> list[RequestHandle]:
    """`count` requests for one prompt; all or none (a refusal cancels the ones already queued).
    Called on the event loop: the handles deliver their outputs to it."""
    handles: list[RequestHandle] = []
    try:
        for i in range(count):
            seed = params.seed + i if params.seed is not None and i else params.seed  # n samples differ
            handles.append(engine.submit(ids, replace(params, seed=seed), **kwargs))
    except BaseException as e:
        cancel_all(handles)
        if isinstance(e, ContextLengthError):
            raise ApiError(400, str(e), param=prompt_field, code="context_length_exceeded") from None
        if isinstance(e, GenerationError):
            raise ApiError(400, str(e), param=getattr(e, "param", None) or prompt_field) from None
        if isinstance(e, EngineBusy):
            raise ApiError(429, str(e), "rate_limit_error", code="server_busy",
                           headers={"Retry-After": str(int(e.retry_after))}) from None
        raise
    return handles
