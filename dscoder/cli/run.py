"""`dscoder complete`, `infill` and `chat`: run a model on a prompt, a cursor, a conversation.

Only generated text goes to stdout (streamed as it comes); timings and notes go to stderr.
"""

from __future__ import annotations

import sys
import time
from typing import Optional

import typer

from dscoder.cli import common
from dscoder.cli.common import (DEVICE, DTYPE, KV_CACHE, MODEL, MODEL_LONG_ONLY, QUANT, SEED, STOP, TEMPERATURE,
                                TOP_K, TOP_P, err)
from dscoder.cli.options import option
from dscoder.cli.repo import REPO, open_repo, repo_prefix
from dscoder.cli.verify import verify_options
from dscoder.errors import UserError
from dscoder.hub import ModelChoice

LORA = option(ModelChoice, "lora")


def _write(pieces) -> None:
    for piece in pieces:
        sys.stdout.write(piece)
        sys.stdout.flush()


@verify_options
def complete(
    prompt: Optional[str] = typer.Argument(None, help="Prompt text (or use --file)."),
    file: Optional[str] = typer.Option(None, "--file", "-f", help="Read the prompt from a file ('-' for stdin)."),
    model: Optional[str] = MODEL,
    max_tokens: int = common.max_tokens(256, "Most new tokens to generate."),
    temperature: float = TEMPERATURE, top_p: float = TOP_P, top_k: int = TOP_K, seed: Optional[int] = SEED,
    stop: Optional[list[str]] = STOP,
    draft: Optional[str] = typer.Option(None, "--draft", help="A smaller model with the same tokenizer: greedy "
                                                              "speculative decoding (same output, fewer big passes)."),
    lookup: bool = typer.Option(False, "--lookup", help="Prompt-lookup speculative decoding: propose continuations "
                                                        "copied from the prompt; same output as greedy."),
    speculate: Optional[int] = typer.Option(None, "--speculate", help="Tokens proposed per step "
                                                                      "(default 4 with --draft, 8 with --lookup)."),
    quant: Optional[str] = QUANT, kv_cache: Optional[str] = KV_CACHE, lora: Optional[str] = LORA,
    device: str = DEVICE, dtype: str = DTYPE, repo: Optional[str] = REPO, verify=None,
) -> None:
    """Continue a prompt; only the generated text goes to stdout (streamed), timings to stderr."""
    from dscoder.infer.generate import SamplingParams
    from dscoder.infer.speculative_text import require_greedy

    if (prompt is None) == (file is None):
        raise UserError("give the prompt as an argument or with --file, not both")
    if draft is not None and lookup:
        raise UserError("--draft and --lookup are two ways to speculate: give one, not both")
    if draft is not None or lookup:
        require_greedy(temperature, lookup)
    if verify is not None and (draft is not None or lookup):
        raise UserError("--verify samples its candidates in one batch; --draft and --lookup do not apply")
    if verify is not None and repo is not None:
        raise UserError("--verify runs the prompt and its completion as a program; --repo's context is not part of it")
    text = common.read_text(file) if file is not None else prompt
    index = open_repo(repo)
    net, tok, loaded = common.load_timed(model, quant, kv_cache, device, dtype, lora)
    if index is not None:
        text = repo_prefix(index, file, text, "", net.config.max_position_embeddings, max_tokens,
                           lambda s: len(tok.encode(s)))
    params = SamplingParams(max_new_tokens=max_tokens, temperature=temperature, top_p=top_p, top_k=top_k, seed=seed,
                            stop=tuple(stop or ()), stop_token_ids=(tok.eos_id,) if tok.eos_id is not None else ())
    if verify is not None:
        from dscoder.cli import verify as verification
        return verification.complete(net, tok, text, params, verify)
    if draft is not None or lookup:
        _speculate(net, tok, text, params, draft, speculate, loaded, device, dtype)
    else:
        _stream(net, tok, text, params, loaded)


def _stream(net, tok, prompt: str, params, loaded: float) -> None:
    from dscoder.infer.generate import stream

    start, n, delta = time.perf_counter(), 0, None
    for delta in stream(net, tok, prompt, params):
        _write([delta.text])
        n += delta.token_id is not None
    elapsed = time.perf_counter() - start
    err.print(f"\n[dim]{n} tokens in {elapsed:.2f} s ({n / elapsed:.1f} tok/s), model loaded in {loaded:.1f} s; "
              f"finish: {delta.finish_reason}[/]")


def _speculate(net, tok, prompt: str, params, draft_name: Optional[str], k: Optional[int], loaded: float,
               device: str, dtype: str) -> None:
    """`complete --draft` (or `--lookup` when no draft is named): the text is printed once verified.
    The draft runs where the target runs, in the same dtype."""
    from dscoder.hub import load_model, place
    from dscoder.infer.speculative_text import speculate

    where, compute = place(device, dtype)
    draft = None if draft_name is None else load_model(draft_name, dtype=compute, device=where)
    start = time.perf_counter()
    done = speculate(net, tok, prompt, params, draft, k)
    elapsed = time.perf_counter() - start
    sys.stdout.write(done.text)
    err.print(f"\n[dim]{done.tokens} tokens in {elapsed:.2f} s ({done.tokens / elapsed:.1f} tok/s), "
              f"{done.stats.target_passes} target passes, {done.stats.acceptance:.0%} of "
              f"{'looked-up' if draft is None else 'draft'} tokens accepted; model loaded in {loaded:.1f} s[/]")


