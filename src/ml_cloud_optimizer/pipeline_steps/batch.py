"""Batch scoring: the registered champion forecasts every entity from recent warehouse metrics.

The batch pipeline's two steps. ``fetch_champion`` turns a champion location (a bundle
directory, or an MLflow URI such as ``models:/mlco-forecaster@champion``) into a local bundle
directory, pinning an alias to the version it names at that moment so that one run scores
with one model. ``score_fleet`` reads the last ``lookback_hours`` of metrics, forecasts each
entity from its latest sample, sizes capacity with ``optimizer.capacity.recommend`` and writes
forecasts and recommendations as one optimizer run, in one transaction.
"""

from __future__ import annotations

import math
import re
import shutil
import tempfile
import time
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import yaml

from ml_cloud_optimizer.data.schema import STEP
from ml_cloud_optimizer.models.bundle import ModelBundle
from ml_cloud_optimizer.optimizer.capacity import DEFAULT_GRANULARITY, STEPS_PER_HOUR, forecasts_long, recommend
from ml_cloud_optimizer.pipeline_steps.environment import use_tracking_uri
from ml_cloud_optimizer.warehouse import connect, read_metrics, store_run, transaction

__all__ = ["BatchScore", "fetch_champion", "load_champion", "score_fleet"]

_ALIAS_URI = re.compile(r"^models:/(?P<name>[^/@]+)@(?P<alias>[^/]+)$")
_PYFUNC_BUNDLE_ARTIFACT = "bundle"  # the artifact key ``tracking.BundlePyfunc`` is logged with


@dataclass
class BatchScore:
    """One scoring run, as stored in the warehouse.

    Attributes:
        run_id: the ``optimizer_runs`` row holding the forecasts and recommendations.
        forecasts: one row per scored entity (``ModelBundle.predict``'s frame).
        recommendations: ``data.schema.RECOMMENDATION_COLUMNS`` rows per entity and hour.
        window: first and last timestamp read from the warehouse.
        skipped: entities with too little recent history to forecast.
    """

    run_id: int
    forecasts: pd.DataFrame
    recommendations: pd.DataFrame
    window: tuple[pd.Timestamp, pd.Timestamp]
    skipped: list[str] = field(default_factory=list)

    def summary(self) -> dict:
        """JSON-ready figures for the task's Metrics artifact."""
        return {
            "run_id": self.run_id,
            "entities": self.forecasts["entity_id"].nunique(),
            "skipped": len(self.skipped),
            "recommendations": len(self.recommendations),
            "hourly_cost": round(float(self.recommendations["hourly_cost"].sum()), 4),
            "hourly_saving": round(float(self.recommendations["hourly_saving"].sum()), 4),
        }


def load_champion(directory: str | Path) -> ModelBundle:
    """``ModelBundle.load``: only the saved kinds' modules are imported (see ``models.registry``)."""
    return ModelBundle.load(directory)


def fetch_champion(location: str, target_dir: str | Path, *, tracking_uri: str = "") -> dict:
    """Copy the champion bundle at ``location`` into ``target_dir`` and describe it.

    Args:
        location: a bundle directory, or an MLflow model URI whose pyfunc model was logged by
            ``tracking.Tracker.register_champion`` (``models:/NAME@ALIAS``, ``models:/NAME/VERSION``,
            ``runs:/...``). An alias is resolved to its version first.
        target_dir: where the bundle goes (created; existing files are overwritten).
        tracking_uri: MLflow tracking URI ("": ``MLFLOW_TRACKING_URI`` or mlco's local store).

    Returns:
        ``kind``, ``horizons``, ``min_history``, ``full_history`` and ``model_uri`` (the location,
        an alias replaced by the version it pointed at).

    Raises:
        FileNotFoundError: ``location`` is neither a directory nor an MLflow URI.
        ValueError: the MLflow model holds no mlco bundle.
    """
    target_dir = Path(target_dir)
    if "://" not in location and not location.startswith(("models:/", "runs:/")):
        source = Path(location)
        if not source.is_dir():
            raise FileNotFoundError(f"champion {location}: no such model directory")
        shutil.copytree(source, target_dir, dirs_exist_ok=True)
        model_uri = str(source.resolve())
    else:
        model_uri = _download_bundle(location, target_dir, tracking_uri)
    bundle = load_champion(target_dir)
    print(f"[mlco] champion {bundle.kind} from {model_uri}", flush=True)
    return {
        "kind": bundle.kind,
        "horizons": [int(h) for h in bundle.horizons],
        "min_history": int(bundle.min_history),
        "full_history": int(bundle.metadata.get("full_history", bundle.min_history)),
        "model_uri": model_uri,
    }


