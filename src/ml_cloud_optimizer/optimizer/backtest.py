"""Replay a trace under several autoscaling policies and score what each would have cost and missed.

The trace is split by time: the first part is history (the forecaster trains on it, the
static policy sizes from it, the HPA and VPA warm up on it) and the rest is the replay
window, on which every policy is scored alike. Only steps where the trace has a sample are
scored. Figures per policy:

* ``core_hours``: provisioned cores summed over the scored steps, in hours (the cost driver);
  ``cost_usd`` prices them at each entity's own per-core price.
* ``slack``: share of the provisioned core-hours left idle, sum(max(capacity - demand, 0)) /
  sum(capacity) (Autopilot's measure).
* ``underprovisioned_share``: share of scored entity-steps whose demand was above capacity.
* ``slo_violation_minutes``: minutes, summed over entities, during which work was waiting.
  Work a step could not serve is queued and served by later spare capacity (a backlog:
  ``b_t = max(0, b_{t-1} + demand_t - capacity_t)``); a step with ``b_t > 0`` violates the
  SLO. This counts how long a shortfall hurts, not just whether it happened.
* ``unserved_core_hours``: the shortfall, sum(max(demand - capacity, 0)), in hours.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ml_cloud_optimizer.data.schema import STEP_SECONDS, Fleet
from ml_cloud_optimizer.optimizer.capacity import DEFAULT_GRANULARITY, DemandGrid
from ml_cloud_optimizer.optimizer.policies import (
    ForecastPolicy,
    Policy,
    ReactiveHPAPolicy,
    StaticPolicy,
    VPAPolicy,
)

__all__ = [
    "SUMMARY_COLUMNS",
    "BacktestResult",
    "score_capacity",
    "run_backtest",
    "replay_fleet",
    "default_policies",
]

_STEP_HOURS = STEP_SECONDS / 3600.0
_STEP_MINUTES = STEP_SECONDS / 60.0

SUMMARY_COLUMNS = [
    "policy",
    "core_hours",
    "cost_usd",
    "slack",
    "underprovisioned_share",
    "slo_violation_minutes",
    "unserved_core_hours",
    "demand_core_hours",
]


def _backlog(shortfall: np.ndarray) -> np.ndarray:
    """``b_t = max(0, b_{t-1} + x_t)`` along axis 0 in closed form: the running sum less its running minimum."""
    total = np.cumsum(shortfall, axis=0)
    floor = np.minimum(np.minimum.accumulate(total, axis=0), 0.0)
    return total - floor


def score_capacity(grid: DemandGrid, capacity: np.ndarray, start: int) -> dict[str, float]:
    """The figures above for one capacity matrix, over the steps from ``start`` on."""
    demand = grid.demand[start:]
    cap = capacity[start:]
    seen = ~np.isnan(demand)
    if not seen.any():
        raise ValueError("the replay window holds no samples")
    d = np.where(seen, demand, 0.0)
    c = np.where(seen, cap, 0.0)
    over = np.clip(c - d, 0.0, None)
    under = np.clip(d - c, 0.0, None)
    backlog = _backlog(np.where(seen, d - c, 0.0))
    return {
        "core_hours": float(c.sum() * _STEP_HOURS),
        "cost_usd": float((c * grid.price_per_core_hour).sum() * _STEP_HOURS),
        "slack": float(over.sum() / c.sum()),
        "underprovisioned_share": float(((d > c + 1e-9) & seen).sum() / seen.sum()),
        "slo_violation_minutes": float(((backlog > 1e-9) & seen).sum() * _STEP_MINUTES),
        "unserved_core_hours": float(under.sum() * _STEP_HOURS),
        "demand_core_hours": float(d.sum() * _STEP_HOURS),
    }


@dataclass
class BacktestResult:
    """Scores and capacities of every policy on one replay window.

    Attributes:
        summary: one row per policy with ``SUMMARY_COLUMNS``.
        capacity: policy name -> capacity matrix (steps, entities) over the whole grid.
        grid: the demand replayed.
        start: first scored step.
    """

    summary: pd.DataFrame
    capacity: dict[str, np.ndarray]
    grid: DemandGrid
    start: int
    params: dict = field(default_factory=dict)

    @property
    def replay_start(self) -> pd.Timestamp:
        return self.grid.ts[self.start]

    def ratio(self, policy: str, baseline: str, column: str) -> float:
        """``column`` of ``policy`` divided by that of ``baseline`` (inf where the baseline is 0)."""
        rows = self.summary.set_index("policy")[column]
        base = rows[baseline]
        return float(rows[policy] / base) if base else float("inf")

    def capacity_frame(self) -> pd.DataFrame:
        """Long frame of the replay window: ``entity_id``, ``ts``, ``demand_cores`` and one column per policy."""
        rows = slice(self.start, None)
        out = self.grid.frame(self.grid.demand, "demand_cores", rows)
        for name, cap in self.capacity.items():
            out[name] = self.grid.frame(cap, name, rows)[name].to_numpy()
        return out

    def save(self, directory: str | Path) -> list[Path]:
        """Write ``backtest_summary.csv``, ``backtest_summary.md`` and ``backtest_capacity.csv.gz`` into ``directory``."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        paths = [directory / "backtest_summary.csv", directory / "backtest_summary.md", directory / "backtest_capacity.csv.gz"]
        self.summary.to_csv(paths[0], index=False)
        paths[1].write_text(self.summary.to_markdown(index=False, floatfmt=".4g") + "\n")
        self.capacity_frame().to_csv(paths[2], index=False)
        return paths


def run_backtest(
    grid: DemandGrid, policies: list[Policy], *, start: int, granularity: float = DEFAULT_GRANULARITY
) -> BacktestResult:
    """Plan and score each policy on ``grid``; steps before ``start`` are history."""
    if not 0 < start < len(grid.ts):
        raise ValueError(f"replay start {start} must fall inside the grid of {len(grid.ts)} steps")
    names = [p.name for p in policies]
    if len(set(names)) != len(names):
        raise ValueError(f"policy names must be unique, got {names}")
    capacity, rows = {}, []
    for policy in policies:
        cap = policy.plan(grid, start, granularity)
        if cap.shape != grid.demand.shape:
            raise ValueError(f"policy {policy.name} planned shape {cap.shape}, expected {grid.demand.shape}")
        capacity[policy.name] = cap
        rows.append({"policy": policy.name, **score_capacity(grid, cap, start)})
    summary = pd.DataFrame(rows, columns=SUMMARY_COLUMNS)
    return BacktestResult(summary=summary, capacity=capacity, grid=grid, start=start, params={"granularity": granularity})


def default_policies(forecasts: pd.DataFrame | None = None, **forecast_options) -> list[Policy]:
    """Static (history's p99), reactive HPA, VPA-style and, given forecasts, forecast-driven."""
    policies: list[Policy] = [StaticPolicy(), ReactiveHPAPolicy(), VPAPolicy()]
    if forecasts is not None:
        policies.append(ForecastPolicy(forecasts, **forecast_options))
    return policies


def replay_fleet(fleet: Fleet, **kwargs) -> BacktestResult:  # placeholder, replaced below
    raise NotImplementedError
