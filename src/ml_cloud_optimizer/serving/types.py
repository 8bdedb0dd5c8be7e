"""What a request is once parsed, and what the predictor's stages hand each other.

``ForecastRequest`` is what ``preprocess`` returns (a checked request in one of its two
forms, plus what the answer must echo); ``Forecast`` is what ``predict`` returns (the
request and its answer columns); ``postprocess`` turns that into a v1 body or a v2
``InferResponse``. ``RequestLimits`` bounds one request.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from kserve.protocol.infer_type import RequestedOutput

from ml_cloud_optimizer.data.schema import VALUE_COLUMNS

__all__ = ["HISTORY_INPUTS", "Forecast", "ForecastRequest", "RequestLimits"]

# Inputs of the history form, besides the metrics themselves.
HISTORY_INPUTS = ("entity_id", "ts", *VALUE_COLUMNS, "vcpus", "replicas")


@dataclass(frozen=True)
class RequestLimits:
    """Bounds on one request, so that one client cannot take the server's memory or minutes.

    Attributes:
        max_entities: answer rows (entities, or feature rows) in one request.
        max_history_rows: history samples in one request, over all entities.
    """

    max_entities: int = 1000
    max_history_rows: int = 250_000


@dataclass
class ForecastRequest:
    """A validated request, in one of its two forms.

    Attributes:
        entity_id: one per answer row, in request order (object array of str).
        history: canonical long frame (``entity_id``, ``ts``, metrics) for history requests, else None.
        features: ``(rows, n_features)`` float64 for feature-row requests, else None.
        ts: origin of each answer row (UTC timestamps) where known, else None.
        vcpus: vCPUs of one replica of each answer row's entity.
        replicas: current replicas of each answer row's entity.
        horizons: the horizons to answer, a subset of the model's.
        target_utilization: utilisation the recommended capacity aims at.
        outputs: v2 output tensors the client asked for (None: all).
        protocol: ``"v1"``, ``"v2-rest"`` or ``"v2-grpc"`` (a label of the request counters).
        response_id: the v2 request's id, echoed in the answer (None: the answer gets a new one).
        binary_outputs: the v2 client asked for binary tensors in the answer.
        request_outputs: the v2 request's output specs, handed back to ``InferResponse``.
        received_s: ``time.perf_counter()`` when the predictor received the request.
    """

    entity_id: np.ndarray
    history: pd.DataFrame | None
    features: np.ndarray | None
    ts: pd.Series | None
    vcpus: np.ndarray
    replicas: np.ndarray
    horizons: tuple[int, ...]
    target_utilization: float
    outputs: tuple[str, ...] | None = None
    protocol: str = "v1"
    response_id: str | None = None
    binary_outputs: bool = False
    request_outputs: list[RequestedOutput] | None = None
    received_s: float | None = None

    @property
    def form(self) -> str:
        """``"history"`` or ``"features"``."""
        return "history" if self.history is not None else "features"


@dataclass
class Forecast:
    """The answer to ``request``, column by column, one row per entity (or feature row) in request order.

    Attributes:
        request: the request answered.
        columns: ``entity_id``, ``ts`` (where known), ``p50_h{h}``/``p90_h{h}``, ``peak_prob`` and the
            capacity columns, as arrays.
    """

    request: ForecastRequest
    columns: dict[str, np.ndarray]
