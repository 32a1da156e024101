"""Many samples at once through the serving engine, each handed on as soon as it finishes.

The engine decodes its running sequences in one batched forward per step, several times
the throughput of one sequence at a time, and runs greedy decode rows batch-invariantly:
a greedy sample gets the same tokens here as from `infer.generate.stream` alone. So the
evaluation keeps up to `config.batch` samples in the engine at once (submitting the next as
one finishes), and yields each finished sample at once so its program runs in the sandbox
pool, and its row is written, while the others still decode.

The engine's handles are awaited on a private event loop, the engine's own way of serving
many requests from one thread; between samples the loop is idle and the engine thread
keeps decoding.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Iterator

from dscoder.eval.config import EvalConfig
from dscoder.eval.requests import Request, request
from dscoder.eval.runner import Generated
from dscoder.infer.generate import GenerationError
from dscoder.serve.engine import Engine, EngineConfig
from dscoder.serve.paged import PagedKV
from dscoder.tasks.problem import Problem
from dscoder.tokenizer.tokenizer import Tokenizer

POOL_BYTES = 1 << 30  # the most KV cache to reserve: the engine's own default


class EngineCompleter:
    """A `runner.BatchCompleter` over a serving engine it starts on entry and stops on exit.

    The KV pool is sized for `config.batch` of the longest requests of `problems` (within
    POOL_BYTES; beyond it the engine preempts and recomputes, which changes no token).
    """

    def __init__(self, model, tokenizer: Tokenizer, config: EvalConfig, problems: list[Problem]):
        self.tokenizer, self.config = tokenizer, config
        context = model.config.max_position_embeddings
        longest = max((min(len(asked.ids) + asked.params.max_new_tokens, context)
                       for asked in (request(p, tokenizer, config) for p in problems)), default=1)
        block_size = EngineConfig.block_size
        per_block = PagedKV.bytes_per_block(model.config, block_size, model.kv_dtype)
        need = -(-longest // block_size)
        blocks = max(need, min(need * config.batch, POOL_BYTES // per_block))
        self.engine = Engine(model, tokenizer, EngineConfig(num_blocks=blocks, max_running=config.batch,
                                                            max_waiting=max(config.batch, EngineConfig.max_waiting)))

    def __enter__(self) -> "EngineCompleter":
        self.engine.start()
        return self

    def __exit__(self, *exc) -> None:
        self.engine.shutdown()

    def completions(self, todo: list[tuple[Problem, int]]) -> Iterator[Generated]:
        """Each sample of `todo` as it finishes; its `seconds` are the wall time since the previous one
        finished, so they add up to the generation's wall time (the samples overlap)."""
        loop = asyncio.new_event_loop()
        queued, running = deque(todo), set()
        last = time.perf_counter()
        try:
            while queued or running:
                for sample in loop.run_until_complete(self._next_finished(queued, running)):
                    now = time.perf_counter()
                    sample.seconds, last = now - last, now
                    yield sample
        finally:
            for task in running:  # abandoned (an error or Ctrl-C downstream): cancel frees their blocks
                task.cancel()
            if running:
                loop.run_until_complete(asyncio.wait(running))
            loop.close()

    async def _next_finished(self, queued: deque, running: set) -> list[Generated]:
        while queued and len(running) < self.config.batch:
            problem, index = queued.popleft()
            running.add(asyncio.get_running_loop().create_task(self._sample(problem, index)))
        finished, _ = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
        running.difference_update(finished)
        return [task.result() for task in finished]

    async def _sample(self, problem: Problem, index: int) -> Generated:
        asked: Request = request(problem, self.tokenizer, self.config, index)
        try:
            handle = self.engine.submit(asked.ids, asked.params)
        except GenerationError as e:  # e.g. a prompt longer than the model's context: this sample only
            return Generated(problem, index, problem.prompt, error=str(e))
        text, tokens = asked.rejoin, 0
        try:
            async for out in handle:
                if out.finish_reason == "error":  # the engine failed this step (a bug): this sample only
                    return Generated(problem, index, problem.prompt, error=out.text)
                text += out.text
                tokens += out.token_id is not None
        finally:
            handle.cancel()  # a no-op once finished
        return Generated(problem, index, asked.prompt, text, tokens)
