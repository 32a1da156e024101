"""The serving engine: paged attention, block accounting, and exact agreement with one-at-a-time generation."""

from __future__ import annotations

import threading
import time

import pytest
import torch

from dscoder.kernels import native
from dscoder.infer.generate import ContextLengthError, GenerationError, SamplingParams, generate
from dscoder.model.transformer import Transformer, attend, causal_mask
from dscoder.model.presets import get_preset
from dscoder.serve.blocks import BlockManager
from dscoder.serve.engine import Engine, EngineBusy, EngineConfig
from dscoder.tokenizer.tokenizer import Tokenizer
from conftest import randomize_, requires_native

PROMPTS = ["def fibonacci(n):\n    ", "import os\nimport sys\n\n", "class Stack:\n    def push(self, x):",
           "# sort a list\n", "for i in range(10):\n    print(i)\n" * 6, "x = 1\n"]


@pytest.fixture(scope="module")
def tokenizer(smollm2_gguf) -> Tokenizer:
    return Tokenizer.load(smollm2_gguf)


def tiny(name: str, tokenizer: Tokenizer, **overrides) -> Transformer:
    cfg = get_preset(name).config.replace(vocab_size=tokenizer.vocab_size, **overrides)
    return randomize_(Transformer(cfg), seed=3, std=0.3).eval()


# head_dim 32 (hidden 128 / 4 heads) takes the native paged kernel; the presets' 16 take the gather path.
MODELS = {"dense-native": ("tiny-llama-gqa", {"hidden_size": 128}), "dense-gather": ("tiny-llama-gqa", {}),
          "mla-moe": ("tiny-v2", {})}


@pytest.fixture(scope="module", params=list(MODELS))
def model(request, tokenizer) -> Transformer:
    name, overrides = MODELS[request.param]
    return tiny(name, tokenizer, **overrides)


def reference(model, tokenizer, prompts, params) -> list[str]:
    return [c.text for c in generate(model, tokenizer, prompts, params)]


# ---------------------------------------------------------------------------- the paged kernel
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_paged_attention_kernel_equals_attention_over_each_sequences_gathered_keys(dtype):
    requires_native()
    gen = torch.Generator().manual_seed(0)
    blocks, bs, kv, heads, d = 40, 16, 2, 8, 64
    k_pool = torch.randn(blocks, bs, kv, d, generator=gen).to(dtype)
    v_pool = torch.randn(blocks, bs, kv, d, generator=gen).to(dtype)
    order = torch.randperm(blocks, generator=gen).tolist()  # tables deliberately out of order
    tables = [order[0:3], order[3:13], order[13:14]]
    rows = [(0, 40), (1, 150), (1, 151), (1, 152), (2, 0), (0, 41)]  # (sequence, position): decode and verify rows
    width = max(map(len, tables))
    table_t = torch.tensor([t + [0] * (width - len(t)) for t in tables], dtype=torch.int32)
    seq = torch.tensor([s for s, _ in rows])
    pos = torch.tensor([p for _, p in rows])
    q = torch.randn(len(rows), heads, d, generator=gen)
    out = native.paged_attend(q, k_pool, v_pool, seq, pos, table_t, 0.125)
    for r, (s, p) in enumerate(rows):
        slots = (torch.tensor(tables[s])[:, None] * bs + torch.arange(bs)).flatten()[:p + 1]
        k = k_pool.flatten(0, 1)[slots].float()[None]
        v = v_pool.flatten(0, 1)[slots].float()[None]
        want = attend(q[r][None, None], k, v, causal_mask(p, 1, p + 1, "cpu"), 0.125)[0, 0]
        torch.testing.assert_close(out[r], want, atol=2e-5, rtol=1e-4)


def test_row_invariant_products_do_not_depend_on_the_batch():
    requires_native()
    gen = torch.Generator().manual_seed(1)
    w, x = torch.randn(96, 64, generator=gen), torch.randn(40, 64, generator=gen)
    with native.row_invariant():
        batch = native.linear(x, w, None)
        alone = torch.cat([native.linear(x[i:i + 1], w, None) for i in range(len(x))])
    assert torch.equal(batch, alone)
    assert native.linear(x, w, None) is None  # outside the context a GEMM takes 40 rows


