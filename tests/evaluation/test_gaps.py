"""Real traces have gaps: separate days evaluate, MASE is NaN where undefined, data problems are one line."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ml_cloud_optimizer.cli import main
from ml_cloud_optimizer.data.schema import STEP, DataValidationError
from ml_cloud_optimizer.data.synthetic import generate_fleet
from ml_cloud_optimizer.evaluation import check_evaluable, evaluate_holdout, leaderboard, to_markdown
from ml_cloud_optimizer.models.tabular import LightGBMForecaster

DAYS = (0, 3, 6, 9, 12, 15)  # monitored days, never two in a row: no value a day earlier, ever


def separate_days(entities: int = 4, days=DAYS, samples: int = 288, seed: int = 0) -> pd.DataFrame:
    """PlanetLab's shape: each entity has whole days of 5-minute samples, the days far apart."""
    rng = np.random.default_rng(seed)
    frames = []
    for e in range(entities):
        level = rng.uniform(0.1, 0.5)
        for d in days:
            ts = pd.Timestamp("2011-03-03", tz="UTC") + pd.Timedelta(days=d) + STEP * np.arange(samples)
            noise = np.zeros(samples)
            for i in range(1, samples):
                noise[i] = 0.9 * noise[i - 1] + rng.normal(0, 0.03)
            frames.append(pd.DataFrame({"entity_id": f"pl-{e}", "ts": ts, "cpu_util": np.clip(level + noise, 0, 1)}))
    return pd.concat(frames, ignore_index=True)


def test_a_fleet_of_separate_days_is_evaluated_with_mase_undefined():
    metrics = separate_days()
    check_evaluable(metrics)  # nothing to refuse
    model = LightGBMForecaster(target_mode="level", feature_set="lags", n_estimators=40, n_jobs=1)
    evaluation = evaluate_holdout({"lightgbm": model}, metrics, holdout=0.2)
    board = leaderboard(evaluation.scores).set_index("model")  # used to raise KeyError: ('mase', 12)
    assert board["mase_h12"].isna().all()  # the seasonal scale needs a value a day earlier
    assert board.loc["seasonal_naive", "n_h12"] == 0 and np.isnan(board.loc["seasonal_naive", "val_mae_h12"])
    assert board.loc["persistence", "n_h12"] > 500 and board.loc["lightgbm", "val_n_h12"] > 200
    assert board.loc["lightgbm", "vs_persistence_h12"] == pytest.approx(
        board.loc["lightgbm", "mae_h12"] / board.loc["persistence", "mae_h12"]
    )
    assert board["champion"].sum() == 1 and board.loc[board["champion"]].index[0] != "seasonal_naive"
    assert "| lightgbm" in to_markdown(board.reset_index())


def test_mase_is_kept_where_a_day_earlier_exists():
    metrics = generate_fleet(4_000, entities=2, seed=2).metrics
    board = leaderboard(evaluate_holdout({}, metrics, holdout=0.3, validation=0).scores)
    assert board["mase_h12"].notna().all()


@pytest.mark.parametrize(
    ("metrics", "message"),
    [
        (
            pd.DataFrame(
                {"entity_id": ["a", "b"], "ts": pd.to_datetime(["2024-01-01"] * 2, utc=True), "cpu_util": 0.5}
            ),
            r"share one timestamp .*pass a time series, not a snapshot",
        ),
        (
            separate_days(samples=10),
            r"too little history: 0 origins before .* have a value 12 steps \(0 days 01:00:00\)",
        ),
        (
            pd.concat([separate_days(days=(0, 1, 2, 3, 40)), separate_days(days=(20,), samples=10, seed=1)]),
            r"the validation window \(.*\) holds no origin with a value 12 steps",
        ),
        (
            pd.concat([separate_days(days=(0, 1, 2, 3, 4, 5)), separate_days(days=(20,), samples=10, seed=1)]),
            r"the hold-out \(.* on\) holds no origin",
        ),
    ],
    ids=["snapshot", "short-runs", "empty-validation", "empty-hold-out"],
)
def test_data_problems_are_one_line_before_anything_is_fitted(metrics, message):
    with pytest.raises(DataValidationError, match=message) as info:
        check_evaluable(metrics, holdout=0.2)
    assert "\n" not in str(info.value)
    with pytest.raises(DataValidationError, match=message):
        evaluate_holdout({"lightgbm": LightGBMForecaster()}, metrics)


def planetlab_csv(metrics: pd.DataFrame, path) -> None:
    """``metrics`` written as the shared PlanetLab trace is: unix seconds, entity_id, integer percent."""
    out = pd.DataFrame(
        {
            "timestamp": metrics["ts"].astype("int64") // 10**9,
            "entity_id": metrics["entity_id"],
            "cpu_util": (metrics["cpu_util"] * 100).round().astype(int),
        }
    )
    out.to_csv(path, index=False)


def test_mlco_train_refuses_such_data_in_one_line_before_training(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MLCO_HOME", str(tmp_path / "home"))
    planetlab_csv(separate_days(samples=10), tmp_path / "short.csv")
    code = main(
        ["train", "--source", str(tmp_path / "short.csv"), "--models", "lightgbm", "--no-tracking", "--no-peak"]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert err[-1].startswith("mlco train: error: too little history: 0 origins before")
    assert not any("fitting" in line for line in err) and "Traceback" not in "\n".join(err)
