"""The predictor serves every kind of champion: dispatch on metadata, offline equality, and `mlco serve`.

In-process (``ForecastModel.load``, then the model called as KServe calls it: preprocess ->
predict -> postprocess) on tiny XGBoost, CatBoost and GRU champions trained with the real
classes; the LightGBM champion is served on a real port in ``test_serving_server``.
"""

from __future__ import annotations

import argparse

import pytest
from kserve.errors import ModelMissingError

from ml_cloud_optimizer.cli import UserError
from ml_cloud_optimizer.cli import serve as serve_cli
from ml_cloud_optimizer.data.synthetic import generate_fleet
from ml_cloud_optimizer.models.bundle import ModelBundle
from ml_cloud_optimizer.serving.errors import RequestError
from ml_cloud_optimizer.serving.model import ForecastModel
from serving_support import history_sample, infer, v1_history


def _forecaster(kind: str):
    if kind == "xgboost":
        from ml_cloud_optimizer.models.tabular import XGBoostForecaster

        return XGBoostForecaster(n_estimators=15, max_train_rows=4000, n_jobs=1)
    if kind == "catboost":
        from ml_cloud_optimizer.models.tabular import CatBoostForecaster

        return CatBoostForecaster(n_estimators=15, max_train_rows=4000, n_jobs=1)
    from ml_cloud_optimizer.models.sequence import GRUForecaster

    return GRUForecaster(
        window=24, hidden=8, epochs=1, samples_per_epoch=512, seasonal_lag=0, device="cpu", num_threads=1
    )


@pytest.mark.parametrize("kind", ["xgboost", "catboost", "gru"])
def test_each_kind_of_champion_is_served_like_offline(kind, tmp_path):
    fleet = generate_fleet(3 * 288 * 3, entities=3, seed=5)
    model_dir = ModelBundle(_forecaster(kind).fit(fleet.metrics)).save(tmp_path / kind)
    model = ForecastModel("m", model_dir)
    assert model.load() and model.ready
    history = history_sample(entities=2, steps=40)

    answer = infer(model, v1_history(history))["predictions"]
    offline = ModelBundle.load(model_dir).predict(history).set_index("entity_id")
    for row in answer:
        expected = offline.loc[row["entity_id"]]
        assert {"p50_h1", "p50_h12"} <= set(row)
        for column in [c for c in offline.columns if c.startswith(("p50_", "p90_"))]:
            assert row[column] == pytest.approx(expected[column], rel=1e-12, abs=0)
        assert row["peak_prob"] is None  # no peak classifier in these bundles
        assert row["recommended_vcpus"] >= 0.25 and row["recommended_replicas"] >= 1

    names = {t["name"] for t in model.get_input_types()}
    if kind == "gru":  # sequence models forecast from history only
        assert "features" not in names
        with pytest.raises(RequestError, match="history only"):
            infer(model, {"instances": [{"entity_id": "a", "features": [0.1]}]})
    else:
        assert "features" in names


def test_a_directory_without_a_champion_is_refused(tmp_path):
    with pytest.raises(ModelMissingError, match=r"metadata\.json"):
        ForecastModel("m", tmp_path).load()


def test_the_default_champion_is_the_newest_of_run_and_train(tmp_path, monkeypatch):
    import os

    monkeypatch.setenv("MLCO_HOME", str(tmp_path))
    run_dir, train_dir = tmp_path / "champion", tmp_path / "train" / "champion"
    for age, directory in ((100, run_dir), (50, train_dir)):
        directory.mkdir(parents=True)
        (directory / "metadata.json").write_text("{}")
        os.utime(directory / "metadata.json", (1e9 - age, 1e9 - age))
    assert serve_cli.default_champion_dir() == train_dir
    os.utime(run_dir / "metadata.json", (1e9, 1e9))
    assert serve_cli.default_champion_dir() == run_dir


def test_mlco_serve_checks_its_champion_before_starting(tmp_path, monkeypatch):
    monkeypatch.setenv("MLCO_HOME", str(tmp_path))
    assert serve_cli.default_champion_dir() == tmp_path / "champion"
    parser = argparse.ArgumentParser()
    serve_cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["serve"])
    assert (args.model_name, args.http_port, args.grpc_port) == ("workload-forecaster", 8080, 8081)
    with pytest.raises(UserError, match=r"holds no champion .*run `make run`"):
        args.func(args)
    args = parser.parse_args(["serve", "--model_dir", str(tmp_path), "--http_port", "0"])
    with pytest.raises(UserError, match="holds no champion"):
        args.func(args)
    (tmp_path / "metadata.json").write_text("{}")
    with pytest.raises(UserError, match=r"--http_port .*: expected a TCP port"):
        args.func(args)
