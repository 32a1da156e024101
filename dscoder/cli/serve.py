"""`dscoder serve`: the HTTP API and the playground on one model.

Kept apart from cli.py so that `dscoder --help` does not import FastAPI and uvicorn.
"""

from __future__ import annotations

import ipaddress
import logging
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

err = Console(stderr=True, soft_wrap=True)


def _model_name(model: Optional[str]) -> str:
    if model is None or model == "default":
        from dscoder.hub import DEFAULT_MODEL_FILE
        return Path(DEFAULT_MODEL_FILE).name.split(".")[0]
    path = Path(model)
    return path.stem if path.suffix == ".gguf" else (path.name if path.exists() else model)


def serve_command(
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Model directory, .gguf, preset or HF repo id "
                                                                    "(default: the embedded SmolLM2-135M-Instruct)."),
    host: str = typer.Option("127.0.0.1", help="Address to bind; anything but loopback exposes the model."),
    port: int = typer.Option(8000, help="TCP port."),
    api_key: Optional[str] = typer.Option(None, "--api-key", envvar="DSCODER_API_KEY",
                                          help="Require 'Authorization: Bearer KEY' (the playground asks for it)."),
    served_model_name: Optional[str] = typer.Option(None, help="The name clients send as `model` "
                                                               "(default: the model's file or directory name)."),
    quant: Optional[str] = typer.Option(None, help="Quantize while loading: int8, int4, int4-64, int4-128."),
    kv_cache: Optional[str] = typer.Option(None, help="KV cache element type: fp32, bf16 or fp16 (default: the "
                                                      "model's)."),
    kv_cache_gib: float = typer.Option(1.0, help="Memory for the paged KV cache, GiB."),
    block_size: int = typer.Option(16, help="Tokens per KV block."),
    max_running: int = typer.Option(64, help="Sequences decoding together."),
    max_waiting: int = typer.Option(256, help="Requests queued beyond the running batch; more are refused (429)."),
    prefill_chunk: int = typer.Option(128, help="Prompt tokens read per step beside the running decodes "
                                                "(chunked prefill): larger reads prompts faster, smaller stalls streams less."),
    max_model_len: Optional[int] = typer.Option(None, help="Longest prompt + completion (default: the model's "
                                                           "context)."),
    no_prefix_cache: bool = typer.Option(False, "--no-prefix-cache", help="Do not reuse KV blocks across requests."),
    log_level: str = typer.Option("info", help="uvicorn log level."),
) -> None:
    """Serve a model over HTTP: OpenAI completions (with FIM suffix) and chat, llama.cpp /infill, a playground at /."""
    import uvicorn

    from dscoder.cli.app import _load_model_and_tokenizer
    from dscoder.serve.api import ServerState, create_app
    from dscoder.serve.engine import Engine, EngineConfig

    for name, value in (("--max-running", max_running), ("--max-waiting", max_waiting), ("--block-size", block_size),
                        ("--prefill-chunk", prefill_chunk)):
        if value < 1:
            err.print(f"[bold red]error:[/] {name} must be at least 1, got {value}")
            raise typer.Exit(2)
    if kv_cache_gib <= 0:
        err.print(f"[bold red]error:[/] --kv-cache-gib must be positive, got {kv_cache_gib}")
        raise typer.Exit(2)
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    if not loopback and not api_key:
        err.print(f"[yellow]warning:[/] serving on {host} without --api-key: anyone who can reach it can use the model")
    config = EngineConfig(block_size=block_size, kv_cache_bytes=int(kv_cache_gib * (1 << 30)), max_running=max_running,
                          max_waiting=max_waiting, prefill_chunk=prefill_chunk, prefill_budget=prefill_chunk,
                          prefix_caching=not no_prefix_cache, max_model_len=max_model_len)
    state = ServerState(model_name=served_model_name or _model_name(model))

    def load() -> Engine:
        net, tokenizer = _load_model_and_tokenizer(model, quant, kv_cache)
        engine = Engine(net, tokenizer, config)
        err.print(f"[green]ready:[/] {state.model_name} on http://{host}:{port}/ "
                  f"({engine.blocks.num_blocks} KV blocks of {block_size} tokens, context {engine.max_model_len})")
        return engine

    server: uvicorn.Server | None = None

    def failed(message: str) -> None:
        err.print(f"[bold red]error:[/] could not load the model: {message}")
        if server is not None:
            server.should_exit = True

    logging.basicConfig(level=logging.INFO if log_level in ("info", "debug") else logging.WARNING)
    app = create_app(state, loader=load, api_key=api_key, on_load_error=failed)
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level=log_level, timeout_graceful_shutdown=5))
    server.run()
    if state.load_error:
        raise typer.Exit(2)
