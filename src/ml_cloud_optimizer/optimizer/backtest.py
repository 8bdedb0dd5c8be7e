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

Memory is replayed apart when the trace has it (``MEMORY_COLUMNS``, beside CPU's in the same
summary row): every policy provisions the working set (``mem_util x mem_gib``, GiB) by the
same rules, the forecast-driven one from a second forecaster of the same kind trained on
memory and never below the last week's peak (``memory``). A step whose working set exceeds
what is provisioned is an OOM kill, which costs one restart and raises the request (see
``memory.replay_oom``):

* ``mem_gib_hours`` / ``mem_cost_usd``: GiB provisioned over the scored steps, in hours, and
  their price at the RAM rate; ``cost_usd`` prices the core-hours at the CPU rate (both from
  ``prices``: CPU and memory apart, the built-in list-price defaults unless given).
* ``oom_kills``: scored entity-steps whose working set exceeded the memory provisioned;
  ``restarts``: the restarts they cost (one per kill); ``oom_entities``: entities killed at least once.
* ``working_set_gib_hours``: the working set itself, in GiB-hours.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.base import clone

from ml_cloud_optimizer.data.schema import STEP, STEP_SECONDS, Fleet
from ml_cloud_optimizer.models.base import Forecaster
from ml_cloud_optimizer.optimizer.capacity import DEFAULT_GRANULARITY, DemandGrid
from ml_cloud_optimizer.optimizer.memory import DEFAULT_MEM_GRANULARITY, DEFAULT_OOM_HOLD, DEFAULT_PEAK_LOOKBACK
from ml_cloud_optimizer.optimizer.memory_replay import MEMORY_COLUMNS, run_memory_backtest, score_memory
from ml_cloud_optimizer.optimizer.policies import (
    ForecastPolicy,
    Policy,
    ReactiveHPAPolicy,
    StaticPolicy,
    VPAPolicy,
)
from ml_cloud_optimizer.optimizer.prices import DEFAULT_PRICES, Prices

__all__ = [
    "DEFAULT_POLICY_FORECASTER",
    "MEMORY_COLUMNS",
    "SUMMARY_COLUMNS",
    "BacktestResult",
    "default_forecaster",
    "default_policies",
    "policy_forecaster",
    "replay_fleet",
    "run_backtest",
    "run_memory_backtest",
    "score_capacity",
    "score_memory",
]

# The model kind the forecast-driven policy uses unless told otherwise.
DEFAULT_POLICY_FORECASTER = "lightgbm"

_STEP_HOURS = STEP_SECONDS / 3600.0
_HOUR = pd.Timedelta(hours=1)
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
        summary: one row per policy with ``SUMMARY_COLUMNS`` (and ``MEMORY_COLUMNS`` once
            memory was replayed).
        capacity: policy name -> capacity matrix (steps, entities) over the whole grid.
        grid: the demand replayed.
        start: first scored step.
        params: how the replay was set up (split, forecaster, prices...), for the record.
        forecasts: the forecast frame the forecast-driven policy used, if any.
        memory_grid: the working set replayed, when memory was.
        memory_capacity: policy name -> memory provisioned (GiB, OOM bumps included).
    """

    summary: pd.DataFrame
    capacity: dict[str, np.ndarray]
    grid: DemandGrid
    start: int
    params: dict = field(default_factory=dict)
    forecasts: pd.DataFrame | None = field(default=None, repr=False)
    memory_grid: DemandGrid | None = field(default=None, repr=False)
    memory_capacity: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    def add_memory(self, memory: pd.DataFrame) -> None:
        """Put memory's figures (``run_memory_backtest``'s rows) beside CPU's, policy by policy."""
        self.summary = self.summary.drop(columns=MEMORY_COLUMNS, errors="ignore").merge(
            memory[["policy", *MEMORY_COLUMNS]], on="policy", how="left"
        )

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
    return BacktestResult(
        summary=summary, capacity=capacity, grid=grid, start=start, params={"granularity": granularity}
    )


