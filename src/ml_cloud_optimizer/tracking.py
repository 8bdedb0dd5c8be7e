"""MLflow tracking: one run per candidate, the champion in the model registry under the alias ``champion``.

Runs go to ``MLFLOW_TRACKING_URI`` when it is set, else to a local store under ``$MLCO_HOME``
(default ``./.mlco``): ``sqlite:///<home>/mlflow.db`` with artifacts in ``<home>/mlartifacts``.
Each candidate's run holds its parameters, its hold-out metrics, its plots and its saved model
directory. The champion's bundle is also logged as an MLflow pyfunc model (which loads the
bundle and calls ``ModelBundle.predict``) and registered, and the alias moves to that version.

One training session ranks candidates per resource (``resources``: ``cpu``, ``mem``). Every
run carries the resource as its ``target`` tag and parameter. The CPU champion is registered
under the tracker's model name (``mlco-forecaster``), as it always was; the memory champion
under that name with the resource's suffix (``mlco-forecaster-mem``), with its own
``champion`` alias, so that nothing that loads ``models:/mlco-forecaster@champion`` ever gets
a memory model.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mlflow
import mlflow.pyfunc
import pandas as pd
from mlflow import MlflowClient
from mlflow.pyfunc.model import PythonModel

from ml_cloud_optimizer.resources import DEFAULT_RESOURCE, UTIL_COLUMN, as_target, suffix

__all__ = [
    "CHAMPION_ALIAS",
    "DEFAULT_EXPERIMENT",
    "DEFAULT_MODEL_NAME",
    "BundlePyfunc",
    "Tracker",
    "TrainingResult",
    "mlco_home",
    "tracking_uri",
    "train_and_export",
]

CHAMPION_ALIAS = "champion"
DEFAULT_EXPERIMENT = "mlco-forecast"
DEFAULT_MODEL_NAME = "mlco-forecaster"
_LOGGED_METRICS = ("mae", "rmse", "wape", "mape", "mase", "vs_persistence", "vs_seasonal_naive")


def mlco_home() -> Path:
    """``$MLCO_HOME``, or ``./.mlco``: where local state lives."""
    return Path(os.environ.get("MLCO_HOME", ".mlco")).resolve()


def tracking_uri() -> str:
    """``MLFLOW_TRACKING_URI`` if set, else the local sqlite store under ``mlco_home()``."""
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return uri
    home = mlco_home()
    home.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{home / 'mlflow.db'}"


def _artifact_root() -> str:
    """Artifact location for new experiments in a local sqlite store."""
    root = mlco_home() / "mlartifacts"
    root.mkdir(parents=True, exist_ok=True)
    return root.as_uri()


class BundlePyfunc(PythonModel):
    """pyfunc face of a bundle: MLflow loads or serves it through ``ModelBundle.predict``."""

    def load_context(self, context):
        from ml_cloud_optimizer.models.bundle import ModelBundle

        self.bundle = ModelBundle.load(context.artifacts["bundle"])

    def predict(self, context, model_input, params=None):
        return self.bundle.predict(model_input)


class Tracker:
    """Logs candidates of one training session to an MLflow experiment and registers the champion.

    Args:
        experiment: experiment name.
        uri: tracking URI (default ``tracking_uri()``).
        model_name: registered model name for the champion.
    """

    def __init__(
        self, experiment: str = DEFAULT_EXPERIMENT, uri: str | None = None, model_name: str = DEFAULT_MODEL_NAME
    ):
        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
        self.uri = uri or tracking_uri()
        self.model_name = model_name
        # Decided before set_tracking_uri, which exports MLFLOW_TRACKING_URI itself.
        artifacts = _artifact_root() if self.uri.startswith("sqlite:") else None
        mlflow.set_tracking_uri(self.uri)
        self.client = MlflowClient(self.uri)
        found = self.client.get_experiment_by_name(experiment)
        if found is None:
            self.experiment_id = self.client.create_experiment(experiment, artifact_location=artifacts)
        else:
            self.experiment_id = found.experiment_id

    def log_candidate(
        self,
        name: str,
        params: Mapping[str, Any],
        metrics: Mapping[str, float],
        model_dir: str | Path | None = None,
        plots: Iterable[str | Path] = (),
        tags: Mapping[str, str] | None = None,
    ) -> str:
        """One finished run for candidate ``name``; returns its run id.

        The model directory, when given, is logged under the artifact path ``model``.
        """
        run = self.client.create_run(self.experiment_id, run_name=name, tags={"candidate": name, **(tags or {})})
        run_id = run.info.run_id
        try:
            for key, value in params.items():
                self.client.log_param(run_id, key, str(value)[:500])
            for key, value in metrics.items():
                if value is not None and not pd.isna(value):
                    self.client.log_metric(run_id, key, float(value))
            for plot in plots:
                self.client.log_artifact(run_id, str(plot), "plots")
            if model_dir is not None:
                self.client.log_artifacts(run_id, str(model_dir), "model")
        except Exception:
            self.client.set_terminated(run_id, "FAILED")
            raise
        self.client.set_terminated(run_id, "FINISHED")
        return run_id

    def register_champion(self, run_id: str, bundle_dir: str | Path, target: str = DEFAULT_RESOURCE) -> str:
        """Log the bundle as a pyfunc model in ``run_id``, register it and point the alias at it.

        ``target``'s champion goes to ``registered_name(target)``. Returns the registered
        version (a string, as MLflow gives it).
        """
        with mlflow.start_run(run_id=run_id):
            info = mlflow.pyfunc.log_model(
                name="champion",
                python_model=BundlePyfunc(),
                artifacts={"bundle": str(bundle_dir)},
                pip_requirements=["ml-cloud-optimizer"],
            )
        name = self.registered_name(target)
        version = mlflow.register_model(info.model_uri, name)
        self.client.set_registered_model_alias(name, CHAMPION_ALIAS, version.version)
        self.client.set_tag(run_id, "champion", "true")
        return str(version.version)

    def registered_name(self, target: str = DEFAULT_RESOURCE) -> str:
        """The registered model of ``target``'s champion: ``model_name``, plus ``-mem`` for memory."""
        return f"{self.model_name}{suffix(target)}"

    def champion_version(self, target: str = DEFAULT_RESOURCE) -> str:
        """The registered version the ``champion`` alias of ``target``'s model points at."""
        name = self.registered_name(target)
        return str(self.client.get_model_version_by_alias(name, CHAMPION_ALIAS).version)


