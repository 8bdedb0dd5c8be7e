"""Score the forecasters trained by separate tasks, choose the champion on validation, report the hold-out.

``evaluation.evaluate_holdout`` fits its candidates itself; in the pipeline they arrive fitted
from the training tasks. ``PrefittedForecaster`` lets evaluation "fit" them without change and
hands it the validation forecasts each training task made from a fit before that window
(``pipeline_steps.training``), so the choice on validation, the blend, the p90 margins, the
common-rows rule, the baselines and the leaderboard are exactly those of ``mlco train``. The
peak classifier is scored on the same hold-out against the rule an operator would write
(current load above the entity's threshold).
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, confusion_matrix, roc_auc_score, roc_curve

from ml_cloud_optimizer.data.schema import Fleet
from ml_cloud_optimizer.evaluation import evaluate_holdout, leaderboard, to_markdown, write_leaderboard
from ml_cloud_optimizer.evaluation.calibration import unwrap
from ml_cloud_optimizer.evaluation.plots import plot_error_by_horizon, plot_forecasts
from ml_cloud_optimizer.features import peak_labels
from ml_cloud_optimizer.features.targets import TARGET
from ml_cloud_optimizer.horizons import HEADLINE_HORIZON
from ml_cloud_optimizer.models.base import Forecaster
from ml_cloud_optimizer.models.peak import BasePeakModel
from ml_cloud_optimizer.pipeline_steps.training import FIT_INFO, load_validation

__all__ = [
    "PEAK_CLASSES",
    "PLOTS_DIR",
    "PrefittedForecaster",
    "ScoringResult",
    "compare_on_holdout",
    "score_candidates",
]

PEAK_CLASSES = ["no peak", "peak"]
PLOTS_DIR = "plots"
_ROC_POINTS = 101

_log = logging.getLogger(__name__)


class PrefittedForecaster(Forecaster):
    """A fitted forecaster that evaluation may clone and "fit" again: both leave it as it is.

    Args:
        model: the fitted forecaster.
        validation_forecasts: its forecasts of the validation window from a fit before it, or
            None; without them evaluation leaves it out of the validation window (``prefitted``).
    """

    prefitted = True

    def __init__(self, model: Forecaster | None = None, validation_forecasts: pd.DataFrame | None = None):
        self.model = model
        self.validation_forecasts = validation_forecasts

    def __sklearn_clone__(self) -> PrefittedForecaster:
        return self

    @property
    def _inner(self) -> Forecaster:
        if self.model is None:
            raise RuntimeError("PrefittedForecaster holds no model")
        return self.model

    @property
    def kind(self) -> str:  # type: ignore[override]
        return self._inner.kind

    @property
    def horizons(self):
        return self._inner.horizons

    @property
    def min_history(self) -> int:
        return self._inner.min_history

    @property
    def full_history(self) -> int:
        return int(getattr(self._inner, "full_history", self._inner.min_history))

    def fit(self, metrics: pd.DataFrame, entities: pd.DataFrame | None = None) -> PrefittedForecaster:
        return self

    def predict(self, metrics: pd.DataFrame) -> pd.DataFrame:
        return self._inner.predict(metrics)

    def _save(self, directory: Path) -> dict:
        raise TypeError("save the wrapped model, not the PrefittedForecaster")

    @classmethod
    def _load(cls, directory: Path, metadata: dict) -> PrefittedForecaster:
        raise TypeError("a PrefittedForecaster is never saved")


@dataclass
class ScoringResult:
    leaderboard: pd.DataFrame
    leaderboard_markdown: str
    champion: str
    champion_kind: str
    champion_mae: float
    metrics: dict[str, float] = field(default_factory=dict)
    peak_confusion: list[list[int]] = field(default_factory=list)
    peak_roc: dict[str, list[float]] = field(default_factory=dict)
    peak_scores: dict[str, float] = field(default_factory=dict)


def score_candidates(
    candidate_dirs: list[str],
    history: Fleet,
    cutoff: str,
    *,
    holdout_fraction: float,
    horizons,
    peak_model_dir: str,
    champion_dir: str,
    report_dir: str,
) -> ScoringResult:
    """Choose among the saved forecasters (and the baselines) on validation; score after ``cutoff``; save the champion.

    Args:
        candidate_dirs: model directories written by the training tasks.
        history: all the run's metrics; forecasts read history across the cut-off.
        cutoff: where the hold-out starts (from the features task), checked against
            ``holdout_fraction`` so that training and scoring agree on it.
        holdout_fraction: the run's hold-out share.
        horizons: scored horizons.
        peak_model_dir: the peak classifier to score.
        champion_dir: where the champion's model directory is written.
        report_dir: where ``leaderboard.csv``, ``leaderboard.md`` and ``plots/`` (error by
            horizon, and forecast against actual per model) are written.
    """
    horizons = tuple(int(h) for h in horizons)
    models: dict[str, Forecaster] = {}
    fit_seconds: dict[str, float] = {}
    dirs: dict[str, str] = {}
    for directory in candidate_dirs:
        model = Forecaster.load(directory)
        name = model.kind if model.kind not in models else f"{model.kind}_{len(models)}"
        models[name], dirs[name] = PrefittedForecaster(model, load_validation(directory)), directory
        info = Path(directory) / FIT_INFO
        fit_seconds[name] = json.loads(info.read_text())["fit_seconds"] if info.exists() else float("nan")

    evaluation = evaluate_holdout(models, history.metrics, holdout=holdout_fraction, horizons=horizons)
    if evaluation.cutoff != pd.Timestamp(cutoff):
        raise ValueError(f"hold-out cut-off {evaluation.cutoff} differs from the training cut-off {cutoff}")
    scores = evaluation.scores.copy()
    for name, seconds in fit_seconds.items():  # the training task's fit time, not the no-op here
        scores.loc[scores["model"] == name, "fit_s"] = seconds
    board = leaderboard(scores)
    champion = str(board.loc[board["champion"], "model"].iloc[0])
    headline = f"mae_h{HEADLINE_HORIZON}"
    champion_mae = float(board.loc[board["champion"], headline].iloc[0])
    chosen = unwrap(evaluation.models[champion])
    if champion in dirs:
        shutil.copytree(dirs[champion], champion_dir, dirs_exist_ok=True)
        if getattr(chosen, "p90_margin", None):  # fitted on validation: the saved copy lacks it
            chosen.save(champion_dir)
    else:  # a baseline or the blend won: save the one evaluation built
        chosen.save(champion_dir)

    write_leaderboard(board, report_dir)
    plots = Path(report_dir) / PLOTS_DIR
    plots.mkdir(parents=True, exist_ok=True)
    plot_error_by_horizon(scores, plots / "error_by_horizon.png")
    for name, frame in evaluation.forecasts.items():
        plot_forecasts(frame, plots / f"forecast_{name}.png", title=f"{name}: forecast vs actual, one hour ahead")

    metrics = {}
    for row in board.to_dict("records"):
        metrics[f"{row['model']}_{headline}"] = float(row[headline])
        metrics[f"{row['model']}_vs_persistence_h{HEADLINE_HORIZON}"] = float(
            row[f"vs_persistence_h{HEADLINE_HORIZON}"]
        )
        metrics[f"{row['model']}_val_{headline}"] = float(row.get(f"val_{headline}", np.nan))
    metrics[f"champion_{headline}"] = champion_mae
    metrics = {k: v for k, v in metrics.items() if np.isfinite(v)}  # KFP metrics are JSON numbers
    result = ScoringResult(board, to_markdown(board), champion, evaluation.models[champion].kind, champion_mae, metrics)
    _score_peaks(BasePeakModel.load(peak_model_dir), history.metrics, pd.Timestamp(cutoff), result)
    _log.info(
        "champion: %s (1-hour MAE %.4f); peak PR-AUC %.3f vs rule %.3f",
        champion,
        champion_mae,
        result.peak_scores["pr_auc"],
        result.peak_scores["rule_pr_auc"],
    )
    return result


def compare_on_holdout(
    candidate: Forecaster, deployed: Forecaster, history: Fleet, *, holdout_fraction: float, horizons
) -> tuple[float, float]:
    """One-hour MAE of ``candidate`` and of ``deployed`` on the same hold-out rows: ``(candidate, deployed)``."""
    evaluation = evaluate_holdout(
        {"candidate": PrefittedForecaster(candidate), "deployed": PrefittedForecaster(deployed)},
        history.metrics,
        holdout=holdout_fraction,
        horizons=tuple(int(h) for h in horizons),
        progress=_log.debug,
        validation=0,  # two given models compared, nothing chosen: the hold-out alone
    )
    scores = evaluation.scores.loc[evaluation.scores["horizon"] == HEADLINE_HORIZON].set_index("model")["mae"]
    return float(scores["candidate"]), float(scores["deployed"])


def _score_peaks(model: BasePeakModel, metrics: pd.DataFrame, cutoff: pd.Timestamp, result: ScoringResult) -> None:
    """Confusion matrix, ROC curve, PR-AUC of the classifier and of the rule, on the hold-out."""
    entity = metrics["entity_id"].astype(str)
    thresholds = model.thresholds_for(entity)
    limit = entity.map(thresholds).to_numpy(dtype="float64")
    labels = peak_labels(metrics, model.horizon, threshold=thresholds)
    proba = model.predict_proba(metrics)["peak_prob"].reindex(metrics.index).to_numpy(dtype="float64")
    rows = (metrics["ts"] >= cutoff).to_numpy() & labels.notna().to_numpy() & ~np.isnan(proba)
    y = labels.fillna(False).to_numpy(dtype=bool)[rows]
    score = proba[rows]
    rule = (metrics[TARGET].to_numpy(dtype="float64") / np.maximum(limit, 1e-9))[rows]
    both = 0 < y.sum() < len(y)
    result.peak_confusion = confusion_matrix(y, score >= model.decision_threshold_, labels=[False, True]).tolist()
    result.peak_scores = {
        "pr_auc": float(average_precision_score(y, score)) if both else float("nan"),
        "roc_auc": float(roc_auc_score(y, score)) if both else float("nan"),
        "rule_pr_auc": float(average_precision_score(y, rule)) if both else float("nan"),
        "positives": int(y.sum()),
        "rows": len(y),
    }
    fpr, tpr, thresholds = (
        roc_curve(y, score) if both else (np.array([0.0, 1.0]), np.array([0.0, 1.0]), np.array([1.0, 0.0]))
    )
    pick = np.unique(np.linspace(0, len(fpr) - 1, min(len(fpr), _ROC_POINTS)).astype(int))
    result.peak_roc = {
        "fpr": fpr[pick].tolist(),
        "tpr": tpr[pick].tolist(),
        "threshold": np.minimum(thresholds[pick], 1.0).tolist(),  # sklearn starts at +inf
    }
    result.metrics.update({f"peak_{k}": float(v) for k, v in result.peak_scores.items() if np.isfinite(v)})
