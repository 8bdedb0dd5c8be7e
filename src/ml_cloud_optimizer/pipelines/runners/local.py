"""Run the training and the batch-scoring pipelines on this machine: the same DAG and components as the cluster.

Tasks run through kfp.local (see ``execute``), as subprocesses or, given an image, in containers.
Deployment is off. At the end of a training run the champion bundle is copied to
``$MLCO_HOME/champion``, where ``mlco serve`` looks by default.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from ml_cloud_optimizer.horizons import DEFAULT_HORIZONS, check_horizons
from ml_cloud_optimizer.pipelines import settings
from ml_cloud_optimizer.pipelines.runners.execute import LocalRunError, execute_locally, executor_output, local_home

__all__ = [
    "BatchRunResult",
    "LocalRunError",
    "LocalRunResult",
    "local_arguments",
    "run_batch_local",
    "run_local",
]

_LOCAL_PARALLELISM = 2  # loop iterations kfp.local runs at once


@dataclass
class LocalRunResult:
    """What a local run produced."""

    run_dir: Path
    log_path: Path
    champion_dir: Path
    champion_kind: str
    champion_mae: float
    leaderboard: str
    model_uri: str
    seconds: float
    task_seconds: dict[str, float] = field(default_factory=dict)


def local_arguments(
    *,
    records: int = settings.LOCAL_BUDGET["records"],
    models: list[str] | None = None,
    epochs: int = settings.LOCAL_BUDGET["epochs"],
    trials: int = settings.LOCAL_BUDGET["trials"],
    horizons: list[int] | None = None,
    source: str = "synthetic",
    seed: int = 0,
    holdout_fraction: float = 0.2,
    tracking_uri: str = "",
) -> dict:
    """Pipeline arguments for a local run; ``models`` is split into the tabular and sequence loops.

    ``tracking_uri`` "" means mlco's local MLflow store under ``$MLCO_HOME``. ``source`` is
    "synthetic", a trace path (made absolute: the tasks run elsewhere), or a Prometheus source
    (``prometheus``, ``prometheus://...``), passed as given: ``datagen`` resolves it against the
    inherited ``MLCO_PROMETHEUS_URL`` exactly as a cluster task does against its ConfigMap.

    Raises:
        ValueError: an unknown model kind, or horizons without the headline one.
    """
    models = list(models or settings.TABULAR_MODELS + settings.SEQUENCE_MODELS)
    unknown = sorted(set(models) - set(settings.TABULAR_MODELS) - set(settings.SEQUENCE_MODELS))
    if unknown:
        known = ", ".join(settings.TABULAR_MODELS + settings.SEQUENCE_MODELS)
        raise ValueError(f"unknown model kind(s) {', '.join(unknown)}; known: {known}")
    return {
        "source": source if source == "synthetic" or _is_live(source) else str(Path(source).resolve()),
        "records": int(records),
        "seed": int(seed),
        "horizons": list(check_horizons(horizons or DEFAULT_HORIZONS)),
        "tabular_models": [m for m in models if m in settings.TABULAR_MODELS],
        "sequence_models": [m for m in models if m in settings.SEQUENCE_MODELS],
        "epochs": int(epochs),
        "trials": int(trials),
        "holdout_fraction": float(holdout_fraction),
        "deploy": False,
        "mlflow_tracking_uri": tracking_uri,
    }


def run_local(
    arguments: dict, *, home: str | Path | None = None, progress: TextIO | None = None, image: str | None = None
) -> LocalRunResult:
    """Run ``workload_pipeline(**arguments)`` locally and collect the champion.

    Args:
        arguments: pipeline arguments (see ``local_arguments``).
        home: mlco's local state directory (default ``$MLCO_HOME`` or ``./.mlco``).
        progress: where progress lines go (default stderr).
        image: run every task in this container image (``kfp.local.DockerRunner``, see
            ``containers``) instead of as subprocesses of this Python.

    Returns:
        A ``LocalRunResult``.

    Raises:
        LocalRunError: a task failed (the message names it and the log file).
    """
    from ml_cloud_optimizer.pipelines.workload_pipeline import workload_pipeline

    home = local_home(home)
    # kfp.local runs two loop iterations at once; each gets its share of the cores, since
    # OpenMP workers that outnumber the cores spend their time waiting for each other.
    threads = {"MLCO_THREADS": str(max(1, (os.cpu_count() or 2) // _LOCAL_PARALLELISM))}
    done = execute_locally(
        workload_pipeline,
        arguments,
        pipeline_name=settings.PIPELINE_NAME,
        home=home,
        log_prefix="run",
        progress=progress,
        env=threads,
        image=image,
    )
    if not (done.run_dir / "register" / "executor_output.json").exists():
        raise LocalRunError(f"the pipeline ended without registering a champion; see {done.log_path}")

    registered = executor_output(done.run_dir / "register")
    scored = executor_output(done.run_dir / "evaluate")
    champion_dir = _publish(Path(_artifact_uri(registered, "bundle")), home / "champion")
    return LocalRunResult(
        run_dir=done.run_dir,
        log_path=done.log_path,
        champion_dir=champion_dir,
        champion_kind=scored["parameterValues"]["kind"],
        champion_mae=float(scored["parameterValues"]["holdout_mae"]),
        leaderboard=Path(_artifact_uri(scored, "leaderboard")).read_text(),
        model_uri=registered["parameterValues"]["model_uri"],
        seconds=done.seconds,
        task_seconds=done.task_seconds,
    )


@dataclass
class BatchRunResult:
    """What a local batch run produced."""

    run_dir: Path
    log_path: Path
    optimizer_run_id: int
    entities: int
    model_uri: str
    seconds: float
    task_seconds: dict[str, float] = field(default_factory=dict)


def run_batch_local(
    arguments: dict, *, home: str | Path | None = None, progress: TextIO | None = None, image: str | None = None
) -> BatchRunResult:
    """Run ``batch_pipeline(**arguments)`` through kfp.local against ``DATABASE_URL`` (or the embedded warehouse).

    Args:
        arguments: pipeline arguments; ``mlflow_tracking_uri`` defaults to "" (mlco's local store).
        home: mlco's local state directory (default ``$MLCO_HOME`` or ``./.mlco``).
        progress: where progress lines go (default stderr).
        image: run every task in this container image (see ``containers``).

    Raises:
        LocalRunError: a task failed (the message names it and the log file).
    """
    from ml_cloud_optimizer.pipelines.batch_pipeline import BATCH_PIPELINE_NAME, batch_pipeline

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


def _is_live(source: str) -> bool:
    """A Prometheus source (``pipeline_steps.sources.is_live``), imported late: step code is not needed to compile."""
    from ml_cloud_optimizer.pipeline_steps.sources import is_live

    return is_live(source)


def _artifact_uri(output: dict, name: str) -> str:
    return output["artifacts"][name]["artifacts"][0]["uri"]


def _publish(source: Path, target: Path) -> Path:
    """Copy the bundle to ``target``, replacing what was there only once the copy is complete."""
    staging = target.with_name(f".{target.name}.incoming")
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(source, staging)
    old = target.with_name(f".{target.name}.previous")
    shutil.rmtree(old, ignore_errors=True)
    if target.exists():
        target.rename(old)
    staging.rename(target)
    shutil.rmtree(old, ignore_errors=True)
    return target
