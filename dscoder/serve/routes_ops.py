"""The routes that are not a model API: the web playground at `/` (and its static files),
/health for load balancers, /metrics for Prometheus."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST

from dscoder.serve.errors import ApiError
from dscoder.serve.state import server_state

STATIC = Path(__file__).parent / "static"
router = APIRouter()


@router.get("/", include_in_schema=False)
async def playground():
    index = STATIC / "index.html"
    if not index.is_file():
        raise ApiError(404, "the playground is not installed", "not_found_error")
    return FileResponse(index)


def mount_static(app: FastAPI) -> None:
    """The playground's scripts and styles under /static (a router cannot carry a mount)."""
    if STATIC.is_dir():
        app.mount("/static", StaticFiles(directory=STATIC), name="static")


@router.get("/health")
async def health(request: Request):
    state = server_state(request)
    if state.engine is None:
        status = "error" if state.load_error else "loading"
        return JSONResponse({"status": status, "error": state.load_error}, status_code=503,
                            headers={"Retry-After": "5"})
    return {"status": "ok"}


@router.get("/metrics")
async def metrics(request: Request):
    engine = server_state(request).ready()
    return Response(engine.metrics.render(), media_type=CONTENT_TYPE_LATEST)