def _download_bundle(uri: str, target_dir: Path, tracking_uri: str) -> str:
    """Fetch the pyfunc model at ``uri`` and copy its bundle artifact into ``target_dir``; return the pinned URI."""
    import mlflow
    from mlflow import MlflowClient

    from ml_cloud_optimizer.tracking import tracking_uri as default_tracking_uri

    use_tracking_uri(tracking_uri)
    mlflow.set_tracking_uri(default_tracking_uri())
    if alias := _ALIAS_URI.match(uri):
        version = MlflowClient().get_model_version_by_alias(alias["name"], alias["alias"]).version
        uri = f"models:/{alias['name']}/{version}"
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=tmp))
        mlmodel = model_dir / "MLmodel"
        artifacts: dict[str, dict] = {}
        if mlmodel.exists():
            flavor = yaml.safe_load(mlmodel.read_text()).get("flavors", {}).get("python_function", {})
            artifacts = flavor.get("artifacts") or {}
        if _PYFUNC_BUNDLE_ARTIFACT not in artifacts:
            raise ValueError(
                f"champion {uri}: the MLflow model holds no mlco bundle (artifact "
                f"{_PYFUNC_BUNDLE_ARTIFACT!r}); register one with `mlco train` or `mlco run`"
            )
        shutil.copytree(model_dir / artifacts[_PYFUNC_BUNDLE_ARTIFACT]["path"], target_dir, dirs_exist_ok=True)
    return uri


def score_fleet(
    bundle_dir: str | Path,
    *,
    lookback_hours: int,
    target_utilization: float = 0.7,
    granularity: float = DEFAULT_GRANULARITY,
    model_label: str = "",
) -> BatchScore:
    """Forecast every entity from its last ``lookback_hours`` in the warehouse; store forecasts and recommendations.

    The window ends at the newest sample in the warehouse, not at the wall clock, so a late
    load is scored rather than missed. Entities without ``min_history`` samples in the window
    are skipped and named in the progress line.

    Args:
        bundle_dir: the champion bundle (see ``fetch_champion``).
        lookback_hours: history read per entity; at least the champion's ``min_history``.
        target_utilization: utilisation the recommended request is sized for, in (0, 1].
        granularity: request step in cores.
        model_label: how the optimizer run names the model (default: its kind and directory).

    Raises:
        ValueError: the window is shorter than the champion needs, the warehouse holds no
            metrics, or no entity has enough history.
    """
    bundle = load_champion(bundle_dir)
    steps = int(lookback_hours) * STEPS_PER_HOUR
    if steps < bundle.min_history:
        need = math.ceil(bundle.min_history / STEPS_PER_HOUR)
        raise ValueError(
            f"lookback_hours={lookback_hours} covers {steps} 5-minute steps; the champion"
            f" ({bundle.kind}) needs at least {bundle.min_history}: use {need} or more"
        )
    if not 0 < target_utilization <= 1:
        raise ValueError(f"target_utilization must be in (0, 1], got {target_utilization}")
    started = time.perf_counter()
    with closing(connect()) as conn:
        last = _newest_sample(conn)
        first = last - (steps - 1) * STEP
        fleet = read_metrics(conn, start=first, end=last + STEP)
        forecasts = bundle.predict(fleet.metrics)
        skipped = sorted(set(fleet.entities["entity_id"].astype(str)) - set(forecasts["entity_id"].astype(str)))
        if forecasts.empty:
            raise ValueError(
                f"no entity has the {bundle.min_history} samples the champion needs between"
                f" {first.isoformat()} and {last.isoformat()}"
            )
        recommendations = recommend(
            forecasts, fleet.entities, target_utilization=target_utilization, granularity=granularity
        )
        params = {
            "lookback_hours": int(lookback_hours),
            "target_utilization": float(target_utilization),
            "granularity": float(granularity),
            "window_start": first.isoformat(),
            "window_end": last.isoformat(),
        }
        run_id = store_run(
            conn,
            recommendations,
            forecasts_long(forecasts),
            model=model_label or f"{bundle.kind}:{Path(bundle_dir).resolve()}",
            source="warehouse",
            params=params,
        )
    score = BatchScore(run_id, forecasts, recommendations, (first, last), skipped)
    note = f"; skipped {len(skipped)} with too little history: {', '.join(skipped[:5])}" if skipped else ""
    print(
        f"[mlco] scored {forecasts['entity_id'].nunique()} entities with {bundle.kind} as optimizer run {run_id}"
        f" ({len(recommendations)} recommendations) in {time.perf_counter() - started:.1f} s{note}",
        flush=True,
    )
    return score


def _newest_sample(conn) -> pd.Timestamp:
    with transaction(conn), conn.cursor() as cur:
        cur.execute("SELECT max(ts) FROM metrics")
        (last,) = cur.fetchone()
    if last is None:
        raise ValueError("the warehouse holds no metrics: nothing to score (load some with `mlco db load`)")
    return pd.Timestamp(last).tz_convert("UTC")
