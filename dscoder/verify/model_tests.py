"""Tests the model writes itself, before and apart from the candidates (CodeT, Chen et al. 2022).

When a prompt comes with no tests, the model can be asked for some: CodeT's prompt, the code
under test followed by `# check the correctness of NAME` and `assert `, continued by the model
(the completion form, which base and chat models both continue). Several generations (the
first greedy, the rest sampled) give the asserts; each is kept if it parses on its own, calls
one of the functions named, and was not seen before, up to `MAX_ASSERTS`.

Kept apart: this generation runs first, from a prompt that holds no candidate, and the
candidates' prompts never hold these asserts; the asserts are tests only, never merged into
a candidate's code. A model's asserts can be wrong, so a candidate that fails some of them is
still ranked by how many it passes (`select.choose`), CodeT's dual agreement reduced to its
simplest form.
"""

from __future__ import annotations

import re
from dataclasses import replace

from dscoder.infer.generate import SamplingParams
from dscoder.verify import candidates
from dscoder.verify.examples import functions
from dscoder.verify.settings import VerifySettings
from dscoder.verify.tests import TestSuite, TestsError, from_asserts

MAX_ASSERTS = 10
MAX_TOKENS = 192
ORIGIN = "model-written tests"


def prompt(code: str, names: list[str]) -> str:
    """CodeT's test-generation prompt for the functions `names` defined in `code`."""
    body = code.rstrip()
    if body.endswith(('"""', "'''")):  # a stub: signature and docstring only
        body += "\n    pass"
    return f"{body}\n\n\n# check the correctness of {', '.join(names)}\nassert "


def subjects(code: str) -> list[str]:
    """The functions to test: those `code` defines (the last three), else a UserError."""
    names = functions(code)
    if not names:
        raise TestsError("--model-tests needs the function to test in the prompt (a `def name(...)` line): "
                         "the model writes asserts calling it")
    return list(dict.fromkeys(names))[-3:]


def asserts(texts: list[str], names: list[str]) -> list[str]:
    """The distinct asserts of the generations that call one of `names`, in order."""
    found: list[str] = []
    call = re.compile(r"\b(" + "|".join(map(re.escape, names)) + r")\s*\(")
    for text in texts:
        for line in ("assert " + text).splitlines():
            line = line.strip()
            if line.startswith("assert ") and call.search(line) and line not in found:
                found.append(line)
    return found[:MAX_ASSERTS]


async def write(engine, tokenizer, code: str, settings: VerifySettings, base: SamplingParams) -> TestSuite:
    """Ask the model for asserts on the functions of `code`; the suite of those that parse."""
    names = subjects(code)
    ids = tokenizer.encode(prompt(code, names))
    eos = (tokenizer.eos_id,) if tokenizer.eos_id is not None else ()
    plain = replace(base, max_new_tokens=MAX_TOKENS, stop=("\n\n\n", "\ndef ", "\nclass ", "\nif __name__"),
                    stop_token_ids=eos)
    params = candidates.params_for(replace(settings, max_tokens=MAX_TOKENS), plain, settings.model_test_samples)
    written = await candidates.collect(engine, ids, params, to_code=lambda text: text)
    found = asserts([c.text for c in written], names)
    suite = from_asserts(found, ORIGIN, subjects=set(names))
    if not suite.checks:
        raise TestsError(f"the model wrote no usable assert for {', '.join(names)} in {len(written)} tries; "
                         "give tests with --tests or write examples in the docstring")
    return suite


__all__ = ["write", "prompt", "asserts", "subjects", "MAX_ASSERTS"]
