"""Autoscaling policies: each behaves as its Kubernetes namesake and none looks into the future."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ml_cloud_optimizer.optimizer.capacity import DemandGrid, round_up
from ml_cloud_optimizer.optimizer.policies import (
    ForecastPolicy,
    ReactiveHPAPolicy,
    StaticPolicy,
    VPAPolicy,
    forecast_matrix,
)

G = 0.25


def _grid(demand: np.ndarray, vcpus=None) -> DemandGrid:
    demand = np.asarray(demand, dtype="float64")
    if demand.ndim == 1:
        demand = demand[:, None]
    steps, width = demand.shape
    vcpus = np.full(width, 8.0) if vcpus is None else np.asarray(vcpus, dtype="float64")
    return DemandGrid(
        ts=pd.date_range("2026-01-05T00:00:00Z", periods=steps, freq="5min", name="ts"),
        entity_ids=pd.Index([f"e{i}" for i in range(width)], name="entity_id"),
        vcpus=vcpus,
        price_per_core_hour=np.full(width, 0.04),
        demand=demand,
    )


def _forecasts_from(grid: DemandGrid, values: np.ndarray, horizon: int = 1) -> pd.DataFrame:
    """A forecast frame whose p90 for step t (made at t - horizon) is ``values[t]`` cores."""
    util = values / grid.vcpus
    frames = []
    for j, entity in enumerate(grid.entity_ids):
        origin = grid.ts[:-horizon]
        frames.append(
            pd.DataFrame(
                {
                    "entity_id": entity,
                    "ts": origin,
                    f"p50_h{horizon}": util[horizon:, j],
                    f"p90_h{horizon}": util[horizon:, j],
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def _noisy_demand(steps=600, width=3, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(steps)[:, None]
    level = 3 + 2 * np.sin(2 * np.pi * t / 288 + np.arange(width)) + rng.gamma(2.0, 0.3, (steps, width))
    return np.clip(level, 0, 8)


def _all_policies(grid: DemandGrid, start: int):
    forecasts = _forecasts_from(grid, grid.filled())  # an oracle, yet only used through the interface
    return [
        StaticPolicy(),
        ReactiveHPAPolicy(),
        VPAPolicy(half_life_hours=2),
        # a short window makes the margin react to a single residual, so a peek would show
        ForecastPolicy(forecasts, window_steps=12, calibrate_from=grid.ts[start // 2]),
    ]


@pytest.mark.parametrize("index", range(4))
def test_no_policy_uses_demand_it_could_not_have_seen(index):
    demand = _noisy_demand()
    start, cut = 300, 450
    before = _all_policies(_grid(demand), start)[index].plan(_grid(demand), start, G)
    altered = demand.copy()
    altered[cut:] += np.random.default_rng(9).uniform(20, 30, altered[cut:].shape)
    grid = _grid(altered)
    policy = _all_policies(grid, start)[index]
    # the oracle forecasts change with the data, so keep the first policy's forecasts
    if isinstance(policy, ForecastPolicy):
        policy = _all_policies(_grid(demand), start)[index]
    after = policy.plan(grid, start, G)
    np.testing.assert_array_equal(before[: cut + 1], after[: cut + 1])


def test_static_provisions_the_history_p99_and_ignores_the_replay():
    demand = _noisy_demand()
    start = 300
    cap = StaticPolicy(quantile=0.99).plan(_grid(demand), start, G)
    expected = round_up(np.quantile(demand[:start], 0.99, axis=0), G)
    np.testing.assert_allclose(cap[start:], np.broadcast_to(expected, cap[start:].shape))
    demand[start:] *= 3
    np.testing.assert_allclose(StaticPolicy().plan(_grid(demand), start, G)[start:], cap[start:])


def test_hpa_scales_up_one_step_late_to_demand_over_target():
    demand = np.r_[np.full(20, 1.4), np.full(20, 4.2)]
    cap = ReactiveHPAPolicy(target_utilization=0.7, tolerance=0.1).plan(_grid(demand), 1, G)
    assert cap[19] == 2.0  # 1.4 / 0.7
    assert cap[20] == 2.0  # the jump is seen at the end of step 20 ...
    assert cap[21] == 6.0  # ... and served from step 21


def test_hpa_holds_within_tolerance_and_waits_out_the_stabilisation_window_to_scale_down():
    demand = np.r_[np.full(10, 7.0), np.full(3, 6.6), np.full(20, 2.8)]
    policy = ReactiveHPAPolicy(target_utilization=0.7, tolerance=0.1, downscale_stabilisation_s=900)
    cap = policy.plan(_grid(demand), 1, G)
    assert cap[9] == 10.0
    assert (cap[11:14] == 10.0).all()  # 6.6 / (10 x 0.7) = 0.94: inside the tolerance, no change
    # demand drops at step 13; four recommendations (15 minutes) must agree before scaling down
    assert (cap[14:17] == 10.0).all()
    assert (cap[17:] == 4.0).all()


def test_vpa_recommends_the_decayed_p90_plus_margin():
    rng = np.random.default_rng(3)
    demand = rng.uniform(1, 5, (800, 2))
    half_life_hours = 6.0
    cap = VPAPolicy(half_life_hours=half_life_hours, margin=0.15).plan(_grid(demand), 1, 0.01)
    for t in (200, 500, 799):
        age = (t - 1) - np.arange(t)  # decision for step t uses samples 0 .. t-1
        weight = 0.5 ** (age / (half_life_hours * 12))
        for j in range(2):
            order = np.argsort(demand[:t, j])
            cum = np.cumsum(weight[order]) / weight.sum()
            p90 = demand[:t, j][order][np.searchsorted(cum, 0.9)]
            # the histogram answers with its bucket's end: at most one bucket (5%) above the exact value
            assert p90 * 1.15 <= cap[t, j] + 0.01 <= p90 * 1.15 * 1.05 + 0.02


def test_vpa_forgets_an_old_peak_at_its_half_life():
    demand = np.r_[np.full(12 * 24, 6.0), np.full(12 * 72, 1.0)]
    cap = VPAPolicy(half_life_hours=24).plan(_grid(demand), 1, G)
    assert cap[12 * 24 + 12] > 6.0  # an hour after the drop the histogram still remembers the peak
    assert cap[-1] < 1.5  # three half-lives later the old peak holds under 10% of the weight


def test_forecast_policy_with_an_exact_forecast_needs_no_margin():
    demand = _noisy_demand()
    grid = _grid(demand)
    cap = ForecastPolicy(_forecasts_from(grid, demand), calibrate_from=grid.ts[100]).plan(grid, 300, G)
    np.testing.assert_allclose(cap[300:], round_up(demand[300:], G))


def test_forecast_policy_learns_a_margin_for_a_forecast_that_runs_low():
    demand = _noisy_demand(steps=1200)
    grid = _grid(demand)
    low = demand - 0.8 - np.random.default_rng(1).uniform(0, 0.6, demand.shape)
    forecasts = _forecasts_from(grid, low)
    start = 600
    raw = round_up(low, G)
    cap = ForecastPolicy(forecasts, coverage=0.95, calibrate_from=grid.ts[300]).plan(grid, start, G)
    raw_under = (demand[start:] > raw[start:]).mean()
    under = (demand[start:] > cap[start:]).mean()
    assert raw_under > 0.9
    assert under <= 0.08
    assert (cap[start:] - demand[start:]).mean() < 1.0  # the margin is about the bias, not a blanket


def test_forecast_policy_ignores_residuals_before_calibration():
    demand = _noisy_demand(steps=800)
    grid = _grid(demand)
    wild = demand.copy()
    wild[:300] = 0.0  # a forecast that was badly off on its training rows only
    forecasts = _forecasts_from(grid, wild)
    calibrated = ForecastPolicy(forecasts, calibrate_from=grid.ts[300]).plan(grid, 600, G)
    np.testing.assert_allclose(calibrated[600:], round_up(demand[600:], G))
    naive = ForecastPolicy(forecasts, window_steps=800).plan(grid, 600, G)
    assert (naive[600:] > calibrated[600:]).all()


def test_forecast_matrix_aligns_forecasts_to_their_target_step():
    demand = _noisy_demand(steps=50, width=2)
    grid = _grid(demand, vcpus=[8, 4])
    frame = _forecasts_from(grid, demand, horizon=12)
    got = forecast_matrix(frame, grid, horizon=12)
    assert np.isnan(got[:12]).all()
    np.testing.assert_allclose(got[12:], demand[12:])
    with pytest.raises(ValueError, match="p90_h1"):
        forecast_matrix(frame, grid, horizon=1)


def test_an_hour_ahead_forecast_policy_decides_with_what_it_knew_an_hour_before():
    demand = _noisy_demand(steps=700)
    grid = _grid(demand)
    rng = np.random.default_rng(2)
    forecasts = _forecasts_from(grid, demand + rng.normal(0, 0.5, demand.shape), horizon=12)
    policy = ForecastPolicy(forecasts, horizon=12, window_steps=24, calibrate_from=grid.ts[100])
    before = policy.plan(grid, 400, G)
    altered = demand.copy()
    cut = 500
    altered[cut:] += 25.0
    after = policy.plan(_grid(altered), 400, G)
    # the margin of step s is learnt from residuals up to s - 12: the first 12 steps from the cut are blind to it
    np.testing.assert_array_equal(before[: cut + 12], after[: cut + 12])
    assert (after[cut + 12 : cut + 30] > before[cut + 12 : cut + 30]).any()
