"""KServe's ModelServer around the forecaster, hardened for clients that make mistakes.

KServe serves v1 and v2 REST on one port and v2 gRPC on another, with health, readiness
and ``/metrics``. Four things are added here, all through FastAPI's and Starlette's own
hooks on KServe's application object:

* the v2 REST infer route is answered by ``ml_cloud_optimizer.serving.rest.V2InferHandler``: KServe's own
  steps on its DataPlane, with orjson in place of the standard library's JSON;
* a v2 body that is not an inference request is answered 400 naming the field, not
  FastAPI's 422 (KServe answers its own decoding errors 400; one status for one mistake),
  and FastAPI's own HTTP errors use KServe's ``{"error": ...}`` body;
* request bodies above a size limit are refused (413) before they are read into memory;
* per-request log lines (uvicorn's access log, KServe's timing trace and gRPC method
  lines) are off unless asked for: at thousands of requests a second they cost more
  than the forecast.

All four live on the application object of this process. With ``workers > 1`` KServe's REST
server spawns worker processes that import ``kserve.model_server:app`` afresh
(``protocol/rest/multiprocess/server.py``, a "spawn" context), and none of them would be there:
the server would answer with KServe's defaults, no body limit and uncounted rejections. So one
worker per process is all this server runs (``WORKERS_ERROR``); scale with replicas.
"""

from __future__ import annotations

import logging

import kserve
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from kserve import model_server
from starlette.exceptions import HTTPException as StarletteHTTPException

from ml_cloud_optimizer.serving.metrics import RejectedRequestCounter
from ml_cloud_optimizer.serving.rest import V2InferHandler

__all__ = ["WORKERS_ERROR", "build_model_server", "http_error_handler", "validation_error_handler"]

WORKERS_ERROR = (
    "--workers {workers}: KServe's worker processes re-import its app without this server's handlers, body limit"
    " and counters; run one worker per pod and scale with replicas (InferenceService minReplicas/maxReplicas)"
)


async def validation_error_handler(_request, exc: RequestValidationError) -> JSONResponse:
    """400 with the first offending field, e.g. ``inputs[0].shape[1]: Input should be a valid integer``."""
    errors = exc.errors()
    first = errors[0] if errors else {"loc": ("body",), "msg": "invalid request"}
    loc = [str(p) for p in first.get("loc", ()) if p != "body"]
    field = "".join(f"[{p}]" if p.isdigit() else f".{p}" for p in loc).lstrip(".") or "body"
    if first.get("type") == "json_invalid":
        field = "body"
    return JSONResponse(status_code=400, content={"error": f"{field}: {first.get('msg', 'invalid')}"})


async def http_error_handler(_request, exc: StarletteHTTPException) -> JSONResponse:
    """FastAPI's own HTTP errors (an unreadable body, an unknown route) in KServe's ``{"error": ...}`` shape."""
    detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
    if exc.status_code == 400 and not detail.startswith("body"):
        detail = f"body: {detail}"
    return JSONResponse(status_code=exc.status_code, content={"error": detail}, headers=exc.headers)


class _DropPerRequestLines(logging.Filter):
    """Drops KServe's one-line-per-gRPC-call INFO records, keeping everything else."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.levelno <= logging.INFO and str(record.msg).startswith("grpc method:"))


def build_model_server(
    *,
    model_names: tuple[str, ...],
    http_port: int,
    grpc_port: int,
    enable_grpc: bool = True,
    workers: int = 1,
    max_threads: int = 4,
    max_body_bytes: int = 64 * 2**20,
    access_log: bool = False,
    **kwargs,
) -> kserve.ModelServer:
    """A ``kserve.ModelServer`` whose application answers client mistakes 400 and counts them.

    Args:
        model_names: the names served (labels of the rejected-request counter).
        http_port: REST port (v1, v2, health, ``/metrics``).
        grpc_port: v2 gRPC port.
        enable_grpc: serve gRPC too.
        workers: uvicorn worker processes; only 1 (see ``WORKERS_ERROR``).
        max_threads: gRPC worker threads.
        max_body_bytes: larger request bodies are refused with 413.
        access_log: keep one log line per request.
        **kwargs: passed on to ``kserve.ModelServer``.

    Raises:
        ValueError: ``workers`` is more than 1.
    """
    if workers > 1:
        raise ValueError(WORKERS_ERROR.format(workers=workers))
    server = kserve.ModelServer(
        http_port=http_port,
        grpc_port=grpc_port,
        enable_grpc=enable_grpc,
        workers=workers,
        max_threads=max_threads,
        enable_latency_logging=access_log,
        **kwargs,
    )
    app = model_server.app
    if app.exception_handlers.get(RequestValidationError) is not validation_error_handler:
        app.add_exception_handler(RequestValidationError, validation_error_handler)
        app.add_exception_handler(StarletteHTTPException, http_error_handler)
        app.add_middleware(RejectedRequestCounter, model_names=tuple(model_names))
        app.max_body_size = max_body_bytes
        # Registered before KServe adds its routes at start, so this one answers the path.
        app.add_api_route(
            "/v2/models/{model_name}/infer",
            V2InferHandler(server.dataplane),
            methods=["POST"],
            response_model=None,
            tags=["V2"],
        )
    if not access_log:
        logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
        logging.getLogger("kserve.trace").setLevel(logging.WARNING)
        logging.getLogger("kserve").addFilter(_DropPerRequestLines())
    return server
