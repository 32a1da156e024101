"""How one sample of a problem is asked of a model: the prompt in a form, its token ids and the
sampling parameters.

Written once so that every path that asks a benchmark problem asks exactly the same thing:
evaluation one sample at a time, evaluation through the batched engine (`eval/requests.py`
adapts its settings to this) and GRPO's rollouts (`train/rollout.py`). The base form continues
the raw prompt and stops at the benchmark's stop strings or EOS; the instruct form goes through
the chat template and stops at its end-of-turn tokens; infilling asks through the model's FIM
tokens.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from dscoder.infer.generate import SamplingParams
from dscoder.tasks.problem import Problem
from dscoder.tokenizer.tokenizer import Tokenizer


@dataclass(frozen=True)
class Request:
    prompt: str  # the text recorded as the sample's prompt
    ids: list[int]
    params: SamplingParams
    rejoin: str = ""  # written before the output (DeepSeek's HumanEval strips the prompt's last newline)


def ask(problem: Problem, tokenizer: Tokenizer, form: str, params: SamplingParams) -> Request:
    """`problem` in `form` ("base" or "instruct"), sampled with `params` plus the form's stops."""
    from dscoder.tokenizer.chat import chat_prompt, stop_token_ids
    from dscoder.tokenizer.fim import fim_prompt, fim_tokens

    eos = (tokenizer.eos_id,) if tokenizer.eos_id is not None else ()
    if problem.fim is not None:
        prompt = fim_prompt(*problem.fim, fim_tokens(tokenizer))
        return Request(prompt, tokenizer.encode(prompt), replace(params, stop_token_ids=eos))
    if form == "instruct":
        prompt = chat_prompt(tokenizer, [{"role": "user", "content": problem.instruction}])
        # add_bos=False: the template writes its own BOS.
        return Request(prompt, tokenizer.encode(prompt, add_bos=False),
                       replace(params, stop_token_ids=tuple(stop_token_ids(tokenizer))))
    prompt = problem.prompt.rstrip() if problem.strip_prompt else problem.prompt
    return Request(prompt, tokenizer.encode(prompt), replace(params, stop=problem.stops, stop_token_ids=eos),
                   rejoin="\n" if problem.strip_prompt else "")


__all__ = ["Request", "ask"]