# ---------------------------------------------------------------------------- blocks
def test_prefix_blocks_are_shared_reused_after_release_and_overwritten_last():
    bm = BlockManager(num_blocks=8, block_size=4)
    prompt = list(range(10))  # two full blocks and a partial one
    a = bm.allocate(prompt)
    assert a.cached_tokens == 0 and len(a.table) == 3 and bm.num_used == 3
    bm.name_computed(a, prompt, 10)
    b = bm.allocate(prompt)  # a live twin shares the two full blocks
    assert b.cached_tokens == 8 and b.table[:2] == a.table[:2] and b.table[2] != a.table[2]
    assert bm.num_used == 4
    shared = a.table[:2]
    bm.release(a)
    bm.release(b)
    assert bm.num_used == 0
    c = bm.allocate(prompt[:9] + [99])  # same first 8 tokens: found again after release
    assert c.cached_tokens == 8 and c.table[:2] == shared
    bm.release(c)
    assert bm.hit_rate() == pytest.approx(16 / 30)


def test_a_whole_cached_prompt_still_computes_its_last_block_and_only_computed_blocks_are_named():
    bm = BlockManager(num_blocks=8, block_size=4)
    prompt = list(range(8))
    a = bm.allocate(prompt)
    bm.name_computed(a, prompt, 4)  # only the first block has been computed
    assert bm.allocate(prompt).cached_tokens == 4
    bm.name_computed(a, prompt, 8)
    assert bm.allocate(prompt).cached_tokens == 4  # the block of the last token is recomputed for its logits


def test_running_out_of_blocks_is_refused_not_overcommitted():
    bm = BlockManager(num_blocks=3, block_size=4)
    a = bm.allocate(list(range(9)))
    assert not bm.can_allocate([1]) and not bm.grow(a, 13)
    assert bm.grow(a, 12) and a.table and bm.num_free == 0
    bm.release(a)
    assert bm.num_free == 3 and bm.can_allocate(list(range(12)))


# ---------------------------------------------------------------------------- the engine
def test_batched_greedy_equals_one_at_a_time_generation(model, tokenizer):
    params = SamplingParams(max_new_tokens=24)
    want = reference(model, tokenizer, PROMPTS, params)
    with Engine(model, tokenizer, EngineConfig(num_blocks=128, prefill_chunk=32, prefill_budget=32)) as engine:
        assert engine.generate(PROMPTS, params) == want  # all at once: chunked prefill beside decodes
        assert [engine.generate([p], params)[0] for p in PROMPTS] == want  # alone, now with prefix-cache hits
        assert engine.stats().blocks_used == 0 and engine.blocks.hit_rate() > 0


def quantized_with_kv(path, quant: str, kv_dtype: torch.dtype) -> Transformer:
    """The real model quantized while loading, its caches (and the engine's pool) in `kv_dtype`."""
    from dscoder.hub import load_model

    model = load_model(path, quant=quant)
    model.cache_dtype = kv_dtype  # what Engine and new_cache read for the cache's element type
    return model


def test_real_int4_model_with_an_fp16_cache_is_batch_invariant_and_equals_generate(smollm2_gguf, tokenizer):
    """The embedded model as served small: int4 weights (the integer decode kernels) and an fp16
    paged pool.  Greedy output is the same alone and in a full batch, and the same as `generate`
    (contiguous fp16 cache, no engine), as the fp32 tiny models assert above."""
    model = quantized_with_kv(smollm2_gguf, "int4", torch.float16)
    params = SamplingParams(max_new_tokens=24)
    with Engine(model, tokenizer, EngineConfig(num_blocks=128, prefill_chunk=32, prefill_budget=32)) as engine:
        assert all(pool.dtype == torch.float16 for layer in engine.kv.layers for pool in layer)
        batch = engine.generate(PROMPTS, params)  # all at once: chunked prefill beside decodes
        alone = [engine.generate([p], params)[0] for p in PROMPTS]
    assert batch == alone
    assert len(set(batch)) == len(PROMPTS) and all(len(tokenizer.encode(t, add_bos=False)) >= 12 for t in batch)
    assert reference(model, tokenizer, PROMPTS[:3], params) == batch[:3]  # generate is slow: half the prompts


