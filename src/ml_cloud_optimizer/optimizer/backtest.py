"""Replay a trace under several autoscaling policies and score what each would have cost, missed and churned.

Each policy proposes capacity (``policies``); ``replay_rules.actuate`` plays the proposal out
under the costs every policy pays alike: a minimum interval between changes, a start-up delay
before added capacity serves, an eviction (a restart) per vertical change unless resized in
place, and, for memory, an OOM kill whenever the working set exceeds the request. The trace
is split by time: history (the forecaster trains on it, the static policy sizes from it, the
HPA and VPA warm up on it), a validation window (``fleet_replay``: settings are chosen there)
and the replay window, on which every policy is scored alike. Only steps where the trace has
a sample are scored. Figures per policy:

* ``core_hours``: the request in force summed over the scored steps, in hours (the cost
  driver; a starting pod already holds its request); ``cost_usd`` prices it at each entity's
  own per-core price.
* ``slack``: share of the provisioned core-hours left idle, sum(max(request - demand, 0)) /
  sum(request) (Autopilot's measure).
* ``underprovisioned_share``: share of scored entity-steps whose demand was above what served
  (the request, less what was still starting or restarting).
* ``slo_violation_minutes``: minutes, summed over entities, during which work was waiting.
  Work a step could not serve is queued and served by later spare capacity (a backlog:
  ``b_t = max(0, b_{t-1} + demand_t - serving_t)``); a step with ``b_t > 0`` violates the
  SLO. This counts how long a shortfall hurts, not just whether it happened.
* ``unserved_core_hours``: the shortfall, sum(max(demand - serving, 0)), in hours.
* ``changes_per_workload_day`` (churn): request changes in the window per entity-day of
  samples; ``evictions``: how many of them recreated the pod (each a restart).

Memory is replayed apart when the trace has it (``memory_replay``), its figures beside CPU's.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ml_cloud_optimizer.data.schema import STEP_SECONDS, Fleet
from ml_cloud_optimizer.models.base import Forecaster
from ml_cloud_optimizer.optimizer.capacity import DEFAULT_GRANULARITY, DemandGrid, round_up
from ml_cloud_optimizer.optimizer.memory_replay import MEMORY_COLUMNS, run_memory_backtest, score_memory
from ml_cloud_optimizer.optimizer.policies import (
    ForecastPolicy,
    Policy,
    ReactiveHPAPolicy,
    StaticPolicy,
    VPAPolicy,
)
from ml_cloud_optimizer.optimizer.replay_rules import Actuation, ReplayRules, actuate

__all__ = [
    "DEFAULT_LONG_HORIZON",
    "DEFAULT_POLICY_FORECASTER",
    "MEMORY_COLUMNS",
    "SUMMARY_COLUMNS",
    "BacktestResult",
    "default_forecaster",
    "default_policies",
    "policy_forecaster",
    "replay_fleet",
    "replay_policy",
    "run_backtest",
    "run_memory_backtest",
    "score_capacity",
    "score_churn",
    "score_memory",
]

# The model kind the forecast-driven policy uses unless told otherwise.
DEFAULT_POLICY_FORECASTER = "lightgbm"
# The second horizon the forecast-driven policies are replayed at: one hour, in steps.
DEFAULT_LONG_HORIZON = 12

_STEP_HOURS = STEP_SECONDS / 3600.0
_STEP_MINUTES = STEP_SECONDS / 60.0
_STEPS_PER_DAY = 86_400 // STEP_SECONDS

SUMMARY_COLUMNS = [
    "policy",
    "core_hours",
    "cost_usd",
    "slack",
    "underprovisioned_share",
    "slo_violation_minutes",
    "unserved_core_hours",
    "demand_core_hours",
    "changes_per_workload_day",
    "evictions",
]


def _backlog(shortfall: np.ndarray) -> np.ndarray:
    """``b_t = max(0, b_{t-1} + x_t)`` along axis 0 in closed form: the running sum less its running minimum."""
    total = np.cumsum(shortfall, axis=0)
    floor = np.minimum(np.minimum.accumulate(total, axis=0), 0.0)
    return total - floor


def score_capacity(
    grid: DemandGrid, capacity: np.ndarray, start: int, *, serving: np.ndarray | None = None, end: int | None = None
) -> dict[str, float]:
    """Cost and shortfall figures (module doc) over steps ``start`` to ``end``.

    ``capacity`` is what is billed; ``serving`` what served the demand (default: the capacity).
    """
    rows = slice(start, end)
    demand = grid.demand[rows]
    served = capacity if serving is None else serving
    seen = ~np.isnan(demand)
    if not seen.any():
        raise ValueError("the replay window holds no samples")
    d = np.where(seen, demand, 0.0)
    c = np.where(seen, capacity[rows], 0.0)
    s = np.where(seen, served[rows], 0.0)
    under = np.clip(d - s, 0.0, None)
    backlog = _backlog(np.where(seen, d - s, 0.0))
    return {
        "core_hours": float(c.sum() * _STEP_HOURS),
        "cost_usd": float((c * grid.price_per_core_hour).sum() * _STEP_HOURS),
        "slack": float(np.clip(c - d, 0.0, None).sum() / c.sum()),
        "underprovisioned_share": float(((d > s + 1e-9) & seen).sum() / seen.sum()),
        "slo_violation_minutes": float(((backlog > 1e-9) & seen).sum() * _STEP_MINUTES),
        "unserved_core_hours": float(under.sum() * _STEP_HOURS),
        "demand_core_hours": float(d.sum() * _STEP_HOURS),
    }


def score_churn(grid: DemandGrid, act: Actuation, start: int, end: int | None = None) -> dict[str, float]:
    """Churn over steps ``start`` to ``end``: changes per entity-day of samples, and the evictions among them."""
    rows = slice(start, end)
    workload_days = grid.observed[rows].sum() / _STEPS_PER_DAY
    return {
        "changes_per_workload_day": float(act.changes[rows].sum() / workload_days) if workload_days else 0.0,
        "evictions": int(act.evictions[rows].sum()),
    }


def score_replay(grid: DemandGrid, act: Actuation, start: int, end: int | None = None) -> dict[str, float]:
    """Every CPU figure of one actuation (``SUMMARY_COLUMNS`` less the name)."""
    return {
        **score_capacity(grid, act.request, start, serving=act.serving, end=end),
        **score_churn(grid, act, start, end),
    }


def replay_policy(
    grid: DemandGrid,
    policy: Policy,
    start: int,
    granularity: float,
    rules: ReplayRules,
    *,
    oom: bool = False,
    hold_steps: int = 0,
) -> Actuation:
    """Play one policy out on the whole grid under ``rules``, each entity starting from what it has today."""
    plan = policy.bounds(grid, start, granularity)
    if plan.target.shape != grid.demand.shape:
        raise ValueError(f"policy {policy.name} planned shape {plan.target.shape}, expected {grid.demand.shape}")
    initial = round_up(grid.vcpus, granularity)
    return actuate(plan, grid.demand, rules, initial, oom=oom, granularity=granularity, hold_steps=hold_steps)


@dataclass
class BacktestResult:
    """Scores and capacities of every policy on one replay window.

    Attributes:
        summary: one row per policy with ``SUMMARY_COLUMNS`` (and ``MEMORY_COLUMNS`` once
            memory was replayed).
        capacity: policy name -> request in force (billed), (steps, entities) over the whole grid.
        grid: the demand replayed.
        start: first scored step.
        params: how the replay was set up (split, rules, forecaster, chosen settings...).
        forecasts: the forecast frame the forecast-driven policies used, if any.
        memory_grid: the working set replayed, when memory was.
        memory_capacity: policy name -> memory provisioned (GiB, OOM raises included).
        serving: policy name -> what served the demand (the request less what was starting).
        memory_forecasts: the memory forecast frame, when memory was replayed.
    """

    summary: pd.DataFrame
    capacity: dict[str, np.ndarray]
    grid: DemandGrid
    start: int
    params: dict = field(default_factory=dict)
    forecasts: pd.DataFrame | None = field(default=None, repr=False)
    memory_grid: DemandGrid | None = field(default=None, repr=False)
    memory_capacity: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    serving: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    memory_forecasts: pd.DataFrame | None = field(default=None, repr=False)

    @classmethod
    def from_actuations(
        cls, grid: DemandGrid, actuations: dict[str, Actuation], start: int, **params
    ) -> BacktestResult:
        """Score every actuation on the replay window, in the order given."""
        rows = [{"policy": name, **score_replay(grid, act, start)} for name, act in actuations.items()]
        return cls(
            summary=pd.DataFrame(rows, columns=SUMMARY_COLUMNS),
            capacity={name: act.request for name, act in actuations.items()},
            grid=grid,
            start=start,
            params=dict(params),
            serving={name: act.serving for name, act in actuations.items()},
        )

    def add_memory(self, memory: pd.DataFrame) -> None:
        """Put memory's figures (``run_memory_backtest``'s rows) beside CPU's, policy by policy."""
        self.summary = self.summary.drop(columns=MEMORY_COLUMNS, errors="ignore").merge(
            memory[["policy", *MEMORY_COLUMNS]], on="policy", how="left"
        )

    @property
    def replay_start(self) -> pd.Timestamp:
        return self.grid.ts[self.start]

    def ratio(self, policy: str, baseline: str, column: str) -> float:
        """``column`` of ``policy`` over ``baseline``'s: inf where only the baseline's is 0, 1 where both are."""
        rows = self.summary.set_index("policy")[column]
        base, value = float(rows[baseline]), float(rows[policy])
        if base:
            return value / base
        return 1.0 if value == 0 else float("inf")

    def capacity_frame(self) -> pd.DataFrame:
        """Long frame of the replay window: ``entity_id``, ``ts``, ``demand_cores`` and one column per policy."""
        rows = slice(self.start, None)
        out = self.grid.frame(self.grid.demand, "demand_cores", rows)
        for name, cap in self.capacity.items():
            out[name] = self.grid.frame(cap, name, rows)[name].to_numpy()
        return out

    def save(self, directory: str | Path) -> list[Path]:
        """Write the summary (CSV and Markdown), the replayed capacities and the set-up into ``directory``.

        Files: ``backtest_summary.csv``, ``backtest_summary.md``, ``backtest_capacity.csv.gz``
        (see ``capacity_frame``) and ``backtest_params.json``.
        """
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        names = ("backtest_summary.csv", "backtest_summary.md", "backtest_capacity.csv.gz", "backtest_params.json")
        paths = [directory / name for name in names]
        self.summary.to_csv(paths[0], index=False)
        paths[1].write_text(self.summary.to_markdown(index=False, floatfmt=".4g") + "\n")
        self.capacity_frame().to_csv(paths[2], index=False)
        paths[3].write_text(json.dumps(self.params, indent=2, sort_keys=True, default=str) + "\n")
        return paths


