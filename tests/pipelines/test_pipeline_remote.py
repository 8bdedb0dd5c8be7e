"""`mlco submit`, `mlco schedule` and `mlco runs` against a small KFP API server on loopback.

The real ``kfp.Client`` does the talking; the fake (tests/fakes/kfp_api.py) keeps what it is
sent, so the tests check what reached the server, and that nothing did when the CLI refused.
In multi-user mode the fake authenticates and authorizes as the upstream API server does
(kubeflow/pipelines backend/src/apiserver/auth/authenticator_token_review.go and
resource/resource_manager.go ``IsAuthorized``; the namespace rules of server/experiment_server.go,
run_server.go, job_server.go and pipeline_server.go): a bearer token names the user, the
namespace decides what they may touch.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from kfp_server_api.exceptions import ApiException

from compiled_yaml import BATCH_YAML, WORKLOAD_YAML
from fakes.kfp_api import FakeKfpApi, MultiUser
from ml_cloud_optimizer import cli

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = str(WORKLOAD_YAML)
BATCH_PACKAGE = str(BATCH_YAML)
TEAM = "team-a"
TOKEN = "token-of-alice"
CREDENTIAL_VARIABLES = ("MLCO_KFP_TOKEN", "KF_PIPELINES_TOKEN", "KF_PIPELINES_SA_TOKEN_PATH")


@pytest.fixture(autouse=True)
def no_ambient_credentials(monkeypatch, tmp_path):
    """No token from the developer's shell, and no in-cluster token file where kfp would look for one."""
    from kfp import client as kfp_client

    for name in CREDENTIAL_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(kfp_client, "KF_PIPELINES_SA_TOKEN_PATH", str(tmp_path / "no-such-token"))


@pytest.fixture
def mlco():
    """``mlco`` in-process."""
    return cli.main


@pytest.fixture
def api():
    with FakeKfpApi() as server:
        yield server


@pytest.fixture
def multi_user_api():
    """A multi-user server where TOKEN is alice, who may use the namespace TEAM and no other."""
    users = MultiUser(tokens={TOKEN: "alice@example.com"}, namespaces={"alice@example.com": {TEAM}})
    with FakeKfpApi(multi_user=users) as server:
        yield server


def _authorizations(api) -> set:
    """The Authorization headers of every request but the health check, which anyone may ask."""
    return {r.authorization for r in api.requests if not r.path.endswith("/healthz")}


