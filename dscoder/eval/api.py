"""The model under test behind an OpenAI-compatible HTTP server (`dscoder eval ... --api URL`).

Each sample is asked what the local path asks (`tasks/requests.py::ask`), in the API's words:

- base form: POST /v1/completions with the raw prompt (HumanEval's trailing newline stripped,
  and "\\n" + output rejoined, as DeepSeek's harness and the local path do), the benchmark's
  stop strings (the first MOST_STOPS: OpenAI and TGI take no more), max_tokens, temperature,
  top_p and seed + sample index. Every stop string is applied again to the text that comes
  back, so a server that stops late, or was sent fewer stop strings, still yields the text the
  local engine would (its token count may be higher);
- instruct form: POST /v1/chat/completions with `problem.instruction` as the one user message;
  the server applies its model's chat template and end-of-turn tokens;
- fill-in-the-middle: there is no OpenAI field for it beyond the legacy `suffix` of
  /v1/completions (prompt = prefix, suffix = suffix), which `dscoder serve` and vLLM honour
  with the model's own FIM tokens; `--api-fim infill` asks llama.cpp server's /infill
  (input_prefix, input_suffix) instead. llama-cpp-python 0.3's `suffix` builds its FIM prompt
  from placeholder token ids (a TODO in its source), so infilling through it is not measured.
  A server without either answers 4xx, which is each sample's error.

Requests run in `config.concurrency` threads (plain `http.client`: no dependency, no proxy),
one connection each. Every request has a deadline of `config.api_timeout` seconds in all (a
watchdog shuts the socket down, so a server that trickles bytes cannot hold a sample longer).
429, 503 and a refused or dropped connection are retried RETRIES times, after Retry-After or a
doubling pause; anything else wrong with the answer (another HTTP status, a body that is not
JSON or is over MAX_BODY_BYTES, a field of the wrong type, text that is not Unicode) makes
that sample an error row (status "error", stage "generate") with a message naming what was
wrong, and the run goes on. The server's body is hostile input: it is only parsed as JSON,
and text from it is never evaluated here (the sandbox runs the programs).

`resolve_model` asks /v1/models before anything runs, so a server that is not there, refuses the
key or does not serve the model stops the run with one clear message instead of a row per sample.
"""

from __future__ import annotations

import http.client
import json
import os
import queue
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import urlsplit

from dscoder.eval.config import EvalConfig, EvalError
from dscoder.eval.runner import Generated
from dscoder.tasks.problem import Problem

MAX_BODY_BYTES = 8 << 20  # an answer of more bytes is refused (a completion of thousands of tokens is kilobytes)
RETRIES = 3  # more attempts after a 429, a 503 or a refused or dropped connection
RETRY_PAUSE = 0.5  # seconds before the first retry without Retry-After; doubled each time
RETRY_AFTER_MOST = 30.0  # the longest Retry-After obeyed
MODELS_TIMEOUT = 30.0  # the most the /v1/models check waits (at most --api-timeout)
# OpenAI (and TGI by default) take at most 4 stop strings; the rest are applied to the answer only,
# which gives the same text (the server may just generate a little past them).
MOST_STOPS = 4
# Request fields the harness sets from its own settings; --api-params may not replace them.
RESERVED = ("model", "prompt", "suffix", "messages", "input_prefix", "input_suffix", "max_tokens", "n_predict",
            "temperature", "top_p", "seed", "stop", "stream", "n", "echo", "logprobs")


