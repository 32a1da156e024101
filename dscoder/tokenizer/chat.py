"""Chat prompts: the model's own jinja template, rendered the way Hugging Face renders it.

A chat model only answers well in the exact format it was tuned on, so the template that
ships with the model (tokenizer_config.json `chat_template`, or GGUF
`tokenizer.chat_template`) is rendered with the same jinja2 settings transformers uses
(sandboxed, `trim_blocks`, `lstrip_blocks`, a `raise_exception` helper).  DeepSeek-Coder V1
instruct and V2 formats are built in as fallbacks for checkpoints that lack a template.
The end of an assistant turn is `<|EOT|>` for V1 instruct models and EOS for V2.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, Protocol

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment

from dscoder.errors import UserError


class _Tokenizer(Protocol):
    bos_token: str | None
    eos_token: str | None
    eos_id: int | None
    chat_template: str | None

    def token_to_id(self, token: str) -> int | None: ...


class ChatTemplateError(UserError):
    """A conversation or template that cannot be rendered; the message says which part."""


ROLES = ("system", "user", "assistant")

V1_DEFAULT_SYSTEM = (
    "You are an AI programming assistant, utilizing the Deepseek Coder model, developed by Deepseek Company, "
    "and you only answer questions related to computer science. For politically sensitive questions, security "
    "and privacy issues, and other non-computer science questions, you will refuse to answer")

# DeepSeek-Coder V1 instruct: Alpaca-style turns, <|EOT|> after each answer, and a default
# system prompt when the conversation brings none.
# Self-contained (the default system prompt is inside), so transformers' apply_chat_template
# renders it the same when we save it into a tokenizer_config.json.
DEEPSEEK_CODER_V1_TEMPLATE = (
    "{{- bos_token -}}"
    "{%- if messages | selectattr('role', 'equalto', 'system') | list | length == 0 -%}"
    "{{- '" + V1_DEFAULT_SYSTEM + "\\n' -}}"
    "{%- endif -%}"
    "{%- for m in messages -%}"
    "{%- if m.role == 'system' -%}{{- m.content -}}"
    "{%- elif m.role == 'user' -%}{{- '### Instruction:\\n' ~ m.content ~ '\\n' -}}"
    "{%- else -%}{{- '### Response:\\n' ~ m.content ~ '\\n<|EOT|>\\n' -}}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '### Response:\\n' -}}{%- endif -%}"
)

# DeepSeek-V2 / Coder-V2 chat: "User: ...\n\nAssistant: ...<eos>".
DEEPSEEK_CODER_V2_TEMPLATE = (
    "{{- bos_token -}}"
    "{%- for m in messages -%}"
    "{%- if m.role == 'system' -%}{{- m.content ~ '\\n\\n' -}}"
    "{%- elif m.role == 'user' -%}{{- 'User: ' ~ m.content ~ '\\n\\n' -}}"
    "{%- else -%}{{- 'Assistant: ' ~ m.content ~ eos_token -}}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- 'Assistant:' -}}{%- endif -%}"
)


def _raise(message: str) -> None:
    raise ChatTemplateError(f"the chat template refused the conversation: {message}")


@lru_cache(maxsize=32)
def _compile(template: str) -> jinja2.Template:
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    env.globals["raise_exception"] = _raise
    try:
        return env.from_string(template)
    except jinja2.TemplateSyntaxError as e:
        raise ChatTemplateError(f"the chat template does not compile: line {e.lineno}: {e.message}") from None


def check_messages(messages: list[dict[str, Any]]) -> None:
    if not isinstance(messages, list) or not messages:
        raise ChatTemplateError("messages must be a non-empty list of {'role', 'content'} objects")
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or "role" not in m or "content" not in m:
            raise ChatTemplateError(f"message {i} must be an object with 'role' and 'content', got {m!r}")
        if m["role"] not in ROLES:
            raise ChatTemplateError(f"message {i} has unknown role {m['role']!r} (expected one of {', '.join(ROLES)})")
        if not isinstance(m["content"], str):
            raise ChatTemplateError(f"message {i} content must be a string, got {type(m['content']).__name__}")


def render_chat(messages: list[dict[str, Any]], template: str, bos_token: str = "", eos_token: str = "",
                add_generation_prompt: bool = True, **variables: Any) -> str:
    check_messages(messages)
    try:
        return _compile(template).render(messages=messages, bos_token=bos_token, eos_token=eos_token,
                                         add_generation_prompt=add_generation_prompt, **variables)
    except ChatTemplateError:
        raise
    except jinja2.TemplateError as e:
        raise ChatTemplateError(f"the chat template failed while rendering: {type(e).__name__}: {e}") from None


def template_for(tokenizer: _Tokenizer) -> str:
    """The model's own template, else the built-in DeepSeek-Coder one its vocabulary implies."""
    if tokenizer.chat_template:
        return tokenizer.chat_template
    if tokenizer.bos_token == "<｜begin▁of▁sentence｜>":  # the DeepSeek vocabularies; V1 has <|EOT|> at 32021
        return DEEPSEEK_CODER_V1_TEMPLATE if tokenizer.token_to_id("<|EOT|>") == 32021 else DEEPSEEK_CODER_V2_TEMPLATE
    raise ChatTemplateError("the tokenizer has no chat_template and is not a DeepSeek-Coder vocabulary; "
                            "pass a chat model or a template")


def chat_prompt(tokenizer: _Tokenizer, messages: list[dict[str, Any]], add_generation_prompt: bool = True) -> str:
    return render_chat(messages, template_for(tokenizer), bos_token=tokenizer.bos_token or "",
                       eos_token=tokenizer.eos_token or "", add_generation_prompt=add_generation_prompt)


def stop_token_ids(tokenizer: _Tokenizer) -> list[int]:
    """Ids that end an assistant turn: EOS, plus `<|EOT|>` for V1 instruct vocabularies."""
    ids = [tokenizer.eos_id] if tokenizer.eos_id is not None else []
    eot = tokenizer.token_to_id("<|EOT|>")
    if eot is not None and eot not in ids:
        ids.append(eot)
    return ids
