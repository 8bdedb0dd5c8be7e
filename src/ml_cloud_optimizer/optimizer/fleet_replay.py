"""Replay a whole fleet honestly: split in time, fit on history, choose settings on validation, replay under the rules.

The span is cut on its *sampled* steps, since a trace such as PlanetLab holds ten days spread
over seven weeks and a cut by calendar time could leave the validation window empty: the last
``replay_fraction`` of the steps with any sample is replayed and scored, the
``calibration_steps`` sampled steps before it are the validation window, and everything before
is history. The forecaster is fitted on the history only and then forecasts every origin, each
from its own past, so the validation window is forecast by a model that never saw it.

Policies, all played out under the same ``replay_rules.ReplayRules``:

* fixed: ``static`` (p99 of history), ``reactive_hpa`` and ``vpa`` (the recommender's bounds
  and the updater's rule);
* forecast-driven, their settings chosen on the validation window (``selection``): ``forecast``
  (decided ``horizon`` steps ahead, five minutes by default), ``hybrid`` (the larger of it and
  the HPA's request), the same two decided ``long_horizon`` steps ahead (``forecast_1h`` and
  ``hybrid_1h`` for an hour) and, with ``compare_persistence``, ``forecast_persistence`` (the
  forecast policy on a persistence forecast: what the model itself adds).

The policy the product recommends is whichever of ``forecast`` and ``hybrid`` does better on
the validation window (``params["recommended"]``); nothing about it is read from the replay.
Memory is then replayed the same way, with a copy of the forecaster trained on memory and the
forecast-driven need never below the last week's peak working set (``memory``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import clone

from ml_cloud_optimizer.data.schema import STEP, Fleet
from ml_cloud_optimizer.models.base import Forecaster
from ml_cloud_optimizer.optimizer.backtest import (
    DEFAULT_LONG_HORIZON,
    BacktestResult,
    _horizons,
    default_forecaster,
    replay_policy,
)
from ml_cloud_optimizer.optimizer.capacity import DEFAULT_GRANULARITY, DemandGrid
from ml_cloud_optimizer.optimizer.memory import DEFAULT_MEM_GRANULARITY, DEFAULT_OOM_HOLD, DEFAULT_PEAK_LOOKBACK
from ml_cloud_optimizer.optimizer.memory_replay import MEMORY_COLUMNS, memory_row, replay_memory_policy
from ml_cloud_optimizer.optimizer.policies import ForecastPolicy, ReactiveHPAPolicy, StaticPolicy, VPAPolicy
from ml_cloud_optimizer.optimizer.prices import DEFAULT_PRICES, Prices
from ml_cloud_optimizer.optimizer.replay_rules import Actuation, ReplayRules
from ml_cloud_optimizer.optimizer.selection import COST_TARGET, COVERAGES, pick, tune, verdict

__all__ = ["CANDIDATES", "replay_fleet", "split"]

# The policies the product may recommend, chosen between on the validation window.
CANDIDATES = ("forecast", "hybrid")


def split(grid: DemandGrid, replay_fraction: float, validation_steps: int) -> tuple[int, int]:
    """``(validation_start, replay_start)`` as grid steps, cut on the steps that hold any sample (module doc)."""
    if not 0 < replay_fraction < 1:
        raise ValueError(f"replay fraction must be in (0, 1), got {replay_fraction}")
    sampled = np.flatnonzero(grid.observed.any(axis=1))
    first = round(len(sampled) * (1 - replay_fraction))
    if not 0 < validation_steps < first < len(sampled):
        raise ValueError(
            f"the trace ({len(sampled)} sampled steps) is too short for a replay of {replay_fraction:.0%}"
            f" after {validation_steps} validation steps"
        )
    return int(sampled[first - validation_steps]), int(sampled[first])


def _suffix(horizon: int) -> str:
    minutes = int(horizon) * int(STEP.total_seconds()) // 60
    return f"_{minutes // 60}h" if minutes % 60 == 0 else f"_{minutes}min"


def _for_horizons(forecaster: Forecaster, horizons: tuple[int, ...]) -> Forecaster:
    """``forecaster``, or an unfitted copy of it that also forecasts ``horizons``."""
    have = tuple(int(h) for h in forecaster.get_params().get("horizons", ()))
    if set(horizons) <= set(have):
        return forecaster
    return clone(forecaster).set_params(horizons=tuple(sorted(set(have) | set(horizons))))


def _persistence(history: pd.DataFrame, metrics: pd.DataFrame, horizon: int) -> pd.DataFrame:
    from ml_cloud_optimizer.models.baselines import PersistenceForecaster

    return PersistenceForecaster(horizons=(int(horizon),)).fit(history).predict(metrics)


def _replay_resource(
    grid: DemandGrid,
    forecasts: pd.DataFrame,
    naive: pd.DataFrame | None,
    *,
    val_start: int,
    start: int,
    horizons: tuple[int, int],
    coverage: float | None,
    granularity: float,
    rules: ReplayRules,
    calibrate_from: pd.Timestamp,
    memory: bool,
    log: Callable[[str], None],
) -> tuple[dict[str, Actuation], dict]:
    """Every policy played out on one resource's grid, the forecast-driven ones at settings chosen on validation."""
    hold = DEFAULT_OOM_HOLD // STEP if memory else 0
    floor = DEFAULT_PEAK_LOOKBACK // STEP if memory else 0
    fixed = (StaticPolicy(), ReactiveHPAPolicy(), VPAPolicy())
    if memory:
        acts = {p.name: replay_memory_policy(grid, p, start, granularity, rules, hold) for p in fixed}
    else:
        acts = {p.name: replay_policy(grid, p, start, granularity, rules) for p in fixed}
    window = slice(val_start, start)
    bar = verdict(grid.demand, acts["vpa"], window)
    common: dict[str, Any] = {
        "bar": bar,
        "window": window,
        "rules": rules,
        "granularity": granularity,
        "coverages": COVERAGES if coverage is None else (coverage,),
        "oom": memory,
        "hold_steps": hold,
        "cost_target": None if memory else COST_TARGET,
    }

    def base(frame: pd.DataFrame, h: int, name: str) -> ForecastPolicy:
        return ForecastPolicy(frame, horizon=h, calibrate_from=calibrate_from, floor_steps=floor, name=name)

    tuned = {}
    for h in dict.fromkeys(h for h in horizons if h):
        suffix = "" if h == horizons[0] else _suffix(h)
        tuned[f"forecast{suffix}"] = tune(grid, base(forecasts, h, f"forecast{suffix}"), **common)
        hybrid = f"hybrid{suffix}"
        tuned[hybrid] = tune(grid, base(forecasts, h, hybrid), reactive=ReactiveHPAPolicy(), name=hybrid, **common)
    if naive is not None:
        tuned["forecast_persistence"] = tune(grid, base(naive, horizons[0], "forecast_persistence"), **common)
    recommended = pick({name: tuned[name] for name in CANDIDATES}, bar, common["cost_target"])
    for name, t in tuned.items():
        log(f"{name}: {t.settings} on validation {t.validation.as_dict()} (vpa {bar.as_dict()})")
    validation = {name: verdict(grid.demand, act, window).as_dict() for name, act in acts.items()}
    acts.update({name: t.actuation for name, t in tuned.items()})
    validation.update({name: t.validation.as_dict() for name, t in tuned.items()})
    chosen = {
        "recommended": recommended,
        "settings": {name: t.settings for name, t in tuned.items()},
        "validation": validation,
    }
    return acts, chosen