def run_backtest(
    grid: DemandGrid,
    policies: list[Policy],
    *,
    start: int,
    granularity: float = DEFAULT_GRANULARITY,
    rules: ReplayRules | None = None,
) -> BacktestResult:
    """Play out and score each policy under ``rules`` (default ``ReplayRules()``); steps before ``start``: history."""
    if not 0 < start < len(grid.ts):
        raise ValueError(f"replay start {start} must fall inside the grid of {len(grid.ts)} steps")
    names = [p.name for p in policies]
    if len(set(names)) != len(names):
        raise ValueError(f"policy names must be unique, got {names}")
    rules = rules or ReplayRules()
    actuations = {policy.name: replay_policy(grid, policy, start, granularity, rules) for policy in policies}
    return BacktestResult.from_actuations(grid, actuations, start, granularity=granularity, **rules.params())


def default_policies(forecasts: pd.DataFrame | None = None, **forecast_options) -> list[Policy]:
    """Static (history's p99), reactive HPA, VPA-style and, given forecasts, forecast-driven."""
    policies: list[Policy] = [StaticPolicy(), ReactiveHPAPolicy(), VPAPolicy()]
    if forecasts is not None:
        policies.append(ForecastPolicy(forecasts, **forecast_options))
    return policies


def default_forecaster(horizon: int = 1, long_horizon: int = 0) -> Forecaster:
    """LightGBM with a p90 head, for the horizons the forecast-driven policies decide on.

    No refit after early stopping: the policy's own margin corrects what calibration the
    last tenth of the history would add, at half the training time.
    """
    from ml_cloud_optimizer.models.tabular import LightGBMForecaster

    return LightGBMForecaster(horizons=_horizons(horizon, long_horizon), quantile=True, refit=False)


