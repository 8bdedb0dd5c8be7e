"""Component ``evaluate``: every candidate on the same hold-out; the leaderboard and the champion."""

from typing import NamedTuple

from kfp import dsl
from kfp.dsl import ClassificationMetrics, Dataset, Input, Markdown, Metrics, Model, Output

from ml_cloud_optimizer.components._image import IMAGE

__all__ = ["evaluate"]


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def evaluate(
    tabular_models: Input[list[Model]],
    sequence_models: Input[list[Model]],
    peak_model: Input[Model],
    history: Input[Dataset],
    holdout_fraction: float,
    horizons: list,
    metrics: Output[Metrics],
    peak_metrics: Output[ClassificationMetrics],
    leaderboard: Output[Markdown],
    evaluation: Output[Dataset],
    champion: Output[Model],
) -> NamedTuple("Champion", [("kind", str), ("holdout_mae", float)]):
    """Fan-in of both training loops (``dsl.Collected``): choose on validation, report on the hold-out.

    Persistence, seasonal naive and a blend of the best candidates always stand in the
    leaderboard. The champion has the lowest one-hour MAE on the validation window before the
    hold-out (each training task forecast it from a fit that ended before it); its p90 margin is
    calibrated there too, and the hold-out is only reported. It is copied to ``champion``.
    ``metrics`` holds each model's scores, ``peak_metrics`` the peak classifier's confusion matrix and ROC curve on the
    hold-out, ``leaderboard`` the table the Kubeflow UI shows, and ``evaluation`` a directory
    with ``leaderboard.csv`` and plots (error by horizon, forecast against actual per model).
    """
    from collections import namedtuple

    from ml_cloud_optimizer.pipeline_steps import artifacts, scoring

    result = scoring.score_candidates(
        [m.path for m in [*(tabular_models or []), *(sequence_models or [])]],
        artifacts.load_fleet(history.path),
        history.metadata["cutoff"],
        holdout_fraction=holdout_fraction,
        horizons=horizons,
        peak_model_dir=peak_model.path,
        champion_dir=champion.path,
        report_dir=evaluation.path,
    )
    for name, value in result.metrics.items():
        metrics.log_metric(name, value)
    peak_metrics.log_confusion_matrix(scoring.PEAK_CLASSES, result.peak_confusion)
    peak_metrics.log_roc_curve(result.peak_roc["fpr"], result.peak_roc["tpr"], result.peak_roc["threshold"])
    with open(leaderboard.path, "w") as out:
        out.write(result.leaderboard_markdown + "\n")
    evaluation.metadata.update({"models": len(result.leaderboard), "champion": result.champion})
    champion.metadata.update(
        {"kind": result.champion_kind, "name": result.champion, "holdout_mae": result.champion_mae}
    )
    return namedtuple("Champion", ["kind", "holdout_mae"])(result.champion_kind, result.champion_mae)