def default_policies(forecasts: pd.DataFrame | None = None, **forecast_options) -> list[Policy]:
    """Static (history's p99), reactive HPA, VPA-style and, given forecasts, forecast-driven."""
    policies: list[Policy] = [StaticPolicy(), ReactiveHPAPolicy(), VPAPolicy()]
    if forecasts is not None:
        policies.append(ForecastPolicy(forecasts, **forecast_options))
    return policies


def default_forecaster(horizon: int = 1) -> Forecaster:
    """LightGBM with a p90 head, for the one horizon the forecast-driven policy decides on.

    No refit after early stopping: the policy's own margin corrects what calibration the
    last tenth of the history would add, at half the training time.
    """
    from ml_cloud_optimizer.models.tabular import LightGBMForecaster

    return LightGBMForecaster(horizons=(int(horizon),), quantile=True, refit=False)


def policy_forecaster(kind: str = DEFAULT_POLICY_FORECASTER, horizon: int = 1) -> Forecaster:
    """An unfitted forecaster of ``kind`` for the one horizon the policy decides on.

    The default kind gets ``default_forecaster``'s settings; any other kind its own
    defaults, with a p90 head where it has one, since the policy's margin reads it.

    Raises:
        ValueError: ``kind`` is not a known model kind.
    """
    from ml_cloud_optimizer.models.registry import build_forecaster

    if kind == DEFAULT_POLICY_FORECASTER:
        return default_forecaster(horizon)
    model = build_forecaster(kind, horizons=(int(horizon),))
    if "quantile" in model.get_params():
        model.set_params(quantile=True)
    return model


def replay_fleet(
    fleet: Fleet,
    forecaster: Forecaster | None = None,
    *,
    replay_fraction: float = 1 / 3,
    calibration_steps: int = 288,
    horizon: int = 1,
    coverage: float = 0.98,
    granularity: float = DEFAULT_GRANULARITY,
    compare_persistence: bool = True,
    memory: bool | None = None,
    mem_granularity: float = DEFAULT_MEM_GRANULARITY,
    prices: Prices | None = None,
    spot: bool = False,
    log: Callable[[str], None] | None = None,
) -> BacktestResult:
    """Replay ``fleet`` under every default policy: the honest, end-to-end backtest.

    The last ``replay_fraction`` of the span is replayed. The forecaster is fitted on the rows
    before ``calibration_steps`` steps ahead of the replay, so the forecast-driven margin
    warms up on forecasts of data the model never saw; it then forecasts every origin (each
    from its own past only). With ``compare_persistence`` the same policy also runs on a
    persistence forecast ("forecast_persistence"), showing what the model itself adds.
    Memory is then replayed the same way (module doc), with a copy of the forecaster trained
    on memory.

    Args:
        fleet: canonical fleet (a trace or generated).
        forecaster: an unfitted ``Forecaster`` with horizon ``horizon``; default LightGBM p90.
        replay_fraction: share of the span replayed and scored, in (0, 1).
        calibration_steps: steps between the forecaster's training end and the replay.
        horizon: steps ahead the forecast-driven policy decides.
        coverage: quantile of recent residuals added as its margin.
        granularity: capacity step in cores, for every policy.
        compare_persistence: add the persistence-forecast variant.
        memory: replay memory too; None: when the trace has ``mem_util``.
        mem_granularity: memory step in GiB, for every policy.
        prices: CPU and RAM rates for ``cost_usd`` and ``mem_cost_usd`` (default: built-in defaults).
        spot: price at spot rates.
        log: progress callback (e.g. print to stderr).
    """
    log = log or (lambda _message: None)
    if not 0 < replay_fraction < 1:
        raise ValueError(f"replay fraction must be in (0, 1), got {replay_fraction}")
    prices = prices or DEFAULT_PRICES
    grid = DemandGrid.from_fleet(fleet, prices=prices, spot=spot)
    span = grid.ts[-1] - grid.ts[0]
    start = grid.index_of(grid.ts[0] + span * (1 - replay_fraction))
    if not calibration_steps < start < len(grid.ts):
        raise ValueError(
            f"the trace ({len(grid.ts)} steps) is too short for a replay of {replay_fraction:.0%}"
            f" after {calibration_steps} calibration steps"
        )
    train_end = grid.ts[start - calibration_steps]
    has_memory = "mem_util" in fleet.metrics.columns and bool(fleet.metrics["mem_util"].notna().any())
    if memory and not has_memory:
        raise ValueError("the trace has no mem_util values: there is no memory to replay")
    memory = has_memory if memory is None else memory

    forecaster = forecaster if forecaster is not None else default_forecaster(horizon)
    mem_forecaster = clone(forecaster) if memory else None
    metrics = fleet.metrics
    history = metrics[metrics["ts"] < train_end]
    log(f"fitting {forecaster.kind} on {len(history):,} rows before {train_end}")
    clock = time.perf_counter()
    forecaster.fit(history, fleet.entities)
    log(f"fitted in {time.perf_counter() - clock:.1f} s; forecasting {len(metrics):,} origins")
    forecasts = forecaster.predict(metrics)

    options = {"horizon": horizon, "coverage": coverage, "calibrate_from": train_end}
    policies = default_policies(forecasts, **options)
    if compare_persistence:
        naive = _persistence(history, metrics, horizon)
        policies.append(ForecastPolicy(naive, quantile="p50", name="forecast_persistence", **options))
    log(f"replaying {len(grid.ts) - start:,} steps x {len(grid.entity_ids)} entities from {grid.ts[start]}")
    result = run_backtest(grid, policies, start=start, granularity=granularity)
    result.params.update(
        {
            "forecaster": forecaster.kind,
            "train_end": str(train_end),
            "replay_start": str(grid.ts[start]),
            "replay_end": str(grid.ts[-1]),
            "memory": bool(memory),
            **prices.params(spot=spot),
            **{k: v for k, v in options.items() if k != "calibrate_from"},
        }
    )
    result.forecasts = forecasts
    if mem_forecaster is not None:
        mem_grid = DemandGrid.from_fleet(fleet, "mem", prices=prices, spot=spot)
        result.params.update({"mem_granularity": mem_granularity, "oom_hold_hours": DEFAULT_OOM_HOLD / _HOUR})
        _replay_memory(result, mem_grid, fleet, mem_forecaster, options, compare_persistence, mem_granularity, log)
    return result