def policy_forecaster(kind: str = DEFAULT_POLICY_FORECASTER, horizon: int = 1, long_horizon: int = 0) -> Forecaster:
    """An unfitted forecaster of ``kind`` for the horizons the policies decide on (``long_horizon`` 0: none).

    The default kind gets ``default_forecaster``'s settings; any other kind its own
    defaults, with a p90 head where it has one, since the policy's margin reads it.

    Raises:
        ValueError: ``kind`` is not a known model kind.
    """
    from ml_cloud_optimizer.models.registry import build_forecaster

    if kind == DEFAULT_POLICY_FORECASTER:
        return default_forecaster(horizon, long_horizon)
    model = build_forecaster(kind, horizons=_horizons(horizon, long_horizon))
    if "quantile" in model.get_params():
        model.set_params(quantile=True)
    return model


def _horizons(horizon: int, long_horizon: int) -> tuple[int, ...]:
    return tuple(sorted({int(horizon), *([int(long_horizon)] if long_horizon else [])}))


def replay_fleet(fleet: Fleet, forecaster: Forecaster | None = None, **options) -> BacktestResult:
    """Replay ``fleet`` under every policy, honestly: see ``fleet_replay.replay_fleet`` for the options."""
    from ml_cloud_optimizer.optimizer.fleet_replay import replay_fleet as replay

    return replay(fleet, forecaster, **options)
