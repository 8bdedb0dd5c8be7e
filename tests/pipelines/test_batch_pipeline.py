"""The batch scoring pipeline: its compiled YAML, its core steps, and one kfp.local run end to end.

The end-to-end run registers a tiny LightGBM champion in a local MLflow store, loads a small
generated fleet into a fresh warehouse database, runs the pipeline with the default champion
URI (``models:/mlco-forecaster@champion``) and reads back what landed in the warehouse.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
from contextlib import closing
from pathlib import Path

import pandas as pd
import pytest

from compiled_yaml import BATCH_YAML
from ml_cloud_optimizer.data.schema import STEP
from ml_cloud_optimizer.pipelines.runners.execute import environment
from ml_cloud_optimizer.warehouse import (
    apply_schema,
    connect,
    create_database,
    drop_database,
    load_fleet,
)

pytestmark = pytest.mark.slow  # whole pipelines through kfp.local: minutes on two cores

ROOT = Path(__file__).resolve().parents[2]
COMPILED = BATCH_YAML
CPU_IMAGE = "ghcr.io/mlco/ml-cloud-optimizer:0.1.0"
ENTITIES = 4
STEPS = 600  # about two days per entity
LOOKBACK_HOURS = 4  # 48 steps, above the tiny model's min_history (25)


@pytest.mark.usefixtures("spec")
def test_only_the_scoring_task_gets_the_database_secret(platform):
    with_secret = {name for name, cfg in platform.items() if cfg.get("secretAsEnv")}
    assert with_secret == {"exec-score-fleet"}
    (entry,) = platform["exec-score-fleet"]["secretAsEnv"]
    assert entry["secretName"] == "mlco-db" and entry["optional"] is False
    assert entry["keyToEnv"] == [{"secretKey": "DATABASE_URL", "envVar": "DATABASE_URL"}]
    for name, cfg in platform.items():
        assert cfg["securityContext"] == {"runAsUser": "10001", "runAsNonRoot": True}, name


def test_tasks_are_never_cached_and_the_warehouse_task_retries(spec):
    tasks = spec["root"]["dag"]["tasks"]
    assert set(tasks) == {"fetch-champion", "score-fleet"}
    for task in tasks.values():
        assert "cachingOptions" in task and not task["cachingOptions"].get("enableCache")
    assert tasks["score-fleet"]["retryPolicy"]["maxRetryCount"] == 3
    assert tasks["score-fleet"]["retryPolicy"]["backoffDuration"] == "30s"
    assert tasks["fetch-champion"]["retryPolicy"]["maxRetryCount"] == 2
    champion = tasks["score-fleet"]["inputs"]["artifacts"]["champion"]["taskOutputArtifact"]
    assert champion == {"producerTask": "fetch-champion", "outputArtifactKey": "champion"}


def test_typed_artifacts_pinned_image_and_parameters(spec):
    outputs = spec["components"]["comp-score-fleet"]["outputDefinitions"]["artifacts"]
    assert {k: v["artifactType"]["schemaTitle"] for k, v in outputs.items()} == {
        "forecasts": "system.Dataset",
        "recommendations": "system.Dataset",
        "scores": "system.Metrics",
    }
    executors = spec["deploymentSpec"]["executors"].values()
    assert {e["container"]["image"] for e in executors} == {CPU_IMAGE}
    assert not any("pip install" in part for e in executors for part in e["container"]["command"])
    params = spec["root"]["inputDefinitions"]["parameters"]
    assert {k: v["parameterType"] for k, v in params.items()} == {
        "champion": "STRING",
        "lookback_hours": "NUMBER_INTEGER",
        "target_utilization": "NUMBER_DOUBLE",
        "granularity": "NUMBER_DOUBLE",
        "mlflow_tracking_uri": "STRING",
    }
    assert params["champion"]["defaultValue"] == "models:/mlco-forecaster@champion"
    assert params["lookback_hours"]["defaultValue"] * 12 >= 2017  # the default features' full week


def test_committed_yaml_is_current(tmp_path):
    fresh = tmp_path / "batch.yaml"
    env = {k: v for k, v in os.environ.items() if k not in ("MLCO_IMAGE", "MLCO_CUDA_IMAGE")}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "ml_cloud_optimizer.pipelines.runners.compile",
            "--pipeline",
            "batch",
            "--out",
            str(fresh),
        ],
        check=False,
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert fresh.read_text() == COMPILED.read_text(), "pipelines/compiled/batch_pipeline.yaml is stale: recompile it"


# -- the real thing: a champion in MLflow, a fleet in PostgreSQL, the pipeline through kfp.local ------------


@pytest.fixture(scope="module")
def fleet():
    from ml_cloud_optimizer.data.synthetic import generate_fleet

    return generate_fleet(ENTITIES * STEPS, entities=ENTITIES, seed=3, start="2026-02-02")


@pytest.fixture(scope="module")
def champion_dir(tmp_path_factory, fleet):
    """A tiny LightGBM forecaster trained with the real class, saved as a bundle."""
    from ml_cloud_optimizer.models.bundle import ModelBundle
    from ml_cloud_optimizer.models.tabular import LightGBMForecaster

    model = LightGBMForecaster(
        horizons=(1, 12),
        n_estimators=20,
        early_stopping_rounds=5,
        n_jobs=1,
        params={"min_data_in_leaf": 20, "num_leaves": 15},
    )
    model.fit(fleet.metrics, fleet.entities)
    return ModelBundle(model, None, {"source": "test"}).save(tmp_path_factory.mktemp("champion"))


@pytest.fixture(scope="module")
def database(warehouse_url, fleet):
    name = f"mlco_batch_{os.getpid()}"
    dsn = create_database(warehouse_url, name)
    with closing(connect(dsn)) as conn:
        apply_schema(conn)
        load_fleet(conn, fleet)
    yield dsn
    drop_database(warehouse_url, name)


@pytest.fixture(scope="module")
def run(tmp_path_factory, database, champion_dir):
    """Register the champion in a local MLflow store, then run the batch pipeline once through kfp.local."""
    from ml_cloud_optimizer.pipelines.runners.local import run_batch_local
    from ml_cloud_optimizer.tracking import Tracker

    home = tmp_path_factory.mktemp("mlco_home")
    progress = io.StringIO()
    with environment(MLCO_HOME=str(home), DATABASE_URL=database, MLFLOW_TRACKING_URI=None):
        tracker = Tracker()
        version = tracker.register_champion(tracker.log_candidate("lightgbm", {}, {}), champion_dir)
        result = run_batch_local(
            {"lookback_hours": LOOKBACK_HOURS, "target_utilization": 0.6}, home=home, progress=progress
        )
    return {"result": result, "version": version, "progress": progress.getvalue(), "dsn": database}


def frame(dsn: str, sql: str, *args) -> pd.DataFrame:
    with closing(connect(dsn)) as conn, conn.cursor() as cur:
        cur.execute(sql, args)
        return pd.DataFrame.from_records(cur.fetchall(), columns=[d.name for d in cur.description])


def test_every_entity_gets_forecasts_from_its_last_sample(run, fleet):
    result = run["result"]
    assert result.entities == ENTITIES, run["progress"]
    assert result.model_uri == f"models:/mlco-forecaster/{run['version']}"  # the alias, pinned
    forecasts = frame(
        run["dsn"],
        "SELECT entity_id, origin_ts, horizon, target_ts, p50, p90 FROM forecasts WHERE run_id = %s",
        result.optimizer_run_id,
    )
    last = fleet.metrics.groupby("entity_id", observed=True)["ts"].max()
    assert set(forecasts["entity_id"]) == set(fleet.entities["entity_id"])
    assert sorted(forecasts["horizon"].unique()) == [1, 12]
    origins = forecasts.groupby("entity_id")["origin_ts"].max()
    assert (pd.to_datetime(origins, utc=True) == last.reindex(origins.index)).all()
    assert (
        (pd.to_datetime(forecasts["target_ts"], utc=True) - pd.to_datetime(forecasts["origin_ts"], utc=True))
        == forecasts["horizon"] * STEP
    ).all()
    assert forecasts["p50"].notna().all() and (forecasts["p90"] >= forecasts["p50"] - 1e-9).all()


def test_every_entity_gets_recommendations_sized_for_the_target(run, fleet):
    result = run["result"]
    recs = frame(run["dsn"], "SELECT * FROM recommendations WHERE run_id = %s", result.optimizer_run_id)
    assert set(recs["entity_id"]) == set(fleet.entities["entity_id"])
    covered = recs["request_cores"].astype(float) * 0.6 >= recs["p90_cores"].astype(float) - 1e-9
    assert covered.all()
    runs = frame(run["dsn"], "SELECT run_id, model, source, params FROM optimizer_runs")
    assert runs["run_id"].tolist() == [result.optimizer_run_id]
    assert runs["model"].item() == f"lightgbm:models:/mlco-forecaster/{run['version']}"
    assert runs["params"].item()["lookback_hours"] == LOOKBACK_HOURS
    assert "scored 4 entities with lightgbm" in run["progress"]


def test_scoring_refuses_a_window_shorter_than_the_champion_needs(database, champion_dir):
    from ml_cloud_optimizer.pipeline_steps.batch import score_fleet

    with environment(DATABASE_URL=database), pytest.raises(ValueError, match="lookback_hours=1 covers 12"):
        score_fleet(champion_dir, lookback_hours=1)


def test_scoring_an_empty_warehouse_says_so(warehouse_dsn, champion_dir):
    from ml_cloud_optimizer.pipeline_steps.batch import score_fleet

    with environment(DATABASE_URL=warehouse_dsn), pytest.raises(ValueError, match="holds no metrics"):
        score_fleet(champion_dir, lookback_hours=LOOKBACK_HOURS)
    with closing(connect(warehouse_dsn)) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM optimizer_runs")
        assert cur.fetchone()[0] == 0


def test_fetch_champion_copies_a_directory_and_refuses_a_missing_one(tmp_path, champion_dir):
    from ml_cloud_optimizer.pipeline_steps.batch import fetch_champion, load_champion

    info = fetch_champion(str(champion_dir), tmp_path / "copy")
    assert info["kind"] == "lightgbm" and info["horizons"] == [1, 12] and info["min_history"] == 25
    assert load_champion(tmp_path / "copy").horizons == (1, 12)
    with pytest.raises(FileNotFoundError, match="no such model directory"):
        fetch_champion(str(tmp_path / "absent"), tmp_path / "other")


def test_mlco_run_batch_refuses_a_bad_target_in_one_line(capsys):
    from ml_cloud_optimizer import cli

    assert cli.main(["run", "--pipeline", "batch", "--target-utilization", "1.5"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--target-utilization" in err


def test_mlco_run_batch_still_reads_the_old_flag_spelling_with_a_note(capsys):
    from ml_cloud_optimizer import cli

    assert cli.main(["run", "--pipeline", "batch", "--target-utilisation", "1.5"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0] == "mlco: --target-utilisation is deprecated; use --target-utilization"
    assert len(err) == 2 and "--target-utilization 1.5" in err[1]
