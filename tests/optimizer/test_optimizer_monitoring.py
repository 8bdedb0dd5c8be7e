"""Monitoring: drift and accuracy are measured on real features and forecasts; the verdict follows them."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from ml_cloud_optimizer.data.schema import Fleet, validate_fleet
from ml_cloud_optimizer.data.synthetic import generate_fleet
from ml_cloud_optimizer.features import CALENDAR_COLUMNS
from ml_cloud_optimizer.models.baselines import PersistenceForecaster
from ml_cloud_optimizer.optimizer.monitoring import RetrainThresholds, forecast_accuracy, monitor


@pytest.fixture(scope="module")
def fleet() -> Fleet:
    return generate_fleet(288 * 9 * 3, entities=3, seed=5)


def _shifted(fleet: Fleet, hours: int = 24) -> Fleet:
    """The same fleet with the last ``hours`` much busier and noisier: a regime change."""
    metrics = fleet.metrics.copy()
    late = metrics["ts"] > metrics["ts"].max() - pd.Timedelta(hours=hours)
    noise = np.random.default_rng(0).uniform(0, 0.5, int(late.sum()))
    metrics.loc[late, "cpu_util"] = np.clip(metrics.loc[late, "cpu_util"] * 0.3 + 0.5 + noise, 0, 1.2)
    return validate_fleet(Fleet(metrics, fleet.entities))


def test_a_steady_fleet_needs_no_retraining(fleet):
    model = PersistenceForecaster().fit(fleet.metrics)
    report = monitor(fleet.metrics, model)
    assert not report.retrain, report.reasons
    assert not set(CALENDAR_COLUMNS) & set(report.drift["feature"])
    assert (report.drift["psi"].dropna() >= 0).all()
    model_rows = report.accuracy[report.accuracy["source"] == "model"]
    assert set(model_rows["window"]) == {"reference", "recent"} and set(model_rows["horizon"]) == {1, 12}
    assert (model_rows["n"] > 0).all()


def test_stored_accuracy_is_asked_for_the_recent_window_and_judged(fleet):
    asked = []

    def stored(start):
        asked.append(start)
        return pd.DataFrame(
            [{"source": "warehouse", "window": "recent", "horizon": 12, "n": 10, "mae": 9.0, "p90_coverage": 0.1}]
        )

    report = monitor(fleet.metrics, PersistenceForecaster().fit(fleet.metrics), stored=stored)
    assert asked == [fleet.metrics["ts"].max() - pd.Timedelta(hours=24)]
    assert "warehouse" in set(report.accuracy["source"])
    assert report.retrain and any(r.startswith("warehouse MAE") for r in report.reasons)
    assert any(r.startswith("warehouse p90") for r in report.reasons)


def test_a_regime_change_is_flagged_by_drift_and_by_error(fleet):
    shifted = _shifted(fleet)
    model = PersistenceForecaster().fit(shifted.metrics)
    report = monitor(shifted.metrics, model, thresholds=RetrainThresholds(major_drift_share=0.2, mae_ratio=1.3))
    assert report.retrain
    assert any("cpu_util drifted" in r for r in report.reasons)
    assert any("MAE at h12" in r for r in report.reasons)
    cpu = report.drift.set_index("feature").loc["cpu_util"]
    assert cpu["severity"] == "major"


def test_forecast_accuracy_matches_a_direct_computation(fleet):
    metrics = fleet.metrics
    forecasts = PersistenceForecaster(horizons=(3,)).fit(metrics).predict(metrics)
    start, end = metrics["ts"].min() + pd.Timedelta(days=2), metrics["ts"].min() + pd.Timedelta(days=4)
    got = forecast_accuracy(forecasts, metrics, {"w": (start, end)}).iloc[0]
    wide = metrics.pivot(index="ts", columns="entity_id", values="cpu_util").asfreq("5min")
    error = (wide.shift(-3) - wide).loc[(wide.index >= start) & (wide.index < end)].abs().stack()
    assert got["n"] == len(error)
    assert got["mae"] == pytest.approx(error.mean())
    assert np.isnan(got["p90_coverage"])  # persistence has no p90


def test_saved_verdict_reads_back(tmp_path, fleet):
    shifted = _shifted(fleet)
    report = monitor(shifted.metrics, PersistenceForecaster().fit(shifted.metrics))
    paths = report.save(tmp_path)
    assert [p.name for p in paths] == ["drift.csv", "monitoring_accuracy.csv", "monitoring.json"]
    verdict = json.loads(paths[2].read_text())
    assert verdict["retrain"] is True and verdict["reasons"] == report.reasons
    assert pd.read_csv(paths[0])["feature"].tolist() == report.drift["feature"].tolist()


def test_monitor_refuses_windows_without_rows(fleet):
    model = PersistenceForecaster().fit(fleet.metrics)
    with pytest.raises(ValueError, match="both windows"):
        monitor(fleet.metrics, model, recent=pd.Timedelta(days=30))
