"""What the verification tests share (imported by each test module; a conftest.py here would shadow
the suite's own `conftest`): the real sandbox pool, a tiny real model behind a real
serving engine, and a helper that judges given candidate texts (no model) in the sandbox."""

from __future__ import annotations

import asyncio

import pytest

from conftest import requires
from dscoder.execute import sandbox
from dscoder.execute.programs import Executor
from dscoder.verify import select
from dscoder.verify.candidates import Candidate
from dscoder.verify.tests import TestSuite


@pytest.fixture(scope="session")
def pool():
    """Two sandbox workers; the bubblewrap sandbox is required (its absence is a set-up fault)."""
    iso = sandbox.isolation()
    if iso.method != "bwrap":
        requires("sandbox", f"bubblewrap is not usable here ({iso.warning})")
    with Executor(2, 10.0) as executor:
        yield executor


def judge_codes(pool: Executor, codes: list[str], suite: TestSuite, timeout: float = 10.0) -> list[select.Judged]:
    """Each code judged against `suite` in the sandbox, in candidate order."""
    judge = select.Judge(pool, suite, timeout)
    futures = [judge.submit(Candidate(i, code, code, "stop", 0, 0.0)) for i, code in enumerate(codes)]
    return [f.result() for f in futures]


def drive(agen) -> list:
    """Every event of an async generator, on a fresh event loop (as the command line does)."""
    async def all_events():
        return [event async for event in agen]

    return asyncio.run(all_events())


@pytest.fixture(scope="session")
def tiny(fim_model_dir):
    """A tiny random model over DeepSeek-Coder's vocabulary (the suite's FIM fixture), loaded."""
    from dscoder.hub import load_model
    from dscoder.tokenizer.tokenizer import Tokenizer

    return load_model(fim_model_dir), Tokenizer.load(fim_model_dir)


@pytest.fixture
def engine(tiny):
    from dscoder.serve.engine import Engine, EngineConfig

    model, tok = tiny
    with Engine(model, tok, EngineConfig(num_blocks=256, block_size=16, max_running=16, max_waiting=64)) as e:
        yield e
