"""The exit handler's record of how a run ended, in both state vocabularies.

``kfp.local`` reports ``SUCCEEDED``; the KFP backend's driver reports the exit handler DAG's
ML Metadata execution state (kubeflow/pipelines backend/src/v2/driver/resolve.go:
``producer.GetExecution().GetLastKnownState().String()``, the ``Execution.State`` enum of
ml-metadata's metadata_store.proto: UNKNOWN, NEW, RUNNING, COMPLETE, FAILED, CACHED, CANCELED)
with an empty error. A successful cluster run must be recorded as one.
"""

from __future__ import annotations

import pytest

from ml_cloud_optimizer.pipeline_steps import run_log


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A local MLflow store named by MLFLOW_TRACKING_URI, as the pipeline's ConfigMap names the server's."""
    from mlflow import MlflowClient

    home = tmp_path_factory.mktemp("mlco_home")
    uri = f"sqlite:///{home / 'mlflow.db'}"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLCO_HOME", str(home))
        patch.setenv("MLFLOW_TRACKING_URI", uri)  # restored afterwards, whatever MLflow sets
        yield MlflowClient(uri)


def _record(client, run_id: str):
    run = client.get_run(run_id)
    return run.data.tags, run.info.status


@pytest.mark.parametrize(
    "reported, state, status",
    [
        ("SUCCEEDED", "SUCCEEDED", "FINISHED"),  # kfp.local
        ("COMPLETE", "SUCCEEDED", "FINISHED"),  # the backend, a run that ran to the end
        ("CACHED", "SUCCEEDED", "FINISHED"),  # the backend, served from the cache
        ("FAILED", "FAILED", "FAILED"),
        ("CANCELED", "CANCELLED", "KILLED"),  # the backend's spelling
        ("CANCELLED", "CANCELLED", "KILLED"),  # kfp's
        ("RUNNING", "UNKNOWN", "FAILED"),
    ],  # not a final state: never counted a success
)
def test_both_vocabularies_are_recorded_alike(store, reported, state, status):
    # On a cluster the error is empty (resolve.go fills an empty google.rpc.Status) and the
    # tracking parameter is "" so that MLFLOW_TRACKING_URI decides.
    run_id = run_log.record_pipeline_status(
        state=reported, job="job-7", task="exit-handler-1", error_code=None, error_message="", tracking_uri=""
    )
    assert run_id is not None
    tags, run_status = _record(store, run_id)
    assert (tags["state"], run_status) == (state, status)
    assert tags["reported_state"] == reported


def test_successful_cluster_runs_are_found_by_the_documented_search(store):
    run_log.record_pipeline_status(state="COMPLETE", job="job-ok", task="exit-handler-1", tracking_uri="")
    experiment = store.get_experiment_by_name(run_log.STATUS_EXPERIMENT)
    search = "tags.state = '{}' and tags.pipeline_job = 'job-ok'"
    failed = store.search_runs([experiment.experiment_id], search.format("FAILED"))
    succeeded = store.search_runs([experiment.experiment_id], search.format("SUCCEEDED"))
    assert not failed and len(succeeded) == 1


def test_normalise_state():
    assert [run_log.normalise_state(s) for s in ("complete", " CACHED ", "", None, "NEW")] == [
        "SUCCEEDED",
        "SUCCEEDED",
        "UNKNOWN",
        "UNKNOWN",
        "UNKNOWN",
    ]
