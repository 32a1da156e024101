"""The `dscoder` command."""

from __future__ import annotations

import json
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from dscoder.errors import ConfigError

app = typer.Typer(help="DeepSeek-Coder on PyTorch: inspect, run and convert models.", no_args_is_help=True,
                  pretty_exceptions_enable=False)
err = Console(stderr=True, soft_wrap=True)  # one error, one line: greppable, never re-wrapped
# Every error dscoder raises for bad input (CheckpointError, ConfigError, TokenizerError,
# GenerationError, ChatTemplateError, FimUnsupportedError...) is a ValueError; with OS errors
# (missing files) they are reported as one line and exit code 2. Anything else is a bug and
# keeps its traceback.
USER_ERRORS = (ValueError, OSError)


@app.callback()
def main() -> None:
    """DeepSeek-Coder on PyTorch."""


def _fail(e: Exception) -> None:
    err.print(f"[bold red]error:[/] {e}")
    raise typer.Exit(2)


def _read_text(file: Optional[str]) -> str:
    """A file's exact text (newlines untouched), or stdin for None or '-'."""
    import sys

    if file in (None, "-"):
        return sys.stdin.read()
    try:
        with open(file, encoding="utf-8", newline="") as f:
            return f.read()
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"cannot read {file} as UTF-8 text: {e}") from None


def _load_model_and_tokenizer(model: Optional[str], quant: Optional[str] = None, kv_cache: Optional[str] = None):
    """The network and tokenizer of one model argument (resolved, and downloaded, once)."""
    import torch

    from dscoder.hub import load_model, resolve
    from dscoder.tokenizer.tokenizer import Tokenizer

    if kv_cache is not None and kv_cache not in _DTYPES:
        raise ConfigError(f"--kv-cache must be one of {', '.join(_DTYPES)}, got {kv_cache!r}")
    path = resolve(model)
    net = load_model(path, quant=quant)
    net.cache_dtype = getattr(torch, _DTYPES[kv_cache]) if kv_cache else None
    return net, Tokenizer.load(path)


_QUANT_HELP = ("Quantize the weights while loading: int8 (per channel), int4 (groups of 32), int4-64 or int4-128; "
               "decode runs on native AVX2 kernels.")
_KV_HELP = "Element type of the KV cache: fp32, bf16 or fp16 (default: the model's; 16 bits halve its memory)."


@app.command()
def info(
    model: Optional[str] = typer.Argument(None, help="Model directory, .gguf file, preset name or HF repo id "
                                                     "(default: the embedded SmolLM2-135M-Instruct)."),
    as_json: bool = typer.Option(False, "--json", help="Print the facts as JSON."),
) -> None:
    """Architecture, parameter counts, weight bytes and KV-cache bytes per token, without loading weights."""
    from dscoder.hub import describe
    from dscoder.model.facts import human_bytes, model_facts

    try:
        source, cfg = describe(model)
    except USER_ERRORS as e:
        _fail(e)
    facts = model_facts(cfg)
    if as_json:
        typer.echo(json.dumps({"source": source, **facts}, indent=2))
        return
    t = Table(show_header=False, box=None, pad_edge=False)
    t.add_column(no_wrap=True)
    t.add_column(overflow="fold")  # paths must stay whole, never end in an ellipsis
    t.add_row("model", source)
    a = facts["attention"]
    if cfg.is_mla:
        q = f"q_lora {a['q_lora_rank']}" if a["q_lora_rank"] else "no q_lora"
        attn = (f"MLA, {cfg.num_attention_heads} heads, kv_lora {a['kv_lora_rank']}, {q}, "
                f"qk {a['qk_nope_head_dim']}+{a['qk_rope_head_dim']} (rope), v {a['v_head_dim']}")
    else:
        attn = f"{a['kind']}, {cfg.num_attention_heads} heads, {a['kv_heads']} kv heads, head_dim {a['head_dim']}"
    t.add_row("architecture", f"{cfg.arch} ({'DeepseekV2ForCausalLM' if cfg.is_mla else 'LlamaForCausalLM'})")
    t.add_row("shape", f"{cfg.num_hidden_layers} layers, hidden {cfg.hidden_size}, vocab {cfg.vocab_size:,}")
    t.add_row("attention", attn)
    if "moe" in facts:
        m = facts["moe"]
        t.add_row("ffn", f"DeepSeekMoE in {m['moe_layers']} layers: {m['shared_experts']} shared + "
                         f"{m['routed_experts']} routed experts (inter {cfg.moe_intermediate_size}), top-"
                         f"{m['experts_per_token']} {m['topk_method']}, scale {m['routed_scaling_factor']:g}; "
                         f"{m['first_k_dense_replace']} dense layer(s) (inter {cfg.intermediate_size})")
    else:
        t.add_row("ffn", f"SwiGLU, intermediate {cfg.intermediate_size}")
    rope = facts["rope"]
    extra = f" ×{rope['factor']:g}" if rope["type"] != "default" else ""
    t.add_row("rope", f"{rope['type']}{extra}, θ={rope['theta']:g}, max positions {cfg.max_position_embeddings:,}")
    t.add_row("parameters", f"{facts['params_total']:,} total, {facts['params_active']:,} active per token")
    t.add_row("weights", ", ".join(f"{k} {human_bytes(v)}" for k, v in facts["weight_bytes"].items()))
    values = facts["kv_values_per_token"]
    if cfg.is_mla:
        full = facts["kv_values_per_token_expanded"]
        kv = (f"latent {cfg.num_hidden_layers} × ({cfg.kv_lora_rank}+{cfg.qk_rope_head_dim}) = {values:,} values "
              f"= {human_bytes(2 * values)} bf16; expanded K/V would be {full:,} values = {human_bytes(2 * full)} "
              f"({full / values:.1f}×)")
    else:
        kv = (f"{cfg.num_hidden_layers} × 2 × {cfg.num_key_value_heads} × {cfg.attn_head_dim} = {values:,} values "
              f"= {human_bytes(2 * values)} bf16")
    t.add_row("kv cache/token", kv)
    t.add_row("kv at max ctx", f"{human_bytes(2 * values * cfg.max_position_embeddings)} bf16 per sequence")
    Console().print(t)


_DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


@app.command()
def convert(
    model: str = typer.Argument(..., help="Model directory, .gguf file, preset name or HF repo id."),
    out: str = typer.Argument(..., help="Output directory (Hugging Face layout)."),
    dtype: str = typer.Option("bf16", help="Weight dtype to write: fp32, bf16 or fp16."),
    max_shard_gb: float = typer.Option(5.0, help="Largest safetensors shard, in GiB."),
    quant: Optional[str] = typer.Option(None, "--quant", "-q", help="Save quantized (int8, int4, int4-64, int4-128): "
                                        "dscoder loads it back as is; other tools need the unquantized form."),
) -> None:
    """Write any model we can load (a GGUF file included, dequantized) as an HF directory, tokenizer too."""
    import torch

    from dscoder.formats.hf import save_hf_dir
    from dscoder.hub import load_model, resolve
    from dscoder.tokenizer.tokenizer import Tokenizer, TokenizerError

    if dtype not in _DTYPES:
        _fail(ConfigError(f"--dtype must be one of {', '.join(_DTYPES)}, got {dtype!r}"))
    torch_dtype = getattr(torch, _DTYPES[dtype])
    try:
        source = resolve(model)
        loaded = load_model(source, dtype=torch_dtype, quant=quant)
    except USER_ERRORS as e:
        _fail(e)
    path = save_hf_dir(loaded, out, dtype=torch_dtype, max_shard_bytes=int(max_shard_gb * 1024**3))
    try:
        Tokenizer.load(source).save(path)
        wrote_tokenizer = "tokenizer.json + tokenizer_config.json"
    except TokenizerError as e:
        wrote_tokenizer = f"no tokenizer ({e})"
    scheme = f", {loaded.quant_config.scheme} weights" if quant else ""
    err.print(f"wrote {path} ({loaded.config.param_counts()[0]:,} parameters, {dtype}{scheme}; {wrote_tokenizer})")


