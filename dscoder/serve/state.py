"""What the routes serve: the model's name and its engine, which may still be loading (or have
failed to), and the limits on what one client may ask.  `create_app` keeps one `ServerState`
on `app.state.server`; the module-level route handlers reach it through their request.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from fastapi import Request

from dscoder.serve.engine import Engine
from dscoder.serve.errors import ApiError
from dscoder.serve.limits import HttpLimits
from dscoder.serve.repo import RepoSource


@dataclass
class ServerState:
    model_name: str
    engine: Engine | None = None
    load_error: str | None = None
    started: float = field(default_factory=time.time)
    limits: HttpLimits = field(default_factory=HttpLimits)
    repo: RepoSource | None = None  # dscoder serve --repo: the repository completions read context from
    verify: bool = True  # the `verify` extension may run model-written code here (dscoder serve --no-verify: not)

    def body_limit(self) -> int:
        """The largest request body accepted now (its default follows the model, once it has loaded)."""
        engine = self.engine
        return self.limits.body_limit(engine.max_model_len if engine else None,
                                      engine.config.max_running if engine else None)

    def ready(self) -> Engine:
        if self.engine is None:
            why = f"the model failed to load: {self.load_error}" if self.load_error else "the model is still loading"
            raise ApiError(503, why, "server_unavailable", code="model_loading", headers={"Retry-After": "5"})
        return self.engine

    def check_model(self, name: str | None) -> None:
        if name is not None and name != self.model_name:
            raise ApiError(404, f"the model {name!r} does not exist; this server serves {self.model_name!r}",
                           param="model", code="model_not_found")


def server_state(request: Request) -> ServerState:
    return request.app.state.server


def serving(request: Request, model: str | None) -> tuple[ServerState, Engine]:
    """The state and its engine for a request that names `model`: a 503 while the engine is not
    ready (checked first), a 404 for a model this server does not serve."""
    state = server_state(request)
    engine = state.ready()
    state.check_model(model)
    return state, engine
