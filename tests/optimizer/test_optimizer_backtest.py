"""Backtest scoring and replay: figures match a plain recomputation, and the replay is honest."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ml_cloud_optimizer.optimizer.backtest import (
    MEMORY_COLUMNS,
    SUMMARY_COLUMNS,
    default_policies,
    run_backtest,
    run_memory_backtest,
    score_capacity,
    score_memory,
)
from ml_cloud_optimizer.optimizer.capacity import DemandGrid


def _grid(demand: np.ndarray, price=0.04) -> DemandGrid:
    steps, width = demand.shape
    return DemandGrid(
        ts=pd.date_range("2026-01-05T00:00:00Z", periods=steps, freq="5min", name="ts"),
        entity_ids=pd.Index([f"e{i}" for i in range(width)], name="entity_id"),
        vcpus=np.full(width, 8.0),
        price_per_core_hour=np.full(width, price),
        demand=demand,
    )


def _slow_backlog_minutes(demand: np.ndarray, capacity: np.ndarray) -> float:
    """The queue recursion step by step: the reference the vectorised closed form must match."""
    minutes = 0.0
    for j in range(demand.shape[1]):
        backlog = 0.0
        for d, c in zip(demand[:, j], capacity[:, j], strict=True):
            if np.isnan(d):
                continue
            backlog = max(0.0, backlog + d - c)
            minutes += 5.0 if backlog > 1e-9 else 0.0
    return minutes


def test_scores_match_a_plain_recomputation():
    rng = np.random.default_rng(4)
    demand = rng.uniform(0, 4, (400, 3))
    demand[rng.random(demand.shape) < 0.02] = np.nan
    capacity = rng.choice([1.0, 2.0, 3.0, 4.0], size=demand.shape)
    start = 100
    got = score_capacity(_grid(demand, price=0.1), capacity, start)

    d, c = demand[start:], capacity[start:]
    seen = ~np.isnan(d)
    assert got["core_hours"] == pytest.approx(c[seen].sum() / 12)
    assert got["cost_usd"] == pytest.approx(c[seen].sum() / 12 * 0.1)
    assert got["demand_core_hours"] == pytest.approx(d[seen].sum() / 12)
    assert got["slack"] == pytest.approx(np.clip(c - d, 0, None)[seen].sum() / c[seen].sum())
    assert got["underprovisioned_share"] == pytest.approx((d[seen] > c[seen]).mean())
    assert got["unserved_core_hours"] == pytest.approx(np.clip(d - c, 0, None)[seen].sum() / 12)
    assert got["slo_violation_minutes"] == _slow_backlog_minutes(d, c)
    assert got["slo_violation_minutes"] > 5 * (d[seen] > c[seen]).sum()  # a shortfall hurts beyond its own step


def test_a_shortfall_is_paid_back_by_later_spare_capacity():
    demand = np.array([[1.0], [3.0], [1.0], [1.0], [1.0]])
    capacity = np.full_like(demand, 2.0)
    got = score_capacity(_grid(demand), capacity, 0)
    # step 1 leaves 1 core-step waiting; step 2 serves it with its one spare core
    assert got["slo_violation_minutes"] == 5.0
    assert got["underprovisioned_share"] == pytest.approx(0.2)


def test_score_refuses_an_empty_replay():
    demand = np.full((10, 1), np.nan)
    with pytest.raises(ValueError, match="no samples"):
        score_capacity(_grid(demand), np.ones((10, 1)), 5)


def _seasonal_demand(steps=288 * 6, width=4, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(steps)[:, None]
    daily = 2.5 + 2.0 * np.sin(2 * np.pi * t / 288 + rng.uniform(0, 6, width))
    return np.clip(daily + rng.normal(0, 0.2, (steps, width)), 0.05, 8)


def _persistence_forecasts(grid: DemandGrid) -> pd.DataFrame:
    """p50 = p90 = the last value: the simplest forecaster, built without any model code."""
    frame = grid.frame(grid.demand / grid.vcpus, "p50_h1").dropna()
    return frame.assign(p90_h1=frame["p50_h1"])


def test_run_backtest_scores_every_policy_on_the_same_window():
    grid = _grid(_seasonal_demand())
    start = 288 * 4
    forecasts = _persistence_forecasts(grid)
    result = run_backtest(grid, default_policies(forecasts, calibrate_from=grid.ts[288 * 3]), start=start)
    summary = result.summary.set_index("policy")
    assert list(result.summary.columns) == SUMMARY_COLUMNS
    assert list(summary.index) == ["static", "reactive_hpa", "vpa", "forecast"]
    assert summary["demand_core_hours"].nunique() == 1  # one replay window for all
    assert np.isfinite(result.summary.drop(columns="policy").to_numpy()).all()
    # tracking a smooth daily cycle costs less than holding the history's p99 all day
    assert summary.loc["forecast", "core_hours"] < 0.85 * summary.loc["static", "core_hours"]
    assert result.ratio("forecast", "static", "core_hours") == pytest.approx(
        summary.loc["forecast", "core_hours"] / summary.loc["static", "core_hours"]
    )
    assert result.replay_start == grid.ts[start]


def test_run_backtest_refuses_duplicate_names_and_a_start_outside_the_grid():
    grid = _grid(_seasonal_demand(steps=100, width=1))
    with pytest.raises(ValueError, match="unique"):
        run_backtest(grid, default_policies() + default_policies(), start=50)
    with pytest.raises(ValueError, match="inside the grid"):
        run_backtest(grid, default_policies(), start=100)


def test_saved_backtest_holds_the_summary_and_the_replayed_capacity(tmp_path):
    grid = _grid(_seasonal_demand(steps=400, width=2))
    result = run_backtest(grid, default_policies(), start=300)
    paths = result.save(tmp_path)
    assert [p.name for p in paths] == [
        "backtest_summary.csv",
        "backtest_summary.md",
        "backtest_capacity.csv.gz",
        "backtest_params.json",
    ]
    summary = pd.read_csv(paths[0])
    pd.testing.assert_frame_equal(summary, result.summary, check_exact=False)
    capacity = pd.read_csv(paths[2])
    assert len(capacity) == 100 * 2
    assert set(capacity.columns) == {"entity_id", "ts", "demand_cores", "static", "reactive_hpa", "vpa"}
    e1 = capacity[capacity["entity_id"] == "e1"]
    np.testing.assert_allclose(e1["vpa"], result.capacity["vpa"][300:, 1])
    assert "| policy" in paths[1].read_text()


def test_replay_fleet_fits_on_history_only_and_scores_every_policy():
    from ml_cloud_optimizer.data.schema import Fleet, validate_fleet
    from ml_cloud_optimizer.data.synthetic import generate_fleet
    from ml_cloud_optimizer.models.tabular import LightGBMForecaster
    from ml_cloud_optimizer.optimizer.backtest import replay_fleet

    fleet = generate_fleet(288 * 6 * 3, entities=3, seed=1)

    def replay(f):
        model = LightGBMForecaster(horizons=(1,), n_estimators=40, n_jobs=1)
        return replay_fleet(f, model, replay_fraction=1 / 3, calibration_steps=144)

    result = replay(fleet)
    names = result.summary["policy"].tolist()
    assert names == [
        "static",
        "reactive_hpa",
        "vpa",
        "forecast",
        "hybrid",
        "forecast_1h",
        "hybrid_1h",
        "forecast_persistence",
    ]
    assert pd.Timestamp(result.params["train_end"]) == result.replay_start - pd.Timedelta(minutes=5 * 144)
    assert {"p50_h1", "p90_h1"} <= set(result.forecasts.columns)

    # Rewrite the second half of the replay: nothing decided before it may change.
    metrics = fleet.metrics.copy()
    cut = result.grid.ts[result.start + (len(result.grid.ts) - result.start) // 2]
    late = metrics["ts"] >= cut
    metrics.loc[late, "cpu_util"] = np.random.default_rng(3).uniform(0, 1, int(late.sum()))
    altered = replay(validate_fleet(Fleet(metrics, fleet.entities)))
    upto = result.grid.index_of(cut) + 1
    for name in names:
        np.testing.assert_array_equal(result.capacity[name][:upto], altered.capacity[name][:upto], err_msg=name)
    assert not np.array_equal(result.capacity["forecast"], altered.capacity["forecast"])


# -- memory: OOM kills, restarts and the request raised after a kill ------------------------------


def _memory_grid(demand: np.ndarray, gib=4.0, price=0.0042) -> DemandGrid:
    grid = _grid(demand, price=price)
    return DemandGrid(grid.ts, grid.entity_ids, np.full(demand.shape[1], gib), grid.price_per_core_hour, demand, "mem")


def test_oom_kills_are_counted_and_each_raises_the_request_for_the_hold():
    from ml_cloud_optimizer.optimizer.memory import replay_oom

    # GiB of working set against a plan of 2 GiB; the floor after a kill holds for 3 steps.
    demand = np.array([[1.0], [1.0], [3.0], [3.0], [3.0], [1.0], [3.0], [np.nan], [3.0]])
    provisioned, kills = replay_oom(demand, np.full_like(demand, 2.0), 0, granularity=0.0625, hold_steps=3)
    # step 2: 3 GiB > 2 -> killed; raised to max(2 x 1.2, 2 + 100 MiB, 3) = 3 GiB for steps 3-5;
    # step 6: back to the plan's 2 GiB and killed again; step 7 has no sample (no kill); step 8 held at 3.
    assert np.flatnonzero(kills[:, 0]).tolist() == [2, 6]
    np.testing.assert_allclose(provisioned[:, 0], [2, 2, 2, 3, 3, 3, 2, 3, 3])

    got = score_memory(_memory_grid(demand), provisioned, kills, 0)
    assert got["oom_kills"] == 2 and got["restarts"] == 2 and got["oom_entities"] == 1
    assert got["mem_gib_hours"] == pytest.approx((2 * 4 + 3 * 4) / 12)  # the unsampled step is not paid
    assert got["mem_cost_usd"] == pytest.approx(got["mem_gib_hours"] * 0.0042)
    assert got["working_set_gib_hours"] == pytest.approx(18 / 12)


def test_after_a_small_overshoot_the_request_gets_the_vpa_bump_not_just_the_working_set():
    from ml_cloud_optimizer.optimizer.memory import replay_oom

    demand = np.array([[2.1], [2.2], [2.3]])
    provisioned, kills = replay_oom(demand, np.full_like(demand, 2.0), 0, granularity=0.0625, hold_steps=10)
    assert kills[:, 0].tolist() == [True, False, False]
    assert provisioned[1, 0] == 2.4375  # 2 x 1.2 = 2.4, rounded up to 64 MiB


def test_memory_backtest_scores_every_policy_beside_cpu_and_the_static_one_is_killed_by_growth():
    # Working set steady at 2 GiB for three days of history, then growing past anything seen.
    steps, start = 288 * 4, 288 * 3
    demand = np.full((steps, 2), 2.0)
    demand[start:, 0] = np.linspace(2.0, 3.5, steps - start)
    grid = _memory_grid(demand)
    summary, capacity = run_memory_backtest(grid, default_policies(), start=start)
    rows = summary.set_index("policy")
    assert list(summary.columns) == ["policy", *MEMORY_COLUMNS]
    assert rows.loc["static", "oom_kills"] >= 1 and rows.loc["static", "oom_entities"] == 1
    # each kill restarts the container, and each eviction that raises the request after it once more
    assert (rows["restarts"] == rows["oom_kills"] + rows["mem_evictions"]).all()
    assert rows.loc["static", "mem_evictions"] >= 1
    # after each kill the request is raised, so a steady climb kills a few times, not at every step
    assert rows.loc["static", "oom_kills"] < 20
    assert (capacity["static"][start:, 0] >= 2.0).all()
    with pytest.raises(ValueError, match="memory grid"):
        run_memory_backtest(_grid(demand), default_policies(), start=start)


def test_the_memory_forecast_policy_never_goes_below_the_recent_peak():
    from ml_cloud_optimizer.optimizer.policies import ForecastPolicy

    demand = np.full((300, 1), 1.0)
    demand[100, 0] = 3.0  # one spike
    grid = _memory_grid(demand)
    low = _persistence_forecasts(grid).assign(p50_h1=0.1 / 4, p90_h1=0.1 / 4)  # a forecast of 0.1 GiB
    capacity = ForecastPolicy(low, floor_steps=50, window_steps=10**6).plan(grid, 1, 0.0625)
    assert (capacity[101:151, 0] >= 3.0).all()  # the spike is covered for the 50 steps after it is seen
    assert capacity[160, 0] < 3.0


def test_replay_fleet_adds_memory_without_changing_cpus_figures():
    from ml_cloud_optimizer.data.synthetic import generate_fleet
    from ml_cloud_optimizer.models.baselines import PersistenceForecaster
    from ml_cloud_optimizer.optimizer.backtest import replay_fleet

    fleet = generate_fleet(288 * 5 * 2, entities=2, seed=6)
    with_memory = replay_fleet(fleet, PersistenceForecaster(horizons=(1,)), calibration_steps=144)
    cpu_only = replay_fleet(fleet, PersistenceForecaster(horizons=(1,)), calibration_steps=144, memory=False)
    pd.testing.assert_frame_equal(with_memory.summary[SUMMARY_COLUMNS], cpu_only.summary)
    assert with_memory.summary[MEMORY_COLUMNS].notna().all().all()
    assert with_memory.params["prices"] == "built-in list-price defaults" and with_memory.params["memory"]
    # CPU is priced at the CPU rate only: core-hours x $0.0316
    np.testing.assert_allclose(cpu_only.summary["cost_usd"], cpu_only.summary["core_hours"] * 0.0316)
