"""Autoscaling policies replayed on a demand grid: static, reactive HPA, VPA-style, forecast-driven and hybrid.

Every policy answers two questions. ``plan(grid, start, granularity)``: the capacity in cores
(or GiB, on a memory grid) it wants for every entity at every step, as a (steps, entities)
matrix. ``bounds(grid, start, granularity)``: that wish as a ``replay_rules.Plan``, with the
range inside which the policy leaves the current request alone, which ``replay_rules.actuate``
plays out under the costs every policy pays (minimum interval, start-up delay, evictions, OOM
kills). Row ``t`` may depend only on what was known at the end of step ``t - 1``, and rows
before ``start`` are history the policy may learn from. Capacities are rounded up to
``granularity`` (see ``capacity``).
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
from ml_cloud_optimizer.optimizer.replay_rules import Plan

__all__ = [
    "ForecastPolicy",
    "HybridPolicy",
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

    def bounds(self, grid: DemandGrid, start: int, granularity: float) -> Plan:
        """The plan as a proposal to the updater; by default any difference from the plan is acted on."""
        return Plan(self.plan(grid, start, granularity))


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

    def bounds(self, grid: DemandGrid, start: int, granularity: float) -> Plan:
        """The same controller as a proposal: usage / target, left alone within the tolerance.

        The HPA changes nothing while ``usage / (request x target)`` is within ``tolerance`` of 1,
        i.e. while the request lies in ``[usage / (target (1 + tol)), usage / (target (1 - tol))]``;
        outside it the desired capacity is ``usage / target`` rounded up, and a scale-down is held
        at the highest recommendation of the stabilisation window. Pods are added or removed
        (horizontal), so no change restarts anything.
        """
        known = np.where(np.cumsum(grid.observed, axis=0) > 0, grid.filled(), np.nan)  # NaN before a first sample
        seen = np.full(grid.demand.shape, np.nan)
        seen[1:] = known[:-1]
        target = round_up(seen / self.target_utilization, granularity)
        return Plan(
            target,
            lower=seen / (self.target_utilization * (1 + self.tolerance)),
            upper=seen / (self.target_utilization * max(1 - self.tolerance, 1e-9)),
            horizontal=True,
            stabilise_steps=self.downscale_stabilisation_s // int(STEP.total_seconds()) + 1,
        )


@dataclass
class VPAPolicy(Policy):
    """The VerticalPodAutoscaler's recommender: percentiles of a decaying usage histogram plus a margin.

    Usage samples go into exponentially growing buckets (first ``first_bucket`` cores wide,
    each ``bucket_ratio`` times the previous); a sample's weight halves every
    ``half_life_hours``. ``plan`` recommends the end of the bucket holding the ``quantile`` of
    the weight, times ``1 + margin``, applied from the next step. Steps without a sample add
    nothing to the histogram.

    ``bounds`` adds what the updater acts on (kubernetes/autoscaler,
    ``vertical-pod-autoscaler/pkg/recommender/logic/recommender.go`` and ``estimator.go``):
    lowerBound is the ``lower_quantile`` (p50) and upperBound the ``upper_quantile`` (p95) of the
    same histogram, both with the margin, scaled by the recommender's confidence in its history:
    upper x ``(1 + 1 / c)``, lower x ``(1 + 0.001 / c)^-2``, where ``c`` in days is the smaller of
    the history's span and its sample count over one sample a minute (each 5-minute sample
    stands for the five the recommender would have had). The updater leaves a request inside
    ``[lowerBound, upperBound]`` alone until the pod has lived long enough (``settle``).
    """

    quantile: float = 0.9
    half_life_hours: float = 24.0
    margin: float = 0.15
    first_bucket: float = 0.01
    bucket_ratio: float = 1.05
    lower_quantile: float = 0.5
    upper_quantile: float = 0.95
    name = "vpa"

    _CHUNK_CELLS: ClassVar[int] = 8_000_000  # bounds the (steps, entities, buckets) histogram in memory

    def _levels(self, grid: DemandGrid, quantiles: tuple[float, ...]) -> list[np.ndarray]:
        """Per quantile, the histogram's answer after each step's sample, carried forward (NaN before any)."""
        demand = grid.demand
        steps, width = demand.shape
        top = max(float(np.nanmax(demand, initial=0.0)), self.first_bucket)
        n_buckets = int(np.ceil(np.log(top / self.first_bucket) / np.log(self.bucket_ratio))) + 2
        ends = self.first_bucket * self.bucket_ratio ** np.arange(n_buckets)
        bucket = np.searchsorted(ends, np.nan_to_num(demand, nan=0.0), side="left")
        decay = 0.5 ** (1.0 / (self.half_life_hours * STEPS_PER_HOUR))

        levels = [np.full((steps, width), np.nan) for _ in quantiles]
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
            for level, q in zip(levels, quantiles, strict=True):
                first = np.argmax(cumulative >= q * total - 1e-12, axis=2)
                level[:, cols] = np.where(total[:, :, 0] > 0, ends[first], np.nan)
        return [pd.DataFrame(level).ffill().to_numpy() for level in levels]

    def plan(self, grid: DemandGrid, start: int, granularity: float) -> np.ndarray:
        (level,) = self._levels(grid, (self.quantile,))
        capacity = np.empty(level.shape)
        capacity[0] = grid.vcpus
        capacity[1:] = level[:-1] * (1.0 + self.margin)
        capacity = np.where(np.isnan(capacity), grid.vcpus, capacity)
        return round_up(capacity, granularity)

    def confidence(self, grid: DemandGrid) -> np.ndarray:
        """The recommender's confidence after each step, in days (``estimator.go``'s getConfidence)."""
        seen = grid.observed
        count = np.cumsum(seen, axis=0)
        first = np.where(seen.any(axis=0), np.argmax(seen, axis=0), len(seen))
        span = np.clip(np.arange(len(seen))[:, None] - first, 0, None) / (24 * STEPS_PER_HOUR)
        return np.minimum(span, count * 5 / (60 * 24))

    def bounds(self, grid: DemandGrid, start: int, granularity: float) -> Plan:
        p_lo, p_target, p_hi = self._levels(grid, (self.lower_quantile, self.quantile, self.upper_quantile))
        with np.errstate(divide="ignore"):
            inverse = 1.0 / self.confidence(grid)  # inf with no history: no forced eviction either way
        scale = 1.0 + self.margin
        lower = p_lo * scale * (1.0 + 0.001 * inverse) ** -2.0
        upper = p_hi * scale * (1.0 + inverse)
        target = round_up(p_target * scale, granularity)
        target, lower, upper = (np.vstack([np.full((1, x.shape[1]), np.nan), x[:-1]]) for x in (target, lower, upper))
        return Plan(target, lower=lower, upper=upper, settle=True)


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

    As a proposal to the updater (``bounds``) that capacity is the *need*. Its ``peak`` is the
    ``stabilise_quantile`` of the need over the last ``stabilise_steps`` steps (1: the highest,
    as the HPA's scale-down stabilisation keeps the highest recommendation of its window; 0.9:
    a percentile, as the VPA sizes from one). The policy acts when the request falls below the
    need (or the target, if lower) and when it exceeds ``peak x (1 + band)``; either way it sets
    ``peak x (1 + headroom)``. In between it leaves the request alone, so that one change buys a
    while without another, as every change costs (``replay_rules``). ``headroom = band = 0``
    with ``stabilise_steps = 1`` follows the need at every step.

    Args:
        forecasts: forecast frame from ``Forecaster.predict`` over the whole grid.
        horizon: forecast horizon in steps, i.e. how far ahead capacity is decided.
        quantile: which forecast column to provision (``p90``; ``p50`` where none).
        coverage: quantile of the residuals added as margin.
        window_steps: how many recent residuals the margin is learnt from.
        calibrate_from: first timestamp whose residual counts (the forecaster's training end).
        name: how the policy is called in results (one per forecaster compared).
        floor_steps: steps of recent peak demand the capacity must cover (0: no floor).
        headroom: share above the peak need a change sets.
        band: share above the peak need the request may stay at before it is lowered.
        stabilise_steps: steps of need whose peak a change sets and a scale-down waits out.
        stabilise_quantile: which quantile of those steps' need is their peak (1: the highest).
    """

    forecasts: pd.DataFrame = field(repr=False)
    horizon: int = 1
    quantile: str = "p90"
    coverage: float = 0.98
    window_steps: int = 288
    calibrate_from: pd.Timestamp | None = None
    name: str = "forecast"
    floor_steps: int = 0
    headroom: float = 0.0
    band: float = 0.0
    stabilise_steps: int = 1
    stabilise_quantile: float = 1.0

    def need(self, grid: DemandGrid) -> np.ndarray:
        """Forecast plus margin (and floor) for each step, unrounded; NaN where nothing is known yet."""
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
        need = forecast + np.nan_to_num(margin, nan=0.0)
        if self.floor_steps > 0:
            peak = pd.DataFrame(grid.demand).rolling(int(self.floor_steps), min_periods=1).max().shift(h).to_numpy()
            need = np.fmax(need, peak)
        return need

    def plan(self, grid: DemandGrid, start: int, granularity: float) -> np.ndarray:
        need = self.need(grid)
        return round_up(np.where(np.isnan(need), grid.vcpus, need), granularity)

    def bounds(self, grid: DemandGrid, start: int, granularity: float) -> Plan:
        return self.bounds_from(self.need(grid), granularity)

    def bounds_from(self, need: np.ndarray, granularity: float, peak: np.ndarray | None = None) -> Plan:
        """The proposal for a given need, and its ``peak`` if already computed (settings share both)."""
        if self.headroom < 0 or self.band < 0 or self.stabilise_steps < 1 or not 0 < self.stabilise_quantile <= 1:
            raise ValueError(
                "headroom and band must not be negative, stabilise_steps must be at least 1 and"
                f" stabilise_quantile in (0, 1]; got {self.headroom}, {self.band}, {self.stabilise_steps}"
                f" and {self.stabilise_quantile}"
            )
        if peak is None:
            peak = self.peak(need)
        target = round_up(peak * (1.0 + self.headroom), granularity)
        return Plan(target, lower=np.fmin(need, target), upper=np.fmax(peak * (1.0 + self.band), target))

    def peak(self, need: np.ndarray) -> np.ndarray:
        """The ``stabilise_quantile`` of the need over the last ``stabilise_steps`` steps (NaN steps skipped)."""
        if self.stabilise_steps <= 1:
            return need
        window = pd.DataFrame(need).rolling(int(self.stabilise_steps), min_periods=1)
        peak = window.max() if self.stabilise_quantile >= 1 else window.quantile(self.stabilise_quantile)
        return peak.to_numpy()


