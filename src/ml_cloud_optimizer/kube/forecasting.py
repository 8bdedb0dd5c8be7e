"""One forecasting cycle over a cluster's workloads: what the recommender writes and the exporter serves.

Why a module of its own: the VPA recommender and the exporter run the same cycle (read the
recent history from Prometheus, forecast CPU and memory with the champions, size requests,
check how often the p90 held lately) and differ only in where the result goes. A cycle never
raises for a workload's trouble: a failure of Prometheus or the model is the cycle's ``failure``,
a workload without enough history is in ``skipped``, so callers can keep what they had.

Coverage is the share of the recent origins (``Settings.coverage_hours``) whose one-hour p90
held, i.e. the usage an hour later was at or below it, read off the same history the forecast
comes from: a workload whose forecasts lately missed is not trusted to act alone
(``WorkloadForecast.confident``).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ml_cloud_optimizer.horizons import HEADLINE_HORIZON
from ml_cloud_optimizer.kube.names import COVERAGE_TARGET
from ml_cloud_optimizer.kube.sizing import Workload, WorkloadSizing, size_workloads

__all__ = ["Cycle", "Forecasting", "Settings", "WorkloadForecast"]

log = logging.getLogger(__name__)

_STEP = pd.Timedelta(minutes=5)
GIB = 2**30


@dataclass(frozen=True)
class Settings:
    """How requests are sized from forecasts (as ``mlco recommend``) and how far back coverage looks."""

    target_utilization: float = 0.7
    granularity: float = 0.25
    mem_headroom: float = 0.15
    mem_granularity: float = 1 / 16
    hours: int = 24  # origins whose forecasts bound the recommendation (lower/upper)
    coverage_hours: float = 24.0
    coverage_target: float = COVERAGE_TARGET
    peak_lookback: pd.Timedelta = pd.Timedelta(days=7)


@dataclass(frozen=True)
class WorkloadForecast:
    """A workload's forecasts from its last origin, totals over its replicas, and its sizing."""

    workload: Workload
    origin: pd.Timestamp
    cpu: dict[int, tuple[float, float]]  # horizon steps -> (p50, p90) cores
    memory: dict[int, tuple[float, float]]  # horizon steps -> (p50, p90) bytes
    peak_probability: float  # NaN without a peak classifier
    coverage: dict[str, float]  # "cpu" / "memory" -> share of recent p90s that held (NaN: unknown)
    capacity_cores: float
    capacity_bytes: float
    sizing: WorkloadSizing | None
    coverage_target: float = COVERAGE_TARGET

    @property
    def confident(self) -> bool:
        """Whether every forecast resource's p90 held often enough lately to act without a person."""
        shares = list(self.coverage.values())
        return bool(shares) and all(np.isfinite(s) and s >= self.coverage_target for s in shares)


@dataclass
class Cycle:
    """What one cycle found: forecasts by entity id, workloads it could not forecast, or why it failed."""

    ended: float
    forecasts: dict[str, WorkloadForecast] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    failure: str | None = None