# ---------------------------------------------------------------------------- settings
def base_url(url: str) -> str:
    """The server's root, without a trailing / or /v1 (the routes are added to it)."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise EvalError(f"--api must be an http:// or https:// URL with a host, got {url!r}")
    if parts.query or parts.fragment:
        raise EvalError(f"--api is the server's address, without ?query or #fragment: {url!r}")
    try:
        parts.port  # noqa: B018 (raises for a port that is not a number)
    except ValueError:
        raise EvalError(f"--api has a port that is not a number: {url!r}") from None
    path = parts.path.rstrip("/")
    if path.endswith("/v1"):
        path = path[:-3]
    return f"{parts.scheme}://{parts.netloc}{path}"


def extra_fields(params: str | None) -> dict:
    """--api-params as a dict: a JSON object whose keys are not among the fields the harness sets."""
    if params is None:
        return {}
    try:
        extra = json.loads(params)
    except ValueError as e:
        raise EvalError(f"--api-params must be a JSON object: {e}") from None
    if not isinstance(extra, dict):
        raise EvalError(f"--api-params must be a JSON object, got {type(extra).__name__}")
    taken = sorted(set(extra) & set(RESERVED))
    if taken:
        raise EvalError(f"--api-params cannot set {', '.join(taken)}: the evaluation's own settings do "
                        "(--temperature, --top-p, --max-tokens, --seed, --api-model)")
    return extra


def api_key(config: EvalConfig) -> str | None:
    return config.api_key or os.environ.get("DSCODER_API_KEY") or os.environ.get("OPENAI_API_KEY") or None


# ---------------------------------------------------------------------------- what is asked
@dataclass(frozen=True)
class Call:
    """One sample's request, and how its answer becomes the sample's completion."""

    path: str
    body: dict
    prompt: str  # recorded as the sample's prompt
    kind: str  # "text" (choices[0].text), "chat" (choices[0].message.content) or "infill" (content)
    stops: tuple[str, ...] = ()  # applied again to the answer's text
    rejoin: str = ""  # written before it (DeepSeek's HumanEval strips the prompt's last newline)


def call_for(problem: Problem, config: EvalConfig, model: str, index: int) -> Call:
    """Sample `index` of `problem` as `tasks.requests.ask` asks it locally, for an OpenAI-compatible server."""
    sampling = {"max_tokens": config.max_new_tokens or problem.max_new_tokens, "temperature": config.temperature,
                "top_p": config.top_p if config.temperature > 0 else 1.0, "seed": config.seed + index}
    extra = extra_fields(config.api_params)
    if problem.fim is not None:
        prefix, suffix = problem.fim
        if config.api_fim == "infill":
            body = {"input_prefix": prefix, "input_suffix": suffix, "n_predict": sampling.pop("max_tokens"),
                    **sampling, "stream": False}
            return Call("/infill", {**extra, **body, "model": model}, prefix, "infill")
        return Call("/v1/completions", {**extra, "model": model, "prompt": prefix, "suffix": suffix, **sampling},
                    prefix, "text")
    if config.form == "instruct":
        messages = [{"role": "user", "content": problem.instruction}]
        return Call("/v1/chat/completions", {**extra, "model": model, "messages": messages, **sampling},
                    problem.instruction or "", "chat")
    # As ask(): the base form continues the raw prompt, HumanEval's without its last newline.
    prompt = problem.prompt.rstrip() if problem.strip_prompt else problem.prompt
    body = {**extra, "model": model, "prompt": prompt, **sampling}
    if problem.stops:
        body["stop"] = list(problem.stops[:MOST_STOPS])
    return Call("/v1/completions", body, prompt, "text", problem.stops, "\n" if problem.strip_prompt else "")


def cut_at_stops(text: str, stops: tuple[str, ...]) -> str:
    """`text` before the earliest stop string (the local engine never returns one). The rule of
    `infer.generate.first_stop`, restated here because importing that module loads torch, which an
    evaluation against a server otherwise never needs."""
    hits = [i for i in (text.find(s) for s in stops) if i >= 0]
    return text[:min(hits)] if hits else text


# ---------------------------------------------------------------------------- reading an answer
class Failed(Exception):
    """A request that gave no completion; `retry` when trying again may help (429, 503, a dropped connection)."""

    def __init__(self, message: str, retry: bool = False, after: float | None = None, status: int | None = None,
                 refused: bool = False):
        super().__init__(message)
        self.retry, self.after, self.status, self.refused = retry, after, status, refused


def _printable(text: str, most: int = 300) -> str:
    """A server's words for an error message: one line of printable characters, at most `most`."""
    text = "".join(c if c.isprintable() else " " for c in text[:most])
    return " ".join(text.split())


def _snippet(data: bytes) -> str:
    return _printable(data[:600].decode("utf-8", "replace")) or "(empty)"


