"""The canonical fleet frame: the one shape every data source is turned into.

The synthetic generator, every real-trace reader, the warehouse loader and feature
engineering all speak this shape, so a model never knows where its data came from.

A fleet is two frames:

* ``metrics``: long format, one row per (entity, 5-minute slot), sorted by
  ``entity_id`` then ``ts``. Utilisation is a fraction of what is provisioned
  (1.0 = fully busy; real traces can exceed it slightly). Only ``cpu_util`` is
  mandatory: a trace that lacks a metric leaves it NaN.
* ``entities``: one row per entity, with its attributes and hourly price.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ml_cloud_optimizer.errors import UserInputError

__all__ = [
    "ENTITY_COLUMNS",
    "METRIC_COLUMNS",
    "RECOMMENDATION_COLUMNS",
    "STEP",
    "STEP_SECONDS",
    "UTIL_MAX",
    "VALUE_COLUMNS",
    "DataValidationError",
    "Fleet",
    "epoch_seconds",
    "estimate_hourly_price",
    "validate_fleet",
]

STEP_SECONDS = 300
STEP = pd.Timedelta(seconds=STEP_SECONDS)

# Highest utilisation fraction accepted; real traces report up to about 1.06.
UTIL_MAX = 1.5

# name -> pandas dtype, in canonical order.
METRIC_COLUMNS: dict[str, str] = {
    "entity_id": "string",
    "ts": "datetime64[ns, UTC]",
    "cpu_util": "float64",
    "mem_util": "float64",
    "net_in_kbps": "float64",
    "net_out_kbps": "float64",
    "disk_read_kbps": "float64",
    "disk_write_kbps": "float64",
    "request_rate": "float64",
    "is_peak": "boolean",
}
VALUE_COLUMNS = [c for c in METRIC_COLUMNS if c not in ("entity_id", "ts", "is_peak")]

ENTITY_COLUMNS: dict[str, str] = {
    "entity_id": "string",
    "service": "string",
    "instance_type": "string",
    "region": "string",
    "vcpus": "float64",  # fractional: a Kubernetes pod may request 0.25 of a core
    "mem_gib": "float64",
    "hourly_price": "float64",
}

# One capacity recommendation per (entity, hour), in order: what ``optimizer.capacity.recommend``
# returns and the warehouse's ``recommendations`` table stores (``warehouse.optimizer_runs``).
# CPU in cores, memory in GiB (a resource not recommended stays at its current amount), and
# USD per hour with CPU and memory priced apart: hourly_cost = cpu_hourly_cost + mem_hourly_cost.
RECOMMENDATION_COLUMNS = [
    "entity_id",
    "hour",
    "p50_cores",
    "p90_cores",
    "headroom_cores",
    "request_cores",
    "replicas",
    "current_cores",
    "p90_mem_gib",
    "peak_mem_gib",
    "request_mem_gib",
    "current_mem_gib",
    "cpu_hourly_cost",
    "mem_hourly_cost",
    "hourly_cost",
    "current_hourly_cost",
    "hourly_saving",
]

# On-demand list prices of general-purpose instances work out to roughly this much per vCPU-hour
# and per GiB-hour; used where a trace says what is provisioned but not what it costs.
_PRICE_PER_VCPU_HOUR = 0.0316
_PRICE_PER_GIB_HOUR = 0.0042


def epoch_seconds(ts: pd.Series) -> np.ndarray:
    """Whole seconds since 1970-01-01 UTC, whatever the datetime unit."""
    return ((pd.to_datetime(ts, utc=True) - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(seconds=1)).to_numpy(np.int64)


class DataValidationError(UserInputError):
    """Input data breaks the canonical contract, or a trace cannot be read as asked; the message says why.

    A ``UserInputError``: ``mlco`` prints it as one line and exits 2.
    """


def estimate_hourly_price(vcpus, mem_gib):
    """Hourly USD price of an instance with this many vCPUs and GiB, from list-price rates."""
    return np.round(_PRICE_PER_VCPU_HOUR * np.asarray(vcpus) + _PRICE_PER_GIB_HOUR * np.asarray(mem_gib), 4)


@dataclass
class Fleet:
    """Metrics and entity attributes of one data source, plus what was missing in it.

    Attributes:
        metrics: long frame with ``METRIC_COLUMNS``.
        entities: one row per entity with ``ENTITY_COLUMNS``.
        source: where it came from ("synthetic", "bitbrains", a path...).
        gaps: per-entity report of missing 5-minute slots (columns ``entity_id``,
            ``expected_slots``, ``present_slots``, ``missing_slots``, ``longest_gap_slots``),
            and of raw samples merged on the way to the grid (``duplicate_samples``: repeats of
            a timestamp already seen; ``collided_slots``: slots that averaged several distinct
            raw timestamps). Both are 0 for synthetic and saved fleets.
    """

    metrics: pd.DataFrame
    entities: pd.DataFrame
    source: str = "unknown"
    gaps: pd.DataFrame = field(default_factory=pd.DataFrame)


def validate_fleet(fleet: Fleet) -> Fleet:
    """Check a fleet against the contract and raise ``DataValidationError`` on the first problem.

    Checks columns, dtypes that can be coerced, the 5-minute grid, ranges, duplicate
    (entity_id, ts) keys and that every metric row has an entity. Returns the fleet with
    columns coerced to canonical dtypes and order.
    """
    metrics = _coerce(fleet.metrics, METRIC_COLUMNS, "metrics")
    entities = _coerce(fleet.entities, ENTITY_COLUMNS, "entities")

    for col in ("entity_id", "ts", "cpu_util"):
        if metrics[col].isna().any():
            raise DataValidationError(f"metrics.{col}: {int(metrics[col].isna().sum())} missing values")
    off_grid = (metrics["ts"].astype("int64") // 10**9) % STEP_SECONDS != 0
    if off_grid.any():
        raise DataValidationError(
            f"metrics.ts: {int(off_grid.sum())} timestamps are not on the {STEP_SECONDS} s grid"
            f" (first: {metrics.loc[off_grid, 'ts'].iloc[0]})"
        )
    for col in ("cpu_util", "mem_util"):
        bad = (metrics[col] < 0) | (metrics[col] > UTIL_MAX)
        if bad.any():
            raise DataValidationError(
                f"metrics.{col}: {int(bad.sum())} values outside [0, {UTIL_MAX}]"
                f" (first: {metrics.loc[bad, col].iloc[0]!r}); utilisation is a fraction"
            )
    for col in VALUE_COLUMNS:
        if col in ("cpu_util", "mem_util"):
            continue
        bad = metrics[col] < 0
        if bad.any():
            raise DataValidationError(f"metrics.{col}: {int(bad.sum())} negative values")
    finite = metrics[VALUE_COLUMNS].to_numpy(dtype="float64", na_value=np.nan)
    if np.isinf(finite).any():
        raise DataValidationError("metrics: infinite values")
    ordered = _is_sorted(metrics)  # strictly increasing ts per entity: no key can repeat
    dup = np.zeros(len(metrics), dtype=bool) if ordered else metrics.duplicated(["entity_id", "ts"])
    if dup.any():
        first = metrics.loc[dup].iloc[0]
        raise DataValidationError(
            f"metrics: {int(dup.sum())} duplicate (entity_id, ts) keys (first: {first['entity_id']} at {first['ts']})"
        )
    if entities["entity_id"].duplicated().any():
        raise DataValidationError("entities.entity_id: duplicate entity ids")
    unknown = ~metrics["entity_id"].isin(entities["entity_id"])
    if unknown.any():
        raise DataValidationError(
            f"metrics.entity_id: {metrics.loc[unknown, 'entity_id'].nunique()} entities have no row in entities"
            f" (first: {metrics.loc[unknown, 'entity_id'].iloc[0]})"
        )
    if (entities["vcpus"] <= 0).any() or (entities["mem_gib"] <= 0).any() or (entities["hourly_price"] < 0).any():
        raise DataValidationError("entities: vcpus and mem_gib must be positive and hourly_price not negative")
    if not np.isfinite(entities["vcpus"].to_numpy()).all():
        raise DataValidationError("entities.vcpus: must be a finite number of cores (NaN or infinity found)")
    if not ordered:
        metrics = metrics.sort_values(["entity_id", "ts"], kind="stable")
    if not metrics.index.equals(pd.RangeIndex(len(metrics))):
        metrics = metrics.reset_index(drop=True)
    return Fleet(metrics=metrics, entities=entities, source=fleet.source, gaps=fleet.gaps)


def _is_sorted(metrics: pd.DataFrame) -> bool:
    """True when rows are already ordered by (entity_id, ts), so the costly sort can be skipped."""
    entity = metrics["entity_id"].to_numpy(dtype=object)
    ts = metrics["ts"].to_numpy(dtype="datetime64[ns]")
    if len(entity) < 2:
        return True
    same = entity[1:] == entity[:-1]
    return bool(((entity[1:] > entity[:-1]) | (same & (ts[1:] > ts[:-1]))).all())


def _coerce(frame: pd.DataFrame, columns: dict[str, str], what: str) -> pd.DataFrame:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise DataValidationError(f"{what}: missing columns {', '.join(missing)}")
    if list(frame.columns) == list(columns) and all(
        frame[c].dtype == pd.api.types.pandas_dtype(d) for c, d in columns.items()
    ):
        return frame  # canonical already (a fleet mlco wrote, or one validated before): nothing to copy
    out = {}
    for col, dtype in columns.items():
        try:
            if dtype.startswith("datetime64"):
                out[col] = pd.to_datetime(frame[col], utc=True)
            elif dtype in ("float64", "int64"):
                out[col] = pd.to_numeric(frame[col], errors="raise").astype(dtype)
            else:
                out[col] = frame[col].astype(dtype)
        except (ValueError, TypeError) as exc:
            raise DataValidationError(f"{what}.{col}: cannot read as {dtype}: {exc}") from None
    return pd.DataFrame(out, index=frame.index)
