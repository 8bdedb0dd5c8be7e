"""Honest evaluation by time: a hold-out window after all training data, or rolling origins.

Every candidate is fitted on the rows before the cut-off and forecasts every origin after it
from the history it would have had (features look back across the cut-off, never forward).
All candidates are then scored on the same rows: the origins with a known actual that every
candidate could forecast. Persistence and seasonal naive are always among them, so every
score has its baselines measured on exactly the same rows.

``target`` chooses the resource scored (``cpu`` or ``mem``): the candidates see the metrics as
``resources.as_target`` presents them, so a memory evaluation is the CPU one on memory.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from sklearn.base import clone
from sklearn.model_selection import TimeSeriesSplit

from ml_cloud_optimizer.data.schema import STEP
from ml_cloud_optimizer.errors import UserInputError
from ml_cloud_optimizer.evaluation.metrics import point_metrics, seasonal_scale
from ml_cloud_optimizer.features.grid import to_grid
from ml_cloud_optimizer.features.targets import make_targets, target_column
from ml_cloud_optimizer.horizons import DEFAULT_HORIZONS
from ml_cloud_optimizer.models.base import Forecaster, forecast_column
from ml_cloud_optimizer.models.baselines import PersistenceForecaster, SeasonalNaiveForecaster
from ml_cloud_optimizer.resources import DEFAULT_RESOURCE, as_target

__all__ = [
    "BASELINES",
    "Evaluation",
    "evaluate_holdout",
    "holdout_cutoff",
    "rolling_origin",
    "time_split",
]

_log = logging.getLogger(__name__)

BASELINES = ("persistence", "seasonal_naive")
SEASON = 288
MIN_COVERAGE = 0.5  # a candidate forecasting less of the hold-out is scored alone, not allowed to shrink the rest


def holdout_cutoff(metrics: pd.DataFrame, holdout: float = 0.2) -> pd.Timestamp:
    """The global instant after which the last ``holdout`` share of the time span lies (on the grid)."""
    if not 0 < holdout < 1:
        raise UserInputError(f"holdout {holdout}: expected a share between 0 and 1")
    if metrics.empty:
        raise UserInputError("holdout: no metrics rows")
    start, end = metrics["ts"].min(), metrics["ts"].max()
    return (start + (end - start) * (1 - holdout)).ceil(STEP)


def time_split(metrics: pd.DataFrame, holdout: float = 0.2) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(train, test): rows before and from one global cut-off, the test span being the last ``holdout`` share."""
    cutoff = holdout_cutoff(metrics, holdout)
    before = metrics["ts"] < cutoff
    return metrics.loc[before], metrics.loc[~before]


@dataclass
class Evaluation:
    """What one evaluation produced.

    Attributes:
        scores: one row per (model, horizon): mae, rmse, wape, mape, mase, n, vs_persistence,
            vs_seasonal_naive, coverage, fit_s, predict_s.
        forecasts: hold-out forecast frame of each model: one row per hold-out origin with the
            actuals ``y_h{h}``, the forecasts, and ``scored_h{h}`` marking the rows scored.
        models: the fitted candidates, by name.
        cutoff: start of the hold-out window.
    """

    scores: pd.DataFrame
    forecasts: dict[str, pd.DataFrame] = field(default_factory=dict)
    models: dict[str, Forecaster] = field(default_factory=dict)
    cutoff: pd.Timestamp | None = None


def _with_baselines(models: Mapping[str, Forecaster], horizons) -> dict[str, Forecaster]:
    out = {
        "persistence": PersistenceForecaster(horizons=horizons),
        "seasonal_naive": SeasonalNaiveForecaster(horizons=horizons, season=SEASON),
    }
    out.update(models)
    return out


def _say(progress, message: str) -> None:
    if progress is None:
        _log.info("%s", message)
    else:
        progress(message)