def _error_message(data: bytes) -> str:
    """The message of an error answer: OpenAI's {"error": {"message"}} (or llama.cpp's), else the body's start."""
    try:
        body = json.loads(data)
    except (ValueError, RecursionError):
        return _snippet(data)
    error = body.get("error") if isinstance(body, dict) else None
    message = error.get("message") if isinstance(error, dict) else error if isinstance(error, str) else None
    return _printable(message) if isinstance(message, str) and message.strip() else _snippet(data)


def _field(value, *path: str | int):
    """value[path[0]][path[1]]...; Failed naming the first step that is missing or of the wrong shape."""
    where = "the answer"
    for step in path:
        if isinstance(step, int):
            if not isinstance(value, list) or len(value) <= step:
                raise Failed(f"{where} is not a list with an item {step} (got {_shape(value)})")
            value, where = value[step], f"{where}[{step}]"
        else:
            if not isinstance(value, dict) or step not in value:
                raise Failed(f"{where} has no field {step!r} (got {_shape(value)})")
            value, where = value[step], f"{where}.{step}" if where != "the answer" else step
    return value, where


def _shape(value) -> str:
    if isinstance(value, dict):
        return "an object with " + (", ".join(repr(_printable(str(k), 40)) for k in list(value)[:5]) or "no fields")
    return type(value).__name__


def read_answer(kind: str, data: bytes) -> tuple[str, int]:
    """(text, completion tokens) of a 2xx answer; Failed naming what is wrong with it."""
    try:
        body = json.loads(data)
    except RecursionError:
        raise Failed("the answer is not JSON (nested too deeply)") from None
    except ValueError as e:
        raise Failed(f"the answer is not JSON ({_printable(str(e), 100)}): {_snippet(data)}") from None
    path = {"text": ("choices", 0, "text"), "chat": ("choices", 0, "message", "content"),
            "infill": ("content",)}[kind]
    text, where = _field(body, *path)
    if not isinstance(text, str):
        raise Failed(f"{where} is not a string (got {_shape(text)})")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:  # JSON may escape a lone surrogate: no program can be written from it
        raise Failed(f"{where} is not Unicode text (a lone surrogate at character {e.start})") from None
    tokens = body.get("tokens_predicted") if kind == "infill" else (
        body["usage"].get("completion_tokens") if isinstance(body.get("usage"), dict) else body.get("usage"))
    name = "tokens_predicted" if kind == "infill" else "usage.completion_tokens"
    if tokens is None:
        return text, 0
    if isinstance(tokens, bool) or not isinstance(tokens, int) or tokens < 0:
        raise Failed(f"{name} is not a count of tokens (got {_printable(repr(tokens), 60)})")
    return text, tokens


