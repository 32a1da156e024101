"""`dscoder serve`: the HTTP API and the playground on one model.

The options are generated from `dscoder.serve.server.ServeConfig` (the engine's settings
included). FastAPI and uvicorn are imported when the server runs, not when the command
line starts, so `dscoder --help` stays quick.
"""

from __future__ import annotations

from dscoder.cli.common import err
from dscoder.cli.options import from_settings
from dscoder.serve.server import ServeConfig


@from_settings(ServeConfig)
def serve_command(cfg: ServeConfig) -> None:
    """Serve a model over HTTP: OpenAI completions (with FIM suffix) and chat, llama.cpp /infill, a playground at /."""
    from dscoder.serve import server

    cfg.check()
    if cfg.exposed:
        err.print(f"[yellow]warning:[/] serving on {cfg.host} without --api-key: anyone who can reach it can use the model")
    server.run(cfg, on_ready=lambda line: err.print(f"[green]ready:[/] {line}"))
