"""``RequestParser``: a v1 JSON body or a v2 tensor request becomes one ``ForecastRequest``.

Both protocols carry the same two forms of input, and both end in the same checks
(``ml_cloud_optimizer.serving.checks``), so a client mistake gets the same answer whichever protocol it used:

* history: per entity, recent samples (``ts`` plus the canonical metrics of
  ``ml_cloud_optimizer.data.schema``), at least the model's ``min_history`` steps of them;
* feature rows: ready-made rows of the model's feature columns, in the order the v2 model
  metadata declares them (what ``ml_cloud_optimizer.features.build_features`` returns).

The layouts are in ``ml_cloud_optimizer.serving.parse_v1`` and ``ml_cloud_optimizer.serving.parse_v2``.
Every mistake raises ``RequestError`` (``ml_cloud_optimizer.serving.errors``): HTTP 400, gRPC INVALID_ARGUMENT.

Example:
    >>> parser = RequestParser(feature_names=[], horizons=[1, 12], min_history=13)
    >>> parser.parse({"instances": []})
    Traceback (most recent call last):
    serving.errors.RequestError: instances: expected a non-empty list
"""

from __future__ import annotations

from collections.abc import Sequence

from kserve.protocol.infer_type import InferRequest

from ml_cloud_optimizer.resources import DEFAULT_RESOURCE, UTIL_COLUMN
from ml_cloud_optimizer.serving.parse_v1 import parse_v1
from ml_cloud_optimizer.serving.parse_v2 import parse_v2
from ml_cloud_optimizer.serving.types import (
    CAPACITY_INPUTS,
    MAX_TARGET_UTILIZATION,
    MIN_TARGET_UTILIZATION,
    ForecastRequest,
    RequestLimits,
)

__all__ = ["RequestParser"]


class RequestParser:
    """Turns v1 bodies and v2 ``InferRequest`` objects into ``ForecastRequest`` objects, or says what is wrong.

    Args:
        feature_names: the model's feature columns, in order; empty if it cannot take feature rows.
        horizons: the horizons the model forecasts.
        min_history: steps of history the model needs per entity.
        output_names: every v2 output tensor the model can return.
        limits: bounds on a request.
        target_utilization: the default target utilisation of the capacity recommendation, held
            to the same bounds as a client's (a bad server setting fails at load, not per request).
        resource: what the model forecasts (``resources``): its utilisation column is the one
            history must carry (``required_history``), and its capacity inputs are the ones a
            request may give (``capacity_inputs``, ``types.CAPACITY_INPUTS``).
    """

    def __init__(
        self,
        *,
        feature_names: Sequence[str],
        horizons: Sequence[int],
        min_history: int,
        output_names: Sequence[str] = (),
        limits: RequestLimits = RequestLimits(),
        target_utilization: float = 0.7,
        resource: str = DEFAULT_RESOURCE,
    ):
        self.resource = resource
        self.required_history = ("ts", UTIL_COLUMN[resource])
        self.capacity_inputs = CAPACITY_INPUTS[resource]
        self.feature_names = list(feature_names)
        self.horizons = tuple(int(h) for h in horizons)
        self.min_history = int(min_history)
        self.output_names = tuple(output_names)
        self.limits = limits
        self.target_utilization = float(target_utilization)
        if not MIN_TARGET_UTILIZATION <= self.target_utilization <= MAX_TARGET_UTILIZATION:
            raise ValueError(
                f"target utilization must be in [{MIN_TARGET_UTILIZATION}, {MAX_TARGET_UTILIZATION}],"
                f" got {target_utilization}"
            )

    def parse(self, payload: dict | InferRequest) -> ForecastRequest:
        """Parse what KServe hands a model: an ``InferRequest`` for v2 (REST and gRPC), anything else as v1."""
        if isinstance(payload, InferRequest):
            return parse_v2(payload, self)
        return parse_v1(payload, self)

    def parse_v1(self, body) -> ForecastRequest:
        """Parse a v1 ``{"instances": [...], "parameters": {...}}`` body."""
        return parse_v1(body, self)

    def parse_v2(self, request: InferRequest) -> ForecastRequest:
        """Parse a v2 ``InferRequest`` (REST or gRPC)."""
        return parse_v2(request, self)
