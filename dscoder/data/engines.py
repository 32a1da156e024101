"""Where a stage's parts run: local worker processes, or a Ray cluster through Ray Data.

A stage is a function `work(state, task) -> result` over independent parts; `state` is built
once per worker by `setup(arg)` (the decontamination index, the tokenizer), because building it
per part would cost more than the part. Each part writes its own output files under the build
directory and returns only its part id, so both engines need nothing but "run these tasks
somewhere and say which finished"; ids arrive in completion order, and the caller reads each
part's record from its files. For Ray the build directory must be on storage every node sees.

Pool workers leave the tokenizer's own thread pool on: when the last, largest repository is
being tokenized by the library's `encode_batch` (`--library-encode`, or a tokenizer whose
pre-tokenizer `dscoder.data.encode` does not redo), its batch of files spreads over the cores
the finished workers left idle. The default path (`encode.TextEncoder`) runs on one thread per
worker, several times faster per core.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from typing import Any
from dscoder.errors import UserError

ENGINES = ("local", "ray")

_state: Any = None


def _init(setup: Callable[[Any], Any], arg: Any) -> None:
    global _state
    _state = setup(arg)


def _call(work: Callable[[Any, Any], Any], task: Any) -> Any:
    return work(_state, task)


def run_local(work, setup, arg, tasks: list, workers: int) -> Iterator[Any]:
    """Tasks on a pool of `workers` spawned processes (spawn: no inherited threads or locks)."""
    if not tasks:
        return
    if workers <= 1:  # in this process, on one core: the tokenizer's own thread pool is held to one thread too
        before = os.environ.get("TOKENIZERS_PARALLELISM")
        os.environ["TOKENIZERS_PARALLELISM"] = "false"
        try:
            state = setup(arg)
            for task in tasks:
                yield work(state, task)
        finally:
            if before is None:
                os.environ.pop("TOKENIZERS_PARALLELISM", None)
            else:
                os.environ["TOKENIZERS_PARALLELISM"] = before
        return
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=min(workers, len(tasks)), mp_context=ctx, initializer=_init,
                             initargs=(setup, arg)) as pool:
        # At most two tasks in flight per worker keeps memory bounded on huge task lists.
        pending = iter(tasks)
        running = set()
        for task in pending:
            running.add(pool.submit(_call, work, task))
            if len(running) >= 2 * workers:
                break
        while running:
            done, running = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                yield future.result()
                nxt = next(pending, None)
                if nxt is not None:
                    running.add(pool.submit(_call, work, nxt))


class _RayWorker:
    """A Ray Data actor: builds the worker state once, then runs one task per row."""

    def __init__(self, work, setup, arg) -> None:
        self.work, self.state = work, setup(arg)

    def __call__(self, batch: dict) -> dict:
        return {"result": [json.dumps(self.work(self.state, json.loads(task))) for task in batch["task"]]}


def run_ray(work, setup, arg, tasks: list, workers: int, address: str | None = None) -> Iterator[Any]:
    """The same tasks as a Ray Dataset mapped by a pool of `workers` actors.

    Without `address` (or $RAY_ADDRESS) a local Ray instance with `workers` CPUs is started;
    with one, the build joins that cluster.
    """
    try:
        import ray
    except ImportError as e:
        raise UserError("--engine ray needs Ray Data: pip install 'dscoder[ray]'") from e
    if not tasks:
        return
    if not ray.is_initialized():
        address = address or os.environ.get("RAY_ADDRESS")
        kwargs = {"address": address} if address else {"num_cpus": workers, "include_dashboard": False}
        ray.init(logging_level=logging.WARNING, log_to_driver=False, configure_logging=False, **kwargs)
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    context.print_on_execution_start = False
    # Tasks and results cross as JSON text: Arrow would otherwise coerce nested lists and dicts.
    dataset = ray.data.from_items([{"task": json.dumps(t)} for t in tasks], override_num_blocks=len(tasks))
    pool = ray.data.ActorPoolStrategy(size=max(1, min(workers, len(tasks))))
    mapped = dataset.map_batches(_RayWorker, fn_constructor_args=(work, setup, arg), batch_size=1, compute=pool,
                                 num_cpus=1)
    for row in mapped.iter_rows():
        yield json.loads(row["result"])


def run(engine: str, work, setup, arg, tasks: list, workers: int, address: str | None = None) -> Iterator[Any]:
    if engine == "local":
        return run_local(work, setup, arg, tasks, workers)
    if engine == "ray":
        return run_ray(work, setup, arg, tasks, workers, address)
    raise UserError(f"unknown engine {engine!r}; choose from {', '.join(ENGINES)}")
