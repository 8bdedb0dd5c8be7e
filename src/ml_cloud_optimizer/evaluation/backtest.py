"""Honest evaluation by time: windows cut at one global instant, and rolling origins.

In a window every candidate is fitted on the rows before the cut-off and forecasts every origin
after it from the history it would have had (features look back across the cut-off, never
forward). All candidates are then scored on the same rows: the origins with a known actual that
every candidate could forecast. Persistence and seasonal naive are always among them, so every
score has its baselines measured on exactly the same rows.

The hold-out evaluation that chooses a champion (``evaluation.holdout``) runs two such windows:
a validation window cut from the end of the training span, then the hold-out.

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
    "Window",
    "forecast_window",
    "holdout_cutoff",
    "rolling_origin",
    "say",
    "score_frame",
    "score_window",
    "time_split",
    "validation_cutoff",
    "with_baselines",
    "with_ratios",
]

_log = logging.getLogger(__name__)

BASELINES = ("persistence", "seasonal_naive")
SEASON = 288
MIN_COVERAGE = 0.5  # a candidate forecasting less of the hold-out is scored alone, not allowed to shrink the rest
VALIDATION = 0.2  # share of the training span, at its end, that candidates are chosen on


def holdout_cutoff(metrics: pd.DataFrame, holdout: float = 0.2) -> pd.Timestamp:
    """The global instant after which the last ``holdout`` share of the time span lies (on the grid)."""
    if not 0 < holdout < 1:
        raise UserInputError(f"holdout {holdout}: expected a share between 0 and 1")
    if metrics.empty:
        raise UserInputError("holdout: no metrics rows")
    start, end = metrics["ts"].min(), metrics["ts"].max()
    return (start + (end - start) * (1 - holdout)).ceil(STEP)


def validation_cutoff(metrics: pd.DataFrame, holdout: float = 0.2, validation: float = VALIDATION) -> pd.Timestamp:
    """Start of the validation window: the last ``validation`` share of the span before the hold-out.

    Computed from the training rows alone, so a training task that holds only them finds the
    same instant (``pipeline_steps.training``).
    """
    train = metrics.loc[metrics["ts"] < holdout_cutoff(metrics, holdout)]
    return holdout_cutoff(train, validation)


def time_split(metrics: pd.DataFrame, holdout: float = 0.2) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(train, test): rows before and from one global cut-off, the test span being the last ``holdout`` share."""
    cutoff = holdout_cutoff(metrics, holdout)
    before = metrics["ts"] < cutoff
    return metrics.loc[before], metrics.loc[~before]


@dataclass
class Evaluation:
    """What one evaluation produced.

    Attributes:
        scores: one row per (model, horizon): mae, rmse, wape, mape, mase, n, p90_cover,
            vs_persistence, vs_seasonal_naive, coverage, fit_s, predict_s on the hold-out; with a
            validation window also ``val_``-prefixed mae, n, p90_cover, vs_persistence and
            vs_seasonal_naive (NaN for a model left out of it), and ``eligible`` (False for a
            reference, or a blend that did not beat the best single model on validation).
        forecasts: hold-out forecast frame of each model: one row per hold-out origin with the
            actuals ``y_h{h}``, the forecasts, and ``scored_h{h}`` marking the rows scored.
        models: the fitted candidates, by name (fitted before the hold-out).
        cutoff: start of the hold-out window.
        validation_cutoff: start of the validation window, or None without one.
        validation_forecasts: the validation window's frames, as ``forecasts``.
        notes: one line per choice made on validation (blend, p90 margins), for the report.
    """

    scores: pd.DataFrame
    forecasts: dict[str, pd.DataFrame] = field(default_factory=dict)
    models: dict[str, Forecaster] = field(default_factory=dict)
    cutoff: pd.Timestamp | None = None
    validation_cutoff: pd.Timestamp | None = None
    validation_forecasts: dict[str, pd.DataFrame] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def with_baselines(models: Mapping[str, Forecaster], horizons) -> dict[str, Forecaster]:
    """Persistence and seasonal naive, then ``models``: every evaluation scores its baselines on the same rows."""
    out = {
        "persistence": PersistenceForecaster(horizons=horizons),
        "seasonal_naive": SeasonalNaiveForecaster(horizons=horizons, season=SEASON),
    }
    out.update(models)
    return out


def say(progress, message: str) -> None:
    """``progress(message)``, or an INFO log line when there is no ``progress``."""
    if progress is None:
        _log.info("%s", message)
    else:
        progress(message)


@dataclass
class Window:
    """Forecasts of one window: every model fitted before ``cutoff`` and forecasting the origins from it.

    Every frame in ``forecasts`` has the rows of ``actual`` in its order, so frames can be
    combined row by row (``evaluation.blend``).
    """

    actual: pd.DataFrame
    forecasts: dict[str, pd.DataFrame]
    fitted: dict[str, Forecaster]
    timing: dict[str, tuple[float, float]]
    scale: float
    cutoff: pd.Timestamp


