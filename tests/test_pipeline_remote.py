"""`mlco submit`, `mlco schedule` and `mlco runs` against a small KFP API server on loopback.

The real ``kfp.Client`` does the talking; the fake (tests/fakes/kfp_api.py) keeps what it is
sent, so the tests check what reached the server, and that nothing did when the CLI refused.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from fakes.kfp_api import FakeKfpApi
from ml_cloud_optimizer import cli

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = str(ROOT / "pipelines" / "compiled" / "workload_pipeline.yaml")


@pytest.fixture
def mlco():
    """``mlco`` in-process."""
    return cli.main


@pytest.fixture
def api():
    with FakeKfpApi() as server:
        yield server


def test_submit_sends_the_pipeline_with_typed_parameters(mlco, api, capsys):
    code = mlco(["submit", "--host", api.url, "--package", PACKAGE, "--experiment", "nightly",
                 "--param", "records=5000", "--param", "deploy=false", "--param", 'tabular_models=["lightgbm"]',
                 "--param", "namespace=team-a"])
    assert code == 0
    (run,) = api.state.runs.values()
    assert run["runtime_config"]["parameters"] == {
        "records": 5000, "deploy": False, "tabular_models": ["lightgbm"], "namespace": "team-a",
    }
    assert run["service_account"] == "mlco-pipeline-runner"
    (experiment,) = api.state.experiments.values()
    assert experiment["display_name"] == "nightly" and run["experiment_id"] == experiment["experiment_id"]
    # The whole compiled package travels: the pipeline and its Kubernetes settings.
    assert run["pipeline_spec"]["pipeline_spec"]["pipelineInfo"]["name"] == "mlco-workload-forecasting"
    executors = run["pipeline_spec"]["platform_spec"]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    assert executors["exec-olap-load"]["secretAsEnv"][0]["secretName"] == "mlco-db"
    assert run["run_id"] in capsys.readouterr().out


def test_submit_compiles_with_the_image_setting_when_no_package_is_given(api):
    # A fresh process, as a user would run it: the image setting is read when settings load.
    env = {**os.environ, "MLCO_IMAGE": "registry.example/mlco:7.0"}
    env.pop("MLCO_CUDA_IMAGE", None)
    result = subprocess.run([str(Path(sys.executable).with_name("mlco")), "submit", "--host", api.url],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    (run,) = api.state.runs.values()
    executors = run["pipeline_spec"]["pipeline_spec"]["deploymentSpec"]["executors"]
    assert executors["exec-datagen"]["container"]["image"] == "registry.example/mlco:7.0"
    assert executors["exec-train-sequence"]["container"]["image"] == "ghcr.io/mlco/ml-cloud-optimizer-cuda:0.1.0"


@pytest.mark.parametrize(
    "param, words",
    [("recordz=5", ["unknown pipeline parameter 'recordz'"]),
     ("records=many", ["'records'", "integer"]),
     ("deploy=yes", ["'deploy'", "boolean"]),
     ("records", ["name=value"])],
)
def test_submit_refuses_bad_parameters_before_sending(mlco, api, capsys, param, words):
    assert mlco(["submit", "--host", api.url, "--package", PACKAGE, "--param", param]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and all(w in err for w in words)
    assert api.requests == []


def test_schedule_uploads_a_version_and_replaces_the_recurring_run(mlco, api, capsys):
    assert mlco(["schedule", "--host", api.url, "--package", PACKAGE, "--cron", "0 0 2 * * *",
                 "--param", "records=200000"]) == 0
    (pipeline,) = api.state.pipelines.values()
    assert pipeline["display_name"] == "mlco-workload-forecasting"
    (first,) = api.state.recurring_runs.values()
    assert first["display_name"] == "mlco-nightly"
    assert first["trigger"]["cron_schedule"]["cron"] == "0 0 2 * * *"
    assert first["runtime_config"]["parameters"] == {"records": 200000}
    assert first["service_account"] == "mlco-pipeline-runner"
    assert first["max_concurrency"] == "1" or first["max_concurrency"] == 1
    assert first["pipeline_version_reference"]["pipeline_version_id"] in api.state.versions

    assert mlco(["schedule", "--host", api.url, "--package", PACKAGE, "--cron", "0 30 3 * * *"]) == 0
    (second,) = api.state.recurring_runs.values()  # the first was deleted, not edited
    assert second["recurring_run_id"] != first["recurring_run_id"]
    assert second["trigger"]["cron_schedule"]["cron"] == "0 30 3 * * *"
    assert len(api.calls("DELETE", f"/recurringruns/{first['recurring_run_id']}")) == 1
    # The second schedule uploaded a new version of the same pipeline and points at it.
    assert len(api.state.pipelines) == 1 and len(api.state.versions) == 2
    assert second["pipeline_version_reference"]["pipeline_version_id"] != first["pipeline_version_reference"]["pipeline_version_id"]
    assert "replacing " + first["recurring_run_id"] in capsys.readouterr().out


def test_schedule_with_another_name_keeps_the_first(mlco, api):
    assert mlco(["schedule", "--host", api.url, "--package", PACKAGE, "--cron", "0 0 2 * * *"]) == 0
    assert mlco(["schedule", "--host", api.url, "--package", PACKAGE, "--cron", "0 0 * * * *", "--name", "hourly"]) == 0
    assert sorted(j["display_name"] for j in api.state.recurring_runs.values()) == ["hourly", "mlco-nightly"]


@pytest.mark.parametrize("cron", ["0 2 * * *", "0 0 25 * * *", "every night"])
def test_schedule_checks_cron_before_sending_anything(mlco, api, capsys, cron):
    assert mlco(["schedule", "--host", api.url, "--package", PACKAGE, "--cron", cron]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("mlco schedule: error: cron")
    assert api.requests == []


def test_runs_lists_what_was_submitted(mlco, api, capsys):
    for name in ("first", "second"):
        assert mlco(["submit", "--host", api.url, "--package", PACKAGE, "--run-name", name]) == 0
    capsys.readouterr()
    assert mlco(["runs", "--host", api.url]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["run_id", "state", "created_at", "finished_at", "name"]
    rows = {line.split()[-1]: line.split()[0] for line in out[1:]}
    assert set(rows) == {"first", "second"}
    assert set(rows.values()) == set(api.state.runs)


def test_runs_of_an_unknown_experiment_is_a_user_error(mlco, api, capsys):
    assert mlco(["runs", "--host", api.url, "--experiment", "nope"]) == 2
    assert "nope" in capsys.readouterr().err


def test_unreachable_server_is_one_line(mlco, capsys):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    assert mlco(["runs", "--host", f"http://127.0.0.1:{port}"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"mlco runs: error: cannot reach the KFP API at http://127.0.0.1:{port}: MaxRetryError"
