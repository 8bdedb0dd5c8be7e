"""Fit one forecaster of a given kind on the training window, with the run's budget, and save it.

The evaluate task chooses the champion on a validation window at the end of the training
window (``evaluation.holdout``), but receives the models fitted on all of it, which have seen
that window. So each training task first fits a copy on the rows before the window and
forecasts the window with it; those forecasts travel beside the model (``VALIDATION_FILE``),
and the evaluate task judges every candidate on them. Then the model is fitted on the whole
training window, as before.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.base import clone

from ml_cloud_optimizer.data.schema import STEP, Fleet
from ml_cloud_optimizer.evaluation.backtest import VALIDATION, holdout_cutoff
from ml_cloud_optimizer.features import tabular
from ml_cloud_optimizer.features.tabular import build_features
from ml_cloud_optimizer.horizons import check_horizons
from ml_cloud_optimizer.logs import quiet_optuna
from ml_cloud_optimizer.models.base import Forecaster
from ml_cloud_optimizer.models.registry import build_forecaster, forecaster_entry, kinds
from ml_cloud_optimizer.models.tabular_base import TabularForecaster

__all__ = [
    "FIT_INFO",
    "SEQUENCE_KINDS",
    "TABULAR_KINDS",
    "THREADS_ENV",
    "VALIDATION_FILE",
    "load_validation",
    "save_model",
    "train_forecaster",
    "validation_forecasts",
]

_log = logging.getLogger(__name__)

# Threads a training task may use; unset (a cluster pod sized for the task) keeps the models' defaults.
THREADS_ENV = "MLCO_THREADS"
# Written beside the model's own files: what evaluation's tie rule (the faster fit) needs to know.
FIT_INFO = "fit.json"
# Written beside the model's own files: its forecasts of the validation window, from a fit before it.
VALIDATION_FILE = "validation.parquet"

TABULAR_KINDS = kinds("tabular")
SEQUENCE_KINDS = kinds("sequence")


def train_forecaster(
    kind: str,
    train: Fleet,
    *,
    horizons,
    trials: int = 0,
    epochs: int | None = None,
    seed: int = 0,
    validation: float = VALIDATION,
) -> Forecaster:
    """Fit the forecaster ``kind`` on ``train``, after forecasting its validation window from a fit before it.

    The horizons are checked first, so a run set up without the headline horizon (in the
    KFP UI, say) fails at its first training task instead of after every model has trained.

    Args:
        kind: one of ``TABULAR_KINDS`` or ``SEQUENCE_KINDS``.
        train: the training window.
        horizons: steps ahead (whole numbers; KFP may hand them over as floats).
        trials: Optuna trials for a tabular model (0: library defaults).
        epochs: most epochs for a sequence model (None: its default).
        seed: the model's seed.
        validation: the validation share of ``train``'s span (0: no validation forecasts).

    Returns:
        The fitted model; ``validation_forecasts_`` holds its validation forecasts (or None),
        which ``save_model`` writes.
    """
    forecaster_entry(kind)
    horizons = check_horizons(horizons)
    threads = int(os.environ[THREADS_ENV]) if os.environ.get(THREADS_ENV) else None
    model = build_forecaster(kind, horizons=horizons, trials=trials, epochs=epochs, seed=seed, threads=threads or None)
    if trials:
        quiet_optuna()
    model.validation_forecasts_ = validation_forecasts(model, train.metrics, validation) if validation else None
    model.fit(train.metrics, train.entities)  # sets fit_seconds_
    _log.info("trained %s on %s rows in %.1f s", kind, f"{len(train.metrics):,}", model.fit_seconds_)
    return model


def save_model(model: Forecaster, directory: str | Path) -> dict:
    """Save ``model`` (its own format plus metadata.json) and return what the artifact's metadata shows."""
    model.save(directory)
    forecasts = getattr(model, "validation_forecasts_", None)
    if forecasts is not None:
        forecasts.to_parquet(Path(directory) / VALIDATION_FILE, index=False)
    summary = {
        "kind": model.kind,
        "horizons": [int(h) for h in model.horizons],
        "min_history": int(model.min_history),
        "fit_seconds": round(float(getattr(model, "fit_seconds_", 0.0)), 2),
    }
    (Path(directory) / FIT_INFO).write_text(json.dumps(summary))
    return summary


def validation_forecasts(template: Forecaster, metrics: pd.DataFrame, validation: float = VALIDATION) -> pd.DataFrame:
    """Forecasts of every origin in the last ``validation`` share of ``metrics``' span, by a clone fitted before it.

    The cut-off is ``evaluation``'s (``holdout_cutoff`` of the training rows), so the evaluate
    task, which computes it from the same rows, scores exactly this window.
    """
    cutoff = holdout_cutoff(metrics, validation)
    early = clone(template).fit(metrics.loc[metrics["ts"] < cutoff])
    lookback = int(getattr(early, "full_history", early.min_history)) + max(early.horizons) + 1
    window = metrics.loc[metrics["ts"] >= cutoff - lookback * STEP]
    _log.info("forecast the validation window from %s with a fit before it", f"{cutoff:%Y-%m-%d %H:%M}")
    if isinstance(early, TabularForecaster):
        return _tabular_window(early, window, cutoff)
    frame = early.predict(window)
    return frame.loc[frame["ts"] >= cutoff].reset_index(drop=True)


def _tabular_window(model: TabularForecaster, window: pd.DataFrame, cutoff: pd.Timestamp) -> pd.DataFrame:
    """``model.predict(window)`` from ``cutoff`` on, built and forecast a block of whole entities at a time.

    The lookback before ``cutoff`` only feeds the windows, so its rows are not kept; which
    origins have ``min_history`` behind them is judged on the whole ``window``, as ``predict``
    judges it. A forecast reads its own row only, so blocks (about ``tabular.BLOCK_ROWS`` input
    rows each) give the same numbers while the feature rows held stay bounded by the block.
    """
    ts = pd.to_datetime(window["ts"], utc=True).dt.floor(pd.Timedelta(model.spec_.step))
    codes = pd.factorize(window["entity_id"], use_na_sentinel=False)[0]
    first = ts.groupby(codes, sort=False).transform("min")
    wanted = (ts >= cutoff).to_numpy() & (((ts - first) // STEP).to_numpy() >= model.min_history - 1)
    block_of = (np.cumsum(np.bincount(codes, minlength=1)) - 1) // tabular.BLOCK_ROWS
    order = np.argsort(block_of[codes], kind="stable")
    cuts = np.flatnonzero(np.diff(block_of[codes][order])) + 1
    frames = []
    for members in np.split(order, cuts):
        rows = np.flatnonzero(wanted[members])
        if len(rows):
            frames.append(model.predict_features(build_features(window.iloc[members], model.spec_, rows=rows)))
    if not frames:
        return model.predict_features(build_features(window, model.spec_, rows=np.flatnonzero(wanted)))
    forecasts = pd.concat(frames) if len(frames) > 1 else frames[0]
    return forecasts.sort_values(["entity_id", "ts"], kind="stable").reset_index(drop=True)


def load_validation(directory: str | Path) -> pd.DataFrame | None:
    """The validation forecasts saved beside a model, or None (a model saved without them)."""
    path = Path(directory) / VALIDATION_FILE
    return pd.read_parquet(path) if path.exists() else None