def infill(
    file: Optional[str] = typer.Argument(None, help="A file with a <CURSOR> marker (or use --line/--col)."),
    prefix: Optional[str] = typer.Option(None, "--prefix", help="Code before the cursor (with --suffix)."),
    suffix: str = typer.Option("", "--suffix", help="Code after the cursor."),
    line: Optional[int] = typer.Option(None, "--line", help="Cursor line in FILE (1-based)."),
    col: Optional[int] = typer.Option(None, "--col", help="Cursor column in FILE (1-based; default: end of line)."),
    model: Optional[str] = MODEL,
    max_tokens: int = common.max_tokens(128, "Token budget for the middle."),
    max_lines: Optional[int] = typer.Option(None, "--max-lines", help="Most lines of middle."),
    no_dedent_stop: bool = typer.Option(False, "--no-dedent-stop", help="Keep going past the cursor's block."),
    mode: str = typer.Option("psm", "--mode", help="FIM ordering: psm or spm."),
    temperature: float = TEMPERATURE, seed: Optional[int] = SEED,
    quant: Optional[str] = QUANT, kv_cache: Optional[str] = KV_CACHE, device: str = DEVICE, dtype: str = DTYPE,
    repo: Optional[str] = REPO,
) -> None:
    """Fill in the code at the cursor; only the middle goes to stdout."""
    from dscoder.infer.generate import SamplingParams
    from dscoder.infer.infill import InfillRules, infill_stream, split_at_cursor

    if (file is None) == (prefix is None):
        raise UserError("give a FILE (with a <CURSOR> marker or --line/--col) or --prefix/--suffix")
    if max_lines is not None and max_lines < 1:
        raise UserError(f"--max-lines must be at least 1, got {max_lines}")
    if file is not None:
        prefix, suffix = split_at_cursor(common.read_text(file), line, col)
    index = open_repo(repo)
    net, tok = common.load_timed(model, quant, kv_cache, device, dtype)[:2]
    if index is not None:
        # the rules read the cursor's line from the prefix's end, which the context leaves as it is
        prefix = repo_prefix(index, file, prefix, suffix, net.config.max_position_embeddings, max_tokens + 8,
                             lambda s: len(tok.encode(s)))
    params = SamplingParams(max_new_tokens=max_tokens, temperature=temperature, seed=seed)
    rules = InfillRules(max_lines=max_lines, stop_at_dedent=not no_dedent_stop)
    _write(infill_stream(net, tok, prefix, suffix, params, rules, mode))


@verify_options
def chat(
    message: Optional[str] = typer.Option(None, "--message", "-m", help="Ask once, print the answer and exit."),
    system: Optional[str] = typer.Option(None, "--system", help="System prompt."),
    model: Optional[str] = MODEL_LONG_ONLY,
    max_tokens: int = common.max_tokens(512, "Most new tokens per answer."),
    temperature: float = TEMPERATURE, top_p: float = TOP_P, seed: Optional[int] = SEED,
    quant: Optional[str] = QUANT, kv_cache: Optional[str] = KV_CACHE, device: str = DEVICE, dtype: str = DTYPE,
    verify=None,
) -> None:
    """Chat with the model's own template: one-shot with -m, else interactive (/reset, /exit)."""
    from dscoder.infer.generate import SamplingParams
    from dscoder.infer.session import ChatSession

    if verify is not None and message is None:
        raise UserError("--verify needs a one-shot question (-m/--message), not the interactive chat")
    net, tok = common.load_timed(model, quant, kv_cache, device, dtype)[:2]
    if verify is not None:
        from dscoder.cli import verify as verification
        return verification.chat(net, tok, message, system, max_tokens, verify)
    session = ChatSession(net, tok, SamplingParams(max_new_tokens=max_tokens, temperature=temperature, top_p=top_p,
                                                   seed=seed), system=system)
    if message is not None:
        _answer(session, message)
    else:
        _converse(session)


def _answer(session, text: str) -> None:
    """One answer, streamed. An error or Ctrl-C ends this answer, not the conversation."""
    try:
        _write(session.send(text))
    except UserError as e:
        err.print(f"[bold red]error:[/] {e}")
    except KeyboardInterrupt:
        sys.stdout.write("\n")
        err.print("[dim](interrupted: this question and its partial answer are not kept in the history)[/]")
    sys.stdout.write("\n")
    sys.stdout.flush()


def _converse(session) -> None:
    """The interactive loop: a line in, an answer out; /reset clears the history, /exit or end of input quits."""
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
        elif line.strip():
            _answer(session, line)
