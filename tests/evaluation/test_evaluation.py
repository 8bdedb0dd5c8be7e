"""Evaluation: time split, metrics, the hold-out leaderboard with its baselines, the champion rule, plots."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import mean_absolute_error, mean_absolute_percentage_error, mean_squared_error

from ml_cloud_optimizer.data.synthetic import generate_fleet
from ml_cloud_optimizer.evaluation import (
    TIE_TOLERANCE,
    choose_champion,
    evaluate_holdout,
    leaderboard,
    mae,
    mape,
    rmse,
    rolling_origin,
    time_split,
    wape,
    write_leaderboard,
)
from ml_cloud_optimizer.evaluation.plots import plot_error_by_horizon, plot_forecasts
from ml_cloud_optimizer.models.tabular import LightGBMForecaster

TINY = LightGBMForecaster(
    features={"windows": ("6h",), "seasonal_lags": ("1d",), "scale_window": "6h", "rolling_inputs": ()},
    target_mode="delta",
    feature_set="rich",
    n_estimators=40,
    learning_rate=0.2,
    n_jobs=1,
    quantile=False,
)


@pytest.fixture(scope="module")
def metrics() -> pd.DataFrame:
    return generate_fleet(7_000, entities=4, seed=5).metrics


@pytest.fixture(scope="module")
def evaluation(metrics):
    return evaluate_holdout({"lightgbm": TINY}, metrics, holdout=0.25)


def test_time_split_cuts_once_for_every_entity(metrics):
    train, test = time_split(metrics, holdout=0.2)
    assert len(train) + len(test) == len(metrics)
    assert train["ts"].max() < test["ts"].min()
    span = metrics["ts"].max() - metrics["ts"].min()
    assert abs((test["ts"].max() - test["ts"].min()) / span - 0.2) < 0.01
    with pytest.raises(ValueError, match="holdout"):
        time_split(metrics, holdout=1.5)


def test_metrics_match_their_definitions():
    rng = np.random.default_rng(0)
    actual = rng.uniform(0.05, 1, 500)
    forecast = actual + rng.normal(0, 0.1, 500)
    actual_nan = np.append(actual, np.nan)
    forecast_nan = np.append(forecast, 0.3)
    assert mae(actual_nan, forecast_nan) == pytest.approx(mean_absolute_error(actual, forecast))
    assert rmse(actual, forecast) == pytest.approx(np.sqrt(mean_squared_error(actual, forecast)))
    assert wape(actual, forecast) == pytest.approx(np.abs(actual - forecast).sum() / actual.sum())
    assert mape(actual, forecast) == pytest.approx(mean_absolute_percentage_error(actual, forecast))
    idle = np.zeros(100)
    assert np.isnan(mape(idle, idle + 0.1))  # undefined on idle machines: not reported


@pytest.mark.usefixtures("metrics")
def test_holdout_scores_every_model_beside_both_baselines_on_the_same_rows(evaluation):
    scores = evaluation.scores
    assert (
        {"persistence", "seasonal_naive", "lightgbm"}
        <= set(scores["model"])
        <= {
            "persistence",
            "seasonal_naive",
            "lightgbm",
            "blend",  # when a blend of the best is more than one model
        }
    )
    for _, rows in scores.groupby("horizon"):
        assert rows["n"].nunique() == 1 and rows["n"].iloc[0] > 500
        assert rows["val_n"].nunique() == 1 and rows["val_n"].iloc[0] > 300  # validation: the same rows for all
    persistence = scores.loc[scores["model"] == "persistence"]
    assert np.allclose(persistence["vs_persistence"], 1.0)
    lgb = scores.loc[(scores["model"] == "lightgbm") & (scores["horizon"] == 12)].iloc[0]
    naive = scores.loc[(scores["model"] == "seasonal_naive") & (scores["horizon"] == 12)].iloc[0]
    assert lgb["vs_seasonal_naive"] == pytest.approx(lgb["mae"] / naive["mae"])
    forecasts = evaluation.forecasts["lightgbm"]
    assert forecasts["ts"].min() >= evaluation.cutoff
    scored = forecasts.loc[forecasts["scored_h12"]]
    assert len(scored) == lgb["n"]
    assert mae(scored["y_h12"], scored["p50_h12"]) == pytest.approx(lgb["mae"])
    assert evaluation.models["lightgbm"] is not TINY  # candidates are cloned, never fitted in place


def test_leaderboard_ranks_on_the_hour_ahead_mae_on_validation(evaluation, tmp_path):
    board = leaderboard(evaluation.scores)
    assert list(board["rank"]) == list(range(1, len(board) + 1))
    assert board["val_mae_h12"].is_monotonic_increasing
    eligible = board.loc[board["eligible"]]
    assert board["champion"].sum() == 1 and eligible.iloc[0]["champion"]
    assert {"mae_h12", "vs_persistence_h12", "val_vs_persistence_h12", "p90_cover_h12"} <= set(board.columns)
    csv_path, md_path = write_leaderboard(board, tmp_path)
    again = pd.read_csv(csv_path)
    assert list(again["model"]) == list(board["model"])
    assert md_path.read_text().startswith("|") and "champion" in md_path.read_text()


def test_champion_tie_goes_to_the_simpler_model():
    best = 0.05
    board = pd.DataFrame(
        {
            "model": ["catboost", "lightgbm", "gru"],
            "kind": ["catboost", "lightgbm", "gru"],
            "mae_h12": [best, best * (1 + TIE_TOLERANCE / 2), best * 0.998],
            "fit_s": [1.0, 5.0, 9.0],
        }
    )
    assert choose_champion(board) == "gru"  # clearly better: complexity does not matter
    board.loc[2, "mae_h12"] = best * (1 + TIE_TOLERANCE / 3)
    assert choose_champion(board) == "lightgbm"  # three-way tie: the simplest kind wins
    board.loc[1, "mae_h12"] = best * (1 + 2 * TIE_TOLERANCE)
    assert choose_champion(board) == "catboost"


def test_plots_are_written(evaluation, tmp_path):
    one = plot_forecasts(evaluation.forecasts["lightgbm"], tmp_path / "f.png", entities=2)
    two = plot_error_by_horizon(evaluation.scores, tmp_path / "e.png")
    for path in (one, two):
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5_000


def test_rolling_origin_refits_on_each_earlier_window(metrics):
    scores = rolling_origin({}, metrics, folds=2, holdout=0.3)
    cutoffs = scores.groupby("fold")["cutoff"].first()
    assert list(cutoffs.index) == [0, 1] and cutoffs.is_monotonic_increasing
    assert set(scores["model"]) == {"persistence", "seasonal_naive"}
    assert (scores.groupby(["fold", "horizon"])["n"].min() > 100).all()
