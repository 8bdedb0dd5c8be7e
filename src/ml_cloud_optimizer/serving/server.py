"""KServe's ModelServer around the forecaster, hardened for clients that make mistakes or attack it.

KServe serves v1 and v2 REST on one port and v2 gRPC on another, with health, readiness
and ``/metrics``. What is added here goes through FastAPI's and Starlette's own hooks on
KServe's application object, and ``runtime.ForecastServer`` (a ``kserve.ModelServer``):

* the v1 predict and v2 infer routes are answered by ``rest.V1PredictHandler`` and
  ``rest.V2InferHandler``: KServe's own steps on its DataPlane, with orjson in place of the
  standard library's JSON, and all decoding, model stages and encoding on a bounded worker
  pool (``pool.WorkerPool``) so that probes stay fast; a full pool answers 503 with ``Retry-After``;
* request bodies are bounded before they are read (``limits.RequestGuard``): size (413),
  time (408) and the bytes in flight together (503); request headers have a deadline too
  (``connections``);
* a v2 body that is not an inference request is answered 400 naming the field, not
  FastAPI's 422 (KServe answers its own decoding errors 400; one status for one mistake),
  and every error, FastAPI's own 404 and 405 included, has KServe's ``{"error": ...}`` body;
* the model repository extension is off and readiness follows the model (``runtime``);
* per-request log lines (uvicorn's access log, KServe's timing trace and gRPC method
  lines) are off unless asked for: at thousands of requests a second they cost more
  than the forecast.

All of it lives on the application object of this process. With ``workers > 1`` KServe's REST
server spawns worker processes that import ``kserve.model_server:app`` afresh
(``protocol/rest/multiprocess/server.py``, a "spawn" context), and none of them would be there:
the server would answer with KServe's defaults, no body limit and uncounted rejections. So one
worker per process is all this server runs (``WORKERS_ERROR``); scale with replicas.
"""

from __future__ import annotations

import logging

from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from kserve import model_server
from starlette.exceptions import HTTPException as StarletteHTTPException

from ml_cloud_optimizer.serving.limits import BodyBudget, RequestGuard
from ml_cloud_optimizer.serving.metrics import RejectedRequestCounter
from ml_cloud_optimizer.serving.pool import Overloaded, WorkerPool
from ml_cloud_optimizer.serving.rest import V1PredictHandler, V2InferHandler
from ml_cloud_optimizer.serving.runtime import ALL_INTERFACES, ForecastServer, RepositoryDisabled

__all__ = [
    "WORKERS_ERROR",
    "build_model_server",
    "http_error_handler",
    "overloaded_handler",
    "repository_disabled_handler",
    "validation_error_handler",
]

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


async def overloaded_handler(_request, exc: Overloaded) -> JSONResponse:
    """503 with ``Retry-After``: the worker pool and its queue are full."""
    headers = {"Retry-After": str(exc.retry_after_s)}
    return JSONResponse(status_code=503, content={"error": exc.details}, headers=headers)


async def repository_disabled_handler(_request, exc: RepositoryDisabled) -> JSONResponse:
    """403: models are not loaded or unloaded over the network (``runtime.ClosedRepository``)."""
    return JSONResponse(status_code=403, content={"error": exc.details})


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
    max_inflight_body_bytes: int = 128 * 2**20,
    body_timeout_s: float = 60.0,
    header_timeout_s: float = 30.0,
    timeout_keep_alive: int = 65,
    host: str = ALL_INTERFACES,
    pool: WorkerPool | None = None,
    access_log: bool = False,
    **kwargs,
) -> ForecastServer:
    """A ``runtime.ForecastServer`` whose application answers client mistakes 400 and counts them.

    Args:
        model_names: the names served (labels of the rejected-request counter).
        http_port: REST port (v1, v2, health, ``/metrics``).
        grpc_port: v2 gRPC port.
        enable_grpc: serve gRPC too.
        workers: uvicorn worker processes; only 1 (see ``WORKERS_ERROR``).
        max_threads: gRPC worker threads.
        max_body_bytes: larger request bodies (and gRPC messages) are refused with 413.
        max_inflight_body_bytes: the bodies being served at once hold at most this many bytes;
            one more is refused with 503 (``limits.BodyBudget``). At least ``max_body_bytes``.
        body_timeout_s: a request body must arrive within this many seconds of its headers (408).
        header_timeout_s: request headers must arrive within this many seconds (connection closed).
        timeout_keep_alive: an idle keep-alive connection is closed after this many seconds.
        host: the address REST and gRPC listen on; ``0.0.0.0`` is every interface.
        pool: the worker pool of the model stages (default: ``WorkerPool()``).
        access_log: keep one log line per request.
        **kwargs: passed on to ``kserve.ModelServer``.

    Raises:
        ValueError: ``workers`` is more than 1, or the in-flight budget is below one body.
    """
    if workers > 1:
        raise ValueError(WORKERS_ERROR.format(workers=workers))
    if max_inflight_body_bytes < max_body_bytes:
        raise ValueError(
            f"the in-flight body budget ({max_inflight_body_bytes} bytes) must hold one body of the largest size"
            f" ({max_body_bytes} bytes)"
        )
    pool = pool if pool is not None else WorkerPool()
    server = ForecastServer(
        model_names=tuple(model_names),
        host=host,
        header_timeout_s=header_timeout_s,
        max_grpc_receive_bytes=max_body_bytes,
        http_port=http_port,
        grpc_port=grpc_port,
        enable_grpc=enable_grpc,
        workers=workers,
        max_threads=max_threads,
        enable_latency_logging=access_log,
        timeout_keep_alive=timeout_keep_alive,
        **kwargs,
    )
    app = model_server.app
    if app.exception_handlers.get(RequestValidationError) is not validation_error_handler:
        app.add_exception_handler(RequestValidationError, validation_error_handler)
        app.add_exception_handler(StarletteHTTPException, http_error_handler)
        app.add_exception_handler(Overloaded, overloaded_handler)
        app.add_exception_handler(RepositoryDisabled, repository_disabled_handler)
        # add_middleware puts the newest outermost: the counter sees the guard's refusals.
        app.add_middleware(
            RequestGuard,
            max_body_bytes=max_body_bytes,
            body_timeout_s=body_timeout_s,
            budget=BodyBudget(max_inflight_body_bytes),
            retry_after_s=pool.retry_after_s,
        )
        app.add_middleware(RejectedRequestCounter, model_names=tuple(model_names))
        # Registered before KServe adds its routes at start, so these answer the paths.
        app.add_api_route(
            "/v1/models/{model_name}:predict",
            V1PredictHandler(server.dataplane, pool),
            methods=["POST"],
            response_model=None,
            tags=["V1"],
        )
        app.add_api_route(
            "/v2/models/{model_name}/infer",
            V2InferHandler(server.dataplane, pool),
            methods=["POST"],
            response_model=None,
            tags=["V2"],
        )
    if not access_log:
        logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
        logging.getLogger("kserve.trace").setLevel(logging.WARNING)
        logging.getLogger("kserve").addFilter(_DropPerRequestLines())
    return server
