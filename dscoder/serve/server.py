"""`serve.run(cfg)`: one model behind the HTTP API and the playground, until the process is stopped.

`ServeConfig` holds every setting of `dscoder serve` (the command's options are generated from
its fields, the engine's among them); `run` loads the model in the background once the server
is listening (GET /health answers 503 until it is ready), and returns when the server stops.
FastAPI and uvicorn are imported by `run` only, so the command line starts without them.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from dscoder.errors import ConfigError, UserError
from dscoder.hub import DEFAULT_MODEL_FILE, ModelChoice, load, place
from dscoder.serve.config import EngineConfig
from dscoder.serve.limits import HttpLimits
from dscoder.settings import like, setting


class ServeError(UserError):
    """The server could not serve the model (it failed to load); the message says why."""


@dataclass
class ServeConfig:
    """What `dscoder serve` serves, where, and how the engine batches it."""

    model: str | None = like(ModelChoice, "model")
    host: str = setting("127.0.0.1", "Address to bind; anything but loopback exposes the model.")
    port: int = setting(8000, "TCP port.")
    api_key: str | None = setting(None, "Require 'Authorization: Bearer KEY' (the playground asks for it).",
                                  "--api-key", envvar="DSCODER_API_KEY")
    served_model_name: str | None = setting(None, "The name clients send as `model` "
                                                  "(default: the model's file or directory name).")
    quant: str | None = like(ModelChoice, "quant")
    kv_cache: str | None = like(ModelChoice, "kv_cache")
    lora: str | None = like(ModelChoice, "lora")
    device: str = like(ModelChoice, "device")
    dtype: str = like(ModelChoice, "dtype")
    kv_cache_gib: float = setting(1.0, "Memory for the paged KV cache, GiB.")
    engine: EngineConfig = setting(help="How the engine batches requests and caches their keys and values.",
                                   default_factory=EngineConfig)
    # What one client may take (declared by HttpLimits, which the app reads as `limits`).
    max_body_bytes: int | None = like(HttpLimits, "max_body_bytes")
    header_timeout: float = like(HttpLimits, "header_timeout")
    body_timeout: float = like(HttpLimits, "body_timeout")
    queue_timeout: float = like(HttpLimits, "queue_timeout")
    max_connections: int | None = like(HttpLimits, "max_connections")
    repo: str | None = setting(None, "A repository directory: /infill (when the client sends no input_extra) and "
                                     "requests with a `repo` field read context from it (imports, definitions).")
    verify: bool = setting(True, "Refuse the API's `verify` extension: no model-written code runs on this machine "
                                 "(it runs in the sandbox otherwise, and only where the sandbox is complete).",
                           "--no-verify")
    log_level: str = setting("info", "uvicorn log level.")

    def check(self) -> None:
        """Refuse impossible numbers before anything loads; the message names the option."""
        for name in ("max_running", "max_waiting", "block_size", "prefill_chunk"):
            value = getattr(self.engine, name)
            if value < 1:
                raise ConfigError(f"--{name.replace('_', '-')} must be at least 1, got {value}")
        if self.kv_cache_gib <= 0:
            raise ConfigError(f"--kv-cache-gib must be positive, got {self.kv_cache_gib}")
        self.limits.check()
        place(self.device, self.dtype, self.quant)  # a GPU that is not here is said before the server starts

    @property
    def limits(self) -> HttpLimits:
        """The bounds on one client, from their options."""
        return HttpLimits(**{f.name: getattr(self, f.name) for f in dataclasses.fields(HttpLimits)})

    @property
    def exposed(self) -> bool:
        """Bound beyond loopback without an API key: anyone who can reach the host can use the model."""
        try:
            loopback = ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            loopback = self.host == "localhost"
        return not loopback and not self.api_key

    @property
    def model_name(self) -> str:
        """The name clients send as `model`: --served-model-name, else the model's file or directory name."""
        if self.served_model_name:
            return self.served_model_name
        if self.model is None or self.model == "default":
            return Path(DEFAULT_MODEL_FILE).name.split(".")[0]
        path = Path(self.model)
        return path.stem if path.suffix == ".gguf" else (path.name if path.exists() else self.model)

    def engine_config(self) -> EngineConfig:
        """The engine's settings as served: the pool sized by kv_cache_gib, prompts read a chunk per step."""
        return dataclasses.replace(self.engine, kv_cache_bytes=int(self.kv_cache_gib * (1 << 30)),
                                   prefill_budget=self.engine.prefill_chunk)


def open_repo(root: str | None):
    """The repository source of --repo (None without one), indexed before the server listens, so a bad
    --repo stops the command at once and the first request does not pay for the index."""
    if root is None:
        return None
    from dscoder.repo.context import RepoIndex
    from dscoder.serve.repo import RepoSource

    index = RepoIndex(root)
    logging.getLogger("dscoder.serve").info("repository %s: %s", index.root, index.summary())
    return RepoSource(index)


def run(cfg: ServeConfig, on_ready: Callable[[str], None] | None = None) -> None:
    """Serve until stopped (Ctrl-C, SIGTERM). `on_ready` hears one line once the model is loaded.

    Raises `ServeError` once the server has stopped if the model failed to load.
    """
    import uvicorn

    from dscoder.serve.api import ServerState, create_app
    from dscoder.serve.connections import ConnectionGuard, raise_open_files_limit
    from dscoder.serve.engine import Engine
    from dscoder.serve.log_limit import limit_repeats

    cfg.check()
    config = cfg.engine_config()
    state = ServerState(model_name=cfg.model_name, limits=cfg.limits, repo=open_repo(cfg.repo), verify=cfg.verify)
    server: uvicorn.Server | None = None

    def load_engine() -> Engine:
        net, tokenizer = load(cfg.model, cfg.quant, cfg.kv_cache, lora=cfg.lora, device=cfg.device, dtype=cfg.dtype)
        engine = Engine(net, tokenizer, config)
        if on_ready is not None:
            on_ready(f"{state.model_name} on http://{cfg.host}:{bound_port()}/ ({engine.blocks.num_blocks} KV blocks of "
                     f"{config.block_size} tokens, context {engine.max_model_len})")
        return engine

    def bound_port() -> int:
        """The port listened on (the OS's choice for --port 0) once uvicorn has bound it."""
        for listening in getattr(server, "servers", None) or []:
            for sock in listening.sockets:
                return sock.getsockname()[1]
        return cfg.port

    def failed(message: str) -> None:
        if server is not None:
            server.should_exit = True

    logging.basicConfig(level=logging.INFO if cfg.log_level in ("info", "debug") else logging.WARNING)
    app = create_app(state, loader=load_engine, api_key=cfg.api_key, on_load_error=failed)
    guard = ConnectionGuard(cfg.limits, cfg.limits.connection_limit(raise_open_files_limit()))
    http = uvicorn.Config(app, host=cfg.host, port=cfg.port, log_level=cfg.log_level, timeout_graceful_shutdown=5,
                          http=guard.protocol)
    limit_repeats("", "uvicorn", "uvicorn.error", "uvicorn.access")  # uvicorn.Config set up its handlers
    server = uvicorn.Server(http)
    server.run(sockets=[guard.listen(http)])
    if state.load_error:
        raise ServeError(f"could not load the model: {state.load_error}")
