"""What a request is once parsed, and what the predictor's stages hand each other.

``ForecastRequest`` is what ``preprocess`` returns (a checked request in one of its two
forms, plus what the answer must echo); ``Forecast`` is what ``predict`` returns (the
request and its answer columns); ``postprocess`` turns that into a v1 body or a v2
``InferResponse``. ``RequestLimits`` bounds one request's size, and the constants below bound
every number it carries: they are the one place those bounds live, each with its reason.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pandas as pd
from kserve.protocol.infer_type import RequestedOutput

from ml_cloud_optimizer.data.schema import UTIL_MAX, VALUE_COLUMNS

__all__ = [
    "CAPACITY_INPUTS",
    "CAPACITY_OUTPUTS",
    "FEATURE_MAX",
    "HISTORY_INPUTS",
    "MAX_GRANULARITY",
    "MAX_MEM_GIB",
    "MAX_RATE",
    "MAX_RECOMMENDED_MEM_GIB",
    "MAX_RECOMMENDED_REPLICAS",
    "MAX_RECOMMENDED_VCPUS",
    "MAX_REPLICAS",
    "MAX_TARGET_UTILIZATION",
    "MAX_VCPUS",
    "MEM_GRANULARITY_GIB",
    "METRIC_BOUNDS",
    "MIN_GRANULARITY",
    "MIN_MEM_GIB",
    "MIN_TARGET_UTILIZATION",
    "MIN_VCPUS",
    "TS_MAX",
    "TS_MIN",
    "Forecast",
    "ForecastRequest",
    "RequestLimits",
    "feature_bounds",
]

# Inputs of the history form, besides the metrics themselves (a CPU model's; see CAPACITY_INPUTS).
HISTORY_INPUTS = ("entity_id", "ts", *VALUE_COLUMNS, "vcpus", "replicas")
# What an entity is provisioned with now, per resource the model forecasts, and what the answer
# recommends: CPU in vCPUs of one replica and replicas (the total rescaled by replicas); memory
# in GiB of one replica, since memory does not spread over more replicas the way CPU load does.
CAPACITY_INPUTS = {"cpu": ("vcpus", "replicas"), "mem": ("mem_gib",)}
CAPACITY_OUTPUTS = {"cpu": ("recommended_vcpus", "recommended_replicas"), "mem": ("recommended_mem_gib",)}

# -- bounds on the numbers of a request ----------------------------------------------------
# ``serving.checks`` refuses (400, naming the field) any number outside these, and
# ``serving.capacity`` clips to them again, so no request that passes can overflow the sizing
# arithmetic or turn a replica count negative. They are generous: a bound only has to be
# past anything real, and finite.

# A replica's vCPUs: from Kubernetes' smallest CPU request (1m) to a power of two above the
# largest cloud machine (AWS u7inh, 1,920 vCPUs).
MIN_VCPUS = 0.001
MAX_VCPUS = 2048.0
# Replicas running now: well past Kubernetes' limit of 150,000 pods in a whole cluster.
MAX_REPLICAS = 1_000_000
# A replica's memory in GiB: from 1 MiB (below any real container) to a power of two above the
# largest cloud machine (AWS u7in-32tb, 32 TiB).
MIN_MEM_GIB = 2.0**-10
MAX_MEM_GIB = 65536.0
# Memory recommendations are rounded up to 16 MiB (exact in binary, finer than any real request).
MEM_GRANULARITY_GIB = 2.0**-6
# Target utilisation: below 1 % busy is 100x headroom, a typo rather than a policy (and it caps
# the recommendation at 100x the forecast); above 1 the recommendation undercuts the forecast.
MIN_TARGET_UTILIZATION = 0.01
MAX_TARGET_UTILIZATION = 1.0
# Network and disk kbps and requests per second: a terabit per second, past any one machine.
MAX_RATE = 1e9
# Epoch seconds of ``ts``: 1970 to 2100, which also keeps nanoseconds inside int64.
TS_MIN = 0
TS_MAX = 4_102_444_800
# Request step of the capacity recommendation in cores (a server option, not a request field):
# Kubernetes' 1m up to a whole machine.
MIN_GRANULARITY = 0.001
MAX_GRANULARITY = MAX_VCPUS
# Derived features with no range of their own (z-scores, ratios): in-bounds history gives at
# most a rate's z-score, MAX_RATE / 1e-3; this is far past that and far from float overflow.
FEATURE_MAX = 1e15
# What the capacity answer can hold: the sizing of in-bounds inputs stays below both (at most
# UTIL_MAX x MAX_REPLICAS / MIN_TARGET_UTILIZATION replicas), and INT32 clients can read it.
MAX_RECOMMENDED_REPLICAS = 2**31 - 1
MAX_RECOMMENDED_VCPUS = MAX_VCPUS * MAX_RECOMMENDED_REPLICAS
# In-bounds memory sizing stays below UTIL_MAX x MAX_MEM_GIB / MIN_TARGET_UTILIZATION.
MAX_RECOMMENDED_MEM_GIB = MAX_MEM_GIB * UTIL_MAX / MIN_TARGET_UTILIZATION

# Each history metric's range: utilisation is a fraction of what is provisioned (up to the
# schema's UTIL_MAX), the rest are rates.
METRIC_BOUNDS: dict[str, tuple[float, float]] = {
    c: (0.0, UTIL_MAX if c.endswith("_util") else MAX_RATE) for c in VALUE_COLUMNS
}
# Calendar features (``features.calendar``): hour, day of week, weekend flag and the circle.
_CALENDAR_BOUNDS = {
    "hour": (0.0, 23.0),
    "dow": (0.0, 6.0),
    "is_weekend": (0.0, 1.0),
    **dict.fromkeys(("hour_sin", "hour_cos", "dow_sin", "dow_cos"), (-1.0, 1.0)),
}
# Statistics of a metric (``features.tabular`` names them ``{metric}_{stat}``): levels stay in
# the metric's range, spreads within its width, changes within plus or minus its width.
_LEVEL = re.compile(r"(lag|mean|min|max|median|ewm)_.+")
_SPREAD = re.compile(r"std_.+|scale")
_CHANGE = re.compile(r"(dist|delta|seasonal_delta)_.+")
# Rolling sums in floating point can land a hair outside their inputs' range (relative).
_ROUNDING = 1e-9


def feature_bounds(name: str) -> tuple[float, float]:
    """The range a feature column named ``name`` takes when built from in-bounds history.

    The metric itself (``cpu_util``) gets the history bound exactly, so a feature row is held
    to what a history sample is; what is computed from it gets a rounding margin.
    """
    if name in _CALENDAR_BOUNDS:
        return _CALENDAR_BOUNDS[name]
    for metric, (low, high) in METRIC_BOUNDS.items():
        if name == metric:
            return low, high
        if not name.startswith(f"{metric}_"):
            continue
        stat, width = name[len(metric) + 1 :], high - low
        margin = _ROUNDING * max(1.0, width)
        if _LEVEL.fullmatch(stat):
            return low - margin, high + margin
        if _SPREAD.fullmatch(stat):
            return 0.0, width + margin
        if _CHANGE.fullmatch(stat):
            return -width - margin, width + margin
    return -FEATURE_MAX, FEATURE_MAX


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
        vcpus: vCPUs of one replica of each answer row's entity (ones for a memory model).
        replicas: current replicas of each answer row's entity (ones for a memory model).
        horizons: the horizons to answer, a subset of the model's.
        target_utilization: utilisation the recommended capacity aims at.
        outputs: v2 output tensors the client asked for (None: all).
        protocol: ``"v1"``, ``"v2-rest"`` or ``"v2-grpc"`` (a label of the request counters).
        response_id: the v2 request's id, echoed in the answer (None: the answer gets a new one).
        binary_outputs: the v2 client asked for binary tensors in the answer.
        request_outputs: the v2 request's output specs, handed back to ``InferResponse``.
        received_s: ``time.perf_counter()`` when the predictor received the request.
        mem_gib: GiB of one replica of each answer row's entity, for a memory model; else None.
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
    mem_gib: np.ndarray | None = None

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
