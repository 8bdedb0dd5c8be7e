"""The batch scoring pipeline: the registered champion forecasts every entity; forecasts and recommendations go back.

::

    fetch_champion (MLflow alias -> pinned version -> bundle) -> score_fleet (warehouse -> forecasts,
    recommendations -> warehouse, one optimizer run)

Meant to run hourly as a recurring run (``mlco schedule --cron "0 5 * * * *"`` with this
package). Both tasks have side effects or read state that moves (the alias, the newest
metrics), so neither is cached; the warehouse task gets ``DATABASE_URL`` from the ``mlco-db``
Secret and retries like the training pipeline's warehouse tasks. Locally it runs through
``kfp.local`` like the training pipeline (``run_batch_local``).
"""

# No `from __future__ import annotations`: kfp reads the parameter annotations as types.
import builtins
import contextlib
import logging
import os
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from kfp import compiler, dsl, kubernetes

from components.fetch_champion import fetch_champion
from components.score_fleet import score_fleet
from pipelines import settings

__all__ = [
    "BATCH_PIPELINE_NAME",
    "COMPILED_PATH",
    "DEFAULT_CHAMPION",
    "BatchRunResult",
    "batch_pipeline",
    "compile_batch_pipeline",
    "run_batch_local",
]

BATCH_PIPELINE_NAME = "mlco-batch-scoring"
COMPILED_PATH = Path(__file__).resolve().parent / "compiled" / "batch_pipeline.yaml"
DEFAULT_CHAMPION = f"models:/{settings.REGISTERED_MODEL}@champion"
# One week and an hour: the default tabular features reach back a week (the weekly seasonal lag).
DEFAULT_LOOKBACK_HOURS = 169


def _runs_as_image_user(task: dsl.PipelineTask) -> dsl.PipelineTask:
    return kubernetes.set_security_context(task, run_as_user=settings.RUN_AS_USER, run_as_non_root=True)


def _uses_database(task: dsl.PipelineTask) -> dsl.PipelineTask:
    """Give ``task`` DATABASE_URL from the ``mlco-db`` Secret, with the warehouse tasks' retry policy."""
    kubernetes.use_secret_as_env(
        task, secret_name=settings.DB_SECRET, secret_key_to_env={settings.DB_SECRET_KEY: "DATABASE_URL"}
    )
    return task.set_retry(num_retries=3, backoff_duration="30s", backoff_factor=2.0, backoff_max_duration="600s")


@dsl.pipeline(
    name=BATCH_PIPELINE_NAME,
    description="Score every entity with the registered champion; write forecasts and capacity recommendations.",
)
def batch_pipeline(
    champion: str = DEFAULT_CHAMPION,
    lookback_hours: int = DEFAULT_LOOKBACK_HOURS,
    target_utilisation: float = 0.7,
    granularity: float = 0.25,
    mlflow_tracking_uri: str = settings.MLFLOW_TRACKING_URI,
):
    """Forecast the fleet's next hours and recommend capacity, from the last ``lookback_hours`` of metrics.

    Args:
        champion: an MLflow model URI (``models:/NAME@ALIAS`` or ``models:/NAME/VERSION``) or a
            bundle directory inside the image or a mounted volume.
        lookback_hours: history read per entity; at least the champion's ``min_history``.
        target_utilisation: utilisation the recommended request is sized for, in (0, 1].
        granularity: request step in cores.
        mlflow_tracking_uri: MLflow tracking server ("": mlco's local store, for local runs).
    """
    fetched = fetch_champion(location=champion, tracking_uri=mlflow_tracking_uri)
    fetched.set_caching_options(enable_caching=False)  # the alias moves when a new champion is registered
    fetched.set_retry(num_retries=2, backoff_duration="30s")

    scored = score_fleet(
        champion=fetched.outputs["champion"],
        lookback_hours=lookback_hours,
        target_utilisation=target_utilisation,
        granularity=granularity,
    )
    _uses_database(scored.set_caching_options(enable_caching=False))
    scored.set_cpu_request("1").set_memory_request("2G").set_memory_limit("4G")

    for task in (fetched, scored):
        _runs_as_image_user(task)


