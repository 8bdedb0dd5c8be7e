"""The p90 forecast's conformal margin, fitted on the validation window and carried by the model.

A quantile booster's p90 covers the actual about 90% of the time on the rows it was fitted on,
and less on later ones: load drifts, and early stopping favours the p50's rounds. Split
conformal prediction repairs that with one number per horizon: the margin that makes the p90
cover the validation window's actuals at the intended rate. The margin is fitted there, on
forecasts of a model that never saw the window, and is then a parameter of the model
(``p90_margin``): the refit before the hold-out keeps it, the hold-out reports the coverage it
gives (``p90_cover``) and the exported champion forecasts with it. A model without such a
parameter (the recurrent ones, the baselines) is left as it is.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from sklearn.base import clone

from ml_cloud_optimizer.features.targets import target_column
from ml_cloud_optimizer.models.base import Forecaster, clip_forecast, forecast_column

__all__ = ["P90", "apply_margin", "conformal_margin", "fit_margins", "takes_margin", "unwrap", "with_margin"]

P90 = 0.9
_MIN_ROWS = 50  # fewer validation rows than this give no margin (0): too few to place a 90th percentile


def unwrap(model: Forecaster) -> Forecaster:
    """The model itself, out of a ``PrefittedForecaster`` (``prefitted``) when it is wrapped in one."""
    return model.model if getattr(model, "prefitted", False) else model


def takes_margin(model: Forecaster) -> bool:
    """Whether ``model`` (or the one it wraps) has a ``p90_margin`` parameter."""
    return "p90_margin" in unwrap(model).get_params(deep=False)


def conformal_margin(actual, p90, level: float = P90) -> float:
    """The split-conformal margin: the ``level`` quantile of ``actual - p90``, with the finite-sample correction.

    Adding it to every p90 makes the p90 cover at least ``level`` of a window exchangeable with
    the one it was fitted on. NaN pairs are ignored; with fewer than 50 pairs the margin is 0.
    """
    a, q = np.asarray(actual, dtype="float64"), np.asarray(p90, dtype="float64")
    residual = (a - q)[~(np.isnan(a) | np.isnan(q))]
    n = len(residual)
    if n < _MIN_ROWS:
        return 0.0
    rank = min(1.0, math.ceil((n + 1) * level) / n)
    return float(np.quantile(residual, rank, method="higher"))


def apply_margin(frame: pd.DataFrame, margins: dict[int, float]) -> None:
    """Add each horizon's margin to ``frame``'s p90 column in place (clipped, kept at or above the p50)."""
    for h, margin in margins.items():
        p50, p90 = forecast_column(h), forecast_column(h, "p90")
        if p90 in frame:
            raised = clip_forecast(frame[p90].to_numpy(dtype="float64") + margin)
            frame[p90] = np.fmax(raised, frame[p50].to_numpy(dtype="float64"))


def fit_margins(forecasts: dict[str, pd.DataFrame], models: dict[str, Forecaster], horizons) -> dict[str, dict]:
    """Each margin-taking model's margin per horizon from its validation frame; the frames get them in place.

    The rows are those the frame was scored on (``scored_h{h}``), so every model is calibrated
    on the rows it is judged on.
    """
    margins: dict[str, dict] = {}
    for name, frame in forecasts.items():
        if name not in models or not takes_margin(models[name]):
            continue
        found = {}
        for h in horizons:
            p90, scored = forecast_column(h, "p90"), f"scored_h{h}"
            if p90 in frame and scored in frame:
                rows = frame[scored].to_numpy(dtype=bool)
                found[int(h)] = conformal_margin(frame.loc[rows, target_column(h)], frame.loc[rows, p90])
        if found:
            margins[name] = found
            apply_margin(frame, found)
    return margins


def with_margin(model: Forecaster, margin: dict | None) -> Forecaster:
    """``model`` forecasting with ``margin``: a clone of a template, or the prefitted model itself.

    A prefitted model is fitted already: its margin is set in place (the margin only changes
    what it forecasts, not what it learnt).
    """
    if not margin:
        return model
    if getattr(model, "prefitted", False):
        unwrap(model).set_params(p90_margin=margin)
        return model
    return clone(model).set_params(p90_margin=margin)
