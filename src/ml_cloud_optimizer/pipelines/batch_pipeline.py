"""The batch scoring pipeline: the registered champion forecasts every entity; forecasts and recommendations go back.

::

    fetch_champion (MLflow alias -> pinned version -> bundle) -> score_fleet (warehouse -> forecasts,
    recommendations -> warehouse, one optimizer run)

Meant to run hourly as a recurring run (``mlco schedule --cron "0 5 * * * *"`` with this
package). Both tasks have side effects or read state that moves (the alias, the newest
metrics), so neither is cached; the warehouse task gets ``DATABASE_URL`` from the ``mlco-db``
Secret and retries like the training pipeline's warehouse tasks, and the MLflow task gets
``MLFLOW_TRACKING_URI`` from the ``mlco-pipeline-settings`` ConfigMap. Locally it runs through
``kfp.local`` like the training pipeline (``run_batch_local``).
"""

# No `from __future__ import annotations`: kfp reads the parameter annotations as types.
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from kfp import dsl

from ml_cloud_optimizer.components.fetch_champion import fetch_champion
from ml_cloud_optimizer.components.score_fleet import score_fleet
from ml_cloud_optimizer.pipelines import settings
from ml_cloud_optimizer.pipelines.task_settings import runs_as_image_user, uses_database, uses_mlflow

__all__ = [
    "BATCH_PIPELINE_NAME",
    "DEFAULT_CHAMPION",
    "BatchRunResult",
    "batch_pipeline",
    "run_batch_local",
]

BATCH_PIPELINE_NAME = "mlco-batch-scoring"
DEFAULT_CHAMPION = f"models:/{settings.REGISTERED_MODEL}@champion"
# One week and an hour: the default tabular features reach back a week (the weekly seasonal lag).
DEFAULT_LOOKBACK_HOURS = 169


@dsl.pipeline(
    name=BATCH_PIPELINE_NAME,
    description="Score every entity with the registered champion; write forecasts and capacity recommendations.",
)
def batch_pipeline(
    champion: str = DEFAULT_CHAMPION,
    lookback_hours: int = DEFAULT_LOOKBACK_HOURS,
    target_utilization: float = 0.7,
    granularity: float = 0.25,
    mlflow_tracking_uri: str = "",
):
    """Forecast the fleet's next hours and recommend capacity, from the last ``lookback_hours`` of metrics.

    Args:
        champion: an MLflow model URI (``models:/NAME@ALIAS`` or ``models:/NAME/VERSION``) or a
            bundle directory inside the image or a mounted volume.
        lookback_hours: history read per entity; at least the champion's ``min_history``.
        target_utilization: utilisation the recommended request is sized for, in (0, 1].
        granularity: request step in cores.
        mlflow_tracking_uri: MLflow tracking server; "": MLFLOW_TRACKING_URI (ConfigMap mlco-pipeline-settings).
    """
    fetched = fetch_champion(location=champion, tracking_uri=mlflow_tracking_uri)
    fetched.set_caching_options(enable_caching=False)  # the alias moves when a new champion is registered
    uses_mlflow(fetched.set_retry(num_retries=2, backoff_duration="30s"))

    scored = score_fleet(
        champion=fetched.outputs["champion"],
        lookback_hours=lookback_hours,
        target_utilization=target_utilization,
        granularity=granularity,
    )
    uses_database(scored.set_caching_options(enable_caching=False))
    scored.set_cpu_request("1").set_memory_request("2G").set_memory_limit("4G")

    for task in (fetched, scored):
        runs_as_image_user(task)


@dataclass
class BatchRunResult:
    """What a local batch run produced."""

    run_dir: Path
    log_path: Path
    optimizer_run_id: int
    entities: int
    model_uri: str
    seconds: float
    task_seconds: dict = field(default_factory=dict)


def run_batch_local(
    arguments: dict, *, home: "str | Path | None" = None, progress: "TextIO | None" = None, image: "str | None" = None
) -> BatchRunResult:
    """Run ``batch_pipeline(**arguments)`` through kfp.local against ``DATABASE_URL`` (or the embedded warehouse).

    Args:
        arguments: pipeline arguments; ``mlflow_tracking_uri`` defaults to "" (mlco's local store).
        home: mlco's local state directory (default ``$MLCO_HOME`` or ``./.mlco``).
        progress: where progress lines go (default stderr).
        image: run every task in this container image (see ``ml_cloud_optimizer.pipelines.local_docker``).

    Raises:
        pipelines.local.LocalRunError: a task failed (the message names it and the log file).
    """
    from ml_cloud_optimizer.pipelines.local import LocalRunError, execute_locally, executor_output

    done = execute_locally(
        batch_pipeline,
        {"mlflow_tracking_uri": "", **arguments},
        pipeline_name=BATCH_PIPELINE_NAME,
        home=home,
        log_prefix="batch",
        progress=progress,
        image=image,
    )
    if not (done.run_dir / "score-fleet" / "executor_output.json").exists():
        raise LocalRunError(f"the batch pipeline ended without scoring; see {done.log_path}")
    scored = executor_output(done.run_dir / "score-fleet")["parameterValues"]
    champion = executor_output(done.run_dir / "fetch-champion")["artifacts"]["champion"]["artifacts"][0]
    return BatchRunResult(
        run_dir=done.run_dir,
        log_path=done.log_path,
        optimizer_run_id=int(scored["run_id"]),
        entities=int(scored["entities"]),
        model_uri=str(champion["metadata"]["model_uri"]),
        seconds=done.seconds,
        task_seconds=done.task_seconds,
    )