def compile_batch_pipeline(path: "str | Path" = COMPILED_PATH) -> Path:
    """Compile ``batch_pipeline`` to ``path`` (the PipelineSpec, then the Kubernetes platform spec)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    compiler.Compiler().compile(pipeline_func=batch_pipeline, package_path=str(path))
    return path


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


def run_batch_local(arguments: dict, *, home: "str | Path | None" = None,
                    progress: "TextIO | None" = None) -> BatchRunResult:
    """Run ``batch_pipeline(**arguments)`` through kfp.local against ``DATABASE_URL`` (or the embedded warehouse).

    Args:
        arguments: pipeline arguments; ``mlflow_tracking_uri`` defaults to "" (mlco's local store).
        home: mlco's local state directory (default ``$MLCO_HOME`` or ``./.mlco``).
        progress: where progress lines go (default stderr).

    Raises:
        pipelines.local.LocalRunError: a task failed (the message names it and the log file).
    """
    from ml_cloud_optimizer.pipeline_steps.environment import local_warehouse
    from pipelines.local import (
        LocalRunError,
        _environment,
        _executor_output,
        _ProgressTee,
    )

    arguments = {"mlflow_tracking_uri": "", **arguments}
    home = Path(home or os.environ.get("MLCO_HOME") or ".mlco").absolute()
    pipeline_root = home / "pipeline_runs"
    pipeline_root.mkdir(parents=True, exist_ok=True)
    log_path = home / "logs" / f"batch-{time.strftime('%Y%m%d-%H%M%S')}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    before = set(pipeline_root.iterdir())
    started = time.perf_counter()
    tee = _ProgressTee(log_path, progress or sys.stderr)
    with local_warehouse(home) as database_url, _environment({"MLCO_HOME": str(home), "DATABASE_URL": database_url}):
        _execute(arguments, pipeline_root, tee)
    seconds = time.perf_counter() - started

    if tee.failed:
        tail = tee.failure_tail(tee.failed[0])
        raise LocalRunError(f"task {tee.failed[0]!r} failed; its log is in {log_path}" + (f"\n{tail}" if tail else ""))
    new = [p for p in pipeline_root.iterdir() if p not in before and p.name.startswith(BATCH_PIPELINE_NAME)]
    run_dir = max(new, key=lambda p: p.stat().st_mtime) if new else None
    if run_dir is None or not (run_dir / "score-fleet" / "executor_output.json").exists():
        raise LocalRunError(f"the batch pipeline ended without scoring; see {log_path}")
    scored = _executor_output(run_dir / "score-fleet")["parameterValues"]
    champion = _executor_output(run_dir / "fetch-champion")["artifacts"]["champion"]["artifacts"][0]
    return BatchRunResult(run_dir=run_dir, log_path=log_path, optimizer_run_id=int(scored["run_id"]),
                          entities=int(scored["entities"]), model_uri=str(champion["metadata"]["model_uri"]),
                          seconds=seconds, task_seconds=dict(tee.task_seconds))


def _execute(arguments: dict, pipeline_root: Path, tee) -> None:
    """``batch_pipeline(**arguments)`` through kfp.local, its stdout into ``tee`` (as ``pipelines.local`` does)."""
    from kfp import local as kfp_local

    # kfp.local swaps builtins.print and the root logger's handlers around each task; restore both.
    real_print = builtins.print
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        with contextlib.redirect_stdout(tee), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*non-Python base image.*")
            warnings.filterwarnings("ignore", message=".*have no effect in the current local runner.*")
            kfp_local.init(runner=kfp_local.SubprocessRunner(use_venv=False), pipeline_root=str(pipeline_root),
                           raise_on_error=False)
            batch_pipeline(**arguments)
    finally:
        builtins.print = real_print
        root.handlers[:] = handlers
        root.setLevel(level)
        tee.close()