@dataclass
class TrainingResult:
    """What ``train_and_export`` produced.

    Attributes:
        leaderboard: the ranked leaderboard (see ``evaluation.leaderboard``).
        champion: name of the champion candidate.
        champion_dir: the exported bundle directory serving loads.
        leaderboard_paths: the CSV and Markdown files.
        run_ids: MLflow run id of each candidate (empty without tracking).
        registered_version: the registry version the ``champion`` alias points at (None without tracking).
        evaluation: the hold-out evaluation itself.
        bundle: the exported bundle, in memory.
        target: the resource forecast (``cpu`` or ``mem``).
        registered_name: the registered model the champion went to (None without tracking).
    """

    leaderboard: pd.DataFrame
    champion: str
    champion_dir: Path
    leaderboard_paths: tuple[Path, Path]
    run_ids: dict[str, str] = field(default_factory=dict)
    registered_version: str | None = None
    evaluation: Any = None
    bundle: Any = None
    target: str = DEFAULT_RESOURCE
    registered_name: str | None = None


def train_and_export(
    metrics: pd.DataFrame,
    candidates: Mapping[str, Any],
    out_dir: str | Path,
    holdout: float = 0.2,
    tracker: Tracker | None = None,
    refit: bool = True,
    peak: Any | None = None,
    source: str = "unknown",
    progress: Callable[[str], None] | None = None,
    target: str = DEFAULT_RESOURCE,
) -> TrainingResult:
    """Evaluate ``candidates`` (plus the baselines) on a hold-out, log them, export and register the champion.

    Args:
        metrics: canonical long metrics.
        candidates: unfitted forecasters by name.
        out_dir: receives ``leaderboard.csv``/``.md``, ``plots/``, ``candidates/<name>/`` and ``champion/``;
            for a resource other than CPU each name carries its suffix (``leaderboard-mem.csv``,
            ``plots-mem/``, ``candidates-mem/``, ``champion-mem/``), so both fit in one directory.
        holdout: share of the time span held out at its end.
        tracker: MLflow tracker; None skips tracking.
        refit: refit the champion on all of ``metrics`` (hold-out included) before export.
        peak: an unfitted peak classifier to fit on all of ``metrics`` and bundle, or None; for
            memory it learns coming memory peaks, on the same view as the forecaster.
        source: where the data came from, kept in the bundle metadata.
        progress: called with one line per step.
        target: the resource forecast, ``cpu`` or ``mem`` (``resources``); the bundle records it.

    Raises:
        ValueError: ``target`` is ``mem`` and ``metrics`` hold no memory utilisation.
    """
    from sklearn.base import clone

    from ml_cloud_optimizer.evaluation import evaluate_holdout, leaderboard, write_leaderboard
    from ml_cloud_optimizer.evaluation.plots import plot_error_by_horizon, plot_forecasts
    from ml_cloud_optimizer.horizons import HEADLINE_HORIZON
    from ml_cloud_optimizer.models.bundle import ModelBundle, record_target

    say = progress or (lambda _message: None)
    view = as_target(metrics, target)  # what the models learn from: the resource in the forecast column
    end = suffix(target)
    out_dir = Path(out_dir)
    plots_dir = out_dir / f"plots{end}"
    plots_dir.mkdir(parents=True, exist_ok=True)
    evaluation = evaluate_holdout(candidates, view, holdout=holdout, progress=progress)
    board = leaderboard(evaluation.scores)
    paths = write_leaderboard(board, out_dir, f"leaderboard{end}")
    by_horizon = plot_error_by_horizon(evaluation.scores, plots_dir / "error_by_horizon.png")

    run_ids: dict[str, str] = {}
    for row in board.itertuples(index=False):
        name = row.model
        model = evaluation.models[name]
        model_dir = record_target(model.save(out_dir / f"candidates{end}" / name), target)
        what = "" if target == DEFAULT_RESOURCE else f" of {UTIL_COLUMN[target]}"
        plot = plot_forecasts(
            evaluation.forecasts[name],
            plots_dir / f"forecast_{name}.png",
            title=f"{name}: forecast vs actual{what}, 1 hour ahead",
        )
        if tracker is not None:
            scores = evaluation.scores.loc[evaluation.scores["model"] == name]
            logged = {
                f"{metric}_h{int(r.horizon)}": getattr(r, metric)
                for r in scores.itertuples(index=False)
                for metric in _LOGGED_METRICS
            }
            logged.update({"fit_s": row.fit_s, "predict_s": row.predict_s, "rank": row.rank})
            params = {"kind": model.kind, "target": target, **model.get_params()}
            run_ids[name] = tracker.log_candidate(
                f"{name}{end}", params, logged, model_dir, [plot, by_horizon], tags={"source": source, "target": target}
            )
            say(f"[{name}] logged to MLflow run {run_ids[name]}")

    champion = str(board.loc[board["champion"], "model"].iloc[0])
    final = evaluation.models[champion]
    if refit:
        say(f"[{champion}] champion: refitting on all {len(metrics):,} rows")
        final = clone(final).fit(view)
    fitted_peak = None
    if peak is not None:
        say(f"[peak] fitting {type(peak).__name__}")
        fitted_peak = peak.fit(view)
    headline = board.loc[board["champion"]].iloc[0]
    bundle = ModelBundle(
        final,
        fitted_peak,
        {
            "source": source,
            "champion": champion,
            "trained_rows": len(metrics),
            "trained_until": str(metrics["ts"].max()),
            "holdout_cutoff": str(evaluation.cutoff),
            f"holdout_mae_h{HEADLINE_HORIZON}": float(headline[f"mae_h{HEADLINE_HORIZON}"]),
            f"holdout_vs_persistence_h{HEADLINE_HORIZON}": float(headline[f"vs_persistence_h{HEADLINE_HORIZON}"]),
            "refit_on_all_data": bool(refit),
            "target": target,
        },
    )
    champion_dir = bundle.save(out_dir / f"champion{end}")
    version = registered = None
    if tracker is not None:
        registered = tracker.registered_name(target)
        version = tracker.register_champion(run_ids[champion], champion_dir, target)
        say(f"[{champion}] registered as {registered} version {version}, alias '{CHAMPION_ALIAS}'")
    return TrainingResult(
        board, champion, champion_dir, paths, run_ids, version, evaluation, bundle, target, registered
    )
