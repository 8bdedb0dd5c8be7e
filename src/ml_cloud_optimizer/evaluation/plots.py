"""Evaluation plots (matplotlib, Agg): forecast against actual, and error by horizon."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd

from ml_cloud_optimizer.features.targets import target_column
from ml_cloud_optimizer.horizons import HEADLINE_HORIZON
from ml_cloud_optimizer.models.base import forecast_column

__all__ = ["plot_error_by_horizon", "plot_forecasts"]


def plot_forecasts(
    forecasts: pd.DataFrame,
    path: str | Path,
    horizon: int = HEADLINE_HORIZON,
    entities: int = 3,
    title: str = "",
) -> Path:
    """Forecast (p50, and the p90 band where present) against the actual for the first few entities.

    ``forecasts`` is a hold-out frame from ``Evaluation.forecasts`` (forecast and ``y_h{h}`` columns);
    each line is drawn at the target time (origin + horizon).
    """
    path = Path(path)
    names = list(pd.unique(forecasts["entity_id"]))[:entities]
    fig, axes = plt.subplots(len(names) or 1, 1, figsize=(10, 2.6 * max(len(names), 1)), sharex=True, squeeze=False)
    p50, p90, actual = forecast_column(horizon), forecast_column(horizon, "p90"), target_column(horizon)
    for ax, name in zip(axes[:, 0], names, strict=False):  # one empty axis when there are no names
        rows = forecasts.loc[forecasts["entity_id"] == name]
        when = rows["ts"] + pd.Timedelta(minutes=5 * horizon)
        ax.plot(when, rows[actual], color="black", lw=0.8, label="actual")
        ax.plot(when, rows[p50], color="tab:blue", lw=0.8, label=f"p50 +{horizon} steps")
        if p90 in rows:
            ax.fill_between(when, rows[p50], rows[p90], color="tab:blue", alpha=0.2, label="p50..p90")
        ax.set_ylabel(str(name))
    axes[0, 0].legend(loc="upper right", fontsize="small")
    axes[0, 0].set_title(title or f"forecast vs actual, {horizon} steps ahead")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def plot_error_by_horizon(scores: pd.DataFrame, path: str | Path) -> Path:
    """MAE against horizon (minutes ahead), one line per model, from evaluation scores."""
    path = Path(path)
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, rows in scores.sort_values("horizon").groupby("model", sort=False):
        ax.plot(rows["horizon"] * 5, rows["mae"], marker="o", label=str(name))
    ax.set_xlabel("minutes ahead")
    ax.set_ylabel("MAE (utilisation)")
    ax.set_title("error by horizon")
    ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
