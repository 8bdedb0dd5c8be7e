"""Settings and the recommended policy come from the validation window only, and the split finds it in a gappy trace."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fleets import demand_grid
from ml_cloud_optimizer.optimizer.capacity import DemandGrid
from ml_cloud_optimizer.optimizer.fleet_replay import split
from ml_cloud_optimizer.optimizer.policies import ForecastPolicy
from ml_cloud_optimizer.optimizer.replay_rules import ReplayRules
from ml_cloud_optimizer.optimizer.selection import Tuned, Verdict, pick, tune


def _grid(demand: np.ndarray):
    return demand_grid(demand, vcpus=8.0)


def test_the_cheapest_setting_that_meets_the_bar_wins_else_the_one_that_misses_least():
    bar = Verdict(cost=100.0, under=10, changes=4, kills=0)
    cheap_and_good = Verdict(cost=80.0, under=9, changes=4, kills=0)
    cheaper_but_churny = Verdict(cost=50.0, under=2, changes=9, kills=0)
    dear_and_good = Verdict(cost=120.0, under=0, changes=0, kills=0)
    ranked = sorted([dear_and_good, cheaper_but_churny, cheap_and_good], key=lambda v: v.key(bar))
    assert ranked == [cheap_and_good, dear_and_good, cheaper_but_churny]
    assert cheaper_but_churny.worst(bar) == pytest.approx(10 / 5)
    # when nothing meets the bar, the smaller worst ratio wins even at a higher cost
    a, b = Verdict(10.0, 30, 4, 0), Verdict(500.0, 12, 5, 0)
    assert min([a, b], key=lambda v: v.key(bar)) == b
    tuned = {name: Tuned(None, None, {}, v) for name, v in (("forecast", dear_and_good), ("hybrid", cheap_and_good))}
    assert pick(tuned, bar) == "hybrid"
    # with a cost target (CPU: at most 0.85 of the VPA's cost), 80 against 100 still meets the bar, 120 no longer
    assert cheap_and_good.key(bar, 0.85)[0] == 0.0 and dear_and_good.key(bar, 0.85)[0] == 1.0
    assert Verdict(90.0, 0, 0, 0).worst(bar, cost_target=0.85) == pytest.approx(90 / 85)  # the cost is what misses


def _daily(steps: int, width: int = 3, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(steps)[:, None]
    return np.clip(3 + 2 * np.sin(2 * np.pi * t / 288 + np.arange(width)) + rng.gamma(2, 0.3, (steps, width)), 0, 8)


def _forecasts(grid: DemandGrid, values: np.ndarray) -> pd.DataFrame:
    util = values / grid.vcpus
    return pd.concat(
        [
            pd.DataFrame({"entity_id": e, "ts": grid.ts[:-1], "p50_h1": util[1:, j], "p90_h1": util[1:, j]})
            for j, e in enumerate(grid.entity_ids)
        ],
        ignore_index=True,
    )


def test_settings_are_chosen_on_the_validation_window_and_nothing_later_changes_them():
    demand = _daily(288 * 4)
    val, start = 288 * 2, 288 * 3
    grid = _grid(demand)
    noisy = demand + np.random.default_rng(1).normal(0, 0.4, demand.shape)
    base = ForecastPolicy(_forecasts(grid, noisy), calibrate_from=grid.ts[val])
    bar = Verdict(cost=np.inf, under=10**6, changes=10**6, kills=0)  # every setting meets it: the cheapest wins
    options = {"bar": bar, "window": slice(val, start), "rules": ReplayRules(), "granularity": 0.25}
    small = {"coverages": (0.5, 0.95), "headrooms": (0.0, 0.3), "bands": (0.0,), "stabilise": ((1, 1.0),)}
    chosen = tune(grid, base, **options, **small)
    assert chosen.settings["coverage"] == 0.5 and chosen.settings["headroom"] == 0.0  # the cheapest of the four
    assert chosen.policy.coverage == 0.5 and chosen.validation.cost > 0

    # the replayed window turns wild: the choice and everything played out before it stay as they were
    wild = demand.copy()
    wild[start:] *= 3
    again = tune(_grid(wild), base, **options, **small)
    assert again.settings == chosen.settings and again.validation == chosen.validation
    np.testing.assert_array_equal(again.actuation.request[:start], chosen.actuation.request[:start])

    # a bar nothing cheap can meet (no under-provisioning at all) moves the choice to more headroom
    strict = tune(grid, base, **{**options, "bar": Verdict(np.inf, 0, 10**6, 0)}, **small)
    assert strict.validation.under <= chosen.validation.under
    assert strict.settings != chosen.settings


def test_a_hybrid_is_tuned_like_the_forecast_and_named_as_asked():
    from ml_cloud_optimizer.optimizer.policies import HybridPolicy, ReactiveHPAPolicy

    demand = _daily(288 * 3)
    grid = _grid(demand)
    base = ForecastPolicy(_forecasts(grid, demand * 0.5), calibrate_from=grid.ts[288])
    bar = Verdict(cost=np.inf, under=10**6, changes=10**6, kills=0)
    small = {"coverages": (0.9,), "headrooms": (0.0,), "bands": (0.0,), "stabilise": ((1, 1.0),)}
    options = {"bar": bar, "window": slice(288, 576), "rules": ReplayRules(), "granularity": 0.25, **small}
    alone = tune(grid, base, **options)
    hybrid = tune(grid, base, reactive=ReactiveHPAPolicy(), name="hybrid_x", **options)
    assert isinstance(hybrid.policy, HybridPolicy) and hybrid.policy.name == "hybrid_x"
    assert hybrid.validation.cost > alone.validation.cost  # the reactive part lifts a forecast that runs low
    assert hybrid.validation.under < alone.validation.under


def test_the_split_counts_sampled_steps_so_a_gappy_trace_keeps_its_validation_window():
    # ten sampled days spread over forty: a cut by calendar time would land in a gap
    steps = 288 * 40
    demand = np.full((steps, 2), np.nan)
    days = [0, 3, 6, 12, 19, 22, 31, 37, 38, 39]
    for day in days:
        demand[day * 288 : (day + 1) * 288] = 1.0
    grid = _grid(demand)
    val, start = split(grid, 1 / 3, 288)
    sampled = np.flatnonzero(grid.observed.any(axis=1))
    assert grid.observed[val].any() and grid.observed[start].any()
    assert ((sampled >= val) & (sampled < start)).sum() == 288  # exactly one day of samples to choose on
    assert (sampled >= start).sum() == round(len(sampled) / 3)
    with pytest.raises(ValueError, match="too short"):
        split(grid, 1 / 3, 288 * 9)


def test_the_fleet_replay_recommends_by_the_validation_counts_it_records():
    from ml_cloud_optimizer.data.synthetic import generate_fleet
    from ml_cloud_optimizer.models.baselines import PersistenceForecaster
    from ml_cloud_optimizer.optimizer.backtest import replay_fleet

    fleet = generate_fleet(288 * 6 * 3, entities=3, seed=8)
    result = replay_fleet(fleet, PersistenceForecaster(horizons=(1,)), calibration_steps=288)
    params = result.params
    validation = {name: Verdict(**counts) for name, counts in params["validation"].items()}
    bar = validation["vpa"]
    assert params["recommended"] == min(("forecast", "hybrid"), key=lambda name: validation[name].key(bar))
    sampled = result.grid.observed.any(axis=1)
    between = (result.grid.ts >= pd.Timestamp(params["validation_start"])) & (result.grid.ts < result.replay_start)
    assert sampled[between].sum() == 288
    assert params["memory_recommended"] in ("forecast", "hybrid") and params["long_horizon"] == 12
    assert set(params["settings"]) == {"forecast", "hybrid", "forecast_1h", "hybrid_1h", "forecast_persistence"}
