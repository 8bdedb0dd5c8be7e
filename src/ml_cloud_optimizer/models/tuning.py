"""Optuna search of a tabular forecaster's booster parameters on time-series folds.

Folds cut the timeline, never the rows: ``TimeSeriesSplit`` runs over the distinct origin
timestamps, with a gap of ``horizon`` steps so that no training target falls inside the
validation fold, and every entity is split at the same instant. A trial scores the mean
absolute error of its forecasts (in utilisation units) over the folds; the search stops at
``n_trials`` or after ``timeout`` seconds, whichever comes first (0 means no limit on that side,
and at least one must be set).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.model_selection import TimeSeriesSplit

__all__ = ["time_folds", "tune_tabular"]


def time_folds(ts: pd.Series, n_splits: int = 3, gap: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """(train rows, validation rows) position pairs that split ``ts`` by time, expanding window."""
    values = pd.to_datetime(ts, utc=True).to_numpy()
    instants = np.unique(values)
    if len(instants) < n_splits + 1 + gap:
        raise ValueError(f"time folds: {len(instants)} distinct timestamps cannot make {n_splits} folds")
    folds = []
    for train_i, valid_i in TimeSeriesSplit(n_splits=n_splits, gap=gap).split(instants):
        train_rows = np.flatnonzero(values <= instants[train_i[-1]])
        valid_rows = np.flatnonzero((values >= instants[valid_i[0]]) & (values <= instants[valid_i[-1]]))
        folds.append((train_rows, valid_rows))
    return folds


def tune_tabular(model, X, y, anchor, ts: pd.Series, horizon: int, n_splits: int = 3):
    """Search ``model``'s booster parameters for the ``horizon`` p50 forecast; returns the Optuna study.

    ``model`` is a ``TabularForecaster``: its ``base_params``, ``search_space``, ``fit_booster``
    and ``predict_booster`` are used, so the trials train exactly what ``fit`` will and score
    forecasts as ``predict`` makes them (target transform and ``clip_forecast`` included);
    ``X``, ``y`` and ``anchor`` are its training rows.
    """
    import optuna

    folds = time_folds(ts, n_splits=n_splits, gap=horizon)
    base = model.base_params()

    def objective(trial) -> float:
        params = {**base, **model.search_space(trial)}
        errors = []
        for train_rows, valid_rows in folds:
            booster, _ = model.fit_booster(
                params, "p50", X[train_rows], y[train_rows], anchor[train_rows], ts.iloc[train_rows], horizon
            )
            forecast = model.predict_booster(booster, X[valid_rows], anchor[valid_rows])
            errors.append(float(np.mean(np.abs(forecast - y[valid_rows]))))
        return float(np.mean(errors))

    study = optuna.create_study(direction="minimize", sampler=optuna.samplers.TPESampler(seed=model.random_state))
    study.enqueue_trial(base)  # trial 0: the defaults, so tuning can only match or improve on them
    study.optimize(objective, n_trials=model.n_trials or None, timeout=model.timeout or None)
    return study