def test_submit_sends_the_pipeline_with_typed_parameters(mlco, api, capsys):
    code = mlco(
        [
            "submit",
            "--host",
            api.url,
            "--package",
            PACKAGE,
            "--experiment",
            "nightly",
            "--param",
            "records=5000",
            "--param",
            "deploy=false",
            "--param",
            'tabular_models=["lightgbm"]',
            "--param",
            "namespace=team-a",
        ]
    )
    assert code == 0
    (run,) = api.state.runs.values()
    assert run["runtime_config"]["parameters"] == {
        "records": 5000,
        "deploy": False,
        "tabular_models": ["lightgbm"],
        "namespace": "team-a",
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
    result = subprocess.run(
        [str(Path(sys.executable).with_name("mlco")), "submit", "--host", api.url],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    (run,) = api.state.runs.values()
    executors = run["pipeline_spec"]["pipeline_spec"]["deploymentSpec"]["executors"]
    assert executors["exec-datagen"]["container"]["image"] == "registry.example/mlco:7.0"
    assert executors["exec-train-sequence"]["container"]["image"] == "ghcr.io/mlco/ml-cloud-optimizer-cuda:0.1.0"


@pytest.mark.parametrize(
    "param, words",
    [
        ("recordz=5", ["unknown pipeline parameter 'recordz'"]),
        ("records=many", ["'records'", "integer"]),
        ("deploy=yes", ["'deploy'", "boolean"]),
        ("records", ["name=value"]),
    ],
)
def test_submit_refuses_bad_parameters_before_sending(mlco, api, capsys, param, words):
    assert mlco(["submit", "--host", api.url, "--package", PACKAGE, "--param", param]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and all(w in err for w in words)
    assert api.requests == []


def test_schedule_uploads_a_version_and_replaces_the_recurring_run(mlco, api, capsys):
    assert (
        mlco(
            ["schedule", "--host", api.url, "--package", PACKAGE, "--cron", "0 0 2 * * *", "--param", "records=200000"]
        )
        == 0
    )
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
    assert (
        second["pipeline_version_reference"]["pipeline_version_id"]
        != first["pipeline_version_reference"]["pipeline_version_id"]
    )
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


def test_schedule_batch_uploads_versions_under_its_own_pipeline(mlco, api):
    assert mlco(["schedule", "--host", api.url, "--package", PACKAGE, "--cron", "0 0 2 * * *"]) == 0
    for _ in range(2):
        assert (
            mlco(
                [
                    "schedule",
                    "--host",
                    api.url,
                    "--pipeline",
                    "batch",
                    "--package",
                    BATCH_PACKAGE,
                    "--cron",
                    "0 5 * * * *",
                ]
            )
            == 0
        )
    pipelines = {p["display_name"]: p["pipeline_id"] for p in api.state.pipelines.values()}
    assert set(pipelines) == {"mlco-workload-forecasting", "mlco-batch-scoring"}
    versions = {}
    for version in api.state.versions.values():
        versions.setdefault(version["pipeline_id"], []).append(version["pipeline_spec"]["pipelineInfo"]["name"])
    # Each pipeline holds only versions of itself: one of training, two of batch scoring.
    assert versions == {
        pipelines["mlco-workload-forecasting"]: ["mlco-workload-forecasting"],
        pipelines["mlco-batch-scoring"]: ["mlco-batch-scoring"] * 2,
    }
    batch = next(j for j in api.state.recurring_runs.values() if j["display_name"] == "mlco-batch-hourly")
    assert (
        api.state.versions[batch["pipeline_version_reference"]["pipeline_version_id"]]["pipeline_id"]
        == pipelines["mlco-batch-scoring"]
    )
    assert batch["description"].startswith("mlco-batch-scoring")


# -- multi-user Kubeflow ------------------------------------------------------------------------


def test_multi_user_server_refuses_a_request_without_credentials(mlco, multi_user_api, capsys):
    assert mlco(["submit", "--host", multi_user_api.url, "--package", PACKAGE, "--namespace", TEAM]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "401" in err and "--token" in err
    assert multi_user_api.state.runs == {} and multi_user_api.state.experiments == {}


def test_submit_with_a_token_into_the_users_namespace(mlco, multi_user_api):
    assert (
        mlco(
            [
                "submit",
                "--host",
                multi_user_api.url,
                "--package",
                PACKAGE,
                "--namespace",
                TEAM,
                "--token",
                TOKEN,
                "--param",
                "records=5000",
            ]
        )
        == 0
    )
    (run,) = multi_user_api.state.runs.values()
    (experiment,) = multi_user_api.state.experiments.values()
    assert experiment["namespace"] == TEAM and run["namespace"] == TEAM
    assert run["runtime_config"]["parameters"] == {"records": 5000}
    assert _authorizations(multi_user_api) == {f"Bearer {TOKEN}"}


@pytest.mark.parametrize("variable", ["MLCO_KFP_TOKEN", "KF_PIPELINES_TOKEN"])
def test_schedule_takes_the_token_from_the_environment(mlco, multi_user_api, monkeypatch, variable):
    monkeypatch.setenv(variable, TOKEN)
    for cron in ("0 0 2 * * *", "0 0 3 * * *"):
        assert (
            mlco(["schedule", "--host", multi_user_api.url, "--package", PACKAGE, "--namespace", TEAM, "--cron", cron])
            == 0
        )
    # A private pipeline of the user's namespace, found again (not uploaded twice) the second time.
    (pipeline,) = multi_user_api.state.pipelines.values()
    assert pipeline["namespace"] == TEAM and len(multi_user_api.state.versions) == 2
    (job,) = multi_user_api.state.recurring_runs.values()
    assert job["namespace"] == TEAM and job["trigger"]["cron_schedule"]["cron"] == "0 0 3 * * *"
    assert _authorizations(multi_user_api) == {f"Bearer {TOKEN}"}


def test_runs_lists_only_the_users_namespace(mlco, multi_user_api, capsys):
    assert (
        mlco(
            [
                "submit",
                "--host",
                multi_user_api.url,
                "--package",
                PACKAGE,
                "--namespace",
                TEAM,
                "--token",
                TOKEN,
                "--run-name",
                "mine",
            ]
        )
        == 0
    )
    multi_user_api.state.runs["run-other"] = {
        "run_id": "run-other",
        "display_name": "theirs",
        "namespace": "team-b",
        "state": "PENDING",
    }
    capsys.readouterr()
    assert mlco(["runs", "--host", multi_user_api.url, "--namespace", TEAM, "--token", TOKEN]) == 0
    names = [line.split()[-1] for line in capsys.readouterr().out.splitlines()[1:]]
    assert names == ["mine"]
    assert (
        mlco(["runs", "--host", multi_user_api.url, "--namespace", TEAM, "--token", TOKEN, "--experiment", "mlco"]) == 0
    )
    assert [line.split()[-1] for line in capsys.readouterr().out.splitlines()[1:]] == ["mine"]


@pytest.mark.parametrize(
    "namespace, words", [(None, ["400", "empty namespace"]), ("team-b", ["403", "not authorized"])]
)
def test_a_missing_or_foreign_namespace_is_one_line(mlco, multi_user_api, capsys, namespace, words):
    args = ["runs", "--host", multi_user_api.url, "--token", TOKEN] + (["--namespace", namespace] if namespace else [])
    assert mlco(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and all(w in err for w in words), err


def test_in_cluster_service_account_token_is_read_on_every_request(multi_user_api, tmp_path, monkeypatch):
    from ml_cloud_optimizer.pipelines.runners import remote

    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    monkeypatch.setenv("KF_PIPELINES_SA_TOKEN_PATH", str(token_file))
    client = remote.connect(multi_user_api.url, namespace=TEAM)  # found without asking: the file is there
    assert remote.list_runs(client, namespace=TEAM) == []
    token_file.write_text("rotated-by-the-kubelet")  # kubelet rotates projected tokens in place
    with pytest.raises(ApiException) as refused:
        remote.list_runs(client, namespace=TEAM)
    assert getattr(refused.value, "status", None) == 401
    list_calls = multi_user_api.calls("GET", "/runs")
    assert [r.authorization for r in list_calls] == [f"Bearer {TOKEN}", "Bearer rotated-by-the-kubelet"]
    assert all(r.query.get("namespace") == TEAM for r in list_calls)


def test_sa_token_flag_with_its_path(mlco, multi_user_api, tmp_path):
    token_file = tmp_path / "projected"
    token_file.write_text(TOKEN)
    assert (
        mlco(
            [
                "submit",
                "--host",
                multi_user_api.url,
                "--package",
                PACKAGE,
                "--namespace",
                TEAM,
                "--sa-token",
                str(token_file),
            ]
        )
        == 0
    )
    (run,) = multi_user_api.state.runs.values()
    assert run["namespace"] == TEAM
    assert _authorizations(multi_user_api) == {f"Bearer {TOKEN}"}


@pytest.mark.parametrize(
    "flags, words",
    [(["--token", TOKEN, "--sa-token"], ["not both"]), (["--sa-token", "/nonexistent/token"], ["/nonexistent/token"])],
)
def test_unusable_credentials_are_refused_before_sending(mlco, multi_user_api, capsys, flags, words):
    assert mlco(["runs", "--host", multi_user_api.url, "--namespace", TEAM, *flags]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and all(w in err for w in words), err
    assert multi_user_api.requests == []