# ---------------------------------------------------------------------------- HTTP
class Client:
    """Requests to one server: a connection each, a deadline each, bounded retries; `abort` ends those in flight."""

    def __init__(self, url: str, key: str | None, timeout: float, retry_refused: bool = True):
        parts = urlsplit(base_url(url))
        self.retry_refused = retry_refused
        self.url, self.timeout = base_url(url), timeout
        self.https, self.host, self.port, self.prefix = parts.scheme == "https", parts.hostname, parts.port, parts.path
        self.headers = {"Content-Type": "application/json", "Accept": "application/json", "Connection": "close",
                        "User-Agent": "dscoder-eval"}
        if key:
            self.headers["Authorization"] = f"Bearer {key}"
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self.aborted = False

    def request(self, method: str, path: str, body: dict | None = None, timeout: float | None = None) -> bytes:
        """The body of a 2xx answer, after retrying what may pass; Failed otherwise."""
        attempt = 0
        while True:
            try:
                return self._once(method, path, body, timeout or self.timeout)
            except Failed as e:
                if e.retry and attempt < RETRIES and not self.aborted:
                    pause = e.after if e.after is not None else RETRY_PAUSE * 2 ** attempt
                    time.sleep(min(max(pause, 0.0), RETRY_AFTER_MOST))
                    attempt += 1
                    continue
                if e.retry and attempt:
                    e.args = (f"{e} (after {attempt} retries)",)
                raise

    def _once(self, method: str, path: str, body: dict | None, timeout: float) -> bytes:
        where = f"{method} {self.url}{path}"
        cls = http.client.HTTPSConnection if self.https else http.client.HTTPConnection
        conn = cls(self.host, self.port, timeout=timeout)
        expired = threading.Event()
        sock = None

        def expire() -> None:
            expired.set()
            self._shut(sock)

        watchdog = threading.Timer(timeout, expire)
        watchdog.daemon = True
        watchdog.start()
        try:
            conn.connect()
            sock = conn.sock  # kept: after the answer's head http.client hands the socket to the response
            with self._lock:
                if self.aborted:
                    raise Failed("the evaluation stopped")
                self._sockets.add(sock)
            if expired.is_set():
                raise TimeoutError
            payload = json.dumps(body).encode() if body is not None else None
            conn.request(method, self.prefix + path, body=payload, headers=self.headers)
            answer = conn.getresponse()
            data = answer.read(MAX_BODY_BYTES + 1)
            status, retry_after = answer.status, answer.getheader("Retry-After")
        except Failed:
            raise
        except (TimeoutError, socket.timeout):
            raise Failed(f"no answer from {where} within --api-timeout {timeout:g} s") from None
        except (ConnectionRefusedError, ConnectionResetError, ConnectionAbortedError, BrokenPipeError) as e:
            if expired.is_set():
                raise Failed(f"no answer from {where} within --api-timeout {timeout:g} s") from None
            raise Failed(f"{where}: the connection failed ({_printable(str(e) or type(e).__name__, 200)})",
                         retry=not self.aborted and (self.retry_refused or not isinstance(e, ConnectionRefusedError)),
                         refused=isinstance(e, ConnectionRefusedError)) from None
        except (OSError, http.client.HTTPException, ValueError) as e:
            if expired.is_set():
                raise Failed(f"no answer from {where} within --api-timeout {timeout:g} s") from None
            raise Failed(f"{where}: not a valid HTTP answer ({type(e).__name__}: "
                         f"{_printable(str(e), 200)})") from None
        finally:
            watchdog.cancel()
            with self._lock:
                self._sockets.discard(sock)
            conn.close()
            if sock is not None:
                sock.close()
        if expired.is_set():  # the deadline passed while a body without a length was read to its end
            raise Failed(f"no answer from {where} within --api-timeout {timeout:g} s")
        if len(data) > MAX_BODY_BYTES:
            raise Failed(f"the answer from {where} is over {MAX_BODY_BYTES >> 20} MiB")
        if not 200 <= status < 300:
            after = None
            try:
                after = float(retry_after) if retry_after is not None else None
            except ValueError:
                pass
            raise Failed(f"HTTP {status} from {where}: {_error_message(data)}", retry=status in (429, 503),
                         after=after, status=status)
        return data

    @staticmethod
    def _shut(sock: socket.socket | None) -> None:
        """Wake a thread blocked reading `sock`: shutdown ends the read at once (close alone does not)."""
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def abort(self) -> None:
        """End every request in flight and refuse new ones (the evaluation stopped)."""
        with self._lock:
            self.aborted = True
            for sock in list(self._sockets):
                self._shut(sock)