@app.command()
def complete(
    prompt: Optional[str] = typer.Argument(None, help="Prompt text (or use --file)."),
    file: Optional[str] = typer.Option(None, "--file", "-f", help="Read the prompt from a file ('-' for stdin)."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Model directory, .gguf, preset or HF repo id "
                                                                    "(default: the embedded SmolLM2-135M-Instruct)."),
    max_tokens: int = typer.Option(256, "--max-tokens", "-n", help="Most new tokens to generate."),
    temperature: float = typer.Option(0.0, "--temperature", "-t", help="0 is greedy."),
    top_p: float = typer.Option(1.0, "--top-p"),
    top_k: int = typer.Option(0, "--top-k", help="0 is off."),
    seed: Optional[int] = typer.Option(None, "--seed"),
    stop: Optional[list[str]] = typer.Option(None, "--stop", help="Stop string (repeatable); not printed."),
    draft: Optional[str] = typer.Option(None, "--draft", help="A smaller model with the same tokenizer: greedy "
                                                              "speculative decoding (same output, fewer big passes)."),
    lookup: bool = typer.Option(False, "--lookup", help="Prompt-lookup speculative decoding: propose continuations "
                                                        "copied from the prompt; same output as greedy."),
    speculate: Optional[int] = typer.Option(None, "--speculate", help="Tokens proposed per step "
                                                                      "(default 4 with --draft, 8 with --lookup)."),
    quant: Optional[str] = typer.Option(None, "--quant", "-q", help=_QUANT_HELP),
    kv_cache: Optional[str] = typer.Option(None, "--kv-cache", help=_KV_HELP),
) -> None:
    """Continue a prompt; only the generated text goes to stdout (streamed), timings to stderr."""
    import sys
    import time

    from dscoder.infer.generate import SamplingParams, stream

    if (prompt is None) == (file is None):
        _fail(ValueError("give the prompt as an argument or with --file, not both"))
    if draft is not None and lookup:
        _fail(ValueError("--draft and --lookup are two ways to speculate: give one, not both"))
    try:
        if file is not None:
            prompt = _read_text(file)
        start = time.perf_counter()
        net, tok = _load_model_and_tokenizer(model, quant, kv_cache)
        loaded = time.perf_counter() - start
        params = SamplingParams(max_new_tokens=max_tokens, temperature=temperature, top_p=top_p, top_k=top_k,
                                seed=seed, stop=tuple(stop or ()),
                                stop_token_ids=(tok.eos_id,) if tok.eos_id is not None else ())
        if draft is not None or lookup:
            _speculate(net, tok, prompt, params, draft, speculate, loaded)
            return
        start, n = time.perf_counter(), 0
        for delta in stream(net, tok, prompt, params):
            sys.stdout.write(delta.text)
            sys.stdout.flush()
            n += delta.token_id is not None
    except USER_ERRORS as e:
        _fail(e)
    elapsed = time.perf_counter() - start
    err.print(f"\n[dim]{n} tokens in {elapsed:.2f} s ({n / elapsed:.1f} tok/s), model loaded in {loaded:.1f} s; "
              f"finish: {delta.finish_reason}[/]")


def _speculate(target, tok, prompt: str, params, draft_name: Optional[str], k: Optional[int], loaded: float) -> None:
    """`complete --draft` (or `--lookup` when no draft is named): greedy only; the text is printed once
    verified, cut at the first stop string."""
    import sys
    import time

    from dscoder.infer.generate import GenerationError, first_stop
    from dscoder.hub import load_model, resolve
    from dscoder.infer.speculative import prompt_lookup_generate, speculative_generate

    flag = "--lookup" if draft_name is None else "--draft"
    if params.temperature != 0:
        raise GenerationError(f"speculative decoding here is greedy: use --temperature 0 with {flag}")
    draft = None if draft_name is None else load_model(resolve(draft_name))
    start = time.perf_counter()
    if draft is None:
        tokens, stats = prompt_lookup_generate(target, tok.encode(prompt), params.max_new_tokens,
                                               8 if k is None else k, stop_token_ids=params.stop_token_ids)
    else:
        tokens, stats = speculative_generate(target, draft, tok.encode(prompt), params.max_new_tokens,
                                             4 if k is None else k, params.stop_token_ids)
    elapsed = time.perf_counter() - start
    text = tok.decode(tokens, skip_special_tokens=True)
    sys.stdout.write(text[:first_stop(text, params.stop)])
    err.print(f"\n[dim]{len(tokens)} tokens in {elapsed:.2f} s ({len(tokens) / elapsed:.1f} tok/s), "
              f"{stats.target_passes} target passes, {stats.acceptance:.0%} of "
              f"{'looked-up' if draft is None else 'draft'} tokens accepted; "
              f"model loaded in {loaded:.1f} s[/]")


