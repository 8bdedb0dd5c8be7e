"""From demand to provisioned capacity, cost and recommendations, for CPU and memory.

Definitions used by every policy, the backtest and ``mlco recommend`` alike:

* **Demand** of an entity at a 5-minute step is ``cpu_util x vcpus`` cores (``cpu_util`` is
  the fraction of the entity's own vCPUs that was busy), or for memory its working set
  ``mem_util x mem_gib`` in GiB.
* **Capacity** is what a policy provisions for that step, rounded *up* to a granularity
  (``DEFAULT_GRANULARITY`` = 0.25 core, one quarter-core request step; memory: 64 MiB, see
  ``memory``) and never below one granule. All policies share the granularity, so none gains
  from finer steps.
* **Cost** is priced per resource (``prices``): cores x a CPU rate plus GiB x a RAM rate, so
  shrinking CPU saves only the CPU share of an instance's price. The built-in list-price
  defaults apply unless a price file says otherwise; reports name which.

Memory requests are sized apart (``memory``): from the p90 forecast plus headroom, and never
below the recent peak working set, since too little memory is an OOM kill, not a slowdown.

Nothing here touches the database: ``warehouse.optimizer_runs`` stores and reads the frames
built here (``RECOMMENDATION_COLUMNS`` lives in ``data.schema``, shared by both).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ml_cloud_optimizer.data.schema import RECOMMENDATION_COLUMNS, STEP, STEP_SECONDS, UTIL_MAX, Fleet
from ml_cloud_optimizer.models.base import forecast_column
from ml_cloud_optimizer.optimizer.memory import DEFAULT_MEM_GRANULARITY, DEFAULT_MEM_HEADROOM, size_memory
from ml_cloud_optimizer.optimizer.prices import DEFAULT_PRICES, Prices

__all__ = [
    "DEFAULT_GRANULARITY",
    "DEFAULT_MEM_GRANULARITY",
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
    """Demand of a fleet on one common 5-minute grid: one row per step, one column per entity.

    One resource per grid: cores for ``cpu`` (the default), GiB of working set for ``mem``.
    The field names speak of CPU because CPU came first; for a memory grid ``vcpus`` holds
    the GiB each entity has (its current request) and ``price_per_core_hour`` the USD per
    GiB-hour, so every policy provisions either resource with the same code.

    Attributes:
        ts: the steps, regular and in order.
        entity_ids: the entities, in column order.
        vcpus: what each entity has today: vCPUs (cpu) or GiB (mem).
        price_per_core_hour: USD per core-hour (cpu) or per GiB-hour (mem), per entity.
        demand: cores or GiB, shape (steps, entities); NaN where the trace has no sample.
        resource: ``"cpu"`` or ``"mem"``.
    """

    ts: pd.DatetimeIndex
    entity_ids: pd.Index
    vcpus: np.ndarray
    price_per_core_hour: np.ndarray
    demand: np.ndarray
    resource: str = "cpu"

    @classmethod
    def from_fleet(
        cls, fleet: Fleet, resource: str = "cpu", *, prices: Prices | None = None, spot: bool = False
    ) -> DemandGrid:
        """Pivot a canonical fleet to the grid spanning its first to last timestamp.

        Args:
            fleet: canonical fleet.
            resource: ``cpu`` (cores: ``cpu_util x vcpus``) or ``mem`` (GiB: ``mem_util x mem_gib``).
            prices: the rates (default: the built-in list-price defaults); CPU or RAM by resource.
            spot: price at spot rates.
        """
        if resource not in ("cpu", "mem"):
            raise ValueError(f"unknown resource {resource!r}; expected cpu or mem")
        metrics = fleet.metrics
        if metrics.empty:
            raise ValueError("the fleet has no metrics rows: nothing to replay")
        column, size = ("cpu_util", "vcpus") if resource == "cpu" else ("mem_util", "mem_gib")
        util = metrics.pivot_table(index="ts", columns="entity_id", values=column, aggfunc="mean", observed=True)
        if util.empty:
            raise ValueError(f"the fleet has no {column} values: nothing to replay for {resource}")
        ts = pd.date_range(util.index.min(), util.index.max(), freq=STEP, name="ts")
        util = util.reindex(ts)
        entities = fleet.entities.set_index("entity_id").reindex(util.columns)
        if entities["vcpus"].isna().any():
            missing = entities.index[entities["vcpus"].isna()][0]
            raise ValueError(f"entity {missing} has metrics but no row in entities")
        amount = entities[size].to_numpy(dtype="float64")
        rates = (prices or DEFAULT_PRICES).rates(entities.reset_index(), spot=spot)
        return cls(
            ts=ts,
            entity_ids=pd.Index(util.columns.astype(str), name="entity_id"),
            vcpus=amount,
            price_per_core_hour=rates.cpu if resource == "cpu" else rates.ram,
            demand=util.to_numpy(dtype="float64") * amount,
            resource=resource,
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


def _horizons_of(forecasts: pd.DataFrame) -> tuple[int, ...]:
    return tuple(sorted(int(c.split("_h")[1]) for c in forecasts.columns if c.startswith("p50_h")))


def _hourly(forecasts: pd.DataFrame, horizons: tuple[int, ...] | None, what: str) -> pd.DataFrame:
    """Per (entity_id, hour): the mean p50 and the largest p90 (p50 where no p90) of the forecasts for it.

    A ``peak_mem_gib`` column (per origin) is carried along as its largest value in the hour.
    """
    horizons = horizons or _horizons_of(forecasts)
    if not horizons:
        raise ValueError(f"the {what} forecast frame has no p50_h<h> columns")
    parts = []
    for h in horizons:
        p50 = forecast_column(h, "p50")
        p90 = forecast_column(h, "p90")
        if p50 not in forecasts.columns:
            raise ValueError(f"the {what} forecast frame has no {p50} column")
        part = pd.DataFrame(
            {
                "entity_id": forecasts["entity_id"].astype(str).to_numpy(),
                "hour": (pd.to_datetime(forecasts["ts"], utc=True) + h * STEP).dt.floor("h").to_numpy(),
                "p50": forecasts[p50].to_numpy(dtype="float64"),
                "p90": forecasts[p90 if p90 in forecasts.columns else p50].to_numpy(dtype="float64"),
                "peak": forecasts["peak_mem_gib"].to_numpy(dtype="float64")
                if "peak_mem_gib" in forecasts.columns
                else np.nan,
            }
        )
        parts.append(part)
    long = pd.concat(parts, ignore_index=True).dropna(subset=["p50", "p90"])
    long["hour"] = pd.to_datetime(long["hour"], utc=True)
    return long.groupby(["entity_id", "hour"], as_index=False).agg(
        p50=("p50", "mean"), p90=("p90", "max"), peak=("peak", "max")
    )


def recommend(
    forecasts: pd.DataFrame | None,
    entities: pd.DataFrame,
    *,
    horizons: tuple[int, ...] | None = None,
    target_utilization: float = 0.7,
    granularity: float = DEFAULT_GRANULARITY,
    mem_forecasts: pd.DataFrame | None = None,
    peak_mem: pd.DataFrame | None = None,
    mem_headroom: float = DEFAULT_MEM_HEADROOM,
    mem_granularity: float = DEFAULT_MEM_GRANULARITY,
    prices: Prices | None = None,
    spot: bool = False,
) -> pd.DataFrame:
    """Per entity and hour: the CPU (and memory) request, its cost split by resource, and the saving.

    Each forecast row (an origin ``ts`` with ``p50_h{h}`` / ``p90_h{h}`` columns, as every
    ``Forecaster.predict`` returns) speaks for the hour its target ``ts + h x 5 min`` falls in.
    Per hour, the typical demand is the mean p50 and the demand to cover is the largest p90.

    * **CPU**: the p90 - p50 gap is the headroom the forecast's own uncertainty asks for;
      forecasts without p90 columns fall back to p50. The request is that demand divided by
      the target utilization, rounded up to ``granularity``.
    * **Memory** (with ``mem_forecasts``, which forecast ``mem_util``): ``memory.size_memory``,
      i.e. ``max(p90 x mem_gib x (1 + mem_headroom), peak working set)`` rounded up to
      ``mem_granularity``, where the peak is the largest ``peak_mem`` of the hour's origins.

    A resource without forecasts stays at the entity's current amount, so it adds no saving.
    Costs come from ``prices`` (default: the built-in list-price defaults), CPU and memory
    apart; ``replicas`` is how many instances of the entity's current type the requests need.

    Args:
        forecasts: CPU forecast frame (``entity_id``, ``ts``, ``p50_h{h}``, optional ``p90_h{h}``);
            None when only memory is recommended.
        entities: canonical entities frame (vcpus, mem_gib, instance_type, region...).
        horizons: which horizons to use; default: every horizon present.
        target_utilization: the CPU utilisation the request is sized for, in (0, 1].
        granularity: CPU request step in cores.
        mem_forecasts: memory forecast frame, same layout, forecasting ``mem_util``.
        peak_mem: ``entity_id``, ``ts``, ``peak_mem_gib`` per origin (``memory.peak_working_set``).
        mem_headroom: share added to the memory p90.
        mem_granularity: memory request step in GiB.
        prices: CPU and RAM rates; ``spot`` prices at their spot rates.

    Returns:
        One row per (entity_id, hour) with ``RECOMMENDATION_COLUMNS``: CPU in cores, memory in
        GiB, and USD per hour (``hourly_cost`` = ``cpu_hourly_cost`` + ``mem_hourly_cost``;
        ``hourly_saving`` = ``current_hourly_cost`` - ``hourly_cost``, positive when cheaper).
    """
    if not 0 < target_utilization <= 1:
        raise ValueError(f"target utilization must be in (0, 1], got {target_utilization}")
    if forecasts is None and mem_forecasts is None:
        raise ValueError("nothing to recommend: give CPU or memory forecasts")
    keys = ["entity_id", "hour"]
    cpu = _hourly(forecasts, horizons, "CPU") if forecasts is not None else None
    mem = None
    if mem_forecasts is not None:
        if peak_mem is not None:
            mem_forecasts = mem_forecasts.drop(columns="peak_mem_gib", errors="ignore").merge(
                peak_mem.assign(entity_id=peak_mem["entity_id"].astype(str)),
                on=["entity_id", "ts"],
                how="left",
            )
        mem = _hourly(mem_forecasts.assign(entity_id=mem_forecasts["entity_id"].astype(str)), horizons, "memory")
    if cpu is not None and mem is not None:
        hourly = cpu.merge(mem, on=keys, how="outer", suffixes=("", "_mem"))
    elif cpu is not None:
        hourly = cpu.assign(p50_mem=np.nan, p90_mem=np.nan, peak_mem=np.nan)
    else:
        assert mem is not None
        hourly = mem.rename(columns={"p50": "p50_mem", "p90": "p90_mem", "peak": "peak_mem"}).assign(
            p50=np.nan, p90=np.nan
        )
    hourly = hourly.sort_values(keys, kind="stable").reset_index(drop=True)

    attrs = entities.assign(entity_id=entities["entity_id"].astype(str)).drop_duplicates("entity_id")
    attrs = attrs.set_index("entity_id")
    unknown = ~hourly["entity_id"].isin(attrs.index)
    if unknown.any():
        raise ValueError(f"forecasts name entity {hourly.loc[unknown, 'entity_id'].iloc[0]} absent from entities")
    rows = hourly["entity_id"]
    vcpus = attrs["vcpus"].reindex(rows).to_numpy(dtype="float64")
    sizes = attrs["mem_gib"] if "mem_gib" in attrs.columns else pd.Series(np.nan, index=attrs.index)
    mem_gib = sizes.reindex(rows).to_numpy(dtype="float64")
    rates = (prices or DEFAULT_PRICES).rates(attrs.reset_index(), spot=spot)
    cpu_rate = pd.Series(rates.cpu, index=attrs.index).reindex(rows).to_numpy()
    ram_rate = pd.Series(rates.ram, index=attrs.index).reindex(rows).to_numpy()

    # Clipped to the schema's range, so a stray forecast cannot size an entity past any count that fits int64.
    p50_cores = np.clip(hourly["p50"].to_numpy(dtype="float64"), 0, UTIL_MAX) * vcpus
    p90_cores = np.fmax(np.clip(hourly["p90"].to_numpy(dtype="float64"), 0, UTIL_MAX) * vcpus, p50_cores)
    sized = round_up(p90_cores / target_utilization, granularity)
    request = np.where(np.isnan(sized), vcpus, sized)  # no CPU forecast: CPU stays as it is

    p90_mem = np.clip(hourly["p90_mem"].to_numpy(dtype="float64"), 0, UTIL_MAX) * mem_gib
    peak_mem_gib = hourly["peak_mem"].to_numpy(dtype="float64")
    peak_mem_gib = np.where(np.isnan(p90_mem), np.nan, peak_mem_gib)
    sized_mem = size_memory(p90_mem, peak_mem_gib, headroom=mem_headroom, granularity=mem_granularity)
    request_mem = np.where(np.isnan(sized_mem), mem_gib, sized_mem)  # no memory forecast: memory stays

    cpu_cost = request * cpu_rate
    mem_cost = np.nan_to_num(request_mem * ram_rate, nan=0.0)  # memory of unknown size is not priced
    current = vcpus * cpu_rate + np.nan_to_num(mem_gib * ram_rate, nan=0.0)
    replicas = np.fmax(np.ceil(request / vcpus - 1e-9), np.ceil(request_mem / mem_gib - 1e-9))

    out = hourly[keys].copy()  # columns in RECOMMENDATION_COLUMNS order
    out["p50_cores"] = p50_cores
    out["p90_cores"] = p90_cores
    out["headroom_cores"] = p90_cores - p50_cores
    out["request_cores"] = request
    out["replicas"] = np.nan_to_num(np.maximum(replicas, 1.0), nan=1.0).astype("int64")
    out["current_cores"] = vcpus
    out["p90_mem_gib"] = p90_mem
    out["peak_mem_gib"] = peak_mem_gib
    out["request_mem_gib"] = request_mem
    out["current_mem_gib"] = mem_gib
    out["cpu_hourly_cost"] = cpu_cost
    out["mem_hourly_cost"] = mem_cost
    out["hourly_cost"] = cpu_cost + mem_cost
    out["current_hourly_cost"] = current
    out["hourly_saving"] = current - (cpu_cost + mem_cost)
    return out[RECOMMENDATION_COLUMNS]


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
