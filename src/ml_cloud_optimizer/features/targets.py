"""What the models learn to predict: future ``cpu_util`` and the coming-peak label.

Both look forward on the regular grid (see ``grid``), so a missing future slot gives NaN
(or NA) rather than the value of some later row.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from ml_cloud_optimizer.data.schema import STEP
from ml_cloud_optimizer.features.grid import to_grid
from ml_cloud_optimizer.horizons import DEFAULT_HORIZONS, PEAK_HORIZON

__all__ = ["TARGET", "make_targets", "peak_labels", "peak_thresholds", "target_column"]

TARGET = "cpu_util"


def target_column(horizon: int) -> str:
    """Name of the target column ``horizon`` steps ahead, e.g. ``y_h12``."""
    return f"y_h{horizon}"


def make_targets(
    metrics: pd.DataFrame, horizons: Sequence[int] = DEFAULT_HORIZONS, step: pd.Timedelta = STEP
) -> pd.DataFrame:
    """``cpu_util`` at ``ts + h`` steps for each horizon ``h``, as ``y_h{h}``; NaN where that slot is absent.

    Rows align with ``metrics`` (same index and order), with ``entity_id`` and ``ts``.
    """
    grid = to_grid(metrics[["entity_id", "ts", TARGET]], step)
    values = grid.frame[TARGET].to_numpy(dtype="float64", na_value=np.nan)
    out = grid.frame[["entity_id", "ts"]].copy()
    for h in horizons:
        out[target_column(h)] = grid.shift(values, -int(h))
    return grid.observed_rows(out, metrics.index)


def peak_thresholds(reference: pd.DataFrame, quantile: float = 0.95) -> pd.Series:
    """Each entity's ``quantile`` of ``cpu_util`` over ``reference`` (the training window), by entity_id."""
    return reference.groupby("entity_id", observed=True)[TARGET].quantile(quantile)


def peak_labels(
    metrics: pd.DataFrame,
    horizon: int = PEAK_HORIZON,
    threshold: float | Mapping | pd.Series | None = None,
    quantile: float = 0.95,
    reference: pd.DataFrame | None = None,
    step: pd.Timedelta = STEP,
) -> pd.Series:
    """Whether the next ``horizon`` steps' peak ``cpu_util`` exceeds the entity's threshold.

    The threshold is ``threshold`` when given (one number, or one per entity_id), else each
    entity's ``quantile`` of ``cpu_util`` over ``reference``. Pass the training window as
    ``reference``: computing the quantile on the evaluated rows would leak their future.
    Without ``reference`` the thresholds come from ``metrics`` itself (fine for a training set).
    Entities absent from ``reference`` get the quantile pooled over all of ``reference``.

    Returns:
        A nullable ``boolean`` Series aligned with ``metrics`` named ``peak_h{horizon}``;
        NA where no slot of the next ``horizon`` steps is present.
    """
    grid = to_grid(metrics[["entity_id", "ts", TARGET]], step)
    values = pd.Series(grid.frame[TARGET].to_numpy(dtype="float64", na_value=np.nan))
    window_max = grid.group(values).rolling(int(horizon), min_periods=1).max().to_numpy()
    future_max = grid.shift(window_max, -int(horizon))

    entity = grid.frame["entity_id"]
    if threshold is None:
        reference = metrics if reference is None else reference
        per_entity = peak_thresholds(reference, quantile)
        fallback = float(reference[TARGET].quantile(quantile))
        limit = entity.map(per_entity).astype("float64").fillna(fallback).to_numpy()
    elif isinstance(threshold, (Mapping, pd.Series)):
        limit = entity.map(pd.Series(threshold)).astype("float64").to_numpy()
        if np.isnan(limit).any():
            missing = entity[np.isnan(limit)].iloc[0]
            raise ValueError(f"peak threshold: no value for entity {missing!r}")
    else:
        limit = np.full(len(entity), float(threshold))

    labels = pd.array(future_max > limit, dtype="boolean")
    labels[np.isnan(future_max)] = pd.NA
    out = pd.DataFrame({"label": labels})
    return grid.observed_rows(out, metrics.index)["label"].rename(f"peak_h{horizon}")
