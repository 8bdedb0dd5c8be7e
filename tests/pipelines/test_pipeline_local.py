"""The whole pipeline on this machine through kfp.local, on small data: `mlco run` end to end.

One run (module fixture) with every model kind on a few thousand generated records, a
PostgreSQL database of its own and a fresh MLCO_HOME; the tests then look at what it left:
the leaderboard and champion, the bundle serving loads, the warehouse rows, the MLflow
registry and the exit handler's record. A second, failing run checks that the exit handler
records the failure and that the error names the task.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
from contextlib import closing

import pandas as pd
import pytest

from ml_cloud_optimizer import cli
from ml_cloud_optimizer.pipelines.runners.execute import environment
from ml_cloud_optimizer.warehouse import connect, create_database, drop_database

pytestmark = pytest.mark.slow  # whole pipelines through kfp.local: minutes on two cores

RECORDS = 3_600
TASKS = {
    "datagen",
    "olap-load",
    "features",
    "smote",
    "train-peak",
    "train-tabular",
    "train-sequence",
    "evaluate",
    "register",
    "record-status",
}


@pytest.fixture(scope="module")
def database(warehouse_url):
    name = f"mlco_pipeline_{os.getpid()}"
    dsn = create_database(warehouse_url, name)
    yield dsn
    drop_database(warehouse_url, name)


@pytest.fixture(scope="module")
def run(tmp_path_factory, database):
    """``mlco run`` once, in-process, with its output captured."""
    home = tmp_path_factory.mktemp("mlco_home")
    out, err = io.StringIO(), io.StringIO()
    with (
        environment(MLCO_HOME=str(home), DATABASE_URL=database, MLFLOW_TRACKING_URI=None),
        contextlib.redirect_stdout(out),
        contextlib.redirect_stderr(err),
    ):
        code = cli.main(["run", "--records", str(RECORDS), "--epochs", "1", "--trials", "0"])
    return {"code": code, "out": out.getvalue(), "err": err.getvalue(), "home": home, "dsn": database}


def test_every_stage_runs_and_the_command_succeeds(run):
    assert run["code"] == 0, run["err"][-3000:]
    finished = {line.split()[1] for line in run["err"].splitlines() if line.strip().startswith("ok ")}
    assert finished == TASKS
    assert "FAILED" not in run["err"]
    # Each of the five models reported its own training.
    for kind in ("lightgbm", "xgboost", "catboost", "lstm", "gru"):
        assert f"trained {kind} on" in run["err"]


def test_leaderboard_ranks_all_models_with_baselines_and_names_the_champion(run):
    board = pd.read_csv(next(run["home"].glob("pipeline_runs/*/evaluate/evaluation/leaderboard.csv")))
    trained = {"lightgbm", "xgboost", "catboost", "lstm", "gru"}
    assert set(board["model"]) == trained | {"persistence", "seasonal_naive", "blend"}
    # Chosen on the validation window before the hold-out; the hold-out columns are only reported.
    assert board.loc[board["model"].isin(trained), "val_mae_h12"].notna().all()
    assert board["mae_h12"].notna().all()
    assert board["val_mae_h12"].dropna().is_monotonic_increasing
    assert board["champion"].sum() == 1
    champion = board.loc[board["champion"], "model"].item()
    eligible = board.loc[board["eligible"].astype(bool)] if "eligible" in board else board
    best = eligible["val_mae_h12"].min()
    assert board.loc[board["champion"], "val_mae_h12"].item() <= best * 1.001  # the tie rule's tolerance
    # The command prints the same table, the champion and how to serve it.
    assert f"champion: {champion}" in run["out"]
    assert "| persistence" in run["out"] and "| seasonal_naive" in run["out"]
    assert f"mlco serve --model_dir {run['home'] / 'champion'}" in run["out"]


def test_champion_bundle_is_where_serving_looks_and_forecasts(run):
    import ml_cloud_optimizer.models.sequence  # registers lstm/gru
    import ml_cloud_optimizer.models.tabular  # noqa: F401 - registers the tree kinds
    from ml_cloud_optimizer.models.bundle import ModelBundle
    from ml_cloud_optimizer.pipeline_steps.artifacts import load_fleet

    champion_dir = run["home"] / "champion"
    info = json.loads((champion_dir / "bundle.json").read_text())
    assert info["peak"]["kind"] == "lightgbm"
    bundle = ModelBundle.load(champion_dir)
    history = load_fleet(next(run["home"].glob("pipeline_runs/*/features/history"))).metrics
    forecast = bundle.predict(history)
    assert len(forecast) == history["entity_id"].nunique()
    assert forecast["p50_h12"].between(0, 1.5).all() and forecast["peak_prob"].between(0, 1).all()
    assert forecast["ts"].max() == history["ts"].max()


def test_warehouse_holds_the_generated_rows(run):
    from ml_cloud_optimizer.pipeline_steps.artifacts import load_fleet

    fleet = load_fleet(next(run["home"].glob("pipeline_runs/*/datagen/fleet")))
    with closing(connect(run["dsn"])) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*), count(DISTINCT entity_id), min(ts), max(ts) FROM metrics")
        rows, entities, first, last = cur.fetchone()
    assert rows == len(fleet.metrics) and entities == fleet.metrics["entity_id"].nunique()
    assert (pd.Timestamp(first), pd.Timestamp(last)) == (fleet.metrics["ts"].min(), fleet.metrics["ts"].max())


def test_registry_holds_the_champion_alias_and_every_candidate(run):
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{run['home'] / 'mlflow.db'}")
    version = client.get_model_version_by_alias("mlco-forecaster", "champion")
    assert f"registered as models:/mlco-forecaster/{version.version}" in run["out"]
    experiment = client.get_experiment_by_name("mlco-forecast")
    runs = client.search_runs([experiment.experiment_id])
    assert {r.data.tags["candidate"] for r in runs} >= {
        "lightgbm",
        "xgboost",
        "catboost",
        "lstm",
        "gru",
        "persistence",
        "seasonal_naive",
    }
    champion_run = client.get_run(version.run_id)
    assert champion_run.data.tags.get("champion") == "true"
    assert "mae_h12" in champion_run.data.metrics
    # The exit handler recorded the run's end.
    status = client.get_experiment_by_name("mlco-pipeline-runs")
    (record,) = client.search_runs([status.experiment_id])
    assert record.data.tags["state"] == "SUCCEEDED" and record.info.status == "FINISHED"


def test_kfp_artifacts_carry_metrics_for_the_ui(run):
    output = json.loads(next(run["home"].glob("pipeline_runs/*/evaluate/executor_output.json")).read_text())
    metrics = output["artifacts"]["metrics"]["artifacts"][0]["metadata"]
    assert metrics["champion_mae_h12"] == pytest.approx(output["parameterValues"]["holdout_mae"])
    peak = output["artifacts"]["peak_metrics"]["artifacts"][0]["metadata"]
    matrix = [row["row"] for row in peak["confusionMatrix"]["rows"]]
    assert len(matrix) == 2 and sum(map(sum, matrix)) > 0
    assert len(peak["confidenceMetrics"]) > 2
    balance = json.loads(next(run["home"].glob("pipeline_runs/*/smote/executor_output.json")).read_text())
    counts = balance["artifacts"]["balance"]["artifacts"][0]["metadata"]
    assert counts["balanced_peaks"] == counts["balanced_rows"] / 2 > counts["fit_peaks"]


def test_a_failing_run_is_recorded_and_names_the_task(tmp_path, database):
    from ml_cloud_optimizer.pipelines.runners import local

    arguments = local.local_arguments(records=1000, models=["lightgbm"], source=str(tmp_path / "missing.csv"))
    progress = io.StringIO()
    with environment(DATABASE_URL=database, MLFLOW_TRACKING_URI=None):
        with pytest.raises(local.LocalRunError, match="task 'datagen' failed"):
            local.run_local(arguments, home=tmp_path / "home", progress=progress)
    assert "FAILED datagen" in progress.getvalue() and "ok  record-status" in progress.getvalue()
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp_path / 'home' / 'mlflow.db'}")
    (record,) = client.search_runs([client.get_experiment_by_name("mlco-pipeline-runs").experiment_id])
    assert record.data.tags["state"] == "FAILED" and record.info.status == "FAILED"
    assert "missing.csv" in record.data.tags["error_message"] or record.data.tags["task"] == "exit-handler-1"


@pytest.mark.filterwarnings("ignore:You may be attemping to run a task that uses custom or non-Python base image")
def test_deploy_component_replaces_a_worse_deployed_model(run, tmp_path):
    """The deploy task itself: MLflow's registered models, the real kserve SDK, a fake API server."""
    from kfp import dsl, local

    from fakes.kube_api import FakeKubeApi, base_inference_service, serving
    from ml_cloud_optimizer.components._deploy import MODEL_URI_ANNOTATION, Candidate
    from ml_cloud_optimizer.components.deploy import deploy
    from ml_cloud_optimizer.models.baselines import PersistenceForecaster
    from ml_cloud_optimizer.models.bundle import ModelBundle
    from ml_cloud_optimizer.pipeline_steps.artifacts import load_fleet
    from ml_cloud_optimizer.tracking import Tracker

    home = run["home"]
    history_dir = next(home.glob("pipeline_runs/*/features/history"))
    bundle_dir = next(home.glob("pipeline_runs/*/register/bundle"))
    registered = json.loads(next(home.glob("pipeline_runs/*/register/executor_output.json")).read_text())
    champion_uri = registered["parameterValues"]["model_uri"]
    # What is serving: a persistence model, registered as the next version.
    with environment(MLCO_HOME=str(home), MLFLOW_TRACKING_URI=None):
        tracker = Tracker(model_name="mlco-forecaster")
        history = load_fleet(history_dir).metrics
        weak_dir = ModelBundle(PersistenceForecaster().fit(history)).save(tmp_path / "weak")
        run_id = tracker.log_candidate("persistence", params={}, metrics={})
        weak_uri = f"models:/mlco-forecaster/{tracker.register_champion(run_id, weak_dir)}"

    @dsl.pipeline(name="deploy-only")
    def deploy_only():
        bundle = dsl.importer(
            artifact_uri=str(bundle_dir), artifact_class=dsl.Model, metadata={"holdout_mae": 0.05, "kind": "catboost"}
        )
        hist = dsl.importer(artifact_uri=str(history_dir), artifact_class=dsl.Dataset)
        deploy(
            bundle=bundle.output,
            history=hist.output,
            model_uri=champion_uri,
            holdout_fraction=0.2,
            horizons=[1, 12],
            namespace="mlco",
            isvc_name="workload-forecaster",
            tracking_uri="",
            timeout_s=30,
        )

    with FakeKubeApi() as kube:
        kube.put(
            serving(base_inference_service(), Candidate("s3://models/weak", weak_uri, 0.09, "persistence")),
            namespace="mlco",
        )
        with environment(MLCO_HOME=str(home), MLFLOW_TRACKING_URI=None, KUBECONFIG=str(kube.kubeconfig(tmp_path))):
            local.init(
                runner=local.SubprocessRunner(use_venv=False),
                pipeline_root=str(tmp_path / "root"),
                workspace_root=str(tmp_path / "workspace"),
                raise_on_error=True,
            )
            deploy_only()
        stored = kube.objects[("mlco", "workload-forecaster")]
        assert kube.writes() == ["PATCH", "PATCH"]  # the model, then (rolled out) the annotations naming it
    assert stored["metadata"]["annotations"][MODEL_URI_ANNOTATION] == champion_uri
    assert stored["spec"]["predictor"]["model"]["storageUri"].endswith("bundle")
    assert stored["metadata"]["generation"] == 2
    (output,) = (tmp_path / "root").glob("deploy-only-*/deploy/executor_output.json")
    values = json.loads(output.read_text())["parameterValues"]
    assert values == {"action": "patched", "url": "http://workload-forecaster.mlco.example.com"}
