"""Point-forecast error measures, each defined where the actuals allow it.

All take aligned arrays of actuals and forecasts in utilisation units and ignore pairs where
either is NaN. MAPE divides by the actual, so it is computed only over actuals of at least
``MAPE_MIN_ACTUAL`` and reported as NaN when fewer than half the actuals qualify (idle
machines would otherwise dominate it).
"""

from __future__ import annotations

import numpy as np

__all__ = ["MAPE_MIN_ACTUAL", "mae", "mape", "mase", "point_metrics", "rmse", "seasonal_scale", "wape"]

MAPE_MIN_ACTUAL = 0.01


def _pairs(actual, forecast) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(actual, dtype="float64")
    f = np.asarray(forecast, dtype="float64")
    ok = ~(np.isnan(a) | np.isnan(f))
    return a[ok], f[ok]


def mae(actual, forecast) -> float:
    """Mean absolute error."""
    a, f = _pairs(actual, forecast)
    return float(np.mean(np.abs(a - f))) if len(a) else float("nan")


def rmse(actual, forecast) -> float:
    """Root mean squared error."""
    a, f = _pairs(actual, forecast)
    return float(np.sqrt(np.mean((a - f) ** 2))) if len(a) else float("nan")


def wape(actual, forecast) -> float:
    """Weighted absolute percentage error: total absolute error over total actual (a ratio, not %)."""
    a, f = _pairs(actual, forecast)
    total = np.sum(np.abs(a))
    return float(np.sum(np.abs(a - f)) / total) if total > 0 else float("nan")


def mape(actual, forecast) -> float:
    """Mean absolute percentage error (a ratio) over actuals >= ``MAPE_MIN_ACTUAL``; NaN if most are below."""
    a, f = _pairs(actual, forecast)
    usable = np.abs(a) >= MAPE_MIN_ACTUAL
    if not len(a) or usable.mean() < 0.5:
        return float("nan")
    return float(np.mean(np.abs(a[usable] - f[usable]) / np.abs(a[usable])))


def seasonal_scale(values: np.ndarray, season: int) -> float:
    """In-sample MAE of the seasonal naive forecast: the denominator of MASE.

    ``values`` is one entity's series on its regular grid (NaN for missing slots).
    """
    v = np.asarray(values, dtype="float64")
    if len(v) <= season:
        return float("nan")
    diff = np.abs(v[season:] - v[:-season])
    diff = diff[~np.isnan(diff)]
    return float(diff.mean()) if len(diff) else float("nan")


def mase(actual, forecast, scale: float) -> float:
    """Mean absolute scaled error: MAE over the training window's seasonal-naive MAE ``scale``."""
    if not scale or np.isnan(scale):
        return float("nan")
    return mae(actual, forecast) / scale


def point_metrics(actual, forecast, scale: float | None = None) -> dict[str, float]:
    """MAE, RMSE, WAPE, MAPE and (given ``scale``) MASE of one forecast, plus the pair count ``n``."""
    a, f = _pairs(actual, forecast)
    return {
        "mae": mae(a, f),
        "rmse": rmse(a, f),
        "wape": wape(a, f),
        "mape": mape(a, f),
        "mase": mase(a, f, scale) if scale is not None else float("nan"),
        "n": len(a),
    }
