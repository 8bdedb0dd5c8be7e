"""Autoscaling policies replayed on a demand grid: static, reactive HPA, VPA-style and forecast-driven.

Every policy answers one question, ``plan(grid, start, granularity)``: the capacity in cores
(or GiB, on a memory grid) of every entity at every step, as a (steps, entities) matrix. The
capacity of step ``t`` may depend only on what was known at the end of step ``t - 1`` (the
HPA's one-step delay for new pods holds for every policy alike), and rows before ``start``
are history the policy may learn from. Capacities are rounded up to ``granularity`` (see
``capacity``).
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import pandas as pd
from scipy.signal import lfilter

from ml_cloud_optimizer.data.schema import STEP
from ml_cloud_optimizer.models.base import forecast_column
from ml_cloud_optimizer.optimizer.capacity import STEPS_PER_HOUR, DemandGrid, round_up

__all__ = [
    "ForecastPolicy",
    "Policy",
    "ReactiveHPAPolicy",
    "StaticPolicy",
    "VPAPolicy",
    "forecast_matrix",
]


class Policy(abc.ABC):
    """A rule that turns demand seen so far into the capacity of the next step."""

    name: str = "abstract"

    @abc.abstractmethod
    def plan(self, grid: DemandGrid, start: int, granularity: float) -> np.ndarray:
        """Capacity in cores, shape ``grid.demand.shape``; rows from ``start`` on are scored."""


@dataclass
class StaticPolicy(Policy):
    """Provision each entity once, for the ``quantile`` of its demand over the history before ``start``.

    An entity with no history keeps its current vCPUs.
    """

    quantile: float = 0.99
    name = "static"

    def plan(self, grid: DemandGrid, start: int, granularity: float) -> np.ndarray:
        history = grid.demand[:start]
        level = np.full(len(grid.entity_ids), np.nan)
        seen = ~np.isnan(history).all(axis=0)
        if seen.any():
            level[seen] = np.nanquantile(history[:, seen], self.quantile, axis=0)
        level = np.where(np.isnan(level), grid.vcpus, level)
        return np.broadcast_to(round_up(level, granularity), grid.demand.shape).copy()


@dataclass
class ReactiveHPAPolicy(Policy):
    """Kubernetes' HorizontalPodAutoscaler, with pods of one granule each.

    At the end of each step the desired capacity is ``demand / target_utilization`` rounded
    up; nothing changes while ``demand / (capacity x target)`` is within ``tolerance`` of 1.
    Scaling up happens at once (the new pods serve from the next step); scaling down goes no
    lower than the highest recommendation of the last ``downscale_stabilisation_s`` seconds.
    The HPA starts from the entity's current vCPUs at the first step of the grid.
    """

    target_utilization: float = 0.7
    tolerance: float = 0.1
    downscale_stabilisation_s: int = 300
    name = "reactive_hpa"

    def plan(self, grid: DemandGrid, start: int, granularity: float) -> np.ndarray:
        usage = grid.filled()
        steps, width = usage.shape
        window = self.downscale_stabilisation_s // int(STEP.total_seconds()) + 1
        recent = np.zeros((window, width))
        capacity = np.empty((steps, width))
        capacity[0] = round_up(grid.vcpus, granularity)
        # The HPA is a feedback loop: each step's decision depends on the capacity it left, so
        # it runs step by step, vectorised across entities.
        for t in range(steps - 1):
            current = capacity[t]
            ratio = usage[t] / (current * self.target_utilization)
            desired = round_up(usage[t] / self.target_utilization, granularity)
            desired = np.where(np.abs(ratio - 1.0) <= self.tolerance, current, desired)
            recent[t % window] = desired
            ceiling = recent[: min(t + 1, window)].max(axis=0)
            capacity[t + 1] = np.where(desired > current, desired, np.minimum(current, ceiling))
        return capacity


@dataclass
class VPAPolicy(Policy):
    """The VerticalPodAutoscaler's recommender: a decaying usage histogram's percentile plus a margin.

    Usage samples go into exponentially growing buckets (first ``first_bucket`` cores wide,
    each ``bucket_ratio`` times the previous); a sample's weight halves every
    ``half_life_hours``. The recommendation is the end of the bucket holding the ``quantile``
    of the weight, times ``1 + margin``, applied from the next step. Steps without a sample add
    nothing to the histogram.
    """

    quantile: float = 0.9
    half_life_hours: float = 24.0
    margin: float = 0.15
    first_bucket: float = 0.01
    bucket_ratio: float = 1.05
    name = "vpa"

    _CHUNK_CELLS: ClassVar[int] = 8_000_000  # bounds the (steps, entities, buckets) histogram in memory

    def plan(self, grid: DemandGrid, start: int, granularity: float) -> np.ndarray:
        demand = grid.demand
        steps, width = demand.shape
        top = max(float(np.nanmax(demand, initial=0.0)), self.first_bucket)
        n_buckets = int(np.ceil(np.log(top / self.first_bucket) / np.log(self.bucket_ratio))) + 2
        ends = self.first_bucket * self.bucket_ratio ** np.arange(n_buckets)
        bucket = np.searchsorted(ends, np.nan_to_num(demand, nan=0.0), side="left")
        decay = 0.5 ** (1.0 / (self.half_life_hours * STEPS_PER_HOUR))

        level = np.full((steps, width), np.nan)
        chunk = max(1, self._CHUNK_CELLS // (steps * n_buckets))
        for lo in range(0, width, chunk):
            cols = slice(lo, min(lo + chunk, width))
            samples = np.zeros((steps, cols.stop - lo, n_buckets), dtype="float32")
            seen = ~np.isnan(demand[:, cols])
            t_idx, e_idx = np.nonzero(seen)
            samples[t_idx, e_idx, bucket[:, cols][seen]] = 1.0
            histogram = lfilter([1.0], [1.0, -decay], samples, axis=0)
            cumulative = np.cumsum(histogram, axis=2)
            total = cumulative[:, :, -1:]
            first = np.argmax(cumulative >= self.quantile * total - 1e-12, axis=2)
            level[:, cols] = np.where(total[:, :, 0] > 0, ends[first], np.nan)

        level = pd.DataFrame(level).ffill().to_numpy()
        capacity = np.empty((steps, width))
        capacity[0] = grid.vcpus
        capacity[1:] = level[:-1] * (1.0 + self.margin)
        capacity = np.where(np.isnan(capacity), grid.vcpus, capacity)
        return round_up(capacity, granularity)


def forecast_matrix(forecasts: pd.DataFrame, grid: DemandGrid, horizon: int, quantile: str = "p90") -> np.ndarray:
    """Forecast ``cpu_util`` for each step (made ``horizon`` steps earlier) as cores on the grid; NaN where none."""
    column = forecast_column(horizon, quantile)
    if column not in forecasts.columns:
        raise ValueError(f"the forecast frame has no {column} column (horizons or quantiles differ)")
    target = pd.to_datetime(forecasts["ts"], utc=True) + horizon * STEP
    wide = (
        pd.DataFrame({"entity_id": forecasts["entity_id"].astype(str), "ts": target, "v": forecasts[column]})
        .pivot_table(index="ts", columns="entity_id", values="v", aggfunc="mean")
        .reindex(index=grid.ts, columns=grid.entity_ids)
    )
    return wide.to_numpy(dtype="float64") * grid.vcpus


@dataclass(eq=False)
class ForecastPolicy(Policy):
    """Provision the forecast's quantile plus a margin learnt online from its recent misses.

    The capacity of step ``t`` is the ``quantile`` forecast made ``horizon`` steps earlier,
    plus the ``coverage`` quantile of the forecast's residuals (demand minus forecast, in cores)
    over the last ``window_steps`` steps whose demand was known when the decision was made:
    a rolling split-conformal correction, so an entity whose forecast keeps missing high gets
    more headroom and one that is over-forecast gets less. Only residuals from
    ``calibrate_from`` on count, so a forecaster's fit on its own training rows cannot make
    the margin look small. Where no forecast exists the last demand seen stands in
    (persistence); where too few residuals exist yet, the margin is zero. With
    ``floor_steps``, capacity never goes below the largest demand of that many steps known at
    decision time: memory's rule (``memory``), since a shortfall there is an OOM kill.

    Args:
        forecasts: forecast frame from ``Forecaster.predict`` over the whole grid.
        horizon: forecast horizon in steps, i.e. how far ahead capacity is decided.
        quantile: which forecast column to provision (``p90``; ``p50`` where none).
        coverage: quantile of the residuals added as margin.
        window_steps: how many recent residuals the margin is learnt from.
        calibrate_from: first timestamp whose residual counts (the forecaster's training end).
        name: how the policy is called in results (one per forecaster compared).
        floor_steps: steps of recent peak demand the capacity must cover (0: no floor).
    """

    forecasts: pd.DataFrame = field(repr=False)
    horizon: int = 1
    quantile: str = "p90"
    coverage: float = 0.98
    window_steps: int = 288
    calibrate_from: pd.Timestamp | None = None
    name: str = "forecast"
    floor_steps: int = 0

    def plan(self, grid: DemandGrid, start: int, granularity: float) -> np.ndarray:
        h = int(self.horizon)
        column = forecast_column(h, self.quantile)
        quantile = self.quantile if column in self.forecasts.columns else "p50"
        forecast = forecast_matrix(self.forecasts, grid, h, quantile)
        seen = np.full_like(forecast, np.nan)
        seen[h:] = grid.filled()[:-h]
        forecast = np.where(np.isnan(forecast), seen, forecast)

        residual = grid.demand - forecast
        if self.calibrate_from is not None:
            residual[: grid.index_of(self.calibrate_from)] = np.nan
        margin = (
            pd.DataFrame(residual)
            .rolling(self.window_steps, min_periods=STEPS_PER_HOUR)
            .quantile(self.coverage)
            .shift(h)  # the residual of step t is known at t; a decision for t + h is made at t
            .to_numpy()
        )
        capacity = forecast + np.nan_to_num(margin, nan=0.0)
        if self.floor_steps > 0:
            peak = pd.DataFrame(grid.demand).rolling(int(self.floor_steps), min_periods=1).max().shift(h).to_numpy()
            capacity = np.fmax(capacity, peak)
        capacity = np.where(np.isnan(capacity), grid.vcpus, capacity)
        return round_up(capacity, granularity)
