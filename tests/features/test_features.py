"""Features and targets: the grid, no leakage, alignment, and the peak label's reference window."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ml_cloud_optimizer.data.schema import STEP
from ml_cloud_optimizer.data.synthetic import generate_fleet
from ml_cloud_optimizer.features import (
    CALENDAR_COLUMNS,
    FeatureSpec,
    build_features,
    from_hourly,
    make_targets,
    peak_labels,
    regularize,
)

SMALL = FeatureSpec(windows=("6h", "24h"), seasonal_lags=("1d",), scale_window="24h")


@pytest.fixture(scope="module")
def metrics() -> pd.DataFrame:
    """Three entities, about three days each, with the generator's missing slots."""
    return generate_fleet(2_600, entities=3, seed=3).metrics


def _drop_slots(metrics: pd.DataFrame, entity: str, positions: list[int]) -> pd.DataFrame:
    rows = metrics.index[metrics["entity_id"] == entity][positions]
    return metrics.drop(index=rows)


def test_regularize_restores_every_slot_and_marks_missing_ones(metrics):
    entity = metrics["entity_id"].iloc[0]
    holed = _drop_slots(metrics, entity, [10, 11, 50])
    grid = regularize(holed)

    for name, rows in grid.groupby("entity_id", observed=True):
        steps = rows["ts"].diff().dropna()
        assert (steps == STEP).all(), f"{name}: grid is not regular"
        source = holed.loc[holed["entity_id"] == name]
        assert rows["ts"].min() == source["ts"].min() and rows["ts"].max() == source["ts"].max()
        assert int(rows["observed"].sum()) == len(source)
    missing = grid.loc[~grid["observed"]]
    assert missing["cpu_util"].isna().all()
    assert grid[["entity_id", "ts"]].equals(grid.sort_values(["entity_id", "ts"])[["entity_id", "ts"]])


def test_features_align_with_input_rows_in_any_order(metrics):
    shuffled = metrics.sample(frac=1.0, random_state=0)
    features = build_features(shuffled, SMALL)
    assert list(features.columns) == ["entity_id", "ts", *SMALL.columns]
    assert features.index.equals(shuffled.index)
    assert (features["ts"].to_numpy() == shuffled["ts"].to_numpy()).all()
    assert np.allclose(features["cpu_util"], shuffled["cpu_util"])
    ordered = build_features(metrics, SMALL)
    pd.testing.assert_frame_equal(features.loc[metrics.index], ordered)


def test_altering_future_rows_leaves_past_features_unchanged(metrics):
    cut = metrics["ts"].quantile(0.6)
    future = metrics["ts"] > cut
    altered = metrics.copy()
    rng = np.random.default_rng(1)
    for col in ("cpu_util", "mem_util", "net_in_kbps", "net_out_kbps", "request_rate"):
        altered.loc[future, col] = rng.uniform(0, 1, future.sum())
    altered = altered.drop(index=altered.index[future][::7])  # and remove some future rows

    before = build_features(metrics, FeatureSpec())  # the full default spec, 7-day windows included
    after = build_features(altered, FeatureSpec())
    past = before.index[~future]
    pd.testing.assert_frame_equal(before.loc[past], after.loc[past])
    assert not before.loc[future].equals(after.loc[after.index.intersection(before.index[future])])


def test_lags_and_windows_read_the_grid_not_the_rows(metrics):
    entity = metrics["entity_id"].iloc[0]
    holed = _drop_slots(metrics, entity, [100])
    features = build_features(holed, SMALL)
    rows = holed.index[holed["entity_id"] == entity]
    one = holed.loc[rows].set_index("ts")["cpu_util"]
    dropped = metrics.loc[metrics["entity_id"] == entity, "ts"].iloc[100]
    after_gap = holed.index[(holed["entity_id"] == entity) & (holed["ts"] == dropped + STEP)][0]
    assert np.isnan(features.loc[after_gap, "cpu_util_lag_1"])
    expected = one.get(dropped - STEP, np.nan)
    assert features.loc[after_gap, "cpu_util_lag_2"] == pytest.approx(expected, nan_ok=True)

    origin = holed.loc[rows[200], "ts"]
    window = one.loc[(one.index > origin - pd.Timedelta("6h")) & (one.index <= origin)]
    assert features.loc[rows[200], "cpu_util_mean_6h"] == pytest.approx(window.mean())
    assert features.loc[rows[200], "cpu_util_max_6h"] == pytest.approx(window.max())
    assert features.loc[rows[200], "cpu_util_std_6h"] == pytest.approx(window.std())
    yesterday = one.get(origin - pd.Timedelta("1d") + 12 * STEP, np.nan)
    assert features.loc[rows[200], "cpu_util_lag_1d_h12"] == pytest.approx(yesterday, nan_ok=True)


