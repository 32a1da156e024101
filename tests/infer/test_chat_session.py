"""Chat with the embedded SmolLM2-135M-Instruct: its own template, its end-of-turn token, history."""

from __future__ import annotations

import subprocess
import sys

import pytest

from dscoder.infer.session import ChatSession
from dscoder.infer.generate import SamplingParams
from dscoder.tokenizer.tokenizer import Tokenizer


@pytest.fixture(scope="module")
def session(smollm2_gguf) -> ChatSession:
    from dscoder.hub import load_model

    return ChatSession(load_model(smollm2_gguf), Tokenizer.load(smollm2_gguf), SamplingParams(max_new_tokens=60))


def test_answer_ends_at_the_end_of_turn_token_and_joins_the_history(session):
    session.reset()
    answer = session.ask("Write a Python function that reverses a string.")
    assert "[::-1]" in answer and "<|im_end|>" not in answer
    assert session.tokenizer.eos_id in session.params.stop_token_ids  # <|im_end|> for this template
    assert [m["role"] for m in session.messages] == ["user", "assistant"]
    assert session.messages[1]["content"] == answer.strip()
    from dscoder.tokenizer.chat import chat_prompt
    session.ask("Now in one line of JavaScript.")
    assert [m["role"] for m in session.messages] == ["user", "assistant", "user", "assistant"]
    assert answer.strip() in chat_prompt(session.tokenizer, session.messages[:3])  # turn 2 saw turn 1
    session.reset()
    assert session.messages == []


def test_system_prompt_survives_reset(smollm2_gguf, session):
    s = ChatSession(session.model, session.tokenizer, SamplingParams(max_new_tokens=8), system="Answer in French.")
    s.ask("Hello")
    s.reset()
    assert s.messages == [{"role": "system", "content": "Answer in French."}]


def test_interactive_cli_keeps_history_and_resets(smollm2_gguf):
    script = "My name is Ada.\nWhat is my name?\n/reset\n/exit\nnever read\n"
    out = subprocess.run([sys.executable, "-m", "dscoder.cli.app", "chat", "-n", "30"], input=script,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    answers = [line for line in out.stdout.split("\n") if line]
    assert len(answers) == 2  # one line each (30 tokens, no blank lines); nothing after /exit
    assert "history cleared" in out.stderr
