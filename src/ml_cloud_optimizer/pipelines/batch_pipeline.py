"""The batch scoring pipeline: the registered champion forecasts every entity; forecasts and recommendations go back.

::

    fetch_champion (MLflow alias -> pinned version -> bundle) -> score_fleet (warehouse -> forecasts,
    recommendations -> warehouse, one optimizer run)

Meant to run hourly as a recurring run (``mlco schedule --cron "0 5 * * * *"`` with this
package). Both tasks have side effects or read state that moves (the alias, the newest
metrics), so neither is cached; the warehouse task gets ``DATABASE_URL`` from the ``mlco-db``
Secret and retries like the training pipeline's warehouse tasks, and the MLflow task gets
``MLFLOW_TRACKING_URI`` from the ``mlco-pipeline-settings`` ConfigMap. Locally it runs through
``kfp.local`` like the training pipeline (``runners.local.run_batch_local``).
"""

# No `from __future__ import annotations`: kfp reads the parameter annotations as types.
from kfp import dsl

from ml_cloud_optimizer.components.fetch_champion import fetch_champion
from ml_cloud_optimizer.components.score_fleet import score_fleet
from ml_cloud_optimizer.pipelines import settings
from ml_cloud_optimizer.pipelines.task_settings import runs_as_image_user, uses_database, uses_mlflow

__all__ = [
    "BATCH_PIPELINE_NAME",
    "DEFAULT_CHAMPION",
    "batch_pipeline",
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
