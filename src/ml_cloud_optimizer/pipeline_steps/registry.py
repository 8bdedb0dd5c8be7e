"""The run's models in MLflow: every candidate logged, the champion bundle registered under ``champion``.

``register_champion`` builds the bundle serving loads (the champion forecaster plus the peak
classifier), logs each candidate as a run (parameters, hold-out metrics, plots, model
directory) and registers the bundle from the champion's run. ``compare_with_registered`` is
the deploy step's question: does the new bundle forecast the hold-out better than the
registered version now serving?
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pandas as pd

from ml_cloud_optimizer.data.schema import Fleet
from ml_cloud_optimizer.horizons import HEADLINE_HORIZON
from ml_cloud_optimizer.models.base import Forecaster
from ml_cloud_optimizer.models.bundle import ModelBundle
from ml_cloud_optimizer.models.peak import BasePeakModel
from ml_cloud_optimizer.pipeline_steps.environment import use_tracking_uri
from ml_cloud_optimizer.pipeline_steps.scoring import PLOTS_DIR, compare_on_holdout

__all__ = ["compare_with_registered", "register_champion"]

_log = logging.getLogger(__name__)


def register_champion(
    champion_dir: str,
    peak_dir: str,
    report_dir: str,
    candidate_dirs: list[str],
    *,
    bundle_dir: str,
    tracking_uri: str,
    model_name: str,
    pipeline_run: str = "",
) -> dict:
    """Write the champion bundle to ``bundle_dir``, log every candidate, register the bundle.

    Args:
        champion_dir: the champion forecaster (from the evaluate task).
        peak_dir: the peak classifier.
        report_dir: the evaluate task's report (``leaderboard.csv`` and ``plots/``).
        candidate_dirs: every trained forecaster, logged with its model files.
        bundle_dir: where the bundle goes.
        tracking_uri: MLflow tracking URI ("": the default, see ``environment.use_tracking_uri``).
        model_name: registered model name.
        pipeline_run: the pipeline run's name, kept as a tag.

    Returns:
        ``kind``, ``model_uri`` (``models:/NAME/VERSION``), ``version``, ``run_id`` and the
        champion's hold-out MAE (JSON-ready, for the artifact's metadata).
    """
    from ml_cloud_optimizer.tracking import DEFAULT_EXPERIMENT, Tracker

    use_tracking_uri(tracking_uri)
    board = pd.read_csv(Path(report_dir) / "leaderboard.csv")
    champion_row = board.loc[board["champion"].astype(bool)].iloc[0]
    headline = f"mae_h{HEADLINE_HORIZON}"
    forecaster = Forecaster.load(champion_dir)
    bundle = ModelBundle(
        forecaster,
        BasePeakModel.load(peak_dir),
        metadata={
            "source": "kfp pipeline",
            "pipeline_run": pipeline_run,
            "champion": str(champion_row["model"]),
            f"holdout_mae_h{HEADLINE_HORIZON}": float(champion_row[headline]),
        },
    )
    bundle.save(bundle_dir)

    tracker = Tracker(experiment=DEFAULT_EXPERIMENT, model_name=model_name)
    trained = {Forecaster.load(d).kind: d for d in candidate_dirs}
    plots = Path(report_dir) / PLOTS_DIR
    run_ids = {}
    for row in board.to_dict("records"):
        name = str(row["model"])
        metrics = {k: v for k, v in row.items() if k not in ("rank", "model", "kind", "champion") and _number(v)}
        params = (
            json.loads((Path(trained[name]) / Forecaster.METADATA_FILE).read_text()).get("params", {})
            if name in trained
            else {"kind": row["kind"]}
        )
        run_ids[name] = tracker.log_candidate(
            name,
            params=params,
            metrics=metrics,
            model_dir=trained.get(name),
            plots=[p for p in (plots / f"forecast_{name}.png", plots / "error_by_horizon.png") if p.exists()],
            tags={"source": "kfp pipeline", "pipeline_run": pipeline_run, "rank": str(row["rank"])},
        )
    version = tracker.register_champion(run_ids[str(champion_row["model"])], bundle_dir)
    model_uri = f"models:/{model_name}/{version}"
    _log.info("registered %s as %s (alias champion)", champion_row["model"], model_uri)
    return {
        "kind": forecaster.kind,
        "model_uri": model_uri,
        "version": version,
        "run_id": run_ids[str(champion_row["model"])],
        "holdout_mae": float(champion_row[headline]),
    }


def compare_with_registered(
    bundle_dir: str, model_uri: str, history: Fleet, *, holdout_fraction: float, horizons, tracking_uri: str
) -> tuple[float, float]:
    """``(candidate MAE, deployed MAE)`` at one hour on the same hold-out rows.

    Raises:
        RuntimeError: the deployed ``model_uri`` could not be loaded (MLflow unreachable, the
            version deleted...). The candidate must not replace a model it was not compared
            with: the deploy step fails (KFP retries it) and nothing is rolled out.
    """
    import mlflow
    import mlflow.pyfunc

    from ml_cloud_optimizer.tracking import tracking_uri as default_tracking_uri

    use_tracking_uri(tracking_uri)
    mlflow.set_tracking_uri(default_tracking_uri())
    try:
        deployed = mlflow.pyfunc.load_model(model_uri).unwrap_python_model().bundle
    except Exception as exc:  # whatever the cause, the comparison cannot be made
        raise RuntimeError(
            f"the deployed model {model_uri} could not be loaded to compare the candidate with it"
            f" ({type(exc).__name__}: {exc}); nothing is rolled out"
        ) from exc
    candidate = ModelBundle.load(bundle_dir)
    ours, theirs = compare_on_holdout(
        candidate.forecaster, deployed.forecaster, history, holdout_fraction=holdout_fraction, horizons=horizons
    )
    _log.info("on this hold-out: candidate %.5f, deployed %s %.5f MAE", ours, model_uri, theirs)
    return ours, theirs


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and pd.notna(value)
