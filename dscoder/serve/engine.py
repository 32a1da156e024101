"""The serving engine: one thread that runs the model for every request at once.

`submit` (from any thread, or from an asyncio handler) checks a request, queues it and
returns a `RequestHandle` to iterate over, synchronously or with `async for`.  The engine
thread loops: take new requests and cancellations, ask the scheduler for the step's work,
run one batched forward for all decoding sequences and one per prompt chunk over the
paged KV cache, sample each sequence's next token, and hand each its released text.

Decoding rows go through the kernels one row at a time in arithmetic (`native.row_invariant`),
and prompt chunks are cut at fixed positions, so a greedy request produces the same tokens
alone or in a full batch.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import queue
import threading
import time
from collections.abc import AsyncIterator, Iterator, Sequence as Seq
from dataclasses import dataclass, field, replace

import torch

from dscoder.kernels import native
from dscoder.serve.paged import PagedKV, PagedRows
from dscoder.infer.generate import ContextLengthError, GenerationError, SamplingParams, TextReleaser, check_length, choose, next_token_scores
from dscoder.model.transformer import Transformer
from dscoder.tokenizer.tokenizer import Tokenizer
from dscoder.serve.blocks import BlockManager
from dscoder.serve.metrics import EngineMetrics
from dscoder.serve.scheduler import Scheduler, Sequence, Work
from dscoder.serve.config import EngineConfig  # noqa: F401  (declared apart: the command line reads it without torch)

log = logging.getLogger(__name__)


class EngineBusy(RuntimeError):
    """The waiting queue is full; try again after `retry_after` seconds."""

    def __init__(self, message: str, retry_after: float):
        super().__init__(message)
        self.retry_after = retry_after


@dataclass
class Output:
    """What one step released for one request."""

    text: str
    token_id: int | None  # None on a final output that carries no token (a stop token, a cancel)
    logprob: float | None = None
    top_logprobs: list[tuple[int, float]] | None = None
    finish_reason: str | None = None  # "stop", "length", "cancelled" or "error"
    stop_token: int | None = None  # the stop token that ended the request (its logprob is `logprob`)


@dataclass(eq=False)
class RequestHandle:
    """A submitted request: iterate for its outputs (the last one has a finish_reason); `cancel` to stop it."""

    request_id: str
    prompt_tokens: int
    _engine: "Engine"
    _seq: Sequence
    _sync: queue.SimpleQueue = field(default_factory=queue.SimpleQueue)
    _loop: asyncio.AbstractEventLoop | None = None
    _async: asyncio.Queue | None = None
    _left_queue: asyncio.Event | None = None  # set (on the handle's loop) once the engine admits the request
    prompt_logprobs: list[float | None] | None = None
    done: bool = False

    def _push(self, out: Output) -> None:
        if self._loop is not None:
            try:
                self._loop.call_soon_threadsafe(self._async.put_nowait, out)
            except RuntimeError:  # the loop is closed: nobody is listening
                pass
        else:
            self._sync.put(out)

    def _admitted(self) -> None:
        """Engine thread: the request left the queue (admitted to the batch, or finished before)."""
        if self._loop is not None:
            try:
                self._loop.call_soon_threadsafe(self._left_queue.set)
            except RuntimeError:  # the loop is closed: nobody is listening
                pass

    async def left_queue(self) -> None:
        """Return once the engine has taken the request out of its queue (async handles only)."""
        if self._left_queue is None:
            raise RuntimeError("this handle was submitted outside an event loop")
        await self._left_queue.wait()

    def __iter__(self) -> Iterator[Output]:
        if self._loop is not None:
            raise RuntimeError("this handle was submitted from an event loop; use `async for`")
        while not self.done:
            out = self._sync.get()
            self.done = out.finish_reason is not None
            yield out

    async def __aiter__(self) -> AsyncIterator[Output]:
        if self._async is None:
            raise RuntimeError("this handle was submitted outside an event loop; iterate it synchronously")
        while not self.done:
            out = await self._async.get()
            self.done = out.finish_reason is not None
            yield out

    def cancel(self) -> None:
        """Stop generating and free the request's blocks (a no-op once it has finished)."""
        if not self.done:
            self._engine._commands.put(("cancel", self._seq))


@dataclass
class Stats:
    running: int
    waiting: int
    blocks_used: int
    blocks_total: int
    blocks_cached: int
    prefix_hit_rate: float
    preemptions: int
    rejections: int


