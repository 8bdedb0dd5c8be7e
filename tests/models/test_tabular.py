"""Tabular forecasters and baselines on generated data: they beat persistence and round-trip exactly."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from ml_cloud_optimizer.data.schema import STEP
from ml_cloud_optimizer.features import build_features, make_targets
from ml_cloud_optimizer.models import Forecaster, forecaster_class
from ml_cloud_optimizer.models.baselines import PersistenceForecaster, SeasonalNaiveForecaster
from ml_cloud_optimizer.models.tabular import CatBoostForecaster, LightGBMForecaster, XGBoostForecaster
from ml_cloud_optimizer.models.tuning import time_folds

SMALL_FEATURES = {"windows": ("6h", "24h"), "seasonal_lags": ("1d",), "scale_window": "24h"}
FAST = {
    "features": SMALL_FEATURES,
    "n_estimators": 100,
    "learning_rate": 0.15,
    "n_jobs": 1,
    "refit": False,
    "max_train_rows": 10_000,
}
TABULAR = [LightGBMForecaster, XGBoostForecaster, CatBoostForecaster]


def seasonal_metrics(entities: int = 6, days: int = 5, seed: int = 0) -> pd.DataFrame:
    """Canonical metrics with a clear daily cycle per entity, autocorrelated noise and a few missing slots."""
    rng = np.random.default_rng(seed)
    ts = pd.date_range("2024-03-04", periods=days * 288, freq=STEP, tz="UTC")
    day = (ts - ts[0]) / pd.Timedelta("1d")
    frames = []
    for e in range(entities):
        noise = np.zeros(len(ts))
        shocks = rng.normal(0, 0.02, len(ts))
        for i in range(1, len(ts)):
            noise[i] = 0.8 * noise[i - 1] + shocks[i]
        level, amplitude, phase = rng.uniform(0.2, 0.4), rng.uniform(0.1, 0.25), rng.uniform(0, 2 * np.pi)
        cpu = np.clip(level + amplitude * np.sin(2 * np.pi * day + phase) + noise, 0, 1)
        frame = pd.DataFrame(
            {
                "entity_id": f"vm-{e}",
                "ts": ts,
                "cpu_util": cpu,
                "mem_util": np.clip(0.5 + 0.5 * noise, 0, 1),
                "net_in_kbps": 100 * cpu + rng.uniform(0, 5, len(ts)),
                "net_out_kbps": 50 * cpu + rng.uniform(0, 5, len(ts)),
            }
        )
        frames.append(frame.drop(index=rng.choice(len(ts), 15, replace=False)))
    metrics = pd.concat(frames, ignore_index=True)
    metrics["entity_id"] = metrics["entity_id"].astype("string")
    return metrics


@pytest.fixture(scope="module")
def split():
    metrics = seasonal_metrics()
    cut = metrics["ts"].min() + (metrics["ts"].max() - metrics["ts"].min()) * 0.75
    return metrics.loc[metrics["ts"] < cut], metrics, cut


def _holdout_mae(model, split) -> tuple[float, pd.DataFrame]:
    _train, metrics, cut = split
    forecasts = model.predict(metrics)
    joined = forecasts.loc[forecasts["ts"] >= cut].merge(make_targets(metrics), on=["entity_id", "ts"])
    joined = joined.loc[joined["y_h12"].notna()]
    return float(np.mean(np.abs(joined["p50_h12"] - joined["y_h12"]))), joined


@pytest.fixture(scope="module")
def persistence_mae(split):
    mae, _ = _holdout_mae(PersistenceForecaster().fit(split[0]), split)
    return mae


@pytest.fixture(scope="module")
def fitted(split):
    """Each tabular forecaster fitted once on the training part, shared by the tests below."""
    return {cls.kind: cls(**FAST).fit(split[0]) for cls in TABULAR}


@pytest.mark.parametrize("kind", ["lightgbm", "xgboost", "catboost"])
def test_tabular_model_beats_persistence_on_seasonal_data(kind, fitted, split, persistence_mae):
    mae, joined = _holdout_mae(fitted[kind], split)
    assert len(joined) > 1000
    assert mae < 0.9 * persistence_mae, f"{kind}: MAE {mae:.4f} vs persistence {persistence_mae:.4f}"
    above = (joined["y_h12"] <= joined["p90_h12"]).mean()
    assert 0.75 <= above <= 0.99, f"{kind}: p90 covers {above:.0%} of actuals"
    assert (joined["p90_h12"] >= joined["p50_h12"]).all()


@pytest.mark.parametrize("kind", ["lightgbm", "xgboost", "catboost"])
def test_saved_model_reloads_and_predicts_the_same_numbers(kind, fitted, split, tmp_path):
    model = fitted[kind]
    history = split[1].loc[split[1]["ts"] >= split[2] - pd.Timedelta("2d")]
    before = model.predict(history)
    directory = model.save(tmp_path / kind)
    metadata = json.loads((directory / "metadata.json").read_text())
    assert metadata["kind"] == kind and metadata["horizons"] == [1, 12]
    assert metadata["min_history"] == model.min_history and metadata["quantiles"] == ["p50", "p90"]
    assert metadata["feature_spec"]["windows"] == ["6h", "24h"]
    again = Forecaster.load(directory)
    assert type(again) is type(model)
    pd.testing.assert_frame_equal(again.predict(history), before)
    # Loading sets the fitted state fit sets.
    assert again.spec_ == model.spec_ and again.feature_columns_ == model.feature_columns_
    assert again.target_index_ == model.target_index_ and again.fit_seconds_ == round(model.fit_seconds_, 3)


def test_last_origin_and_ready_made_feature_rows_agree_with_predict(fitted, split):
    model = fitted["lightgbm"]
    history = split[1].loc[split[1]["ts"] >= split[2] - pd.Timedelta("1d")]
    full = model.predict(history)
    last = model.predict_last(history)
    expected = full.groupby("entity_id", observed=True).tail(1).reset_index(drop=True)
    pd.testing.assert_frame_equal(last, expected)
    rows = build_features(history, model.feature_spec)
    pd.testing.assert_frame_equal(model.predict_features(rows, check_history=True), full)
    last_rows = rows.sort_values("ts").groupby("entity_id", observed=True).tail(1)
    pd.testing.assert_frame_equal(model.predict_features(last_rows), last)
    with pytest.raises(ValueError, match="lack"):
        model.predict_features(rows.drop(columns=["cpu_util_lag_3"]))


@pytest.mark.parametrize("kind", ["lightgbm", "xgboost", "catboost"])
def test_predict_matrix_on_feature_rows_equals_predict_on_their_history(kind, fitted, split):
    """The matrix path serving calls gives, bit for bit, what ``predict`` gives from the history the rows came from."""
    model = fitted[kind]
    assert model.feature_columns_ == model.spec_.columns
    assert model.feature_columns_[model.target_index_] == model.spec_.target and model.fit_seconds_ > 0
    history = split[1].loc[split[1]["ts"] >= split[2] - pd.Timedelta("1d")]
    full = model.predict(history)
    rows = build_features(history, model.feature_spec).merge(full[["entity_id", "ts"]], on=["entity_id", "ts"])
    matrix = rows[model.feature_columns_].to_numpy("float64")
    assert np.isnan(matrix).any()  # missing features travel as NaN
    out = model.predict_matrix(matrix)
    assert list(out) == ["p50_h1", "p90_h1", "p50_h12", "p90_h12"]
    for name, values in out.items():
        np.testing.assert_array_equal(values, full[name].to_numpy())
    only = model.predict_matrix(matrix, horizons=(12,), quantiles=("p90",))
    assert list(only) == ["p50_h12", "p90_h12"]  # p50 runs too: p90 is floored by it
    np.testing.assert_array_equal(only["p90_h12"], full["p90_h12"].to_numpy())
    assert model.predict_matrix(matrix[:0])["p50_h12"].shape == (0,)


def test_predict_skips_origins_without_min_history(fitted, split):
    model = fitted["xgboost"]
    start = split[1]["ts"].min()
    forecasts = model.predict(split[1].loc[split[1]["ts"] < start + pd.Timedelta("6h")])
    first = forecasts.groupby("entity_id", observed=True)["ts"].min()
    assert ((first - start) // STEP >= model.min_history - 1).all()


def test_baselines_copy_the_right_past_value(split):
    metrics = split[1]
    keyed = metrics.set_index(["entity_id", "ts"])["cpu_util"]
    persistence = PersistenceForecaster().fit(metrics).predict(metrics)
    assert np.allclose(
        persistence["p50_h12"], keyed.loc[list(zip(persistence["entity_id"], persistence["ts"], strict=True))]
    )
    naive = SeasonalNaiveForecaster().fit(metrics).predict(metrics)
    sample = naive.dropna().sample(300, random_state=0)
    source = [(e, t + 12 * STEP - pd.Timedelta("1d")) for e, t in zip(sample["entity_id"], sample["ts"], strict=True)]
    assert np.allclose(sample["p50_h12"], keyed.loc[source])
    assert naive["ts"].min() >= metrics["ts"].min() + 287 * STEP
    assert forecaster_class("seasonal_naive") is SeasonalNaiveForecaster


def test_optuna_tuning_runs_its_trial_budget_on_time_folds(split):
    model = LightGBMForecaster(**{**FAST, "n_estimators": 40, "quantile": False}, n_trials=2, horizons=(12,))
    model.fit(split[0])
    assert len(model.study_.trials) == 2
    assert set(model.study_.best_params) <= set(model.params_)
    assert all(np.isfinite(t.value) for t in model.study_.trials)


def test_time_folds_never_validate_on_the_past():
    ts = pd.Series(pd.date_range("2024-01-01", periods=100, freq="5min", tz="UTC").repeat(3))
    folds = time_folds(ts, n_splits=3, gap=12)
    assert len(folds) == 3
    for train, valid in folds:
        assert ts.iloc[train].max() + 12 * STEP < ts.iloc[valid].min()
        assert len(np.intersect1d(train, valid)) == 0


def test_bad_parameters_are_reported():
    with pytest.raises(ValueError, match="target_mode"):
        LightGBMForecaster(target_mode="ratio").fit(pd.DataFrame({"entity_id": [], "ts": [], "cpu_util": []}))
    with pytest.raises(ValueError, match="unknown model kind"):
        forecaster_class("prophet")