def _evaluate_window(models, metrics, cutoff, end, horizons, progress) -> Evaluation:
    train = metrics.loc[metrics["ts"] < cutoff]
    window = metrics.loc[metrics["ts"] <= end] if end is not None else metrics
    actual = make_targets(window, horizons)
    actual = actual.loc[actual["ts"] >= cutoff].reset_index(drop=True)
    grid = to_grid(train[["entity_id", "ts", "cpu_util"]], STEP)
    scale = _pooled_seasonal_scale(grid, SEASON)

    forecasts, fitted, timing = {}, {}, {}
    for name, template in models.items():
        model = clone(template)
        _say(progress, f"[{name}] fitting on {len(train):,} rows before {cutoff}")
        started = time.perf_counter()
        model.fit(train)
        fit_s = time.perf_counter() - started
        lookback = int(getattr(model, "full_history", model.min_history)) + max(horizons) + 1
        history = window.loc[window["ts"] >= cutoff - lookback * STEP]
        started = time.perf_counter()
        frame = model.predict(history)
        predict_s = time.perf_counter() - started
        frame = frame.loc[frame["ts"] >= cutoff]
        forecasts[name] = actual.merge(frame, on=["entity_id", "ts"], how="left")
        fitted[name], timing[name] = model, (fit_s, predict_s)
        _say(progress, f"[{name}] fitted in {fit_s:.1f}s, forecast {len(frame):,} origins in {predict_s:.1f}s")

    rows = []
    for h in horizons:
        col, y_col = forecast_column(h), target_column(h)
        known = actual[y_col].notna().to_numpy()
        have = {n: f[col].notna().to_numpy() if col in f else np.zeros(len(f), bool) for n, f in forecasts.items()}
        coverage = {n: float(have[n][known].mean()) if known.any() else 0.0 for n in forecasts}
        common = known.copy()
        for n in forecasts:
            if coverage[n] >= MIN_COVERAGE:
                common &= have[n]
        for name, frame in forecasts.items():
            if col not in frame:
                continue
            mask = common if coverage[name] >= MIN_COVERAGE else known & have[name]
            frame[f"scored_h{h}"] = mask
            scores = point_metrics(frame.loc[mask, y_col], frame.loc[mask, col], scale)
            rows.append(
                {
                    "model": name,
                    "kind": fitted[name].kind,
                    "horizon": h,
                    **scores,
                    "coverage": coverage[name],
                    "fit_s": timing[name][0],
                    "predict_s": timing[name][1],
                }
            )
    scores = pd.DataFrame(rows)
    for base in BASELINES:
        ref = scores.loc[scores["model"] == base].set_index("horizon")["mae"]
        scores[f"vs_{base}"] = scores["mae"] / scores["horizon"].map(ref)
    return Evaluation(scores=scores, forecasts=forecasts, models=fitted, cutoff=cutoff)


def _pooled_seasonal_scale(grid, season: int) -> float:
    """Mean |y(t) - y(t - season)| over the training grid, pooled over entities (MASE's denominator)."""
    y = grid.frame["cpu_util"].to_numpy(dtype="float64", na_value=np.nan)
    diff = np.abs(y - grid.shift(y, season))
    diff = diff[~np.isnan(diff)]
    if not len(diff):
        return seasonal_scale(np.array([]), season)
    return float(diff.mean())


def evaluate_holdout(
    models: Mapping[str, Forecaster],
    metrics: pd.DataFrame,
    holdout: float = 0.2,
    horizons: tuple[int, ...] = DEFAULT_HORIZONS,
    progress: Callable[[str], None] | None = None,
    target: str = DEFAULT_RESOURCE,
) -> Evaluation:
    """Fit every candidate (plus the baselines) before the hold-out cut-off and score it after.

    Args:
        models: unfitted forecasters by name; each is cloned before fitting.
        metrics: canonical long metrics.
        holdout: share of the time span, at its end, held out.
        horizons: horizons scored.
        progress: called with one line per step; None logs them (``INFO``, ``ml_cloud_optimizer`` logger).
        target: the resource forecast and scored, ``cpu`` or ``mem`` (``ValueError`` for mem
            on metrics without memory).
    """
    view = as_target(metrics, target)
    cutoff = holdout_cutoff(view, holdout)
    return _evaluate_window(_with_baselines(models, horizons), view, cutoff, None, horizons, progress)


def rolling_origin(
    models: Mapping[str, Forecaster],
    metrics: pd.DataFrame,
    folds: int = 3,
    holdout: float = 0.3,
    horizons: tuple[int, ...] = DEFAULT_HORIZONS,
    progress: Callable[[str], None] | None = None,
    target: str = DEFAULT_RESOURCE,
) -> pd.DataFrame:
    """Rolling-origin backtest: the last ``holdout`` share split into ``folds`` consecutive test windows.

    Each fold refits on everything before its window (``TimeSeriesSplit`` over the distinct
    timestamps). Returns the folds' scores with a ``fold`` column. ``target`` as for
    ``evaluate_holdout``.
    """
    metrics = as_target(metrics, target)
    instants = pd.DatetimeIndex(metrics["ts"].unique()).sort_values()
    test_size = int(len(instants) * holdout) // folds
    if test_size < 1:
        raise UserInputError(
            f"rolling origin: {len(instants)} timestamps cannot make {folds} test windows; use fewer folds"
        )
    candidates = _with_baselines(models, horizons)
    out = []
    for fold, (_, test) in enumerate(TimeSeriesSplit(n_splits=folds, test_size=test_size).split(instants)):
        cutoff, end = instants[test[0]], instants[test[-1]]
        _say(progress, f"fold {fold + 1}/{folds}: test window {cutoff} .. {end}")
        scores = _evaluate_window(candidates, metrics, cutoff, end, horizons, progress).scores
        out.append(scores.assign(fold=fold, cutoff=cutoff))
    return pd.concat(out, ignore_index=True)
