"""How one evaluation sample is asked: the run's settings turned into `tasks.requests.ask`'s.

Written once so that the one-at-a-time path and the batched engine path ask exactly the same
thing (and so give the same greedy tokens); GRPO's rollouts ask through `tasks.requests` too.
"""

from __future__ import annotations

from dscoder.eval.config import EvalConfig
from dscoder.infer.generate import SamplingParams
from dscoder.tasks.problem import Problem
from dscoder.tasks.requests import Request, ask
from dscoder.tokenizer.tokenizer import Tokenizer


def request(problem: Problem, tokenizer: Tokenizer, config: EvalConfig, index: int = 0) -> Request:
    """Sample `index` of `problem` in `config.form`; it samples with seed `config.seed + index`."""
    params = SamplingParams(max_new_tokens=config.max_new_tokens or problem.max_new_tokens,
                            temperature=config.temperature, top_p=config.top_p if config.temperature > 0 else 1.0,
                            seed=config.seed + index)
    return ask(problem, tokenizer, config.form, params)


__all__ = ["Request", "request"]