class Engine:
    def __init__(self, model: Transformer, tokenizer: Tokenizer, config: EngineConfig = EngineConfig(),
                 metrics: EngineMetrics | None = None):
        self.model, self.tokenizer, self.config = model.eval(), tokenizer, config
        cfg = model.config
        self.device = model.embed_tokens.weight.device
        dtype = model.kv_dtype
        per_block = PagedKV.bytes_per_block(cfg, config.block_size, dtype)
        num_blocks = config.num_blocks or max(1, config.kv_cache_bytes // per_block)
        self.kv = PagedKV(cfg, num_blocks, config.block_size, dtype, self.device)
        self.blocks = BlockManager(num_blocks, config.block_size, config.prefix_caching)
        self.scheduler = Scheduler(self.blocks, config.max_running, config.prefill_chunk, config.prefill_budget)
        self.max_model_len = min(config.max_model_len or cfg.max_position_embeddings, cfg.max_position_embeddings)
        self.metrics = metrics or EngineMetrics()
        self.metrics.blocks_total.set(num_blocks)
        self._commands: queue.SimpleQueue = queue.SimpleQueue()
        self._queued = 0  # submitted, not yet admitted
        self._lock = threading.Lock()
        self._rejections = 0
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._step_seconds = 0.05  # running mean, for Retry-After
        self._publish()

    # ------------------------------------------------------------------ public API
    def start(self) -> "Engine":
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="dscoder-engine", daemon=True)
            self._thread.start()
        return self

    def shutdown(self) -> None:
        self._stop.set()
        self._commands.put(("wake", None))
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None

    def __enter__(self) -> "Engine":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.shutdown()

    def submit(self, prompt: str | Seq[int], params: SamplingParams = SamplingParams(), *, request_id: str | None = None,
               top_logprobs: int = 0, prompt_logprobs: bool = False, deadline: float | None = None) -> RequestHandle:
        """Queue one request.  GenerationError names what is wrong with it; EngineBusy when the queue is full.

        `deadline` (time.monotonic()): once passed, the request ends ("length") as soon as it has
        written a newline, as llama.cpp's t_max_predict_ms does (a first line is always finished).
        """
        params.validate()
        ids = self.tokenizer.encode(prompt) if isinstance(prompt, str) else [int(i) for i in prompt]
        if not ids:
            raise GenerationError("the prompt is empty (no tokens)")
        if not 0 <= top_logprobs <= 20:
            raise GenerationError(f"top_logprobs must be in [0, 20], got {top_logprobs}")
        vocab = self.model.config.vocab_size
        if bad := [i for i in ids if not 0 <= i < vocab]:
            raise GenerationError(f"token id {bad[0]} is outside the vocabulary (0..{vocab - 1})")
        check_length(len(ids), params.max_new_tokens, self.max_model_len)
        need = self.blocks.blocks_for(len(ids) + params.max_new_tokens)
        if need > self.blocks.num_blocks:
            raise ContextLengthError(f"prompt of {len(ids)} tokens + max_new_tokens={params.max_new_tokens} needs {need} "
                                  f"KV blocks of {self.config.block_size} tokens; this server has "
                                  f"{self.blocks.num_blocks} in all")
        with self._lock:
            if self._queued >= self.config.max_waiting:
                self._rejections += 1
                self.metrics.rejections.inc()
                raise EngineBusy(f"the server's queue is full ({self._queued} requests waiting); retry later",
                                 self.retry_after())
            self._queued += 1
        generator = None
        if params.seed is not None:
            generator = torch.Generator(device=self.device).manual_seed(params.seed)
        seq = Sequence(tokens=list(ids), prompt_len=len(ids), params=params,
                       releaser=TextReleaser(self.tokenizer, params.stop), generator=generator,
                       top_logprobs=top_logprobs, prompt_logprobs=prompt_logprobs, deadline=deadline)
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        handle = RequestHandle(request_id or f"req-{seq.id}", len(ids), self, seq, _loop=loop,
                               _async=asyncio.Queue() if loop else None,
                               _left_queue=asyncio.Event() if loop else None)
        if prompt_logprobs:
            handle.prompt_logprobs = [None]
        seq.on_output = handle
        self.metrics.queued.inc()
        self._commands.put(("add", seq))
        return handle

    def forget_prefixes(self) -> int:
        """Drop the prefix cache (after the model's weights changed: GRPO updates the policy the engine
        samples from), on the engine thread, between steps; needs no request running. Returns the
        number of cached prefixes dropped."""
        if self._thread is None:  # not started (or shut down): no other thread touches the blocks
            return self.blocks.forget_prefixes()
        done, result = threading.Event(), []
        self._commands.put(("forget_prefixes", (done, result)))
        done.wait()
        if isinstance(result[0], Exception):
            raise result[0]
        return result[0]

    def retry_after(self) -> float:
        """Seconds a refused client should wait: about 32 of the engine's recent steps, at least 1."""
        return max(1.0, math.ceil(self._step_seconds * 32))

    @functools.cached_property
    def max_token_bytes(self) -> int:
        """The longest text one token stands for, in UTF-8 bytes (so a text of more characters than
        max_model_len * this cannot fit the context, whatever it tokenizes to)."""
        tok = self.tokenizer
        return max(len(tok.decode([i]).encode()) for i in range(tok.vocab_size))

    def stats(self) -> Stats:
        """The state after the engine thread's last step or command (safe from any thread)."""
        return replace(self._snapshot, waiting=self._queued + self._snapshot.waiting, rejections=self._rejections)

    def _publish(self) -> None:
        """Snapshot the scheduler's state for other threads (engine thread only) and refresh the gauges."""
        self._snapshot = Stats(running=len(self.scheduler.running),
                               waiting=sum(1 for s in self.scheduler.waiting if s.admitted),  # preempted ones
                               blocks_used=self.blocks.num_used, blocks_total=self.blocks.num_blocks,
                               blocks_cached=len(self.blocks.by_hash), prefix_hit_rate=self.blocks.hit_rate(),
                               preemptions=self.scheduler.preemptions, rejections=0)
        self.metrics.observe(self._snapshot)

    def generate(self, prompts: Seq[str | Seq[int]], params: SamplingParams = SamplingParams()) -> list[str]:
        """Complete several prompts together (offline batch use); returns their texts in order."""
        handles = [self.submit(p, params) for p in prompts]
        return ["".join(out.text for out in handle) for handle in handles]

    # ------------------------------------------------------------------ the engine thread
    def _loop(self) -> None:
        torch.set_grad_enabled(False)
        while not self._stop.is_set():
            self._take_commands(block=not self.scheduler.has_work())
            self._publish()  # a cancel may have emptied the batch: no step would follow to show it
            if self._stop.is_set():
                break
            if not self.scheduler.has_work():
                continue
            started = time.perf_counter()
            try:
                self._step()
            except Exception as e:  # a bug, not bad input (that was refused at submit): fail the step's requests
                log.exception("engine step failed")
                for seq in list(self.scheduler.running) + list(self.scheduler.waiting):
                    self._finish(seq, "error", text=f"{type(e).__name__}: {e}")
            self._step_seconds = 0.9 * self._step_seconds + 0.1 * (time.perf_counter() - started)
        for seq in list(self.scheduler.running) + list(self.scheduler.waiting):
            self._finish(seq, "cancelled")

    def _take_commands(self, block: bool) -> None:
        while True:
            try:
                kind, seq = self._commands.get(block=block, timeout=None)
            except queue.Empty:
                return
            block = False
            if kind == "add":
                self.scheduler.add(seq)
            elif kind == "forget_prefixes":  # seq is the caller's (threading.Event, result list)
                done, result = seq
                try:
                    result.append(self.blocks.forget_prefixes())
                except RuntimeError as e:
                    result.append(e)
                done.set()
            elif kind == "cancel" and seq.finish_reason is None:
                self._finish(seq, "cancelled")
            if self._stop.is_set():
                return

    @torch.inference_mode()
    def _step(self) -> None:
        plan = self.scheduler.schedule()
        for work in plan.prefill:
            if not work.seq.admitted:
                self._dequeue(work.seq)
        if plan.preempted:
            self.metrics.preemptions.inc(len(plan.preempted))
        sampled: list[tuple[Work, torch.Tensor]] = []
        if plan.decode:
            with native.row_invariant():
                logits = self._forward(plan.decode, keep=len(plan.decode))
            sampled += [(work, logits[i]) for i, work in enumerate(plan.decode)]
        for work in plan.prefill:
            keep = work.count if work.seq.prompt_logprobs else 1
            logits = self._forward([work], keep=keep)
            if work.seq.prompt_logprobs:
                self._record_prompt_logprobs(work, logits)
            if work.samples:
                sampled.append((work, logits[-1]))
        for work in plan.decode + plan.prefill:
            seq = work.seq
            seq.computed = work.start + work.count
            self.blocks.name_computed(seq.alloc, seq.tokens, seq.computed)
        for work, row in sampled:
            try:
                self._sample(work.seq, row)
            except Exception as e:  # one sequence's failure (a bug) ends that sequence, not the batch
                log.exception("sampling failed")
                self._finish(work.seq, "error", text=f"{type(e).__name__}: {e}")
        self._publish()

    def _forward(self, works: list[Work], keep: int) -> torch.Tensor:
        """Logits (keep, V) of the last `keep` rows of one batched forward over the works' tokens."""
        rows = PagedRows([(w.seq.alloc.table, w.start, w.count) for w in works], self.blocks.block_size, self.device)
        tokens = [t for w in works for t in w.seq.tokens[w.start:w.start + w.count]]
        logits, _ = self.model(torch.tensor([tokens], device=self.device), cache=self.kv.views(rows),
                               positions=rows.pos, logits_to_keep=keep)
        return logits[0]

    def _record_prompt_logprobs(self, work: Work, logits: torch.Tensor) -> None:
        """Score the prompt tokens this chunk predicts; positions already scored (a sequence that was
        preempted and recomputes its prompt) are not scored twice."""
        seq, handle = work.seq, work.seq.on_output
        first, end = len(handle.prompt_logprobs), min(work.start + work.count + 1, seq.prompt_len)
        if first >= end:
            return
        lp = logits[first - 1 - work.start:end - 1 - work.start].float().log_softmax(-1)
        handle.prompt_logprobs += lp.gather(1, torch.tensor(seq.tokens[first:end])[:, None])[:, 0].tolist()

    def _sample(self, seq: Sequence, logits: torch.Tensor) -> None:
        params = seq.params
        token = choose(next_token_scores(logits, seq.tokens, seq.output_counts, params), params, seq.generator)
        logprob, top = None, None
        if params.logprobs or seq.top_logprobs:
            lp = logits.float().log_softmax(-1)
            logprob = float(lp[token])
            if seq.top_logprobs:
                values, ids = lp.topk(seq.top_logprobs)
                top = list(zip(ids.tolist(), values.tolist()))
        now = time.monotonic()
        if seq.first_token_at is None:
            seq.first_token_at = now
            self.metrics.ttft.observe(now - seq.arrived_at)
        else:
            self.metrics.itl.observe(now - seq.last_token_at)
        seq.last_token_at = now
        self.metrics.generated_tokens.inc()
        if token in params.stop_token_ids:
            self._finish(seq, "stop", text=seq.releaser.flush(), logprob=logprob, top=top, stop_token=token)
            return
        seq.tokens.append(token)
        seq.output_counts[token] += 1
        text, stopped = seq.releaser.push(token)
        if stopped:
            self._finish(seq, "stop", text=text, token=token, logprob=logprob, top=top)
            return
        seq.seen_newline = seq.seen_newline or "\n" in text
        out_of_time = seq.deadline is not None and now > seq.deadline and seq.seen_newline
        if seq.generated >= params.max_new_tokens or len(seq.tokens) >= self.max_model_len or out_of_time:
            self._finish(seq, "length", text=text + seq.releaser.flush(), token=token, logprob=logprob, top=top)
            return
        seq.on_output._push(Output(text, token, logprob, top))

    def _dequeue(self, seq: Sequence) -> None:
        seq.admitted = True
        with self._lock:
            self._queued -= 1
        self.metrics.queued.dec()
        seq.on_output._admitted()

    def _finish(self, seq: Sequence, reason: str, text: str = "", token: int | None = None,
                logprob: float | None = None, top=None, stop_token: int | None = None) -> None:
        if seq.finish_reason is not None:
            return
        seq.finish_reason = reason
        if not seq.admitted:
            self._dequeue(seq)
        self.scheduler.remove(seq)
        self.metrics.e2e.observe(time.monotonic() - seq.arrived_at)
        self.metrics.finished.labels(reason).inc()
        seq.on_output._push(Output(text, token, logprob, top, reason, stop_token))
