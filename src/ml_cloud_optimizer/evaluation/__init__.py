"""Evaluation: time splits, the validation-then-hold-out evaluation, backtests, metrics, leaderboard, plots."""

from ml_cloud_optimizer.evaluation.backtest import (
    BASELINES,
    VALIDATION,
    Evaluation,
    holdout_cutoff,
    rolling_origin,
    time_split,
    validation_cutoff,
)
from ml_cloud_optimizer.evaluation.checks import check_evaluable
from ml_cloud_optimizer.evaluation.holdout import BLEND, evaluate_holdout
from ml_cloud_optimizer.evaluation.leaderboard import (
    TIE_TOLERANCE,
    choose_champion,
    leaderboard,
    to_markdown,
    write_leaderboard,
)
from ml_cloud_optimizer.evaluation.metrics import mae, mape, mase, point_metrics, rmse, wape

__all__ = [
    "BASELINES",
    "BLEND",
    "TIE_TOLERANCE",
    "VALIDATION",
    "Evaluation",
    "check_evaluable",
    "choose_champion",
    "evaluate_holdout",
    "holdout_cutoff",
    "leaderboard",
    "mae",
    "mape",
    "mase",
    "point_metrics",
    "rmse",
    "rolling_origin",
    "time_split",
    "to_markdown",
    "validation_cutoff",
    "wape",
    "write_leaderboard",
]
