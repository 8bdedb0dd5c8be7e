"""Whether a fleet can be evaluated at all, said in one line before any model is fitted.

Real traces have gaps, short series and single snapshots. A problem of that kind used to show
minutes into training as a library error (``only 0 training rows``, a ``KeyError`` in the
leaderboard); here it is found first, by counting what each window needs: origins whose value
``max(horizons)`` steps later is known and lies in the same window. The fit part must hold at
least ``MIN_FIT_ORIGINS`` of them (what a tabular forecaster needs to train), the validation
window and the hold-out at least one. ``mlco train``, the benchmark, the pipeline's split and
``evaluate_holdout`` all run it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ml_cloud_optimizer.data.schema import STEP, DataValidationError
from ml_cloud_optimizer.evaluation.backtest import VALIDATION, holdout_cutoff
from ml_cloud_optimizer.features.targets import TARGET, make_targets, target_column
from ml_cloud_optimizer.horizons import DEFAULT_HORIZONS

__all__ = ["MIN_FIT_ORIGINS", "check_evaluable"]

MIN_FIT_ORIGINS = 100


def check_evaluable(
    metrics: pd.DataFrame,
    holdout: float = 0.2,
    validation: float = VALIDATION,
    horizons: tuple[int, ...] = DEFAULT_HORIZONS,
) -> None:
    """Raise a one-line ``DataValidationError`` (what is missing, where, what to do) if ``metrics`` cannot be evaluated.

    Args:
        metrics: canonical long metrics (as the models see them: the target in ``cpu_util``).
        holdout: the hold-out share of the time span.
        validation: the validation share of the training span (0: no validation window).
        horizons: the horizons forecast; the longest decides.
    """
    if metrics.empty:
        raise DataValidationError("no metrics rows: nothing to train on")
    values = metrics[TARGET].notna()
    if not values.any():
        raise DataValidationError(f"no {TARGET} values: every row is empty")
    stamps = metrics.loc[values, "ts"]
    if stamps.nunique() < 2:
        raise DataValidationError(
            f"all {int(values.sum()):,} rows with a value share one timestamp ({stamps.iloc[0]}):"
            " forecasting needs a history and a future; pass a time series, not a snapshot"
        )
    h = max(int(x) for x in horizons)
    ahead = pd.Timedelta(STEP * h)
    cutoff = holdout_cutoff(metrics, holdout)
    windows = [("hold-out", cutoff, None)]
    fit_end = cutoff
    if validation:
        fit_end = holdout_cutoff(metrics.loc[metrics["ts"] < cutoff], validation)
        windows.insert(0, ("validation window", fit_end, cutoff))
    known = make_targets(metrics, (h,))
    ts, y = known["ts"], known[target_column(h)].notna().to_numpy()

    def origins(start, end) -> int:
        inside = y.copy() if start is None else y & (ts >= start).to_numpy()
        if end is not None:
            inside &= (ts + ahead < end).to_numpy()
        return int(np.count_nonzero(inside))

    fit = origins(None, fit_end)
    if fit < MIN_FIT_ORIGINS:
        raise DataValidationError(
            f"too little history: {fit} origins before {fit_end} have a value {h} steps ({ahead}) later"
            f" (need {MIN_FIT_ORIGINS}); each entity needs runs of more than {h} consecutive samples -"
            " pass longer series or fewer entities with gaps"
        )
    for name, start, end in windows:
        if origins(start, end) == 0:
            until = f" .. {end}" if end is not None else " on"
            raise DataValidationError(
                f"the {name} ({start}{until}) holds no origin with a value {h} steps ({ahead}) later:"
                f" no entity has more than {h} consecutive samples in it - lower --holdout or pass longer series"
            )
