"""Evaluation: time splits, hold-out and rolling-origin backtests, metrics, leaderboard, plots."""

from ml_cloud_optimizer.evaluation.backtest import (
    BASELINES,
    Evaluation,
    evaluate_holdout,
    holdout_cutoff,
    rolling_origin,
    time_split,
)
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
    "TIE_TOLERANCE",
    "Evaluation",
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
    "wape",
    "write_leaderboard",
]
