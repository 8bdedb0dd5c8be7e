"""A record of how each pipeline run ended, kept in MLflow where the team already looks.

The exit handler calls ``record_pipeline_status`` whether the run succeeded or failed. Each call
is one MLflow run in the experiment ``mlco-pipeline-runs``, tagged with the state, the failing
task and the error, so failures can be found with a search such as
``tags.state = 'FAILED'``. If MLflow cannot be reached the record is printed instead, and the
exit handler itself still succeeds.
"""

from __future__ import annotations

import json

from ml_cloud_optimizer.pipeline_steps.environment import use_tracking_uri

__all__ = ["STATUS_EXPERIMENT", "record_pipeline_status"]

STATUS_EXPERIMENT = "mlco-pipeline-runs"


def record_pipeline_status(
    *,
    state: str,
    job: str,
    task: str,
    error_code: int | None = None,
    error_message: str | None = None,
    tracking_uri: str = "",
) -> str | None:
    """Record the final state of pipeline job ``job``; return the MLflow run id, or None if not stored."""
    record = {
        "state": state,
        "pipeline_job": job,
        "task": task,
        "error_code": "" if error_code is None else str(error_code),
        "error_message": (error_message or "")[:4000],
    }
    print(f"[mlco] pipeline finished: {state}" + (f": {error_message}" if error_message else ""), flush=True)
    try:
        from ml_cloud_optimizer.tracking import Tracker

        use_tracking_uri(tracking_uri)
        tracker = Tracker(experiment=STATUS_EXPERIMENT)
        run = tracker.client.create_run(tracker.experiment_id, run_name=f"{job} {state}", tags=record)
        tracker.client.set_terminated(run.info.run_id, "FINISHED" if state == "SUCCEEDED" else "FAILED")
        return run.info.run_id
    except Exception as exc:  # noqa: BLE001 - recording must never be what fails the run
        print(f"[mlco] could not record the status in MLflow ({type(exc).__name__}: {exc}); record: {json.dumps(record)}",
              flush=True)
        return None