def forecast_window(models, metrics, cutoff, horizons, progress, validation: bool = False) -> Window:
    """Fit each model on the rows of ``metrics`` before ``cutoff`` and forecast every origin from it.

    Actuals come from ``metrics`` alone: pass only the rows before the hold-out for a
    validation window, and no target inside the hold-out is ever read. A prefitted model
    (``prefitted``, see ``pipeline_steps.scoring``) is not fitted: in a validation window it
    brings the forecasts it made there (``validation_forecasts``) from a fit before ``cutoff``,
    or is left out when it has none, since its own fit may cover the window.
    """
    train = metrics.loc[metrics["ts"] < cutoff]
    actual = make_targets(metrics, horizons)
    actual = actual.loc[actual["ts"] >= cutoff].reset_index(drop=True)
    grid = to_grid(train[["entity_id", "ts", "cpu_util"]], STEP)
    scale = _pooled_seasonal_scale(grid, SEASON)

    forecasts, fitted, timing = {}, {}, {}
    for name, template in models.items():
        if validation and getattr(template, "prefitted", False):
            given = getattr(template, "validation_forecasts", None)
            if given is None:
                say(progress, f"[{name}] no validation forecasts: left out of the validation window")
                continue
            forecasts[name] = actual.merge(given.loc[given["ts"] >= cutoff], on=["entity_id", "ts"], how="left")
            fitted[name], timing[name] = template, (float("nan"), float("nan"))
            continue
        model = clone(template)
        say(progress, f"[{name}] fitting on {len(train):,} rows before {cutoff}")
        started = time.perf_counter()
        model.fit(train)
        fit_s = time.perf_counter() - started
        lookback = int(getattr(model, "full_history", model.min_history)) + max(horizons) + 1
        history = metrics.loc[metrics["ts"] >= cutoff - lookback * STEP]
        started = time.perf_counter()
        frame = model.predict(history)
        predict_s = time.perf_counter() - started
        frame = frame.loc[frame["ts"] >= cutoff]
        forecasts[name] = actual.merge(frame, on=["entity_id", "ts"], how="left")
        fitted[name], timing[name] = model, (fit_s, predict_s)
        say(progress, f"[{name}] fitted in {fit_s:.1f}s, forecast {len(frame):,} origins in {predict_s:.1f}s")
    return Window(actual, forecasts, fitted, timing, scale, cutoff)


def score_frame(frame: pd.DataFrame, horizon: int, mask: np.ndarray, scale: float) -> dict[str, float]:
    """Point metrics of one forecast frame's ``mask`` rows at ``horizon``, and how often the p90 covered the actual."""
    col, y_col, p90 = forecast_column(horizon), target_column(horizon), forecast_column(horizon, "p90")
    scores = point_metrics(frame.loc[mask, y_col], frame.loc[mask, col], scale)
    covered = float("nan")
    if p90 in frame and mask.any():
        y, q = frame.loc[mask, y_col].to_numpy(dtype="float64"), frame.loc[mask, p90].to_numpy(dtype="float64")
        known = ~np.isnan(q)
        covered = float(np.mean(y[known] <= q[known])) if known.any() else float("nan")
    return {**scores, "p90_cover": covered}


def score_window(window: Window, horizons) -> pd.DataFrame:
    """Every model of ``window`` scored on the same rows: origins with a known actual that all could forecast.

    A model forecasting less than ``MIN_COVERAGE`` of them is scored alone on its own rows
    rather than shrinking everyone's. Each frame gets ``scored_h{h}``, the rows its scores use.
    """
    actual, forecasts = window.actual, window.forecasts
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
            rows.append(
                {
                    "model": name,
                    "kind": window.fitted[name].kind,
                    "horizon": h,
                    **score_frame(frame, h, mask, window.scale),
                    "coverage": coverage[name],
                    "fit_s": window.timing[name][0],
                    "predict_s": window.timing[name][1],
                }
            )
    return with_ratios(pd.DataFrame(rows))


def with_ratios(scores: pd.DataFrame) -> pd.DataFrame:
    """``scores`` with ``vs_persistence`` and ``vs_seasonal_naive``: each MAE over the baseline's at its horizon."""
    for base in BASELINES:
        ref = scores.loc[scores["model"] == base].set_index("horizon")["mae"]
        scores[f"vs_{base}"] = scores["mae"] / scores["horizon"].map(ref)
    return scores


def _evaluate_window(models, metrics, cutoff, end, horizons, progress) -> Evaluation:
    window = metrics.loc[metrics["ts"] <= end] if end is not None else metrics
    forecasts = forecast_window(models, window, cutoff, horizons, progress)
    scores = score_window(forecasts, horizons)
    return Evaluation(scores=scores, forecasts=forecasts.forecasts, models=forecasts.fitted, cutoff=cutoff)


def _pooled_seasonal_scale(grid, season: int) -> float:
    """Mean |y(t) - y(t - season)| over the training grid, pooled over entities (MASE's denominator)."""
    y = grid.frame["cpu_util"].to_numpy(dtype="float64", na_value=np.nan)
    diff = np.abs(y - grid.shift(y, season))
    diff = diff[~np.isnan(diff)]
    if not len(diff):
        return seasonal_scale(np.array([]), season)
    return float(diff.mean())


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
    candidates = with_baselines(models, horizons)
    out = []
    for fold, (_, test) in enumerate(TimeSeriesSplit(n_splits=folds, test_size=test_size).split(instants)):
        cutoff, end = instants[test[0]], instants[test[-1]]
        say(progress, f"fold {fold + 1}/{folds}: test window {cutoff} .. {end}")
        scores = _evaluate_window(candidates, metrics, cutoff, end, horizons, progress).scores
        out.append(scores.assign(fold=fold, cutoff=cutoff))
    return pd.concat(out, ignore_index=True)