@dataclass(eq=False)
class HybridPolicy(Policy):
    """The larger of the forecast-driven request and the reactive one, as the big clouds' predictive autoscalers do.

    Google Compute Engine's predictive autoscaling and AWS's predictive scaling both provision
    the larger of what the forecast asks for and what the reactive (utilisation-target) policy
    asks for, so a forecast that misses low is caught one step later by the reactive rule. Here
    every part of the proposal (target, lower and upper bound) is the larger of the two
    policies'; the request is then changed vertically, like the forecast policy's.
    """

    forecast: ForecastPolicy = field(repr=False)
    reactive: ReactiveHPAPolicy = field(default_factory=ReactiveHPAPolicy)
    name: str = "hybrid"

    def plan(self, grid: DemandGrid, start: int, granularity: float) -> np.ndarray:
        return np.maximum(self.forecast.plan(grid, start, granularity), self.reactive.plan(grid, start, granularity))

    def bounds(self, grid: DemandGrid, start: int, granularity: float) -> Plan:
        parts = (self.forecast.bounds(grid, start, granularity), self.reactive.bounds(grid, start, granularity))
        return self.combine(*parts)

    @staticmethod
    def combine(forecast: Plan, reactive: Plan) -> Plan:
        """Element-wise larger target and bounds of two proposals (NaN where both are)."""
        target, lower, upper = (np.fmax(f, r) for f, r in zip(forecast.bounds(), reactive.bounds(), strict=True))
        return Plan(target, lower=lower, upper=upper)
