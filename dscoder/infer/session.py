"""A conversation with a chat model: history in, streamed answer out, in the model's own format.

Each turn renders the whole history with the model's chat template (so the prompt is
exactly what the model was tuned on), generates until the model's end-of-turn token, and
appends the answer to the history.  The template already writes BOS where the model wants
one, so the rendered prompt is encoded without adding another.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

from dscoder.tokenizer.chat import chat_prompt, stop_token_ids
from dscoder.infer.generate import SamplingParams, stream
from dscoder.model.transformer import Transformer
from dscoder.tokenizer.tokenizer import Tokenizer


class ChatSession:
    def __init__(self, model: Transformer, tokenizer: Tokenizer, params: SamplingParams = SamplingParams(),
                 system: str | None = None):
        self.model, self.tokenizer, self.system = model, tokenizer, system
        self.params = replace(params, stop_token_ids=tuple(stop_token_ids(tokenizer)) + params.stop_token_ids)
        self.messages: list[dict[str, str]] = []
        self.reset()

    def reset(self) -> None:
        self.messages = [{"role": "system", "content": self.system}] if self.system else []

    def send(self, text: str) -> Iterator[str]:
        """Stream the answer to `text`; the history holds it once the iterator is exhausted."""
        self.messages.append({"role": "user", "content": text})
        ids = self.tokenizer.encode(chat_prompt(self.tokenizer, self.messages), add_bos=False)
        answer = ""
        try:
            for delta in stream(self.model, self.tokenizer, ids, self.params):
                answer += delta.text
                yield delta.text
        except BaseException:
            self.messages.pop()  # an interrupted or failed turn leaves no half-answered question behind
            raise
        self.messages.append({"role": "assistant", "content": answer.strip()})

    def ask(self, text: str) -> str:
        return "".join(self.send(text))
