"""Which target transform and feature set a tabular forecaster uses, chosen per dataset on validation.

Two choices decide most of a boosted forecaster's accuracy on cloud load, and no one answer
fits every fleet:

* the target: the change from the last value (``delta``) suits bursty, random-walk-like load,
  where persistence is the thing to beat and the model should only depart from it where the
  data say so; the level (``level``) suits load that reverts to a mean, which a tree cannot
  express as a change without learning ``mean - y(t)`` piece by piece;
* the features (``features.sets``): the rich set, or plain lags of the raw level.

On the Bitbrains trace the change on the rich set wins; on a fleet of another provider a plain
model on lags of the level did better, so a fixed choice is a method shaped on one trace.
``choose_config`` tries each allowed pair on the forecaster's own validation window - the last
``validation_fraction`` of the time span it is given, one global cut-off, with every training
target ending ``horizon`` steps before it (``validation_split``) - and keeps the pair with the
lowest absolute error of the level at the headline horizon. It sees only the rows ``fit`` is
given, so inside an evaluation the choice never reads the window it is scored on.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ml_cloud_optimizer.data.schema import STEP
from ml_cloud_optimizer.features.sets import FEATURE_SETS, spec_for
from ml_cloud_optimizer.features.tabular import FeatureSpec, build_feature_rows
from ml_cloud_optimizer.features.targets import make_targets, target_column
from ml_cloud_optimizer.horizons import HEADLINE_HORIZON
from ml_cloud_optimizer.models.base import clip_forecast

__all__ = [
    "AUTO",
    "TARGET_MODES",
    "Choice",
    "TrainingRows",
    "choose_config",
    "nanoseconds",
    "options",
    "training_rows",
    "validation_split",
]

AUTO = "auto"
TARGET_MODES = ("delta", "level")
# Relative margin within which two configurations tie; the tie goes to the earlier, simpler one.
TIE = 0.002
_MIN_FIT, _MIN_VALID = 50, 20


@dataclass
class Choice:
    """The configuration kept and the validation MAE of every one tried (empty when nothing was tried).

    ``features`` are the feature rows built for the choice under ``spec`` (the rows of the
    ``TrainingRows`` given, in their order), which ``fit`` reuses when the choice falls on that
    spec (None when nothing was built).
    """

    target_mode: str
    feature_set: str
    scores: dict[str, float] = field(default_factory=dict)
    features: pd.DataFrame | None = field(default=None, repr=False)
    spec: object = field(default=None, repr=False)


@dataclass
class TrainingRows:
    """The rows a fit trains on, chosen from the targets and the current value before any feature is built.

    Choosing them first lets the features be built for these rows alone (``build_feature_rows``):
    at most ``max_train_rows`` per horizon, whatever the fleet's size.

    Attributes:
        positions: ascending positions in ``metrics`` of the rows some horizon trains on.
        rows: per horizon, the rows ``TabularForecaster._training_rows`` chooses on the whole
            frame, as positions into ``positions``.
        y: per horizon, the target at ``positions`` (float64).
    """

    positions: np.ndarray
    rows: dict[int, np.ndarray]
    y: dict[int, np.ndarray]


def training_rows(model, metrics: pd.DataFrame, spec: FeatureSpec) -> TrainingRows:
    """The ``TrainingRows`` of ``model``'s horizons on ``metrics``, built with ``spec``'s target and grid step.

    The current value and the time are read from ``metrics`` as ``build_features`` writes them
    (the target as float64, the time snapped to the grid), so the rows are the ones a fit on
    the whole feature frame chooses.
    """
    if spec.target not in metrics.columns:
        raise ValueError(f"build_features: metrics have no {spec.target!r} column")
    targets = make_targets(metrics, tuple(model.horizons))
    anchor = metrics[spec.target].to_numpy(dtype="float64", na_value=np.nan)
    ts = pd.to_datetime(metrics["ts"], utc=True).dt.floor(pd.Timedelta(spec.step))
    ys = {int(h): targets[target_column(h)].to_numpy(dtype="float64", na_value=np.nan) for h in model.horizons}
    del targets
    chosen = {h: model._training_rows(y, anchor, ts) for h, y in ys.items()}
    positions = np.unique(np.concatenate([np.empty(0, dtype=np.int64), *chosen.values()]))
    rows = {h: np.searchsorted(positions, r) for h, r in chosen.items()}
    return TrainingRows(positions, rows, {h: y[positions] for h, y in ys.items()})


def nanoseconds(ts: pd.Series) -> np.ndarray:
    """Timestamps as int64 nanoseconds since the epoch (UTC)."""
    return pd.to_datetime(ts, utc=True).dt.tz_convert(None).to_numpy(dtype="datetime64[ns]").view("int64")


def validation_split(t: np.ndarray, fraction: float, horizon: int) -> tuple[np.ndarray, np.ndarray]:
    """(fit rows, validation rows) as masks over nanosecond times ``t``: one cut-off at the last ``fraction``.

    A fit row's target (``horizon`` steps ahead) lies before the cut-off, so no fit target is
    inside the validation window.
    """
    start, end = t.min(), t.max()
    cut = start + (end - start) * (1 - fraction)
    return t + horizon * STEP.value < cut, t >= cut


def options(target_mode: str, feature_set: str) -> list[tuple[str, str]]:
    """The (target mode, feature set) pairs a forecaster's parameters allow; ``auto`` allows every one.

    Ordered simplest first (plain lags before the rich set, the change before the level), which
    is the order ties are broken in.
    """
    modes = TARGET_MODES if target_mode == AUTO else (target_mode,)
    sets = tuple(reversed(FEATURE_SETS)) if feature_set == AUTO else (feature_set,)
    return [(m, s) for s in sets for m in modes]


def choose_config(model, metrics: pd.DataFrame, picked: TrainingRows | None = None) -> Choice:
    """The (target mode, feature set) of ``model`` (a ``TabularForecaster``) that forecasts ``metrics`` best.

    Each allowed pair trains one p50 booster at the headline horizon with the model's
    parameters, early-stopped on the validation window, and is scored there by the MAE of
    the level (after ``clip_forecast``). With one pair allowed, or too few rows on either side
    of the cut-off, the first allowed pair is returned untried. ``picked`` are the fit's rows
    (``training_rows``; chosen here when not given): the features are built for them alone.
    """
    pairs = options(model.target_mode, model.feature_set)
    if len(pairs) == 1:
        return Choice(*pairs[0])
    base = model._spec_from_params()
    sets = {s for _, s in pairs}
    spec = spec_for("rich" if "rich" in sets else "lags", base)
    h = HEADLINE_HORIZON if HEADLINE_HORIZON in model.horizons else max(model.horizons)
    picked = training_rows(model, metrics, spec) if picked is None else picked
    features = build_feature_rows(metrics, spec, picked.positions)
    rows = picked.rows[h]
    chosen = features.iloc[rows]
    anchor = chosen[spec.target].to_numpy(dtype="float64", na_value=np.nan)
    fit, valid = validation_split(nanoseconds(chosen["ts"]), model.validation_fraction, h)
    if fit.sum() < _MIN_FIT or valid.sum() < _MIN_VALID:
        return Choice(*pairs[0], features=features, spec=spec)
    y = picked.y[h][rows]
    params = model.base_params()
    scores: dict[str, float] = {}
    for mode, name in pairs:
        X = chosen[spec_for(name, base).columns].to_numpy(dtype="float32", na_value=np.nan)
        z = y if mode == "level" else y - anchor
        booster, _ = model.train_booster(params, "p50", X[fit], z[fit], (X[valid], z[valid]), model.n_estimators)
        raw = model._predict_booster(booster, X[valid])
        level = clip_forecast(raw if mode == "level" else anchor[valid] + raw)
        scores[f"{mode}/{name}"] = float(np.mean(np.abs(level - y[valid])))
    best = min(scores.values())
    for mode, name in pairs:  # the first, simplest pair within the tie margin
        if scores[f"{mode}/{name}"] <= best * (1 + TIE):
            return Choice(mode, name, scores, features, spec)
    raise AssertionError("unreachable: the best pair is within the margin of itself")
