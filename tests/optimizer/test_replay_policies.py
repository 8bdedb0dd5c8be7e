"""Each policy's proposal to the updater: HPA tolerance, VPA bounds, the forecast's band, the hybrid's max."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fleets import demand_grid
from ml_cloud_optimizer.optimizer.capacity import DemandGrid, round_up
from ml_cloud_optimizer.optimizer.policies import (
    ForecastPolicy,
    HybridPolicy,
    ReactiveHPAPolicy,
    StaticPolicy,
    VPAPolicy,
)
from ml_cloud_optimizer.optimizer.replay_rules import FREE_RULES, Plan, ReplayRules, actuate

G = 0.25


def _grid(demand, vcpus=8.0):
    return demand_grid(demand, vcpus)


def _noisy(steps=288 * 3, width=3, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(steps)[:, None]
    return np.clip(3 + 1.5 * np.sin(2 * np.pi * t / 288 + np.arange(width)) + rng.gamma(2.0, 0.3, (steps, width)), 0, 8)


def _forecasts(grid: DemandGrid, values: np.ndarray, horizon: int = 1) -> pd.DataFrame:
    """A forecast frame whose p50 and p90 for step t (made at t - horizon) are ``values[t]`` cores."""
    util = values / grid.vcpus
    return pd.concat(
        [
            pd.DataFrame(
                {
                    "entity_id": entity,
                    "ts": grid.ts[:-horizon],
                    f"p50_h{horizon}": util[horizon:, j],
                    f"p90_h{horizon}": util[horizon:, j],
                }
            )
            for j, entity in enumerate(grid.entity_ids)
        ],
        ignore_index=True,
    )


def _play(policy, grid, rules=FREE_RULES):
    return actuate(policy.bounds(grid, 1, G), grid.demand, rules, round_up(grid.vcpus, G))


@pytest.mark.parametrize("stabilisation_s", [300, 900])
def test_the_hpa_as_a_proposal_is_the_same_controller_when_changes_are_free(stabilisation_s):
    demand = _noisy()
    grid = _grid(demand)
    policy = ReactiveHPAPolicy(downscale_stabilisation_s=stabilisation_s)
    np.testing.assert_allclose(_play(policy, grid).request, policy.plan(grid, 1, G))
    assert policy.bounds(grid, 1, G).horizontal  # pods are added, so no change ever restarts one
    assert not _play(policy, grid, ReplayRules()).evictions.any()


def test_a_plan_without_bounds_is_followed_step_by_step_when_changes_are_free():
    demand = _noisy()
    grid = _grid(demand)
    forecast = ForecastPolicy(_forecasts(grid, demand * 1.1), calibrate_from=grid.ts[100])
    for policy in (StaticPolicy(), forecast):
        np.testing.assert_allclose(_play(policy, grid).request[1:], policy.plan(grid, 1, G)[1:], err_msg=policy.name)


def test_the_vpa_bounds_are_its_p50_and_p95_scaled_by_the_confidence_in_its_history():
    grid = _grid(np.full(288 * 2, 2.0))
    vpa = VPAPolicy()
    plan = vpa.bounds(grid, 1, 0.01)
    confidence = vpa.confidence(grid)[:, 0]
    assert confidence[288] == pytest.approx(1.0)  # a day of 5-minute samples is a day of confidence
    level = plan.target[289, 0] / 1.15  # constant usage: one bucket holds every percentile
    assert plan.upper[289, 0] == pytest.approx(level * 1.15 * 2.0, rel=0.01)  # (1 + 1/1 day)
    assert plan.lower[289, 0] == pytest.approx(level * 1.15 * (1 + 0.001) ** -2, rel=0.01)
    assert np.isinf(plan.upper[1, 0]) and plan.lower[1, 0] == 0  # one sample: never force an eviction
    assert plan.settle and not plan.horizontal


def test_the_vpa_under_its_updater_changes_rarely_and_only_by_its_own_rules():
    demand = _noisy(steps=288 * 4, width=4, seed=5)
    grid = _grid(demand)
    vpa = VPAPolicy()
    plan = vpa.bounds(grid, 1, 0.01)
    real = actuate(plan, grid.demand, ReplayRules(), round_up(grid.vcpus, 0.01))
    every_step = actuate(Plan(plan.target), grid.demand, FREE_RULES, round_up(grid.vcpus, 0.01))
    assert every_step.changes.sum() > 10 * real.changes.sum() > 0
    before = np.vstack([round_up(grid.vcpus, 0.01), real.request[:-1]])
    outside = (before < plan.lower - 1e-9) | (before > plan.upper + 1e-9)
    for t, j in zip(*np.nonzero(real.changes), strict=True):
        evictions = np.flatnonzero(real.evictions[:t, j])
        age = t - (evictions[-1] if len(evictions) else 0)
        assert outside[t, j] or age >= 144, (t, j)  # out of bounds, or an in-bounds update after 12 h


def test_the_forecast_policy_waits_out_a_dip_inside_its_stabilisation_window():
    need = np.r_[np.full(20, 4.0), np.full(2, 1.0), np.full(20, 4.0)][:, None]
    grid = _grid(need)
    forecasts = _forecasts(grid, need)
    follow = _play(ForecastPolicy(forecasts), grid, ReplayRules(in_place=True))
    held = _play(ForecastPolicy(forecasts, stabilise_steps=12), grid, ReplayRules(in_place=True))
    assert follow.changes[20:24, 0].any()  # following the need, the dip costs a change down and back up
    assert not held.changes[20:, 0].any() and (held.request[20:, 0] == 4.0).all()


def test_the_forecast_proposal_never_sets_less_than_the_need_and_waits_out_its_band():
    demand = _noisy()
    grid = _grid(demand)
    policy = ForecastPolicy(_forecasts(grid, demand), headroom=0.2, band=0.5, stabilise_steps=12)
    plan = policy.bounds(grid, 1, G)
    need = policy.need(grid)
    seen = ~np.isnan(need)
    assert (plan.target[seen] >= need[seen] * 1.2 - 1e-9).all()
    assert (plan.upper[seen] >= plan.target[seen]).all() and (plan.lower[seen] <= plan.target[seen]).all()
    day_max = ForecastPolicy(_forecasts(grid, demand), stabilise_steps=288).peak(need)
    day_p90 = ForecastPolicy(_forecasts(grid, demand), stabilise_steps=288, stabilise_quantile=0.9).peak(need)
    assert (day_p90[300:] <= day_max[300:]).all() and (day_p90[300:] < day_max[300:]).mean() > 0.9
    with pytest.raises(ValueError, match="stabilise_quantile"):
        ForecastPolicy(_forecasts(grid, demand), stabilise_quantile=1.5).bounds(grid, 1, G)


def test_the_hybrid_asks_for_at_least_what_the_forecast_and_the_reactive_policy_ask_for():
    demand = _noisy()
    grid = _grid(demand)
    low = demand * 0.6  # a forecast that runs low: the reactive rule must catch it
    forecast = ForecastPolicy(_forecasts(grid, low), calibrate_from=grid.ts[-1])
    reactive = ReactiveHPAPolicy()
    hybrid = HybridPolicy(forecast, reactive)
    both = [forecast.bounds(grid, 1, G), reactive.bounds(grid, 1, G)]
    mine = hybrid.bounds(grid, 1, G)
    for part, theirs in zip(mine.bounds(), zip(*(p.bounds() for p in both), strict=True), strict=True):
        finite = np.isfinite(theirs[0]) & np.isfinite(theirs[1])
        assert (part[finite] >= np.maximum(theirs[0], theirs[1])[finite] - 1e-12).all()
    plan = hybrid.plan(grid, 1, G)
    assert (plan >= forecast.plan(grid, 1, G)).all() and (plan >= reactive.plan(grid, 1, G)).all()
    assert (plan > forecast.plan(grid, 1, G)).any()  # and the reactive part does lift it
