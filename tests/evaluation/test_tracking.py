"""MLflow tracking: every candidate logged, the champion registered under its alias, the export reloads exactly."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from ml_cloud_optimizer.data.synthetic import generate_fleet
from ml_cloud_optimizer.models.bundle import BUNDLE_FILE, ModelBundle
from ml_cloud_optimizer.models.peak import PeakClassifier
from ml_cloud_optimizer.models.tabular import LightGBMForecaster
from ml_cloud_optimizer.tracking import CHAMPION_ALIAS, Tracker, mlco_home, tracking_uri, train_and_export

TINY = LightGBMForecaster(
    features={"windows": ("6h",), "seasonal_lags": ("1d",), "scale_window": "6h"},
    n_estimators=40,
    learning_rate=0.2,
    n_jobs=1,
)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    home = tmp_path_factory.mktemp("mlco_home")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLCO_HOME", str(home))
        patch.delenv("MLFLOW_TRACKING_URI", raising=False)
        uri = tracking_uri()
        patch.setenv("MLFLOW_TRACKING_URI", uri)  # restored after the module, whatever MLflow sets
        metrics = generate_fleet(6_000, entities=3, seed=2).metrics
        tracker = Tracker(experiment="test-forecast", uri=uri)
        result = train_and_export(
            metrics, {"lightgbm": TINY}, home / "train", tracker=tracker, peak=PeakClassifier(), source="synthetic"
        )
        yield result, tracker, metrics, home


def test_local_store_lives_under_mlco_home(trained):
    _, tracker, _, home = trained
    assert tracker.uri == f"sqlite:///{home / 'mlflow.db'}"
    assert (home / "mlflow.db").exists() and (home / "mlartifacts").is_dir()
    experiment = tracker.client.get_experiment(tracker.experiment_id)
    assert experiment.artifact_location.startswith((home / "mlartifacts").as_uri())


def test_every_candidate_has_a_run_with_params_metrics_plots_and_model(trained):
    result, tracker, _, _ = trained
    board = set(result.leaderboard["model"])
    candidates = {"lightgbm", "persistence", "seasonal_naive"}
    assert candidates <= board <= {*candidates, "blend"}
    assert set(result.run_ids) == board  # a blend, when there is one, is logged like any candidate
    for name, run_id in result.run_ids.items():
        run = tracker.client.get_run(run_id)
        assert run.info.status == "FINISHED"
        board_row = result.leaderboard.loc[result.leaderboard["model"] == name].iloc[0]
        assert run.data.metrics["mae_h12"] == pytest.approx(board_row["mae_h12"])
        assert run.data.params["kind"] == board_row["kind"]
        artifacts = {a.path for a in tracker.client.list_artifacts(run_id)}
        assert {"model", "plots"} <= artifacts
        model_files = {a.path for a in tracker.client.list_artifacts(run_id, "model")}
        assert "model/metadata.json" in model_files


def test_registry_alias_points_at_the_champion(trained):
    result, tracker, _, _ = trained
    version = tracker.client.get_model_version_by_alias(tracker.model_name, CHAMPION_ALIAS)
    assert str(version.version) == result.registered_version == tracker.champion_version()
    assert version.run_id == result.run_ids[result.champion]
    assert result.champion == result.leaderboard.loc[result.leaderboard["champion"], "model"].iloc[0]


def test_exported_champion_reloads_and_predicts_the_same_numbers(trained):
    import mlflow

    result, tracker, metrics, _ = trained
    history = metrics.loc[metrics["ts"] >= metrics["ts"].max() - pd.Timedelta("1d")]
    expected = result.bundle.predict(history)
    reloaded = ModelBundle.load(result.champion_dir)
    got = reloaded.predict(history)
    pd.testing.assert_frame_equal(got, expected)
    assert len(got) == metrics["entity_id"].nunique()
    assert got["peak_prob"].between(0, 1).all()
    assert (got["p90_h12"] >= got["p50_h12"]).all()

    info = json.loads((result.champion_dir / BUNDLE_FILE).read_text())
    metadata = json.loads((result.champion_dir / "metadata.json").read_text())
    assert info["kind"] == metadata["kind"] == reloaded.kind
    assert info["horizons"] == [1, 12] and info["min_history"] >= metadata["min_history"] > 0
    assert info["refit_on_all_data"] and info["trained_rows"] == len(metrics)
    assert "feature_spec" in metadata

    served = mlflow.pyfunc.load_model(f"models:/{tracker.model_name}@{CHAMPION_ALIAS}").predict(history)
    pd.testing.assert_frame_equal(served.reset_index(drop=True), expected)


def test_leaderboard_and_plots_are_on_disk(trained):
    result, _, _, home = trained
    csv_path, md_path = result.leaderboard_paths
    assert csv_path.exists() and md_path.exists()
    plots = sorted(p.name for p in (home / "train" / "plots").glob("*.png"))
    assert "error_by_horizon.png" in plots and "forecast_lightgbm.png" in plots


def test_mlco_home_defaults_to_dot_mlco(monkeypatch, tmp_path):
    monkeypatch.delenv("MLCO_HOME", raising=False)
    monkeypatch.chdir(tmp_path)
    assert mlco_home() == tmp_path / ".mlco"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow.example:5000")
    assert tracking_uri() == "http://mlflow.example:5000"