def _persistence(history: pd.DataFrame, metrics: pd.DataFrame, horizon: int) -> pd.DataFrame:
    from ml_cloud_optimizer.models.baselines import PersistenceForecaster

    return PersistenceForecaster(horizons=(int(horizon),)).fit(history).predict(metrics)


def _replay_memory(
    result: BacktestResult,
    grid: DemandGrid,
    fleet: Fleet,
    forecaster: Forecaster,
    options: dict,
    compare_persistence: bool,
    granularity: float,
    log: Callable[[str], None],
) -> None:
    """Memory's replay over the same window as CPU's, its figures added to ``result``'s summary."""
    from ml_cloud_optimizer.resources import as_target

    start = grid.index_of(result.replay_start)
    if not 0 < start < len(grid.ts):
        log("memory: no samples on both sides of the replay start; memory not replayed")
        return
    metrics = as_target(fleet.metrics, "mem")
    mem_history = metrics[metrics["ts"] < options["calibrate_from"]]
    log(f"memory: fitting {forecaster.kind} on {int(mem_history['cpu_util'].notna().sum()):,} rows of memory")
    forecaster.fit(mem_history, fleet.entities)
    forecasts = forecaster.predict(metrics)
    floor = DEFAULT_PEAK_LOOKBACK // STEP
    policies = default_policies(forecasts, floor_steps=floor, **options)
    if compare_persistence:
        naive = _persistence(mem_history, metrics, options["horizon"])
        policies.append(
            ForecastPolicy(naive, quantile="p50", name="forecast_persistence", floor_steps=floor, **options)
        )
    summary, capacity = run_memory_backtest(grid, policies, start=start, granularity=granularity)
    result.add_memory(summary)
    result.memory_grid = grid
    result.memory_capacity = capacity