class Forecasting:
    """Runs cycles: ``Forecasting(source, cpu_bundle, mem_bundle).run()``.

    Args:
        source: a ``prometheus://`` string at workload level (or a fleet path, for tests and
            demos); a range in it is ignored except ``end``, which stands for "now" when given.
        cpu_bundle, mem_bundle: ``ModelBundle``s forecasting ``cpu_util`` and ``mem_util``; either may be None.
        settings: sizing and coverage settings.
        clock: the current time in unix seconds (tests pass a fixed one).
    """

    def __init__(self, source: str, cpu_bundle, mem_bundle=None, settings: Settings | None = None, clock=time.time):
        if cpu_bundle is None and mem_bundle is None:
            raise ValueError("nothing to forecast: give a CPU or a memory model")
        self.source = source
        self.cpu_bundle, self.mem_bundle = cpu_bundle, mem_bundle
        self.settings = settings or Settings()
        self.clock = clock

    @property
    def history_steps(self) -> int:
        """Steps of history a cycle reads: the models' needs, the recommendation window and coverage's."""
        needs = [int(getattr(b.forecaster, "full_history", b.min_history)) for b in self._bundles()]
        needs += [int(b.min_history) for b in self._bundles()]
        if self.mem_bundle is not None:
            needs.append(int(self.settings.peak_lookback / _STEP))
        extra = max(self.settings.hours * 12, int(self.settings.coverage_hours * 12) + HEADLINE_HORIZON)
        return max(needs) + extra + 12

    def _bundles(self):
        return [b for b in (self.cpu_bundle, self.mem_bundle) if b is not None]

    def read(self, namespace: str | None = None):
        """The recent history of the source's workloads (a Fleet), of ``namespace`` only when given."""
        from ml_cloud_optimizer.data.io import read_fleet
        from ml_cloud_optimizer.data.traces.prometheus import source as prometheus_source

        if not prometheus_source.is_url(self.source):
            return read_fleet(self.source)
        from ml_cloud_optimizer.data.traces import prometheus

        src = prometheus_source.parse(self.source)
        end = src.end if "end=" in self.source else self.clock()
        start = end - self.history_steps * _STEP.total_seconds()
        namespace = src.namespace or namespace  # the source's own filter stands
        return prometheus.read(self.source, start=str(start), end=str(end), namespace=namespace)

    def run(self, entity_ids: set[str] | None = None) -> Cycle:
        """One cycle over the source's workloads, or only ``entity_ids`` (``namespace/Kind/name``)."""
        cycle = Cycle(ended=float("nan"))
        # Workloads of one namespace: Prometheus is asked for that namespace alone, not the cluster.
        namespaces = {e.split("/", 1)[0] for e in entity_ids or ()}
        try:
            fleet = self.read(namespaces.pop() if len(namespaces) == 1 else None)
        except Exception as exc:
            cycle.failure = f"reading metrics failed: {_one_line(exc)}"
            cycle.ended = self.clock()
            return cycle
        metrics, entities = fleet.metrics, fleet.entities
        if entity_ids is not None:
            wanted = metrics["entity_id"].astype(str).isin(entity_ids)
            metrics = metrics.loc[wanted].reset_index(drop=True)
            entities = entities.loc[entities["entity_id"].astype(str).isin(entity_ids)].reset_index(drop=True)
            for missing in sorted(set(entity_ids) - set(entities["entity_id"].astype(str))):
                cycle.skipped[missing] = "no metrics for this workload in Prometheus"
        if not metrics.empty:
            try:
                self._forecast(metrics, entities, cycle)
            except Exception as exc:
                log.exception("forecasting failed")
                cycle.failure = f"forecasting failed: {_one_line(exc)}"
        cycle.ended = self.clock()
        return cycle

    def _forecast(self, metrics: pd.DataFrame, entities: pd.DataFrame, cycle: Cycle) -> None:
        from ml_cloud_optimizer.optimizer.capacity import recommend
        from ml_cloud_optimizer.optimizer.memory import peak_working_set
        from ml_cloud_optimizer.resources import as_target

        s = self.settings
        metrics = metrics.assign(entity_id=metrics["entity_id"].astype(str))
        entities = entities.assign(entity_id=entities["entity_id"].astype(str))
        cpu_all = mem_all = cpu_last = mem_last = None
        if self.cpu_bundle is not None:
            cpu_all = _recent(self.cpu_bundle.forecaster.predict(as_target(metrics, "cpu")), s)
            cpu_last = self.cpu_bundle.predict(metrics)
        if self.mem_bundle is not None and metrics["mem_util"].notna().any():
            mem_view = as_target(metrics, "mem")
            mem_all = _recent(self.mem_bundle.forecaster.predict(mem_view), s)
            mem_last = self.mem_bundle.predict(metrics)
        forecast_ids = set().union(*(set(f["entity_id"].astype(str)) for f in (cpu_all, mem_all) if f is not None))
        for entity in sorted(set(entities["entity_id"]) - forecast_ids):
            cycle.skipped[entity] = "too little history to forecast"
        if not forecast_ids:
            return
        peak = peak_working_set(metrics, entities, s.peak_lookback) if mem_all is not None else None
        recs = recommend(
            cpu_all,
            entities,
            target_utilization=s.target_utilization,
            granularity=s.granularity,
            mem_forecasts=mem_all,
            peak_mem=peak,
            mem_headroom=s.mem_headroom,
            mem_granularity=s.mem_granularity,
        )
        targets = tuple(t for t, f in (("cpu", cpu_all), ("mem", mem_all)) if f is not None)
        sizings = {z.workload.entity_id: z for z in size_workloads(recs, self.shapes(forecast_ids), targets=targets)}
        attrs = entities.set_index("entity_id")
        coverage = {
            "cpu": _coverage(cpu_all, metrics, "cpu_util", s),
            "memory": _coverage(mem_all, metrics, "mem_util", s),
        }
        for entity in sorted(forecast_ids):
            vcpus, mem_gib = float(attrs.at[entity, "vcpus"]), float(attrs.at[entity, "mem_gib"])
            cpu_row, mem_row = _row(cpu_last, entity), _row(mem_last, entity)
            origin = (cpu_row if cpu_row is not None else mem_row)["ts"]
            cycle.forecasts[entity] = WorkloadForecast(
                workload=Workload.from_entity(entity),
                origin=pd.Timestamp(origin),
                cpu=_by_horizon(cpu_row, vcpus),
                memory=_by_horizon(mem_row, mem_gib * GIB),
                peak_probability=float(cpu_row["peak_prob"]) if cpu_row is not None else float("nan"),
                coverage={
                    name: float(shares.get(entity, np.nan)) for name, shares in coverage.items() if shares is not None
                },
                capacity_cores=vcpus,
                capacity_bytes=mem_gib * GIB,
                sizing=sizings.get(entity),
                coverage_target=s.coverage_target,
            )

    def shapes(self, entity_ids) -> dict:
        """Replicas and container shares per workload from Prometheus; empty for a file source."""
        from ml_cloud_optimizer.data.traces.prometheus import source as prometheus_source

        if not prometheus_source.is_url(self.source):
            return {}
        from ml_cloud_optimizer.data.traces.prometheus.containers import workload_shapes

        return workload_shapes(self.source, sorted(entity_ids))


