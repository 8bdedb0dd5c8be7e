"""Capacity arithmetic: demand in cores, rounding to the granularity, recommendations and their cost."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ml_cloud_optimizer.data.schema import UTIL_MAX, Fleet, validate_fleet
from ml_cloud_optimizer.optimizer.capacity import (
    DemandGrid,
    forecasts_long,
    recommend,
    round_up,
)


def _fleet(util: dict[str, list[float]], vcpus: dict[str, int], start="2026-01-05T00:00:00Z", drop=()) -> Fleet:
    rows = []
    for entity, values in util.items():
        ts = pd.date_range(start, periods=len(values), freq="5min")
        rows.append(pd.DataFrame({"entity_id": entity, "ts": ts, "cpu_util": values}))
    metrics = pd.concat(rows, ignore_index=True)
    metrics = metrics.drop(index=list(drop)).reset_index(drop=True)
    for col in ("mem_util", "net_in_kbps", "net_out_kbps", "disk_read_kbps", "disk_write_kbps", "request_rate"):
        metrics[col] = np.nan
    metrics["is_peak"] = pd.NA
    entities = pd.DataFrame(
        {
            "entity_id": list(vcpus),
            "service": "web",
            "instance_type": [f"t-{v}" for v in vcpus.values()],
            "region": "eu",
            "vcpus": list(vcpus.values()),
            "mem_gib": 8.0,
            "hourly_price": [0.05 * v for v in vcpus.values()],
        }
    )
    return validate_fleet(Fleet(metrics, entities))


def test_round_up_goes_to_the_next_granule_and_never_below_one():
    got = round_up([0.0, 0.1, 0.25, 0.2500000001, 0.26, 3.9, -1.0, np.nan], 0.25)
    np.testing.assert_allclose(got[:-1], [0.25, 0.25, 0.25, 0.25, 0.5, 4.0, 0.25])
    assert np.isnan(got[-1])
    np.testing.assert_allclose(round_up([1.2, 2.0], 1.0), [2.0, 2.0])


def test_round_up_refuses_a_non_positive_granularity():
    with pytest.raises(ValueError, match="granularity"):
        round_up([1.0], 0)


def test_demand_grid_is_util_times_vcpus_with_gaps_as_nan():
    fleet = _fleet({"a": [0.5, 0.25, 1.0, 0.5], "b": [0.1, 0.2, 0.3, 0.4]}, {"a": 4, "b": 2}, drop=[2])
    grid = DemandGrid.from_fleet(fleet)
    assert list(grid.entity_ids) == ["a", "b"]
    assert len(grid.ts) == 4 and (np.diff(grid.ts.asi8) == 300 * 10**9).all()
    np.testing.assert_allclose(grid.demand[:, 1], [0.2, 0.4, 0.6, 0.8])
    assert grid.demand[0, 0] == 2.0 and np.isnan(grid.demand[2, 0])
    assert grid.filled()[2, 0] == 1.0  # carried forward from the step before the gap
    np.testing.assert_allclose(grid.price_per_core_hour, [0.0316, 0.0316])  # the CPU share only, by default
    assert grid.index_of(grid.ts[2]) == 2


def test_recommend_sizes_for_the_hourly_peak_p90_at_the_target_utilization():
    fleet = _fleet({"a": [0.5] * 3}, {"a": 8})
    origins = pd.date_range("2026-01-05T00:00:00Z", periods=13, freq="5min")
    forecasts = pd.DataFrame(
        {
            "entity_id": "a",
            "ts": origins,
            "p50_h1": 0.3,
            "p90_h1": np.r_[np.full(10, 0.4), 0.55, 0.5, 0.45],  # targets 00:05 .. 01:05
        }
    )
    recs = recommend(forecasts, fleet.entities, target_utilization=0.8, granularity=0.5)
    assert list(recs["hour"]) == list(pd.to_datetime(["2026-01-05T00:00Z", "2026-01-05T01:00Z"]))
    first, second = recs.iloc[0], recs.iloc[1]
    # hour 00: peak p90 0.55 x 8 = 4.4 cores / 0.8 = 5.5 -> 5.5; hour 01: 0.5 x 8 / 0.8 = 5.0
    assert first["p90_cores"] == pytest.approx(4.4) and first["request_cores"] == 5.5
    assert second["request_cores"] == 5.0
    assert first["p50_cores"] == pytest.approx(2.4) and first["headroom_cores"] == pytest.approx(2.0)
    assert first["replicas"] == 1 and first["current_cores"] == 8
    # CPU and memory priced apart at the built-in defaults; memory (not recommended) stays at its 8 GiB.
    assert first["cpu_hourly_cost"] == pytest.approx(5.5 * 0.0316)
    assert first["mem_hourly_cost"] == pytest.approx(8 * 0.0042)
    assert first["current_hourly_cost"] == pytest.approx(8 * 0.0316 + 8 * 0.0042)
    assert first["hourly_saving"] == pytest.approx((8 - 5.5) * 0.0316)
    assert first["request_mem_gib"] == first["current_mem_gib"] == 8.0 and np.isnan(first["p90_mem_gib"])


def test_recommend_without_p90_uses_p50_and_counts_replicas_of_the_current_type():
    fleet = _fleet({"a": [0.5]}, {"a": 2})
    forecasts = pd.DataFrame({"entity_id": ["a"], "ts": pd.to_datetime(["2026-01-05T00:00Z"]), "p50_h12": [0.9]})
    recs = recommend(forecasts, fleet.entities, target_utilization=0.5, granularity=0.25)
    row = recs.iloc[0]
    assert row["headroom_cores"] == 0 and row["request_cores"] == pytest.approx(3.75)
    assert row["replicas"] == 2  # 3.75 cores need two 2-vCPU instances
    assert row["hourly_saving"] < 0  # more than is provisioned today


def test_recommend_keeps_a_wild_forecast_within_the_schemas_range():
    fleet = _fleet({"a": [0.5]}, {"a": 4})
    ts = pd.to_datetime(["2026-01-05T00:00Z"])
    forecasts = pd.DataFrame({"entity_id": ["a"], "ts": ts, "p50_h1": [1e308], "p90_h1": [np.inf]})
    row = recommend(forecasts, fleet.entities, target_utilization=0.5, granularity=0.25).iloc[0]
    assert row["p90_cores"] == UTIL_MAX * 4 and row["request_cores"] == UTIL_MAX * 4 / 0.5
    assert row["replicas"] == 3  # 12 cores of 4-vCPU instances, not an overflowed count


@pytest.mark.parametrize(
    ("frame", "kwargs", "message"),
    [
        (pd.DataFrame({"entity_id": ["zz"], "ts": pd.to_datetime(["2026-01-05T00:00Z"]), "p50_h1": [0.1]}), {}, "zz"),
        (pd.DataFrame({"entity_id": ["a"], "ts": pd.to_datetime(["2026-01-05T00:00Z"])}), {}, "p50_h"),
        (
            pd.DataFrame({"entity_id": ["a"], "ts": pd.to_datetime(["2026-01-05T00:00Z"]), "p50_h1": [0.1]}),
            {"target_utilization": 1.5},
            "target utilization",
        ),
    ],
)
def test_recommend_refuses_bad_input_with_a_message(frame, kwargs, message):
    fleet = _fleet({"a": [0.5]}, {"a": 2})
    with pytest.raises(ValueError, match=message):
        recommend(frame, fleet.entities, **kwargs)


def _two_hour_forecasts():
    origins = pd.date_range("2026-01-05T00:00:00Z", periods=24, freq="5min")
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"entity_id": np.repeat(["a", "b"], 24), "ts": np.tile(origins, 2)})
    frame["p50_h1"] = rng.uniform(0.1, 0.5, 48)
    frame["p90_h1"] = frame["p50_h1"] + 0.1
    frame["p50_h12"] = rng.uniform(0.1, 0.5, 48)
    frame["p90_h12"] = frame["p50_h12"] + 0.2
    return frame


def test_forecasts_long_has_one_row_per_origin_and_horizon():
    frame = _two_hour_forecasts()
    frame.loc[3, "p50_h12"] = np.nan
    long = forecasts_long(frame)
    assert len(long) == 2 * 48 - 1
    row = long[(long["horizon"] == 12) & (long["entity_id"] == "b")].iloc[0]
    assert row["target_ts"] - row["origin_ts"] == pd.Timedelta(hours=1)
    assert row["p90"] == pytest.approx(row["p50"] + 0.2)