@app.command()
def infill(
    file: Optional[str] = typer.Argument(None, help="A file with a <CURSOR> marker (or use --line/--col)."),
    prefix: Optional[str] = typer.Option(None, "--prefix", help="Code before the cursor (with --suffix)."),
    suffix: str = typer.Option("", "--suffix", help="Code after the cursor."),
    line: Optional[int] = typer.Option(None, "--line", help="Cursor line in FILE (1-based)."),
    col: Optional[int] = typer.Option(None, "--col", help="Cursor column in FILE (1-based; default: end of line)."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="A FIM model: directory, .gguf, preset or repo id."),
    max_tokens: int = typer.Option(128, "--max-tokens", "-n", help="Token budget for the middle."),
    max_lines: Optional[int] = typer.Option(None, "--max-lines", help="Most lines of middle."),
    no_dedent_stop: bool = typer.Option(False, "--no-dedent-stop", help="Keep going past the cursor's block."),
    mode: str = typer.Option("psm", "--mode", help="FIM ordering: psm or spm."),
    temperature: float = typer.Option(0.0, "--temperature", "-t"),
    seed: Optional[int] = typer.Option(None, "--seed"),
    quant: Optional[str] = typer.Option(None, "--quant", "-q", help=_QUANT_HELP),
    kv_cache: Optional[str] = typer.Option(None, "--kv-cache", help=_KV_HELP),
) -> None:
    """Fill in the code at the cursor; only the middle goes to stdout."""
    import sys

    from dscoder.infer.generate import SamplingParams
    from dscoder.infer.infill import InfillRules, infill_stream, split_at_cursor

    if (file is None) == (prefix is None):
        _fail(ValueError("give a FILE (with a <CURSOR> marker or --line/--col) or --prefix/--suffix"))
    if max_lines is not None and max_lines < 1:
        _fail(ValueError(f"--max-lines must be at least 1, got {max_lines}"))
    try:
        if file is not None:
            prefix, suffix = split_at_cursor(_read_text(file), line, col)
        net, tok = _load_model_and_tokenizer(model, quant, kv_cache)
        params = SamplingParams(max_new_tokens=max_tokens, temperature=temperature, seed=seed)
        rules = InfillRules(max_lines=max_lines, stop_at_dedent=not no_dedent_stop)
        for piece in infill_stream(net, tok, prefix, suffix, params, rules, mode):
            sys.stdout.write(piece)
            sys.stdout.flush()
    except USER_ERRORS as e:
        _fail(e)


@app.command()
def chat(
    message: Optional[str] = typer.Option(None, "--message", "-m", help="Ask once, print the answer and exit."),
    system: Optional[str] = typer.Option(None, "--system", help="System prompt."),
    model: Optional[str] = typer.Option(None, "--model", help="Chat model: directory, .gguf, preset or HF repo id "
                                                               "(default: the embedded SmolLM2-135M-Instruct)."),
    max_tokens: int = typer.Option(512, "--max-tokens", "-n", help="Most new tokens per answer."),
    temperature: float = typer.Option(0.0, "--temperature", "-t", help="0 is greedy."),
    top_p: float = typer.Option(1.0, "--top-p"),
    seed: Optional[int] = typer.Option(None, "--seed"),
    quant: Optional[str] = typer.Option(None, "--quant", "-q", help=_QUANT_HELP),
    kv_cache: Optional[str] = typer.Option(None, "--kv-cache", help=_KV_HELP),
) -> None:
    """Chat with the model's own template: one-shot with -m, else interactive (/reset, /exit)."""
    import sys

    from dscoder.infer.session import ChatSession
    from dscoder.infer.generate import SamplingParams

    try:
        session = ChatSession(*_load_model_and_tokenizer(model, quant, kv_cache),
                              SamplingParams(max_new_tokens=max_tokens, temperature=temperature, top_p=top_p,
                                             seed=seed), system=system)
    except USER_ERRORS as e:
        _fail(e)

    def answer(text: str) -> None:
        try:
            for piece in session.send(text):
                sys.stdout.write(piece)
                sys.stdout.flush()
        except USER_ERRORS as e:
            err.print(f"[bold red]error:[/] {e}")
        except KeyboardInterrupt:  # Ctrl-C ends this answer, not the conversation
            sys.stdout.write("\n")
            err.print("[dim](interrupted: this question and its partial answer are not kept in the history)[/]")
        sys.stdout.write("\n")
        sys.stdout.flush()

    if message is not None:
        answer(message)
        return
    interactive = sys.stdin.isatty()
    if interactive:
        err.print("[dim]chat: /reset clears the history, Ctrl-C stops an answer, /exit or Ctrl-D quits[/]")
    while True:
        try:
            line = input("> " if interactive else "")
        except (EOFError, KeyboardInterrupt):
            break
        if line.strip() == "/exit":
            break
        if line.strip() == "/reset":
            session.reset()
            err.print("[dim]history cleared[/]")
            continue
        if line.strip():
            answer(line)