def _recent(forecasts: pd.DataFrame, s: Settings) -> pd.DataFrame:
    """Every origin's forecasts within the windows a cycle uses (recommendation and coverage)."""
    if forecasts.empty:
        return forecasts
    keep = pd.Timedelta(hours=max(s.hours, s.coverage_hours)) + HEADLINE_HORIZON * _STEP
    last = forecasts.groupby("entity_id", observed=True)["ts"].transform("max")
    recent = forecasts.loc[forecasts["ts"] > last - keep]
    return recent.assign(entity_id=recent["entity_id"].astype(str)).reset_index(drop=True)


def _coverage(forecasts: pd.DataFrame | None, metrics: pd.DataFrame, column: str, s: Settings) -> dict | None:
    """Per entity: the share of origins in the coverage window whose headline-horizon p90 held."""
    if forecasts is None or forecasts.empty:
        return None
    horizon = HEADLINE_HORIZON if f"p50_h{HEADLINE_HORIZON}" in forecasts.columns else _horizons(forecasts)[-1]
    bound = f"p90_h{horizon}" if f"p90_h{horizon}" in forecasts.columns else f"p50_h{horizon}"
    actual = metrics[["entity_id", "ts", column]].rename(columns={column: "actual"})
    scored = forecasts[["entity_id", "ts", bound]].assign(ts=forecasts["ts"] + horizon * _STEP)
    scored = scored.merge(actual, on=["entity_id", "ts"], how="inner").dropna(subset=["actual", bound])
    cutoff = scored.groupby("entity_id")["ts"].transform("max") - pd.Timedelta(hours=s.coverage_hours)
    scored = scored.loc[scored["ts"] > cutoff]
    held = scored["actual"] <= scored[bound] + 1e-12
    return held.groupby(scored["entity_id"]).mean().to_dict()


def _horizons(forecasts: pd.DataFrame) -> list[int]:
    return sorted(int(c.split("_h")[1]) for c in forecasts.columns if c.startswith("p50_h"))


def _row(frame: pd.DataFrame | None, entity: str):
    if frame is None:
        return None
    rows = frame.loc[frame["entity_id"].astype(str) == entity]
    return None if rows.empty else rows.iloc[-1]


def _by_horizon(row, scale: float) -> dict[int, tuple[float, float]]:
    """``{h: (p50, p90)}`` in absolute units (utilisation times ``scale``); p90 falls back to p50."""
    if row is None:
        return {}
    out = {}
    for h in sorted(int(c.split("_h")[1]) for c in row.index if c.startswith("p50_h")):
        p50 = max(float(row[f"p50_h{h}"]), 0.0)
        p90 = float(row.get(f"p90_h{h}", np.nan))
        out[h] = (p50 * scale, max(p90 if np.isfinite(p90) else p50, p50) * scale)
    return out


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__
