"""`--verify` on `dscoder complete`, `chat`, `tests` and `fix`: N candidates in one batch, each run
against tests in the sandbox (`dscoder.verify`).

The chosen code goes to stdout; on stderr, the tests used, one line per candidate as its run
ends, and the summary (`3/8 passed; chose candidate 2`). Exit status 1 when no candidate passed
(the best one is still printed), 2 for a user error, as everywhere.

`verify_options` adds the options (from `VerifySettings`) to a command and hands it
`verify: VerifySettings | None` (None without `--verify`); the command then calls one of the
functions below, so `run.py` and `assist.py` only gain a decorator, a parameter and a branch.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import inspect
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any, Optional

import typer
from rich.markup import escape

from dscoder.cli.common import err
from dscoder.cli.options import settings_parameters
from dscoder.errors import UserError
from dscoder.verify.settings import VerifySettings

NONE_PASSED = 1  # the exit status when no candidate passed
VERIFY_HELP = ("Sample --samples candidates (the first greedy), run each against tests in the sandbox, print the "
               "first that passes (or the one passing most checks); exit status 1 when none passes.")
_FIELDS = [f.name for f in dataclasses.fields(VerifySettings) if f.metadata.get("cli", True)]
_FLAG = {f.name: (f.metadata["flags"] or ("--" + f.name.replace("_", "-"),))[0] for f in dataclasses.fields(VerifySettings)}


def verify_options(fn: Callable) -> Callable:
    """Add `--verify` and the `VerifySettings` options to command `fn`, which takes `verify=`."""
    own = [p for name, p in inspect.signature(fn).parameters.items() if name != "verify"]
    flag = inspect.Parameter("verify_", inspect.Parameter.KEYWORD_ONLY, annotation=bool,
                             default=typer.Option(False, "--verify", help=VERIFY_HELP))
    # named verify_<field> here: the commands have a --temperature and a --seed of their own
    params = own + [flag] + [p.replace(name="verify_" + p.name) for p in settings_parameters(VerifySettings)]

    @functools.wraps(fn)
    def command(**values: Any) -> Any:
        chosen = {name: values.pop("verify_" + name) for name in _FIELDS}
        on = values.pop("verify_")
        defaults = VerifySettings()
        given = [name for name in _FIELDS if chosen[name] != getattr(defaults, name)]
        if not on:
            if given:
                flags = ", ".join(_FLAG[n] for n in given)
                raise UserError(f"{flags} only apply with --verify")
            return fn(**values, verify=None)
        settings = VerifySettings(**chosen)
        settings.check()
        if settings.tests:  # a test file that cannot be used is said before the model loads
            from dscoder.verify.tests import from_file
            from_file(settings.tests)
        return fn(**values, verify=settings)

    command.__signature__ = inspect.Signature([p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in params])
    del command.__wrapped__
    command.__annotations__ = {p.name: p.annotation for p in params}
    return command


# ---- driving the async verification from a command ---------------------------------------------

def _engine(net, tok, prompt_tokens: int, max_tokens: int, n: int):
    """A serving engine sized for n candidates of the prompt (the prefix cache shares its blocks)."""
    from dscoder.serve.engine import Engine, EngineConfig
    from dscoder.serve.paged import PagedKV

    block = EngineConfig.block_size
    per_sequence = -(-(prompt_tokens + max_tokens) // block)
    blocks = max(per_sequence * n + 1, min(per_sequence * n * 2, (1 << 30) // PagedKV.bytes_per_block(
        net.config, block, net.kv_dtype)))
    return Engine(net, tok, EngineConfig(num_blocks=blocks, max_running=max(n, 4), max_waiting=64)).start()


def _events(make: Callable[[], AsyncIterator]) -> Iterator:
    """Iterate an async generator on a private event loop (the engine's handles are awaited on it)."""
    loop = asyncio.new_event_loop()
    agen = None
    try:
        agen = loop.run_until_complete(_start(make))
        while True:
            try:
                yield loop.run_until_complete(anext(agen))
            except StopAsyncIteration:
                return
    finally:
        if agen is not None:
            loop.run_until_complete(agen.aclose())
        loop.close()


async def _start(make: Callable[[], AsyncIterator]) -> AsyncIterator:
    return make()


def _say(judged, suite_size: int | None = None) -> None:
    o, c = judged.outcome, judged.candidate
    who = f"candidate {c.index + 1}" + (" (greedy)" if c.index == 0 else "")
    checks = f"{o.passed_checks}/{o.total_checks} checks"
    if o.passed:
        err.print(f"[green]{who}: passed[/] {checks} ({c.tokens} tokens, {o.seconds:.1f} s in the sandbox)")
        return
    first = o.failures[0] if o.failures else o.status
    err.print(f"[red]{who}: {o.status}[/] {checks}: {escape(first)}")


def _verify(net, tok, ids: list[int], base, settings: VerifySettings, to_code: Callable[[str], str],
            context: str, *, build=None, module: str | None = None, need_suite: bool = True, chat: bool = True):
    """Tests, candidates, verdicts: prints as it goes; returns the `Result`. A chat answer (`chat`) ends
    once its code block closes (`verify.candidates.code_block_closed`)."""
    from dscoder.verify.candidates import code_block_closed

    from dscoder.execute.programs import Executor
    from dscoder.verify import run, select

    engine = _engine(net, tok, len(ids), base.max_new_tokens, max(settings.n, settings.model_test_samples))
    try:
        with Executor(settings.workers, settings.timeout) as executor:
            suite = None
            if need_suite:
                [suite] = list(_events(lambda: _one(run.tests_for(engine, context, settings, base, module=module))))
                err.print(f"[dim]tests: {escape(suite.describe())}[/]")
            judge = select.Judge(executor, suite, settings.timeout, build)
            result = None
            until = code_block_closed if chat else None
            for event in _events(lambda: run.generate(engine, ids, base, settings, to_code, judge, until=until)):
                if isinstance(event, select.Result):
                    result = event
                else:
                    _say(event)
    finally:
        engine.shutdown()
    chosen = result.chosen.outcome
    err.print(("[bold green]" if result.passed else "[bold red]") + escape(result.summary()) + "[/]")
    if not result.passed:
        for line in chosen.failures:
            err.print(f"  {escape(line)}")
    return result


async def _one(coroutine) -> AsyncIterator:
    yield await coroutine


def _finish(result, text: str) -> None:
    sys.stdout.write(text if text.endswith("\n") else text + "\n")
    sys.stdout.flush()
    if not result.passed:
        raise typer.Exit(NONE_PASSED)


# ---- the commands --------------------------------------------------------------------------------

def complete(net, tok, prompt: str, params, verify: VerifySettings) -> None:
    """`dscoder complete --verify`: the candidates continue `prompt`; prompt + completion is the code.
    Without --stop, a completion ends where HumanEval's would (one function)."""
    from dataclasses import replace

    from dscoder.verify.run import PYTHON_STOPS

    base = replace(params, stop=params.stop or PYTHON_STOPS)
    ids = tok.encode(prompt)
    result = _verify(net, tok, ids, base, replace(verify, max_tokens=params.max_new_tokens),
                     lambda text: prompt + text, prompt, chat=False)
    _finish(result, result.chosen.candidate.text)


def _chat_ids(tok, messages: list[dict]) -> list[int]:
    from dscoder.tokenizer.chat import chat_prompt

    return tok.encode(chat_prompt(tok, messages), add_bos=False)


def _chat_params(tok, max_tokens: int):
    from dscoder.infer.generate import SamplingParams
    from dscoder.tokenizer.chat import stop_token_ids

    return SamplingParams(max_new_tokens=max_tokens, stop_token_ids=tuple(stop_token_ids(tok)))


def chat(net, tok, message: Optional[str], system: Optional[str], max_tokens: int, verify: VerifySettings) -> None:
    """`dscoder chat -m MESSAGE --verify`: the candidates answer the message; each answer's code block is
    the code, the examples are read from the message."""
    from dataclasses import replace

    from dscoder.infer.assist import extract_code

    if message is None:
        raise UserError("--verify needs a one-shot question (-m/--message), not the interactive chat")
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": message}]
    result = _verify(net, tok, _chat_ids(tok, messages), _chat_params(tok, max_tokens),
                     replace(verify, max_tokens=max_tokens), lambda answer: extract_code(answer, "python"), message)
    _finish(result, result.chosen.candidate.code)


def check_task(name: str, file: Optional[str], raw: bool) -> None:
    """Refuse what `tests`/`fix --verify` cannot do, before the model loads."""
    from dscoder.infer.assist import language_of
    from dscoder.verify.run import refuse_language

    if file in (None, "-"):
        raise UserError(f"`{name} --verify` needs the code as a file (its name is the module the tests import)")
    if raw:
        raise UserError("--verify prints the chosen code; --raw does not apply")
    refuse_language(language_of(file), file)


def task(name: str, file: Optional[str], code: str, net, tok, max_tokens: int, verify: VerifySettings,
         error: str = "") -> None:
    """`dscoder fix FILE --error ... --verify` (candidates are fixed files, run against --tests or the
    file's own examples) and `dscoder tests FILE --verify` (candidates are test suites, each run
    against FILE's code: it must run and pass there)."""
    from dataclasses import replace

    from dscoder.infer.assist import extract_code, task_prompt
    from dscoder.verify.program import program, top_level_functions
    from dscoder.verify.tests import TestsError, parse

    check_task(name, file, raw=False)
    module = Path(file).stem
    ids = _chat_ids(tok, [{"role": "user", "content": task_prompt(name, code, file, error=error)}])
    settings = replace(verify, max_tokens=max_tokens)
    to_code = lambda answer: extract_code(answer, "python")  # noqa: E731
    if name == "fix":
        result = _verify(net, tok, ids, _chat_params(tok, max_tokens), settings, to_code, code, module=module)
        _finish(result, result.chosen.candidate.code)
        return
    if verify.tests or verify.model_tests:
        raise UserError("`tests --verify` runs the model's test suites against the file itself; --tests and "
                        "--model-tests do not apply")

    under_test = top_level_functions(code)

    def build(candidate):
        """A candidate suite, run on FILE's code; one that holds no check, or that defines again a
        function of the file (and so would test its own copy), is refused without a run."""
        who = f"candidate {candidate.index + 1}'s tests"
        suite = parse(candidate.code, who, module)
        if not suite.checks:
            raise TestsError(f"{who} hold no check ({suite.describe()})")
        again = sorted(top_level_functions(candidate.code) & under_test)
        if again:
            raise TestsError(f"{who} define {', '.join(again)} again: they would test their own copy, not {file}")
        return program(code, suite), suite

    result = _verify(net, tok, ids, _chat_params(tok, max_tokens), settings, to_code, code, build=build,
                     need_suite=False)
    _finish(result, result.chosen.candidate.code)