# ---------------------------------------------------------------------------- the model
def resolve_model(config: EvalConfig) -> str:
    """The `model` to send: `config.api_model`, checked against the server's /v1/models where it
    lists any, or the one model it lists. EvalError for a server that is not there, refuses the
    key, does not serve the model, or leaves the model to guess."""
    url = base_url(config.api)
    # A refused connection is not retried here: nothing listens, and the user hears so at once.
    client = Client(url, api_key(config), min(config.api_timeout, MODELS_TIMEOUT), retry_refused=False)
    try:
        data = client.request("GET", "/v1/models")
        listed = _model_names(data)
        why = "it listed none" if listed is not None else f"its answer is not a list of models: {_snippet(data)}"
        listed = listed or []
    except Failed as e:
        text = str(e)
        if e.refused:
            raise EvalError(f"nothing is listening at {url} (connection refused): start the server, or check "
                            "--api") from None
        if e.status in (401, 403):
            hint = ("give the key with --api-key, $DSCODER_API_KEY or $OPENAI_API_KEY" if api_key(config) is None
                    else "the key given (--api-key, $DSCODER_API_KEY or $OPENAI_API_KEY) is not one it accepts")
            raise EvalError(f"{url} refused the request for want of an API key: {text}; {hint}") from None
        if e.status is None or e.status == 503:  # no server, or one not ready: no sample could be asked
            raise EvalError(f"cannot evaluate through {url}: {text}") from None
        listed, why = [], text
    if config.api_model:
        if listed and config.api_model not in listed:
            raise EvalError(f"{url} does not serve --api-model {config.api_model!r}; it serves "
                            f"{', '.join(repr(n) for n in listed[:10])}")
        return config.api_model
    if len(listed) == 1:
        return listed[0]
    if listed:
        raise EvalError(f"{url} serves several models; choose one with --api-model: "
                        f"{', '.join(repr(n) for n in listed[:10])}")
    raise EvalError(f"give --api-model: {url}/v1/models did not name the model ({why})")


def _model_names(data: bytes) -> list[str] | None:
    """The ids of /v1/models' `data` list; None for an answer of another shape."""
    try:
        body = json.loads(data)
    except (ValueError, RecursionError):
        return None
    models = body.get("data") if isinstance(body, dict) else None
    if not isinstance(models, list):
        return None
    return [m["id"] for m in models if isinstance(m, dict) and isinstance(m.get("id"), str)]


# ---------------------------------------------------------------------------- the completer
class ApiCompleter:
    """A `runner.BatchCompleter` asking an OpenAI-compatible server, `config.concurrency` samples at a time.

    `config.api_model` must already be resolved (`resolve_model`)."""

    def __init__(self, config: EvalConfig):
        self.config, self.model = config, config.api_model or ""
        self.client = Client(config.api, api_key(config), config.api_timeout)

    def completions(self, todo: list[tuple[Problem, int]]) -> Iterator[Generated]:
        """Each sample as it finishes; its `seconds` are the wall time since the previous one finished
        (the requests overlap, so the seconds add up to the generation's wall time)."""
        work: queue.SimpleQueue = queue.SimpleQueue()
        for item in todo:
            work.put(item)
        done: queue.SimpleQueue = queue.SimpleQueue()
        stop = threading.Event()

        def worker() -> None:
            while not stop.is_set():
                try:
                    problem, index = work.get_nowait()
                except queue.Empty:
                    return
                done.put(self.sample(problem, index))

        # Daemon threads: a request still in flight when the run is interrupted cannot hold up the exit.
        for i in range(min(self.config.concurrency, len(todo))):
            threading.Thread(target=worker, name=f"eval-api-{i}", daemon=True).start()
        last = time.perf_counter()
        try:
            for _ in todo:
                sample = done.get()
                now = time.perf_counter()
                sample.seconds, last = now - last, now
                yield sample
        finally:
            stop.set()  # an error or Ctrl-C downstream: take no more work, end what is in flight
            self.client.abort()

    def sample(self, problem: Problem, index: int) -> Generated:
        """One sample; any failure is this sample's error (never raised: a worker must always hand one back)."""
        try:
            call = call_for(problem, self.config, self.model, index)
        except Exception as e:  # noqa: BLE001 (a problem the harness cannot phrase: this sample only)
            return Generated(problem, index, problem.prompt, error=f"could not build the request: {e}")
        try:
            text, tokens = read_answer(call.kind, self.client.request("POST", call.path, call.body))
        except Failed as e:
            return Generated(problem, index, call.prompt, error=str(e))
        except Exception as e:  # noqa: BLE001 (a bug here must not hang the run waiting for this sample)
            return Generated(problem, index, call.prompt, error=f"{type(e).__name__}: {_printable(str(e))}")
        return Generated(problem, index, call.prompt, call.rejoin + cut_at_stops(text, call.stops), tokens)


__all__ = ["ApiCompleter", "Call", "Client", "Failed", "base_url", "call_for", "extra_fields", "read_answer",
           "resolve_model"]