def _run_task(name: str, file: Optional[str], model: Optional[str], max_tokens: int, raw: bool,
              target: str = "", error: str = "", quant: Optional[str] = None) -> None:
    """One documented task prompt on the chat model; code answers come out of their fenced block."""
    import sys

    from dscoder.infer.session import ChatSession
    from dscoder.infer.generate import SamplingParams
    from dscoder.infer.assist import TASKS, extract_code, language_of, task_prompt

    try:
        prompt = task_prompt(name, _read_text(file), file, target=target, error=error)
        session = ChatSession(*_load_model_and_tokenizer(model, quant), SamplingParams(max_new_tokens=max_tokens))
        if TASKS[name].returns_code and not raw:
            sys.stdout.write(extract_code(session.ask(prompt), target or language_of(file)))
            return
        for piece in session.send(prompt):
            sys.stdout.write(piece)
            sys.stdout.flush()
        sys.stdout.write("\n")
    except USER_ERRORS as e:
        _fail(e)


_TASK_MODEL = typer.Option(None, "--model", "-m", help="Chat model (default: the embedded SmolLM2-135M-Instruct).")
_TASK_TOKENS = typer.Option(1024, "--max-tokens", "-n", help="Most tokens in the answer.")
_TASK_RAW = typer.Option(False, "--raw", help="Print the whole answer, not just its code block.")
_TASK_QUANT = typer.Option(None, "--quant", "-q", help=_QUANT_HELP)


@app.command()
def explain(file: str = typer.Argument(..., help="Source file ('-' for stdin)."), model: Optional[str] = _TASK_MODEL,
            max_tokens: int = _TASK_TOKENS,
            quant: Optional[str] = _TASK_QUANT) -> None:
    """Explain what a file does, step by step."""
    _run_task("explain", file, model, max_tokens, raw=True, quant=quant)


@app.command()
def tests(file: str = typer.Argument(..., help="Source file ('-' for stdin)."), model: Optional[str] = _TASK_MODEL,
          max_tokens: int = _TASK_TOKENS, raw: bool = _TASK_RAW,
          quant: Optional[str] = _TASK_QUANT) -> None:
    """Write unit tests for a file (pytest, Jest, JUnit... by language); prints the test code."""
    _run_task("tests", file, model, max_tokens, raw, quant=quant)


@app.command()
def doc(file: str = typer.Argument(..., help="Source file ('-' for stdin)."), model: Optional[str] = _TASK_MODEL,
        max_tokens: int = _TASK_TOKENS, raw: bool = _TASK_RAW,
        quant: Optional[str] = _TASK_QUANT) -> None:
    """Add docstrings and comments; prints the documented code."""
    _run_task("doc", file, model, max_tokens, raw, quant=quant)


@app.command()
def translate(file: str = typer.Argument(..., help="Source file ('-' for stdin)."),
              to: str = typer.Option(..., "--to", help="Target language, e.g. Rust."),
              model: Optional[str] = _TASK_MODEL, max_tokens: int = _TASK_TOKENS, raw: bool = _TASK_RAW,
              quant: Optional[str] = _TASK_QUANT) -> None:
    """Translate a file to another language; prints the translated code."""
    _run_task("translate", file, model, max_tokens, raw, target=to, quant=quant)


@app.command()
def fix(file: str = typer.Argument(..., help="Source file ('-' for stdin)."),
        error: str = typer.Option(..., "--error", help="The error message or failing output."),
        model: Optional[str] = _TASK_MODEL, max_tokens: int = _TASK_TOKENS, raw: bool = _TASK_RAW,
        quant: Optional[str] = _TASK_QUANT) -> None:
    """Fix a file given its error; prints the corrected code."""
    _run_task("fix", file, model, max_tokens, raw, error=error, quant=quant)


@app.command()
def review(model: Optional[str] = _TASK_MODEL, max_tokens: int = _TASK_TOKENS,
           quant: Optional[str] = _TASK_QUANT) -> None:
    """Review a diff read from stdin (e.g. git diff | dscoder review)."""
    _run_task("review", None, model, max_tokens, raw=True, quant=quant)


