"""Prometheus series of the forecaster, exposed on KServe's own ``/metrics`` beside its series.

KServe already times preprocess, predict and postprocess per model
(``request_*_seconds``). These add what an operator of a forecasting service asks next:
how many requests of which protocol and input form, how many client mistakes of which
kind, how many peaks the model is announcing, and the latency of a whole inference.

Mistakes the model sees (a field missing, a history too short) are counted where they are
diagnosed. Mistakes that KServe or FastAPI reject before the model runs (a body that is
not JSON, a v2 body that is not an inference request) are counted by
``RejectedRequestCounter``, an ASGI middleware that watches inference responses for 4xx
statuses the model did not claim.
"""

from __future__ import annotations

import contextvars
import re

from prometheus_client import Counter, Histogram

__all__ = [
    "ERRORS",
    "LATENCY",
    "PEAKS",
    "REQUESTS",
    "ROWS",
    "RejectedRequestCounter",
    "claim_error",
]

REQUESTS = Counter(
    "mlco_requests",
    "Inference requests that reached the forecaster, by protocol and input form.",
    ["model_name", "protocol", "input"],
)
ROWS = Counter(
    "mlco_forecast_rows",
    "Forecast rows answered (one per entity or feature row).",
    ["model_name", "protocol"],
)
ERRORS = Counter(
    "mlco_request_errors",
    "Rejected or failed inference requests, by kind (missing_field, history_too_short, ..., too_large, internal).",
    ["model_name", "kind"],
)
PEAKS = Counter(
    "mlco_predicted_peaks",
    "Forecast rows whose peak probability reached the peak threshold.",
    ["model_name"],
)
LATENCY = Histogram(
    "mlco_inference_latency_seconds",
    "Time from a request reaching the forecaster's preprocess to its answer built in postprocess, by protocol.",
    ["model_name", "protocol"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)

# Set per HTTP request by the middleware; the model marks it when it has counted the error.
_claimed: contextvars.ContextVar[dict | None] = contextvars.ContextVar("mlco_error_claimed", default=None)

_INFERENCE_PATH = re.compile(r"^/v1/models/(?P<v1>[^/:]+):predict$|^/v2/models/(?P<v2>[^/]+)(/versions/[^/]+)?/infer$")


_KIND_OF_STATUS = {404: "unknown_model", 408: "timeout", 413: "too_large", 503: "unavailable"}


def claim_error() -> None:
    """Tell the middleware that this request's error is already counted."""
    holder = _claimed.get()
    if holder is not None:
        holder["claimed"] = True


class RejectedRequestCounter:
    """ASGI middleware: counts inference requests answered 4xx/5xx before the forecaster could count them.

    Those are bodies KServe or FastAPI could not decode (kind ``malformed``), requests for a
    model that is not served (``unknown_model``), bodies over the size limit (``too_large``) or
    slower than the body deadline (``timeout``), requests refused while the server is full or
    not ready (``unavailable``), and failures outside the model (``internal``).
    """

    def __init__(self, app, model_names: tuple[str, ...] = ()):
        self.app = app
        # Paths are client input: label only served names, so a scan cannot grow the series.
        self.model_names = frozenset(model_names)

    async def __call__(self, scope, receive, send):
        match = _INFERENCE_PATH.match(scope.get("path", "")) if scope["type"] == "http" else None
        if match is None:
            await self.app(scope, receive, send)
            return
        holder = {"claimed": False}
        token = _claimed.set(holder)
        status = {}

        async def watch(message):
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send=watch)
        finally:
            _claimed.reset(token)
            code = status.get("code", 500)
            if code >= 400 and not holder["claimed"]:
                name = match.group("v1") or match.group("v2")
                name = name if name in self.model_names else "unknown"
                kind = _KIND_OF_STATUS.get(code, "internal" if code >= 500 else "malformed")
                ERRORS.labels(model_name=name, kind=kind).inc()
