"""Verified generation from end to end, for any caller with an engine: find the tests, sample the
candidates, run them, choose. The command line drives it on a private event loop
(`dscoder/cli/verify.py`), the server on its own (`dscoder/serve/routes_verify.py`).

    suite = await tests_for(engine, context, settings, base)      # before any candidate exists
    async for event in generate(engine, ids, base, settings, to_code, judge):
        ...  # a `select.Judged` per candidate as its run ends, then the `select.Result`

Python only: the tests are Python and run under the Python harness (`refuse_language` names
any other language; its tests would need a runner of their own).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

from dscoder.errors import UserError
from dscoder.infer.generate import SamplingParams
from dscoder.verify import candidates, examples, model_tests, select
from dscoder.verify.settings import VerifySettings
from dscoder.verify.tests import TestSuite, combine, from_file, parse, require_checks

# Where a raw Python completion ends when the caller gave no stop string: HumanEval's stops (the
# function ends where the next top-level statement begins), so a candidate is one function.
PYTHON_STOPS = ("\ndef ", "\nclass ", "\nif __name__", "\n#", "\nprint(", "\nassert ")
LANGUAGES = ("python",)


def refuse_language(language: str, what: str) -> None:
    """A UserError unless `language` (a file's language name, any case) is Python."""
    if language.lower() not in LANGUAGES:
        raise UserError(f"verification runs Python only; {what} is {language} (its tests would need a runner of "
                        "their own)")


async def tests_for(engine, context: str, settings: VerifySettings, base: SamplingParams, *,
                    tests_text: str | None = None, examples_too: bool | None = None,
                    module: str | None = None) -> TestSuite:
    """The suite the candidates must pass: a test file (`settings.tests`) or test text, else the
    examples in `context`; plus the model's own asserts with `settings.model_tests` (generated
    here, before any candidate). `examples_too` adds the examples beside given tests (the API's
    `use_doctests`). `module` is the name tests may import the code as (a file's stem)."""
    suites: list[TestSuite] = []
    if settings.tests:
        suites.append(from_file(settings.tests, module))
    if tests_text is not None:
        suites.append(parse(tests_text, "the request's tests", module))
    if examples_too or (examples_too is None and not suites):
        suites.append(examples.from_text(context))
    if settings.model_tests:
        suites.append(await model_tests.write(engine, engine.tokenizer, context, settings, base))
    suite = combine(suites) if suites else TestSuite("nothing")
    return require_checks(suite, "give a test file (--tests), write `>>>` examples in the prompt's docstring, or "
                                 "ask the model for tests (--model-tests)")


async def generate(engine, ids: list[int], base: SamplingParams, settings: VerifySettings,
                   to_code: Callable[[str], str], judge: select.Judge, stop_at_first: bool = True,
                   until: Callable[[str], bool] | None = None) -> AsyncIterator[select.Judged | select.Result]:
    """Sample `settings.n` candidates for prompt `ids` in one batch and judge each as it finishes
    (a candidate ends early once `until(text)`: `candidates.code_block_closed` for chat answers)."""
    params = candidates.params_for(settings, base)
    source = candidates.sample(engine, ids, params, to_code, until=until)
    async for event in select.verify(source, judge, settings.n, stop_at_first):
        yield event


__all__ = ["tests_for", "generate", "refuse_language", "PYTHON_STOPS"]
