"""One exploration stage of GRPO: P prompts x G samples from the batched engine, each rewarded
in the sandbox as soon as it is finished, while the engine is still generating the others.

The engine samples from the policy's own weights (the same module the trainer updates), so a
rollout is on-policy; the trainer drops the engine's prefix cache after each update. Each
request asks exactly what `dscoder eval` asks (`tasks.requests.ask`: the same chat template
or raw prompt, stop strings and end-of-turn tokens), with its own seed drawn from (run seed,
step, prompt, sample), so a resumed run samples the same completions as one never stopped.
The engine returns each token's log-probability under the policy at temperature 1 (the
trainer's π_θold), and the stop token that ended the answer, which is trained too (the policy
learns when to stop).
"""

from __future__ import annotations

import hashlib
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace

from dscoder.infer.generate import SamplingParams
from dscoder.serve.engine import Engine
from dscoder.tasks.requests import ask
from dscoder.train.config import TrainConfig
from dscoder.train.rewards import Scored
from dscoder.train.rl_prompts import Task


# stop_at_code_end: a fence alone on its line, which closes a block (an opening fence carries its language tag;
# an untagged opening fence would end the answer before its code, scored no_code)
CODE_END = "\n```\n"


@dataclass
class Sample:
    task: Task
    group: int  # which prompt of the step
    index: int  # which sample of its group
    seed: int
    prompt: str
    prompt_ids: list[int]
    completion_ids: list[int]
    logprobs: list[float]  # the engine's log π_θold of each completion token
    text: str
    finish_reason: str
    scored: Scored | None = None


def sample_seed(run_seed: int, step: int, group: int, index: int) -> int:
    """A seed for one sample that depends only on where it is in the run (63 bits)."""
    digest = hashlib.blake2b(f"{run_seed}/{step}/{group}/{index}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


def _collect(handle) -> tuple[list[int], list[float], str, str]:
    ids, logprobs, text, reason = [], [], [], None
    for out in handle:
        text.append(out.text)
        if out.token_id is not None:
            ids.append(out.token_id)
            logprobs.append(out.logprob)
        elif out.stop_token is not None:
            ids.append(out.stop_token)
            logprobs.append(out.logprob)
        reason = out.finish_reason
    if reason in ("error", "cancelled"):
        raise RuntimeError(f"the engine ended a rollout request with {reason!r}: {''.join(text)[:300]}")
    return ids, logprobs, "".join(text), reason


@dataclass
class Timing:
    generate_s: float  # from the first request to the last completion
    reward_wait_s: float  # waiting for the sandbox after the last completion (the part not overlapped)


def rollout(engine: Engine, tasks: list[Task], cfg: TrainConfig, step: int, score, pool: ThreadPoolExecutor
            ) -> tuple[list[Sample], Timing]:
    """Sample cfg.group_size answers for each task; `score(task, text, finish_reason) -> Scored` runs in
    `pool` as each answer completes. Samples come back grouped: group g holds indices g*G..g*G+G-1."""
    tokenizer = engine.tokenizer
    sampling = SamplingParams(max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature,
                              top_p=cfg.top_p if cfg.temperature > 0 else 1.0)
    started = time.perf_counter()
    pending: list[tuple[Sample, object]] = []
    for g, task in enumerate(tasks):
        asked = ask(task.problem, tokenizer, cfg.prompt_form, sampling)
        for i in range(cfg.group_size):
            seed = sample_seed(cfg.seed, step, g, i)
            params = replace(asked.params, seed=seed, logprobs=True)
            if cfg.stop_at_code_end and cfg.prompt_form == "instruct":
                params = replace(params, stop=(*params.stop, CODE_END))
            handle = engine.submit(asked.ids, params, request_id=f"grpo-{step}-{g}-{i}")
            pending.append((Sample(task, g, i, seed, asked.prompt, list(asked.ids), [], [], "", ""), handle))
    futures: list[Future] = []
    for sample, handle in pending:  # in submission order; all of them decode together meanwhile
        sample.completion_ids, sample.logprobs, sample.text, sample.finish_reason = _collect(handle)
        if cfg.stop_at_code_end and sample.finish_reason == "stop" and sample.text.count("```") % 2 == 1:
            sample.text += CODE_END  # the stop string is cut from the text, not from the tokens
        futures.append(pool.submit(score, sample.task, sample.text, sample.finish_reason))
    generated = time.perf_counter()
    for (sample, _), future in zip(pending, futures):
        sample.scored = future.result()
    done = time.perf_counter()
    return [s for s, _ in pending], Timing(generated - started, done - generated)


__all__ = ["Sample", "Timing", "rollout", "sample_seed"]