def test_calendar_features_are_cyclical():
    ts = pd.Series(pd.to_datetime(["2024-01-06 00:00", "2024-01-06 06:00", "2024-01-08 23:55"], utc=True))
    frame = pd.DataFrame({"entity_id": "a", "ts": ts, "cpu_util": [0.1, 0.2, 0.3]})
    features = build_features(frame, SMALL)
    assert list(features["hour"]) == [0, 6, 23]
    assert list(features["dow"]) == [5, 5, 0] and list(features["is_weekend"]) == [1, 1, 0]
    assert features["hour_sin"].iloc[1] == pytest.approx(1.0)
    radius = features["hour_sin"] ** 2 + features["hour_cos"] ** 2
    assert np.allclose(radius, 1.0)
    assert set(CALENDAR_COLUMNS) <= set(features.columns)


def test_feature_spec_round_trips_through_json():
    import json

    spec = FeatureSpec(windows=("1h", "2d"), lags=(1, 2, 3), timezone="Europe/Amsterdam")
    again = FeatureSpec.from_dict(json.loads(json.dumps(spec.to_dict())))
    assert again == spec and again.columns == spec.columns
    with pytest.raises(ValueError, match="unknown fields"):
        FeatureSpec.from_dict({**spec.to_dict(), "bogus": 1})
    with pytest.raises(ValueError, match="shorter than one step"):
        FeatureSpec(windows=("1min",))


def test_duplicate_slots_are_refused(metrics):
    doubled = pd.concat([metrics, metrics.iloc[:1]])
    with pytest.raises(ValueError, match="share an"):
        build_features(doubled, SMALL)


def test_targets_read_the_value_h_steps_later(metrics):
    entity = metrics["entity_id"].iloc[0]
    holed = _drop_slots(metrics, entity, [30])
    targets = make_targets(holed, (1, 12))
    assert targets.index.equals(holed.index)
    by_key = holed.set_index(["entity_id", "ts"])["cpu_util"]
    sample = holed.sample(200, random_state=2)
    for idx, row in sample.iterrows():
        expected = by_key.get((row["entity_id"], row["ts"] + 12 * STEP), np.nan)
        assert targets.loc[idx, "y_h12"] == pytest.approx(expected, nan_ok=True)
    dropped = metrics.loc[metrics["entity_id"] == entity, "ts"].iloc[30]
    before_gap = holed.index[(holed["entity_id"] == entity) & (holed["ts"] == dropped - STEP)]
    assert len(before_gap) == 1 and np.isnan(targets.loc[before_gap, "y_h1"]).all()  # its next slot was dropped
    assert targets.groupby("entity_id", observed=True)["y_h12"].apply(lambda s: s.tail(12).isna().all()).all()


def test_peak_threshold_comes_from_the_reference_window_only(metrics):
    cut = metrics["ts"].quantile(0.7)
    reference = metrics.loc[metrics["ts"] < cut]
    labels = peak_labels(metrics, horizon=12, reference=reference)
    boosted = metrics.copy()
    boosted.loc[boosted["ts"] >= cut, "cpu_util"] = 1.0
    again = peak_labels(boosted, horizon=12, reference=reference)
    early = metrics["ts"] < cut - 13 * STEP
    assert labels.index.equals(metrics.index) and str(labels.dtype) == "boolean"
    assert labels[early].equals(again[early])  # thresholds did not move with the future
    assert again[(metrics["ts"] >= cut) & again.notna()].all()

    p95 = reference.groupby("entity_id", observed=True)["cpu_util"].quantile(0.95)
    grid = regularize(metrics)
    grid["future_max"] = grid.groupby("entity_id", observed=True)["cpu_util"].transform(
        lambda s: s[::-1].rolling(12, min_periods=1).max()[::-1].shift(-1)
    )
    joined = metrics[["entity_id", "ts"]].merge(grid, on=["entity_id", "ts"], how="left")
    expected = joined["future_max"] > joined["entity_id"].map(p95).astype(float)
    known = labels.notna().to_numpy()
    assert (labels.to_numpy()[known] == expected.to_numpy()[known]).all()
    assert labels.groupby(metrics["entity_id"]).apply(lambda s: s.tail(1).isna().all()).all()

    fixed = peak_labels(metrics, threshold=0.5)
    assert fixed[known].equals((joined["future_max"] > 0.5)[known].set_axis(metrics.index[known]).astype("boolean"))


def test_hourly_view_builds_features_on_an_hourly_grid(metrics):
    hourly = (
        metrics.assign(hour=metrics["ts"].dt.floor("1h"))
        .groupby(["entity_id", "hour"], observed=True)
        .agg(cpu_mean=("cpu_util", "mean"), mem_mean=("mem_util", "mean"), net_in_kbps=("net_in_kbps", "mean"))
        .reset_index()
    )
    spec = FeatureSpec(
        step="1h",
        lags=(1, 2, 24),
        windows=("6h", "24h"),
        seasonal_lags=("1d",),
        median_windows=("3h",),
        ewm_halflives=("2h",),
        scale_window="24h",
    )
    features = build_features(hourly, spec)
    assert len(features) == len(hourly)
    assert np.allclose(features["cpu_util"], hourly["cpu_mean"])
    same = from_hourly(hourly)
    first = same.loc[same["entity_id"] == same["entity_id"].iloc[0]]
    assert features.loc[first.index[30], "cpu_util_lag_24"] == pytest.approx(first["cpu_util"].iloc[6])