def replay_fleet(
    fleet: Fleet,
    forecaster: Forecaster | None = None,
    *,
    replay_fraction: float = 1 / 3,
    calibration_steps: int = 576,
    horizon: int = 1,
    long_horizon: int = DEFAULT_LONG_HORIZON,
    coverage: float | None = None,
    granularity: float = DEFAULT_GRANULARITY,
    compare_persistence: bool = True,
    memory: bool | None = None,
    mem_granularity: float = DEFAULT_MEM_GRANULARITY,
    prices: Prices | None = None,
    spot: bool = False,
    rules: ReplayRules | None = None,
    forecasts: pd.DataFrame | None = None,
    mem_forecasts: pd.DataFrame | None = None,
    log: Callable[[str], None] | None = None,
) -> BacktestResult:
    """Replay ``fleet`` under every policy and the realistic rules: the honest, end-to-end backtest (module doc).

    Args:
        fleet: canonical fleet (a trace or generated).
        forecaster: an unfitted ``Forecaster``; default LightGBM p90. A copy that also
            forecasts ``horizon`` and ``long_horizon`` is fitted where it lacks them.
        replay_fraction: share of the sampled steps replayed and scored, in (0, 1).
        calibration_steps: sampled steps of the validation window before the replay.
        horizon: steps ahead the ``forecast`` and ``hybrid`` policies decide.
        long_horizon: steps ahead their second variants decide (0: none).
        coverage: the margin's coverage; None: chosen on the validation window (``selection``).
        granularity: capacity step in cores, for every policy.
        compare_persistence: add the persistence-forecast variant.
        memory: replay memory too; None: when the trace has ``mem_util``.
        mem_granularity: memory step in GiB, for every policy.
        prices: CPU and RAM rates for ``cost_usd`` and ``mem_cost_usd`` (default: built-in defaults).
        spot: price at spot rates.
        rules: what a change costs (default ``ReplayRules()``: 15 min apart, 2 min start-up, evictions).
        forecasts: every origin's forecasts already made by ``forecaster`` fitted on the same
            history (an earlier run's ``result.forecasts``), to replay them under other rules
            without fitting again; ``mem_forecasts`` likewise for memory.
        log: progress callback (e.g. print to stderr).
    """
    log = log or (lambda _message: None)
    prices = prices or DEFAULT_PRICES
    rules = rules or ReplayRules()
    grid = DemandGrid.from_fleet(fleet, prices=prices, spot=spot)
    val_start, start = split(grid, replay_fraction, calibration_steps)
    train_end = grid.ts[val_start]
    has_memory = "mem_util" in fleet.metrics.columns and bool(fleet.metrics["mem_util"].notna().any())
    if memory and not has_memory:
        raise ValueError("the trace has no mem_util values: there is no memory to replay")
    memory = has_memory if memory is None else memory

    horizons = (int(horizon), int(long_horizon) if long_horizon and long_horizon != horizon else 0)
    forecaster = _for_horizons(
        forecaster if forecaster is not None else default_forecaster(*horizons), _horizons(*horizons)
    )
    mem_forecaster = clone(forecaster) if memory else None
    metrics = fleet.metrics
    history = metrics[metrics["ts"] < train_end]
    if forecasts is None:
        log(f"fitting {forecaster.kind} (horizons {forecaster.horizons}) on {len(history):,} rows before {train_end}")
        clock = time.perf_counter()
        forecaster.fit(history, fleet.entities)
        log(f"fitted in {time.perf_counter() - clock:.1f} s; forecasting {len(metrics):,} origins")
        forecasts = forecaster.predict(metrics)
    else:
        log(f"replaying the {len(forecasts):,} {forecaster.kind} forecasts given, fitted before {train_end}")
    naive = _persistence(history, metrics, horizon) if compare_persistence else None
    log(f"replaying {len(grid.ts) - start:,} steps x {len(grid.entity_ids)} entities from {grid.ts[start]}")
    options = {
        "horizons": horizons,
        "coverage": coverage,
        "rules": rules,
        "calibrate_from": train_end,
    }
    acts, chosen = _replay_resource(
        grid,
        forecasts,
        naive,
        val_start=val_start,
        start=start,
        granularity=granularity,
        memory=False,
        log=log,
        **options,
    )
    result = BacktestResult.from_actuations(grid, acts, start)
    result.params.update(
        {
            "granularity": granularity,
            "forecaster": forecaster.kind,
            "train_end": str(train_end),
            "validation_start": str(train_end),
            "replay_start": str(grid.ts[start]),
            "replay_end": str(grid.ts[-1]),
            "horizon": int(horizon),
            "long_horizon": horizons[1],
            "coverage": "chosen on the validation window" if coverage is None else coverage,
            "memory": bool(memory),
            **rules.params(),
            **prices.params(spot=spot),
            **chosen,
        }
    )
    result.forecasts = forecasts
    if mem_forecaster is not None:
        _replay_memory(
            result,
            fleet,
            mem_forecaster,
            compare_persistence,
            options,
            log,
            prices=prices,
            spot=spot,
            granularity=mem_granularity,
            forecasts=mem_forecasts,
        )
    return result