def test_a_request_joining_a_busy_batch_gets_its_lone_result(tokenizer):
    model = tiny("tiny-llama-gqa", tokenizer, hidden_size=128)
    long_params, params = SamplingParams(max_new_tokens=60), SamplingParams(max_new_tokens=20)
    with Engine(model, tokenizer, EngineConfig(num_blocks=128, prefix_caching=False)) as engine:
        alone = engine.generate([PROMPTS[0]], params)[0]
        busy = [engine.submit(p, long_params) for p in PROMPTS[1:]]
        next(iter(busy[0]))  # the batch is decoding
        joined = "".join(out.text for out in engine.submit(PROMPTS[0], params))
        for handle in busy:
            list(handle)
    assert joined == alone


def test_preemption_recomputes_and_changes_nothing(tokenizer):
    model = tiny("tiny-llama-gqa", tokenizer)
    params = SamplingParams(max_new_tokens=40)
    want = reference(model, tokenizer, PROMPTS[:4], params)
    # 12 blocks of 8 tokens cannot hold four sequences of ~50 tokens: someone must give way.
    with Engine(model, tokenizer, EngineConfig(num_blocks=12, block_size=8)) as engine:
        assert engine.generate(PROMPTS[:4], params) == want
        stats = engine.stats()
    assert stats.preemptions > 0 and stats.blocks_used == 0


def test_cancel_frees_blocks_and_ends_the_stream(tokenizer):
    model = tiny("tiny-llama-gqa", tokenizer)
    with Engine(model, tokenizer, EngineConfig(num_blocks=64)) as engine:
        handle = engine.submit(PROMPTS[0], SamplingParams(max_new_tokens=400))
        outs = iter(handle)
        next(outs)
        handle.cancel()
        last = list(outs)[-1]
        assert last.finish_reason == "cancelled"
        for _ in range(200):  # the engine thread frees the blocks after the cancel
            if engine.stats().blocks_used == 0:
                break
            time.sleep(0.01)
        assert engine.stats().blocks_used == 0 and engine.stats().running == 0


def test_sampling_stops_and_logprobs(tokenizer):
    model = tiny("tiny-llama-gqa", tokenizer)
    with Engine(model, tokenizer, EngineConfig(num_blocks=64)) as engine:
        sampled = SamplingParams(max_new_tokens=16, temperature=0.9, seed=7)
        assert engine.generate([PROMPTS[0]] * 2, sampled) == reference(model, tokenizer, [PROMPTS[0]] * 2, sampled)
        greedy = reference(model, tokenizer, [PROMPTS[1]], SamplingParams(max_new_tokens=30))[0]
        stop = greedy[5:8]
        cut = engine.generate([PROMPTS[1]], SamplingParams(max_new_tokens=30, stop=(stop,)))[0]
        assert cut == greedy[:greedy.index(stop)]
        outs = list(engine.submit(PROMPTS[2], SamplingParams(max_new_tokens=3, logprobs=True), top_logprobs=3))
        ids = tokenizer.encode(PROMPTS[2])
        with torch.no_grad():
            logits = model(torch.tensor([ids]))[0][0, -1].log_softmax(-1)
        assert outs[0].logprob == pytest.approx(float(logits[outs[0].token_id]), abs=1e-4)
        assert [i for i, _ in outs[0].top_logprobs] == logits.topk(3).indices.tolist()


def test_bad_requests_are_refused_with_their_reason(tokenizer):
    model = tiny("tiny-llama-gqa", tokenizer)
    with Engine(model, tokenizer, EngineConfig(num_blocks=4, block_size=16, max_waiting=1)) as engine:
        with pytest.raises(ContextLengthError, match="needs 5 KV blocks"):
            engine.submit("x", SamplingParams(max_new_tokens=70))
        with pytest.raises(ContextLengthError, match="context of 512"):
            engine.submit("x", SamplingParams(max_new_tokens=600))
        with pytest.raises(GenerationError, match="empty"):
            engine.submit([], SamplingParams())
        with pytest.raises(GenerationError, match="outside the vocabulary"):
            engine.submit([10**9], SamplingParams())
        with pytest.raises(GenerationError, match="temperature"):
            engine.submit("x", SamplingParams(temperature=-1))


