"""Memory as a forecast target: the swapped view, a memory champion that forecasts memory, its registry entry."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone

from ml_cloud_optimizer.data.schema import STEP
from ml_cloud_optimizer.data.synthetic import generate_fleet
from ml_cloud_optimizer.evaluation import evaluate_holdout
from ml_cloud_optimizer.features import FeatureSpec
from ml_cloud_optimizer.models.base import Forecaster
from ml_cloud_optimizer.models.bundle import BUNDLE_FILE, ModelBundle
from ml_cloud_optimizer.models.peak import PeakClassifier
from ml_cloud_optimizer.models.tabular import LightGBMForecaster
from ml_cloud_optimizer.resources import as_target, data_names, parse_targets, suffix
from ml_cloud_optimizer.tracking import CHAMPION_ALIAS, Tracker, tracking_uri, train_and_export

TINY = LightGBMForecaster(
    features={"windows": ("6h",), "seasonal_lags": ("1d",), "scale_window": "6h"},
    n_estimators=40,
    learning_rate=0.2,
    n_jobs=1,
)


@pytest.fixture(scope="module")
def metrics() -> pd.DataFrame:
    return generate_fleet(6_000, entities=3, seed=2).metrics


@pytest.fixture(scope="module")
def unseen() -> pd.DataFrame:
    """Entities the models never saw: another seed, later days."""
    return generate_fleet(3 * 288 * 3, entities=3, seed=11, start="2026-03-02T00:00:00Z").metrics


@pytest.fixture(scope="module")
def trained(metrics, tmp_path_factory):
    """A memory champion exported and registered by ``train_and_export(target="mem")``."""
    home = tmp_path_factory.mktemp("mlco_home")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLCO_HOME", str(home))
        patch.delenv("MLFLOW_TRACKING_URI", raising=False)
        uri = tracking_uri()
        patch.setenv("MLFLOW_TRACKING_URI", uri)
        tracker = Tracker(experiment="test-memory", uri=uri)
        peak = PeakClassifier(n_estimators=20, early_stopping_rounds=5)
        result = train_and_export(
            metrics, {"lightgbm": TINY}, home / "train", tracker=tracker, peak=peak, source="synthetic", target="mem"
        )
        yield result, tracker, home / "train"


def test_as_target_swaps_cpu_and_memory_and_back(metrics):
    before = metrics.copy()
    assert as_target(metrics, "cpu") is metrics
    view = as_target(metrics, "mem")
    np.testing.assert_array_equal(view["cpu_util"].to_numpy(), metrics["mem_util"].to_numpy())
    np.testing.assert_array_equal(view["mem_util"].to_numpy(), metrics["cpu_util"].to_numpy())
    pd.testing.assert_frame_equal(as_target(view, "mem"), metrics)
    pd.testing.assert_frame_equal(metrics, before)  # a copy: the input is untouched
    with pytest.raises(ValueError, match="no mem_util values"):
        as_target(metrics.assign(mem_util=np.nan), "mem")
    with pytest.raises(ValueError, match="unknown resource"):
        as_target(metrics, "gpu")


def test_target_names_and_suffixes():
    assert parse_targets("cpu, MEM,cpu") == ["cpu", "mem"]
    with pytest.raises(ValueError, match="--target disk"):
        parse_targets("disk")
    assert suffix("cpu") == "" and suffix("mem") == "-mem"
    names = data_names(["hour", "cpu_util", "mem_util", "cpu_util_lag_1", "mem_util_mean_6h", "cpu_mem_ratio"], "mem")
    assert names == ["hour", "mem_util", "cpu_util", "mem_util_lag_1", "cpu_util_mean_6h", "mem_cpu_ratio"]
    # Every name the feature function gives maps to a distinct name, so feature rows stay unambiguous.
    columns = FeatureSpec().columns
    assert len(set(data_names(columns, "mem"))) == len(columns)
    assert data_names(columns, "cpu") == columns


def test_memory_evaluation_scores_memory(metrics):
    """Persistence scored on memory is exactly memory's own one-hour change, not CPU's."""
    evaluation = evaluate_holdout({}, metrics, holdout=0.25, target="mem")
    persistence = evaluation.forecasts["persistence"]
    scored = persistence.loc[persistence["scored_h12"]]
    later = metrics.assign(ts=metrics["ts"] - 12 * STEP).set_index(["entity_id", "ts"])["mem_util"]
    actual = later.reindex(pd.MultiIndex.from_frame(scored[["entity_id", "ts"]])).to_numpy()
    np.testing.assert_allclose(scored["y_h12"].to_numpy(), actual)
    mae = evaluation.scores.set_index(["model", "horizon"]).loc[("persistence", 12), "mae"]
    assert mae == pytest.approx(np.abs(scored["y_h12"] - scored["p50_h12"]).mean())


def test_memory_champion_forecasts_memory_not_cpu(trained, unseen):
    result, _, out = trained
    assert result.target == "mem" and result.champion_dir == out / "champion-mem"
    board = result.leaderboard.set_index("model")
    # At one hour the learnt model is no worse than carrying the last memory reading forward.
    assert board.loc["lightgbm", "vs_persistence_h12"] < 1.0
    assert board.loc["seasonal_naive", "vs_persistence_h12"] > 1.0

    forecaster = ModelBundle.load(result.champion_dir).forecaster
    frame = forecaster.predict(as_target(unseen, "mem"))
    future = unseen.assign(ts=unseen["ts"] - 12 * STEP)[["entity_id", "ts", "cpu_util", "mem_util"]]
    joined = frame.merge(future, on=["entity_id", "ts"]).dropna(subset=["p50_h12", "mem_util", "cpu_util"])
    assert len(joined) > 1000
    vs_mem = (joined["p50_h12"] - joined["mem_util"]).abs().mean()
    vs_cpu = (joined["p50_h12"] - joined["cpu_util"]).abs().mean()
    assert vs_mem < 0.05 and vs_mem < vs_cpu / 3, (vs_mem, vs_cpu)


def test_bundle_records_its_resource_and_presents_history_itself(trained, unseen):
    result, _, out = trained
    bundle = ModelBundle.load(result.champion_dir)
    assert bundle.target == "mem" and bundle.peak is not None
    assert json.loads((result.champion_dir / BUNDLE_FILE).read_text())["target"] == "mem"
    assert Forecaster.load(result.champion_dir).target == "mem"  # what `load_forecaster` hands back
    assert Forecaster.load(out / "candidates-mem" / "lightgbm").target == "mem"

    history = unseen.loc[unseen["ts"] >= unseen["ts"].max() - pd.Timedelta("1d")]
    served = bundle.predict(history)  # canonical history in
    by_hand = bundle.forecaster.predict_last(as_target(history, "mem"))
    pd.testing.assert_frame_equal(served.drop(columns="peak_prob"), by_hand[served.columns.drop("peak_prob")])
    assert served["peak_prob"].between(0, 1).all() and len(served) == 3
    assert list(served.columns) == ["entity_id", "ts", "p50_h1", "p90_h1", "p50_h12", "p90_h12", "peak_prob"]
    with pytest.raises(ValueError, match="mem_util"):
        bundle.predict(history.drop(columns="mem_util"))
    assert (out / "leaderboard-mem.csv").is_file() and (out / "leaderboard-mem.md").is_file()
    assert not (out / "champion").exists() and not (out / "leaderboard.csv").exists()


def test_a_bundle_without_a_target_is_cpu(metrics, tmp_path):
    directory = ModelBundle(clone(TINY).fit(metrics), None, {"source": "tests"}).save(tmp_path / "old")
    for name in (BUNDLE_FILE, Forecaster.METADATA_FILE):  # as saved before memory was a target
        info = json.loads((directory / name).read_text())
        assert info.pop("target") == "cpu"
        (directory / name).write_text(json.dumps(info))
    assert ModelBundle.load(directory).target == "cpu" and Forecaster.load(directory).target == "cpu"
    with pytest.raises(ValueError, match="bundle target 'gpu'"):
        ModelBundle(TINY, None, {"target": "gpu"})


def test_memory_champion_has_its_own_registered_model(trained):
    result, tracker, _ = trained
    assert result.registered_name == tracker.registered_name("mem") == "mlco-forecaster-mem"
    version = tracker.client.get_model_version_by_alias("mlco-forecaster-mem", CHAMPION_ALIAS)
    assert str(version.version) == result.registered_version == tracker.champion_version("mem")
    assert version.run_id == result.run_ids[result.champion]
    registered = {m.name for m in tracker.client.search_registered_models()}
    assert registered == {"mlco-forecaster-mem"}  # the CPU name stays for CPU champions
    run = tracker.client.get_run(result.run_ids["lightgbm"])
    assert run.data.tags["target"] == "mem" and run.data.params["target"] == "mem"
    assert run.info.run_name == "lightgbm-mem"
