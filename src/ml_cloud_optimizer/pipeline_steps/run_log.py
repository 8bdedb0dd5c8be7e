"""A record of how each pipeline run ended, kept in MLflow where the team already looks.

The exit handler calls ``record_pipeline_status`` whether the run succeeded or failed. Each call
is one MLflow run in the experiment ``mlco-pipeline-runs``, tagged with the state, the failing
task and the error, so failures can be found with a search such as
``tags.state = 'FAILED'``. If MLflow cannot be reached the record is logged instead, and the
exit handler itself still succeeds.

The state arrives in one of two vocabularies. ``kfp.local`` says ``SUCCEEDED``, ``FAILED`` or
``CANCELLED`` (kfp ``dsl.PipelineTaskFinalStatus``). The KFP backend's driver copies the exit
handler's DAG execution state from ML Metadata (backend/src/v2/driver/resolve.go: the
``Execution.State`` enum name, ``UNKNOWN``, ``NEW``, ``RUNNING``, ``COMPLETE``, ``FAILED``,
``CACHED`` or ``CANCELED``) and leaves the error empty. Both are mapped onto one:
``SUCCEEDED``, ``FAILED``, ``CANCELLED`` or, for a state that is not final, ``UNKNOWN``; the
reported name is kept in the tag ``reported_state``.
"""

from __future__ import annotations

import json
import logging

from ml_cloud_optimizer.pipeline_steps.environment import use_tracking_uri

__all__ = ["STATUS_EXPERIMENT", "normalise_state", "record_pipeline_status"]

_log = logging.getLogger(__name__)

STATUS_EXPERIMENT = "mlco-pipeline-runs"

# Reported state -> (state recorded, MLflow run status).
_STATES = {
    "SUCCEEDED": ("SUCCEEDED", "FINISHED"),  # kfp.local
    "COMPLETE": ("SUCCEEDED", "FINISHED"),  # MLMD: the DAG ran to the end
    "CACHED": ("SUCCEEDED", "FINISHED"),  # MLMD: its result came from the cache
    "FAILED": ("FAILED", "FAILED"),  # both
    "CANCELLED": ("CANCELLED", "KILLED"),  # kfp.local
    "CANCELED": ("CANCELLED", "KILLED"),  # MLMD
}


def normalise_state(state: str | None) -> str:
    """``SUCCEEDED``, ``FAILED``, ``CANCELLED`` or ``UNKNOWN`` for a state of either vocabulary.

    Example:
        >>> normalise_state("COMPLETE"), normalise_state("SUCCEEDED"), normalise_state("RUNNING")
        ('SUCCEEDED', 'SUCCEEDED', 'UNKNOWN')
    """
    return _classify(state)[0]


def _classify(state: str | None) -> tuple[str, str]:
    # A state that is not final (NEW, RUNNING, UNKNOWN) should not reach an exit handler: not a success.
    return _STATES.get((state or "").strip().upper(), ("UNKNOWN", "FAILED"))


def record_pipeline_status(
    *,
    state: str,
    job: str,
    task: str,
    error_code: int | None = None,
    error_message: str | None = None,
    tracking_uri: str = "",
) -> str | None:
    """Record the final state of pipeline job ``job``; return the MLflow run id, or None if not stored.

    ``state`` may be kfp.local's name or ML Metadata's (module docstring); the record says
    ``SUCCEEDED``, ``FAILED``, ``CANCELLED`` or ``UNKNOWN`` and keeps the reported name.
    """
    recorded, mlflow_status = _classify(state)
    record = {
        "state": recorded,
        "reported_state": state or "",
        "pipeline_job": job,
        "task": task,
        "error_code": "" if error_code is None else str(error_code),
        "error_message": (error_message or "")[:4000],
    }
    _log.info(
        "pipeline finished: %s%s%s",
        recorded,
        f" (reported {state})" if state != recorded else "",
        f": {error_message}" if error_message else "",
    )
    try:
        from ml_cloud_optimizer.tracking import Tracker

        use_tracking_uri(tracking_uri)
        tracker = Tracker(experiment=STATUS_EXPERIMENT)
        run = tracker.client.create_run(tracker.experiment_id, run_name=f"{job} {recorded}", tags=record)
        tracker.client.set_terminated(run.info.run_id, mlflow_status)
        return run.info.run_id
    except Exception as exc:  # recording must never be what fails the run
        _log.warning(
            "could not record the status in MLflow (%s: %s); record: %s", type(exc).__name__, exc, json.dumps(record)
        )
        return None
