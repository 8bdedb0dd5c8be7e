"""The peak classifier in three pipeline steps, so that SMOTE is a task of its own with an inspectable output.

``PeakClassifier(use_smote=True).fit(metrics)`` labels, splits, builds feature rows, resamples
and boosts in one call. The pipeline wants the resampled training set as a Dataset between two
tasks, so the same work is cut in three:

1. ``peak_training_rows``: the classifier's feature rows of the training window, each with its
   label and its part (``fit`` or ``validation``, the latest share of time, which picks the
   decision threshold), plus the classifier's state so far (per-entity thresholds...).
2. ``balance_peak_rows``: SMOTE on the ``fit`` rows only (their majority capped first, as the
   classifier's own fit caps it); validation rows pass through untouched.
3. ``fit_peak_classifier``: LightGBM on the balanced rows with early stopping and the decision
   threshold on the validation rows, returned as a fitted ``PeakClassifier`` that saves, loads
   and predicts like any other.

Each step calls the classifier's own parts (``label_split``, ``feature_rows``, ``get_state``,
``from_state``, ``fit_rows``), so given the same data and seed LightGBM gets exactly the
problem ``PeakClassifier(use_smote=True).fit`` would give it: the same resampled rows, labels,
validation rows and settings (a test holds this). No step sets the classifier's fitted
attributes itself: the state crosses the task boundary as ``get_state``'s JSON.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from ml_cloud_optimizer.horizons import PEAK_HORIZON
from ml_cloud_optimizer.imbalance import MAJORITY_CAP, cap_majority, smote_resample
from ml_cloud_optimizer.models.peak import PeakClassifier

__all__ = [
    "LABEL",
    "PART",
    "SYNTHETIC",
    "balance_peak_rows",
    "fit_peak_classifier",
    "peak_summary",
    "peak_training_rows",
]

LABEL = "label"
PART = "part"
SYNTHETIC = "synthetic"
_KEYS = ("entity_id", "ts")

_log = logging.getLogger(__name__)


def peak_training_rows(
    metrics: pd.DataFrame,
    *,
    horizon: int = PEAK_HORIZON,
    quantile: float = 0.95,
    validation: float = 0.2,
    seed: int = 0,
    majority_cap: int | None = MAJORITY_CAP,
) -> tuple[pd.DataFrame, dict]:
    """Labelled feature rows of the training window and the classifier's state (JSON-ready).

    Returns:
        ``(rows, state)``: rows hold ``entity_id``, ``ts``, the feature columns, ``label`` and
        ``part``; ``state`` is ``PeakClassifier.get_state()``: the parameters, per-entity
        thresholds, cut-off and feature spec.
    """
    model = PeakClassifier(
        horizon=horizon, quantile=quantile, use_smote=True, majority_cap=majority_cap, validation=validation, seed=seed
    )
    y, fit, validate = model.label_split(metrics)
    used = np.flatnonzero(fit | validate)
    rows = model.feature_rows_at(metrics, used)
    rows.index = pd.RangeIndex(len(rows))  # in place: reset_index would copy every column
    rows[LABEL] = y[used]
    rows[PART] = np.where(fit[used], "fit", "validation")
    state = model.get_state()
    _log.info(
        "peak rows: %s to fit (%s peaks), %s to validate",
        f"{int(fit.sum()):,}",
        f"{int(y[fit].sum()):,}",
        f"{int(validate.sum()):,}",
    )
    return rows, state


def balance_peak_rows(
    rows: pd.DataFrame, *, seed: int = 0, majority_cap: int | None = MAJORITY_CAP
) -> tuple[pd.DataFrame, dict, dict]:
    """SMOTE the ``fit`` rows (missing features filled with their medians first); validation rows untouched.

    Past ``majority_cap`` ordinary rows, a seeded uniform sample of that many is kept before
    SMOTE, as ``PeakClassifier(use_smote=True, majority_cap=...).fit`` keeps it; the medians are
    those of every fit row, the sample's rows are copied, not the whole fit part.

    Returns:
        ``(balanced, fill_values, counts)``: the fit rows kept, then the synthetic ones
        (``synthetic`` True, no entity or time), then the validation rows; the medians used to
        fill missing features (prediction fills the same way); counts of rows and peaks before
        and after, and of the ordinary rows the cap left out (``majority_dropped``).
    """
    features = [c for c in rows.columns if c not in (*_KEYS, LABEL, PART)]
    fit = rows[PART].to_numpy() == "fit"
    labels = rows[LABEL].to_numpy(dtype=bool)
    fill = pd.Series({c: rows.loc[fit, c].median() for c in features}, dtype="float64").fillna(0.0)
    keep = np.flatnonzero(fit)[cap_majority(labels[fit], majority_cap, random_state=seed)]
    original = rows.iloc[keep].fillna(fill.to_dict())
    X, y = original[features], labels[keep]
    X_res, y_res = smote_resample(X, y, random_state=seed)
    added = X_res.iloc[len(X) :]
    synthetic = added.assign(**{LABEL: y_res[len(X) :], PART: "fit", SYNTHETIC: True})
    validation = rows.loc[~fit].assign(**{SYNTHETIC: False})
    balanced = pd.concat([original.assign(**{SYNTHETIC: False}), synthetic, validation], ignore_index=True)
    counts = {
        "fit_rows": int(fit.sum()),
        "fit_peaks": int(labels[fit].sum()),
        "majority_dropped": int(fit.sum()) - len(keep),
        "balanced_rows": len(y_res),
        "balanced_peaks": int(y_res.sum()),
        "synthetic_rows": len(added),
        "validation_rows": int((~fit).sum()),
    }
    _log.info(
        "SMOTE: %s of %s training rows were peaks; %s ordinary rows left out by the cap; %s synthetic peaks added",
        f"{counts['fit_peaks']:,}",
        f"{counts['fit_rows']:,}",
        f"{counts['majority_dropped']:,}",
        f"{counts['synthetic_rows']:,}",
    )
    return balanced, {k: float(v) for k, v in fill.items()}, counts


def fit_peak_classifier(balanced: pd.DataFrame, state: dict) -> PeakClassifier:
    """Boost on the balanced ``fit`` rows, stop and choose the cut-off on the validation rows.

    ``state`` is ``peak_training_rows``'s state plus ``fill_values`` from ``balance_peak_rows``
    and, where the majority was capped, ``n_train_rows``: the fit rows before it (its
    ``fit_rows`` count), which ``PeakClassifier.fit`` reports too.
    """
    features = [c for c in balanced.columns if c not in (*_KEYS, LABEL, PART, SYNTHETIC)]
    fit = balanced[PART].to_numpy() == "fit"
    model = PeakClassifier.from_state(state).fit_rows(
        balanced.loc[fit, features],
        balanced.loc[fit, LABEL],
        balanced.loc[~fit, features],
        balanced.loc[~fit, LABEL],
        fill_values=state["fill_values"],
        n_train_rows=state.get("n_train_rows", int((fit & ~balanced[SYNTHETIC].to_numpy(dtype=bool)).sum())),
    )
    _log.info("peak classifier: %s rounds, validation PR-AUC %.3f", model.best_iteration_, model.validation_pr_auc_)
    return model


def peak_summary(model: PeakClassifier) -> dict:
    """What the model artifact's metadata shows (JSON-ready: no NaN)."""
    pr_auc = float(model.validation_pr_auc_)
    return {
        "kind": f"peak-{model.kind}",
        "decision_threshold": float(model.decision_threshold_),
        "validation_pr_auc": pr_auc if np.isfinite(pr_auc) else None,
        "best_iteration": int(model.best_iteration_),
    }
