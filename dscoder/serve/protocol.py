"""Request bodies of the HTTP API: OpenAI's completions and chat, and llama.cpp's /infill.

Fields and defaults follow the APIs they copy (so their clients work unchanged); ranges are
checked here so a bad value is a 400 naming the field.  Unknown fields are ignored, as
OpenAI's server does.  Extensions beyond OpenAI (top_k, min_p, repetition_penalty) are the
ones vLLM also accepts.

Every text field is `Text`: JSON may escape a lone UTF-16 surrogate ("\\ud800"), which Python
keeps in the string although it is no Unicode text; the tokenizer (Rust) cannot take it, nor can
a response that echoes it be encoded, so it is refused here as a 400 naming the field.
"""

from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator
from pydantic_core import PydanticCustomError

from dscoder.verify.settings import MAX_SAMPLES, VerifySettings

MAX_VERIFY_TESTS = 64 * 1024  # characters of tests in a `verify` object


UNICODE_ERROR = "unicode"  # the error type, which errors.py prefers among a union's


def _unicode(text: str) -> str:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise PydanticCustomError(UNICODE_ERROR, "contains a lone surrogate ({code}) at character {at}, which is not "
                                  "Unicode text", {"code": f"U+{ord(text[e.start]):04X}", "at": e.start}) from None
    return text


Text = Annotated[str, AfterValidator(_unicode)]
Stop = Union[Text, list[Text], None]


class StreamOptions(BaseModel):
    include_usage: bool = False


class VerifyOptions(BaseModel):
    """dscoder's extension (`verify` on /v1/completions and /v1/chat/completions): sample `n` candidates
    (the first greedy), run each in the sandbox against the tests, answer with the first that passes (or
    the one passing most checks) and a `verification` object. Strict types: "8" is not a number here.
    Defaults are `dscoder.verify.settings.VerifySettings`'s, the command line's."""

    model_config = ConfigDict(extra="forbid", strict=True)

    tests: Text | None = Field(None, max_length=MAX_VERIFY_TESTS)  # Python: asserts, test_* functions, TestCases
    use_doctests: bool = True  # also the examples in the prompt's docstrings (`>>> f(1)` / `f(1) == 2`)
    model_tests: bool = False  # also asserts the model writes first, apart from the candidates
    n: int = Field(VerifySettings.n, ge=1, le=MAX_SAMPLES)
    timeout: float = Field(VerifySettings.timeout, gt=0, le=60)  # seconds per candidate's run
    temperature: float = Field(VerifySettings.temperature, ge=0, le=2)  # of candidates 1..n-1
    top_p: float = Field(VerifySettings.top_p, gt=0, le=1)
    seed: int = Field(VerifySettings.seed, ge=0, le=2**31 - 1)
    stop_at_first: bool = True  # stop once the choice cannot change (False: run every candidate)


class _Request(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: Text
    max_tokens: int | None = Field(None, ge=1)
    temperature: float = Field(1.0, ge=0, le=2)
    top_p: float = Field(1.0, gt=0, le=1)
    top_k: int = Field(0, ge=0)
    min_p: float = Field(0.0, ge=0, le=1)
    repetition_penalty: float = Field(1.0, gt=0, le=10)
    frequency_penalty: float = Field(0.0, ge=-2, le=2)
    presence_penalty: float = Field(0.0, ge=-2, le=2)
    n: int = Field(1, ge=1, le=16)
    stop: Stop = None
    stream: bool = False
    seed: int | None = Field(None, ge=0, le=2**63 - 1)
    user: Text | None = None
    stream_options: StreamOptions | None = None
    verify: VerifyOptions | None = None  # dscoder's extension: execution-verified generation

    @field_validator("stop")
    @classmethod
    def _stops(cls, v: Stop) -> Stop:
        stops = [v] if isinstance(v, str) else (v or [])
        if len(stops) > 16:
            raise ValueError("at most 16 stop strings")
        if any(not s for s in stops):
            raise ValueError("stop strings must not be empty")
        return v


Prompt = Union[Text, Annotated[list[Text], Field(min_length=1)], Annotated[list[int], Field(min_length=1)],
               Annotated[list[Annotated[list[int], Field(min_length=1)]], Field(min_length=1)]]


class RepoRef(BaseModel):
    """dscoder's extension: read context from the repository the server was started with (--repo)."""

    model_config = ConfigDict(extra="forbid")

    file: Text | None = None  # the cursor's file, relative to the repository's root
    max_tokens: int | None = Field(None, ge=0)  # most tokens of repository context (default: what the window leaves)


class CompletionRequest(_Request):
    prompt: Prompt
    max_tokens: int | None = Field(16, ge=1)  # OpenAI's default for completions
    suffix: Text | None = None  # fill-in-the-middle: the model's own FIM tokens
    repo: RepoRef | None = None  # the repository's context before the prompt (dscoder serve --repo)
    echo: bool = False
    logprobs: int | None = Field(None, ge=0, le=20)

    def prompts(self) -> list[str | list[int]]:
        p = self.prompt
        if isinstance(p, str):
            return [p]
        if p and isinstance(p[0], int):
            return [p]
        return list(p)


class TextPart(BaseModel):
    type: Literal["text"]
    text: Text


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "user", "assistant", "developer", "tool"]
    content: Text | list[TextPart] | None = None

    def text(self) -> str:
        if isinstance(self.content, list):
            return "".join(part.text for part in self.content)
        return self.content or ""


class ChatRequest(_Request):
    messages: Annotated[list[ChatMessage], Field(min_length=1)]
    max_completion_tokens: int | None = Field(None, ge=1)
    logprobs: bool = False
    top_logprobs: int | None = Field(None, ge=0, le=20)


class InputExtra(BaseModel):
    filename: Text = ""
    text: Text = ""


class InfillRequest(BaseModel):
    """llama.cpp server's /infill (the fields llama.vscode and similar editor plugins send)."""

    model_config = ConfigDict(extra="ignore")

    input_prefix: Text = ""
    input_suffix: Text = ""
    input_extra: list[InputExtra] = []
    repo: RepoRef | None = None  # repository context (dscoder serve --repo); by default when input_extra is empty
    prompt: Text = ""  # text placed after the prefix, before the middle (llama.cpp: the current line's start)
    n_predict: int = Field(-1, ge=-1)  # -1: until the model ends the middle or the context is full
    n_indent: int = Field(0, ge=0)
    t_max_predict_ms: int = Field(0, ge=0)
    cache_prompt: bool = True  # prefix caching is always on; accepted for compatibility
    stream: bool = False
    temperature: float = Field(0.0, ge=0, le=2)  # editors want the likeliest middle
    top_p: float = Field(1.0, gt=0, le=1)
    top_k: int = Field(0, ge=0)
    min_p: float = Field(0.0, ge=0, le=1)
    seed: int | None = Field(None, ge=-1, le=2**63 - 1)
    stop: list[Text] = []
    model: Text | None = None


class TokenizeRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    content: Text | None = None  # llama.cpp's name
    prompt: Text | None = None  # vLLM's name
    add_special: bool = False
    model: Text | None = None


class DetokenizeRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    tokens: list[int]
    model: Text | None = None