def test_a_full_queue_refuses_with_a_retry_hint(tokenizer):
    model = tiny("tiny-llama-gqa", tokenizer)
    engine = Engine(model, tokenizer, EngineConfig(num_blocks=64, max_waiting=2))  # not started: nothing is admitted
    engine.submit("a", SamplingParams(max_new_tokens=4))
    engine.submit("b", SamplingParams(max_new_tokens=4))
    with pytest.raises(EngineBusy) as busy:
        engine.submit("c", SamplingParams(max_new_tokens=4))
    assert busy.value.retry_after >= 1 and engine.stats().rejections == 1
    engine.start()
    engine.shutdown()


def test_a_deadline_ends_at_the_next_newline(tokenizer):
    model = tiny("tiny-llama-gqa", tokenizer)
    params = SamplingParams(max_new_tokens=40)
    fifth = generate(model, tokenizer, PROMPTS[0], params)[0].token_ids[4]
    newline = tokenizer.encode("\n", add_bos=False)[0]
    with torch.no_grad():  # make a newline win where the fifth token won: one comes by the fifth step
        model.lm_head.weight[newline] = 1.5 * model.lm_head.weight[fifth]
    with Engine(model, tokenizer, EngineConfig(num_blocks=64)) as engine:
        late = list(engine.submit(PROMPTS[0], params, deadline=time.monotonic()))
        free = list(engine.submit(PROMPTS[0], params))
    assert late[-1].finish_reason == "length" and "\n" in late[-1].text and len(late) <= 5
    assert not any("\n" in o.text for o in late[:-1])
    assert len(free) == 40 and "".join(o.text for o in free).startswith("".join(o.text for o in late))


def test_async_consumers_get_the_same_outputs(tokenizer):
    import asyncio

    model = tiny("tiny-llama-gqa", tokenizer)
    params = SamplingParams(max_new_tokens=12)
    want = reference(model, tokenizer, PROMPTS[:3], params)

    async def run(engine):
        async def one(p):
            return "".join([o.text async for o in engine.submit(p, params)])
        return await asyncio.gather(*(one(p) for p in PROMPTS[:3]))

    with Engine(model, tokenizer, EngineConfig(num_blocks=64)) as engine:
        assert asyncio.run(run(engine)) == want
        assert threading.current_thread() is threading.main_thread()


def test_prompt_logprobs_cover_every_position_even_when_the_prefix_is_cached(tokenizer):
    model = tiny("tiny-llama-gqa", tokenizer)
    prompt = PROMPTS[4]  # several blocks long
    ids = tokenizer.encode(prompt)
    with torch.no_grad():
        want = model(torch.tensor([ids]))[0][0].log_softmax(-1)[:-1].gather(1, torch.tensor(ids[1:])[:, None])[:, 0]
    with Engine(model, tokenizer, EngineConfig(num_blocks=64, block_size=8, prefill_chunk=16, prefill_budget=16)) as engine:
        engine.generate([prompt], SamplingParams(max_new_tokens=2))  # now its blocks are cached
        handle = engine.submit(prompt, SamplingParams(max_new_tokens=2), prompt_logprobs=True)
        list(handle)
    assert len(handle.prompt_logprobs) == len(ids) and handle.prompt_logprobs[0] is None
    torch.testing.assert_close(torch.tensor(handle.prompt_logprobs[1:]), want, atol=1e-4, rtol=1e-4)


def test_prompt_logprobs_survive_preemption(tokenizer):
    model = tiny("tiny-llama-gqa", tokenizer)
    prompts = [PROMPTS[4], PROMPTS[0], PROMPTS[2], PROMPTS[3]]
    with Engine(model, tokenizer, EngineConfig(num_blocks=20, block_size=8)) as engine:
        handles = [engine.submit(p, SamplingParams(max_new_tokens=40), prompt_logprobs=True) for p in prompts]
        for handle in handles:
            list(handle)
        assert engine.stats().preemptions > 0
    for prompt, handle in zip(prompts, handles):
        ids = tokenizer.encode(prompt)
        with torch.no_grad():
            logits = model(torch.tensor([ids]))[0][0].log_softmax(-1)
        want = logits[:-1].gather(1, torch.tensor(ids[1:])[:, None])[:, 0]
        assert len(handle.prompt_logprobs) == len(ids)
        torch.testing.assert_close(torch.tensor(handle.prompt_logprobs[1:]), want, atol=1e-4, rtol=1e-4)