tokenizer_app = typer.Typer(help="Train byte-level BPE tokenizers.", no_args_is_help=True)
app.add_typer(tokenizer_app, name="tokenizer")
_TOKENIZER_HELP = "A model directory, tokenizer.json, .gguf file, preset or HF repo id (default: the embedded model)."


def _load_tokenizer(path: Optional[str]):
    from pathlib import Path

    from dscoder.hub import resolve
    from dscoder.tokenizer.tokenizer import Tokenizer

    try:
        if path is not None and Path(path).is_file() and Path(path).suffix == ".json":
            return Tokenizer.load(path)
        return Tokenizer.load(resolve(path))
    except USER_ERRORS as e:
        _fail(e)


@app.command()
def tokenize(
    text: Optional[str] = typer.Option(None, "--text", "-t", help="Text to encode."),
    file: Optional[str] = typer.Option(None, "--file", "-f", help="File to encode ('-' for stdin)."),
    tokenizer: Optional[str] = typer.Option(None, "--tokenizer", help=_TOKENIZER_HELP),
    bos: Optional[bool] = typer.Option(None, "--bos/--no-bos", help="Prepend BOS (default: the model's setting)."),
) -> None:
    """Print the token ids of a text as a JSON list."""
    if (text is None) == (file is None):
        _fail(ValueError("give exactly one of --text or --file"))
    if file is not None:
        try:
            text = _read_text(file)
        except USER_ERRORS as e:
            _fail(e)
    typer.echo(json.dumps(_load_tokenizer(tokenizer).encode(text, add_bos=bos)))


@app.command()
def detokenize(
    ids: Optional[list[int]] = typer.Argument(None, help="Token ids (default: a JSON list on stdin)."),
    tokenizer: Optional[str] = typer.Option(None, "--tokenizer", help=_TOKENIZER_HELP),
    skip_special: bool = typer.Option(False, "--skip-special", help="Drop special tokens such as BOS."),
) -> None:
    """Print the text of token ids exactly (no added newline)."""
    import sys

    if not ids:
        raw = sys.stdin.read()
        try:
            ids = json.loads(raw)
            if not isinstance(ids, list) or not all(isinstance(i, int) for i in ids):
                raise ValueError
        except ValueError:
            _fail(ValueError(f"stdin must be a JSON list of integer ids, got {raw[:80]!r}"))
    tok = _load_tokenizer(tokenizer)
    bad = [i for i in ids if not 0 <= i < tok.vocab_size]
    if bad:
        _fail(ValueError(f"ids out of range for a vocabulary of {tok.vocab_size}: {bad[:10]}"))
    sys.stdout.buffer.write(tok.decode(ids, skip_special_tokens=skip_special).encode("utf-8"))  # exact bytes
    sys.stdout.flush()


@tokenizer_app.command("train")
def tokenizer_train(
    dirs: list[str] = typer.Argument(..., help="Directories of source files."),
    out: str = typer.Option(..., "--out", help="Output directory for tokenizer.json + tokenizer_config.json."),
    vocab_size: int = typer.Option(32000, "--vocab-size", help="Total vocabulary, special tokens included."),
    min_frequency: int = typer.Option(2, "--min-frequency", help="Merges must be seen at least this often."),
    pre: str = typer.Option("deepseek-coder", "--pre", help="Pre-tokenizer: deepseek-coder, deepseek-llm, smollm."),
) -> None:
    """Train a byte-level BPE with the DeepSeek-Coder pre-tokenizer and FIM/chat special tokens."""
    from dscoder.tokenizer.train import train_tokenizer

    try:
        tok, stats = train_tokenizer(dirs, vocab_size, out, pre=pre, min_frequency=min_frequency)
    except USER_ERRORS as e:
        _fail(e)
    skipped = ", ".join(f"{n} {why}" for why, n in sorted(stats.skipped.items())) or "none"
    err.print(f"trained on {stats.files:,} files ({stats.bytes:,} bytes; skipped: {skipped}); "
              f"vocabulary {tok.vocab_size:,}; wrote {out}")


def _register_subcommands() -> None:
    """The data pipeline, the evaluation harness and the server live in their own packages; their commands join this app here."""
    from dscoder.cli.eval import eval_command, toolchains_command
    from dscoder.cli.data import data_app
    from dscoder.cli.serve import serve_command

    app.add_typer(data_app, name="data")
    app.command("eval")(eval_command)
    app.command("toolchains")(toolchains_command)
    app.command("serve")(serve_command)


_register_subcommands()

if __name__ == "__main__":
    app()
