"""From demand in cores to provisioned capacity, cost and recommendations.

Definitions used by every policy, the backtest and ``mlco recommend`` alike:

* **Demand** of an entity at a 5-minute step, in cores, is ``cpu_util x vcpus`` (``cpu_util``
  is the fraction of the entity's own vCPUs that was busy).
* **Capacity** is what a policy provisions for that step, in cores, rounded *up* to a
  granularity (``DEFAULT_GRANULARITY`` = 0.25 core, one quarter-core request step) and never
  below one granule. All policies share the granularity, so none gains from finer steps.
* **Cost** of a core-hour is the entity's own price per vCPU-hour (``hourly_price / vcpus``),
  so right-sizing an entity is valued at the instance's price.

Nothing here touches the database: ``warehouse.optimizer_runs`` stores and reads the frames
built here (``RECOMMENDATION_COLUMNS`` lives in ``data.schema``, shared by both).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ml_cloud_optimizer.data.schema import RECOMMENDATION_COLUMNS, STEP, STEP_SECONDS, UTIL_MAX, Fleet
from ml_cloud_optimizer.models.base import forecast_column

__all__ = [
    "DEFAULT_GRANULARITY",
    "RECOMMENDATION_COLUMNS",
    "STEPS_PER_HOUR",
    "DemandGrid",
    "forecasts_long",
    "recommend",
    "round_up",
]

DEFAULT_GRANULARITY = 0.25
STEPS_PER_HOUR = 3600 // STEP_SECONDS


def round_up(cores, granularity: float = DEFAULT_GRANULARITY) -> np.ndarray:
    """``cores`` rounded up to a multiple of ``granularity``, at least one granule; NaN stays NaN.

    A tiny tolerance keeps 0.5000000001 (floating-point noise) at 0.5 rather than 0.75.
    """
    if granularity <= 0:
        raise ValueError(f"granularity must be positive, got {granularity}")
    units = np.ceil(np.asarray(cores, dtype="float64") / granularity - 1e-9)
    return np.maximum(units, 1.0) * granularity


@dataclass(frozen=True)
class DemandGrid:
    """Demand of a fleet in cores on one common 5-minute grid: one row per step, one column per entity.

    Attributes:
        ts: the steps, regular and in order.
        entity_ids: the entities, in column order.
        vcpus: provisioned vCPUs per entity (what the trace ran on).
        price_per_core_hour: USD per core-hour per entity.
        demand: cores, shape (steps, entities); NaN where the trace has no sample.
    """

    ts: pd.DatetimeIndex
    entity_ids: pd.Index
    vcpus: np.ndarray
    price_per_core_hour: np.ndarray
    demand: np.ndarray

    @classmethod
    def from_fleet(cls, fleet: Fleet) -> DemandGrid:
        """Pivot a canonical fleet to the grid spanning its first to last timestamp."""
        metrics = fleet.metrics
        if metrics.empty:
            raise ValueError("the fleet has no metrics rows: nothing to replay")
        util = metrics.pivot_table(index="ts", columns="entity_id", values="cpu_util", aggfunc="mean", observed=True)
        ts = pd.date_range(util.index.min(), util.index.max(), freq=STEP, name="ts")
        util = util.reindex(ts)
        entities = fleet.entities.set_index("entity_id").reindex(util.columns)
        if entities["vcpus"].isna().any():
            missing = entities.index[entities["vcpus"].isna()][0]
            raise ValueError(f"entity {missing} has metrics but no row in entities")
        vcpus = entities["vcpus"].to_numpy(dtype="float64")
        return cls(
            ts=ts,
            entity_ids=pd.Index(util.columns.astype(str), name="entity_id"),
            vcpus=vcpus,
            price_per_core_hour=entities["hourly_price"].to_numpy(dtype="float64") / vcpus,
            demand=util.to_numpy(dtype="float64") * vcpus,
        )

    @property
    def observed(self) -> np.ndarray:
        """True where the trace has a sample: only these steps are scored."""
        return ~np.isnan(self.demand)

    def filled(self) -> np.ndarray:
        """Demand with each gap carried forward from the last sample: what a controller would still see.

        Before an entity's first sample nothing has been seen, so demand reads as zero there.
        """
        return pd.DataFrame(self.demand).ffill().fillna(0.0).to_numpy()

    def index_of(self, when: pd.Timestamp) -> int:
        """Position of the first step at or after ``when``."""
        return int(self.ts.searchsorted(pd.Timestamp(when)))

    def frame(self, values: np.ndarray, name: str, rows: slice = slice(None)) -> pd.DataFrame:
        """A (steps, entities) matrix (or its ``rows``) as a long frame ``entity_id, ts, name``."""
        wide = pd.DataFrame(values[rows], index=self.ts[rows], columns=self.entity_ids)
        return wide.stack(future_stack=True).rename(name).reset_index()[["entity_id", "ts", name]]


def recommend(
    forecasts: pd.DataFrame,
    entities: pd.DataFrame,
    *,
    horizons: tuple[int, ...] | None = None,
    target_utilization: float = 0.7,
    granularity: float = DEFAULT_GRANULARITY,
) -> pd.DataFrame:
    """Per entity and hour: the vCPU request that keeps utilization at the target, its cost and saving.

    Each forecast row (an origin ``ts`` with ``p50_h{h}`` / ``p90_h{h}`` columns, as every
    ``Forecaster.predict`` returns) speaks for the hour its target ``ts + h x 5 min`` falls in.
    Per hour, the typical demand is the mean p50 and the demand to cover is the largest p90:
    the p90 - p50 gap is the headroom that the forecast's own uncertainty asks for. Forecasts
    without p90 columns fall back to p50 (no headroom). The request is that demand divided by
    the target utilization, rounded up to ``granularity``; replicas are how many instances of
    the entity's current type the request needs.

    Args:
        forecasts: forecast frame (``entity_id``, ``ts``, ``p50_h{h}``, optional ``p90_h{h}``).
        entities: canonical entities frame (vcpus, hourly_price, instance_type...).
        horizons: which horizons to use; default: every horizon present.
        target_utilization: the utilisation the request is sized for, in (0, 1].
        granularity: request step in cores.

    Returns:
        One row per (entity_id, hour) with ``p50_cores``, ``p90_cores``, ``headroom_cores``,
        ``request_cores``, ``replicas``, ``current_cores``, ``hourly_cost``, ``current_hourly_cost``
        and ``hourly_saving`` (USD; positive when the recommendation is cheaper).
    """
    if not 0 < target_utilization <= 1:
        raise ValueError(f"target utilization must be in (0, 1], got {target_utilization}")
    if horizons is None:
        horizons = tuple(sorted(int(c.split("_h")[1]) for c in forecasts.columns if c.startswith("p50_h")))
    if not horizons:
        raise ValueError("the forecast frame has no p50_h<h> columns")
    parts = []
    for h in horizons:
        p50 = forecast_column(h, "p50")
        p90 = forecast_column(h, "p90")
        if p50 not in forecasts.columns:
            raise ValueError(f"the forecast frame has no {p50} column")
        part = pd.DataFrame(
            {
                "entity_id": forecasts["entity_id"].astype(str),
                "hour": (pd.to_datetime(forecasts["ts"], utc=True) + h * STEP).dt.floor("h"),
                "p50": forecasts[p50].to_numpy(dtype="float64"),
                "p90": forecasts[p90 if p90 in forecasts.columns else p50].to_numpy(dtype="float64"),
            }
        )
        parts.append(part)
    long = pd.concat(parts, ignore_index=True).dropna(subset=["p50", "p90"])
    hourly = long.groupby(["entity_id", "hour"], as_index=False).agg(p50=("p50", "mean"), p90=("p90", "max"))

    attrs = entities.assign(entity_id=entities["entity_id"].astype(str)).set_index("entity_id")
    unknown = ~hourly["entity_id"].isin(attrs.index)
    if unknown.any():
        raise ValueError(f"forecasts name entity {hourly.loc[unknown, 'entity_id'].iloc[0]} absent from entities")
    vcpus = attrs["vcpus"].reindex(hourly["entity_id"]).to_numpy(dtype="float64")
    price = attrs["hourly_price"].reindex(hourly["entity_id"]).to_numpy(dtype="float64")

    # Clipped to the schema's range, so a stray forecast cannot size an entity past any count that fits int64.
    p50_cores = np.clip(hourly["p50"].to_numpy(), 0, UTIL_MAX) * vcpus
    p90_cores = np.maximum(np.clip(hourly["p90"].to_numpy(), 0, UTIL_MAX) * vcpus, p50_cores)
    request = round_up(p90_cores / target_utilization, granularity)
    hourly_cost = request * price / vcpus
    out = hourly[["entity_id", "hour"]].copy()  # columns in RECOMMENDATION_COLUMNS order
    out["p50_cores"] = p50_cores
    out["p90_cores"] = p90_cores
    out["headroom_cores"] = p90_cores - p50_cores
    out["request_cores"] = request
    out["replicas"] = np.ceil(request / vcpus - 1e-9).astype("int64")
    out["current_cores"] = vcpus
    out["hourly_cost"] = hourly_cost
    out["current_hourly_cost"] = price
    out["hourly_saving"] = price - hourly_cost
    return out.sort_values(["entity_id", "hour"], kind="stable").reset_index(drop=True)


def forecasts_long(forecasts: pd.DataFrame) -> pd.DataFrame:
    """A forecast frame as one row per (entity, origin, horizon): the warehouse's ``forecasts`` layout.

    Columns ``entity_id``, ``origin_ts``, ``horizon``, ``target_ts``, ``p50``, ``p90`` (NaN
    where the model has no quantile head); rows without a p50 are dropped.
    """
    horizons = sorted(int(c.split("_h")[1]) for c in forecasts.columns if c.startswith("p50_h"))
    parts = []
    for h in horizons:
        p90 = forecast_column(h, "p90")
        origin = pd.to_datetime(forecasts["ts"], utc=True)
        parts.append(
            pd.DataFrame(
                {
                    "entity_id": forecasts["entity_id"].astype(str),
                    "origin_ts": origin,
                    "horizon": h,
                    "target_ts": origin + h * STEP,
                    "p50": forecasts[forecast_column(h, "p50")].to_numpy(dtype="float64"),
                    "p90": forecasts[p90].to_numpy(dtype="float64") if p90 in forecasts.columns else np.nan,
                }
            )
        )
    if not parts:
        raise ValueError("the forecast frame has no p50_h<h> columns")
    return pd.concat(parts, ignore_index=True).dropna(subset=["p50"])