def _replay_memory(
    result: BacktestResult,
    fleet: Fleet,
    forecaster: Forecaster,
    compare_persistence: bool,
    options: dict,
    log: Callable[[str], None],
    *,
    prices: Prices,
    spot: bool,
    granularity: float,
    forecasts: pd.DataFrame | None,
) -> None:
    """Memory's replay over the same windows as CPU's, its figures and choices added to ``result``."""
    from ml_cloud_optimizer.resources import as_target

    grid = DemandGrid.from_fleet(fleet, "mem", prices=prices, spot=spot)
    start = grid.index_of(result.replay_start)
    val_start = grid.index_of(options["calibrate_from"])
    if not 0 < val_start < start < len(grid.ts):
        log("memory: no samples on both sides of the replay start; memory not replayed")
        return
    metrics = as_target(fleet.metrics, "mem")
    history = metrics[metrics["ts"] < options["calibrate_from"]]
    if forecasts is None:
        log(f"memory: fitting {forecaster.kind} on {int(history['cpu_util'].notna().sum()):,} rows of memory")
        forecaster.fit(history, fleet.entities)
        forecasts = forecaster.predict(metrics)
    result.memory_forecasts = forecasts
    naive = _persistence(history, metrics, options["horizons"][0]) if compare_persistence else None
    acts, chosen = _replay_resource(
        grid,
        forecasts,
        naive,
        val_start=val_start,
        start=start,
        granularity=granularity,
        memory=True,
        log=log,
        **options,
    )
    rows = [{"policy": name, **memory_row(grid, act, start)} for name, act in acts.items()]
    result.add_memory(pd.DataFrame(rows, columns=["policy", *MEMORY_COLUMNS]))
    result.memory_grid = grid
    result.memory_capacity = {name: act.request for name, act in acts.items()}
    result.params.update(
        {
            "mem_granularity": granularity,
            "oom_hold_hours": DEFAULT_OOM_HOLD / pd.Timedelta(hours=1),
            **{f"memory_{key}": value for key, value in chosen.items()},
        }
    )
