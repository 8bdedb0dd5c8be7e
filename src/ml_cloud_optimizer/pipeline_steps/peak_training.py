"""The peak classifier in three pipeline steps, so that SMOTE is a task of its own with an inspectable output.

``PeakClassifier(use_smote=True).fit(metrics)`` labels, splits, builds feature rows, resamples
and boosts in one call. The pipeline wants the resampled training set as a Dataset between two
tasks, so the same work is cut in three:

1. ``peak_training_rows``: the classifier's feature rows of the training window, each with its
   label and its part (``fit`` or ``validation``, the latest share of time, which picks the
   decision threshold), plus the classifier's state so far (per-entity thresholds...).
2. ``balance_peak_rows``: SMOTE on the ``fit`` rows only; validation rows pass through untouched.
3. ``fit_peak_classifier``: LightGBM on the balanced rows with early stopping and the decision
   threshold on the validation rows, returned as a fitted ``PeakClassifier`` that saves, loads
   and predicts like any other.

Given the same data and seed, LightGBM gets exactly the problem ``PeakClassifier(use_smote=True).fit``
would give it: the same resampled rows, labels, validation rows and settings (a test holds
this). A ``fit_rows``-style method in ``models.peak`` would make this module three lines.
"""

from __future__ import annotations

import inspect

import lightgbm as lgb
import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score

from ml_cloud_optimizer.data.schema import STEP_SECONDS
from ml_cloud_optimizer.features import FeatureSpec, peak_labels
from ml_cloud_optimizer.features.targets import TARGET, peak_thresholds
from ml_cloud_optimizer.imbalance import smote_resample
from ml_cloud_optimizer.models.peak import PeakClassifier, choose_threshold
from ml_cloud_optimizer.models.sequence import idle_cores
from ml_cloud_optimizer.models.windows import epoch_seconds

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


def peak_training_rows(metrics: pd.DataFrame, *, horizon: int = 12, quantile: float = 0.95,
                       validation: float = 0.2, seed: int = 0) -> tuple[pd.DataFrame, dict]:
    """Labelled feature rows of the training window and the classifier's state (JSON-ready).

    Returns:
        ``(rows, state)``: rows hold ``entity_id``, ``ts``, the feature columns, ``label`` and
        ``part``; ``state`` the parameters, per-entity thresholds, cut-off and feature spec.
    """
    model = PeakClassifier(horizon=horizon, quantile=quantile, use_smote=True, validation=validation, seed=seed)
    seconds = epoch_seconds(metrics["ts"])
    model.split_ts_ = pd.Timestamp(int(np.quantile(seconds, 1.0 - validation)), unit="s", tz="UTC")
    cutoff = model.split_ts_.timestamp()
    fit_part = seconds + horizon * STEP_SECONDS < cutoff  # no label may look into the validation window
    reference = metrics.loc[fit_part]
    if reference.empty:
        raise ValueError(f"peak classifier: no training rows before {model.split_ts_}; give more history")
    model.thresholds_ = peak_thresholds(reference, quantile)
    model.fallback_threshold_ = float(reference[TARGET].quantile(quantile))
    model.spec_ = FeatureSpec()
    labels = peak_labels(metrics, horizon, threshold=model._threshold_map(metrics["entity_id"]))
    labelled = labels.notna().to_numpy()
    part = np.where(fit_part & labelled, "fit", np.where((seconds >= cutoff) & labelled, "validation", ""))
    rows = model._feature_rows(metrics)
    rows[LABEL] = labels.fillna(False).to_numpy(dtype=bool)
    rows[PART] = part
    rows = rows.loc[part != ""].reset_index(drop=True)
    if rows.loc[rows[PART] == "fit", LABEL].sum() < 2:
        raise ValueError("peak classifier: fewer than 2 peak rows in the training window; nothing to learn from")
    state = {
        "params": {k: v for k, v in model.get_params().items() if k != "spec"},
        "thresholds": {str(k): float(v) for k, v in model.thresholds_.items()},
        "fallback_threshold": model.fallback_threshold_,
        "split_ts": model.split_ts_.isoformat(),
        "feature_spec": model.spec_.to_dict(),
    }
    print(f"[mlco] peak rows: {int((part == 'fit').sum()):,} to fit ({int(rows.loc[rows[PART] == 'fit', LABEL].sum()):,}"
          f" peaks), {int((part == 'validation').sum()):,} to validate", flush=True)
    return rows, state


def balance_peak_rows(rows: pd.DataFrame, *, seed: int = 0) -> tuple[pd.DataFrame, dict, dict]:
    """SMOTE the ``fit`` rows (missing features filled with their medians first); validation rows untouched.

    Returns:
        ``(balanced, fill_values, counts)``: the fit rows, then the synthetic ones (``synthetic``
        True, no entity or time), then the validation rows; the medians used to fill missing
        features (prediction fills the same way); counts of rows and peaks before and after.
    """
    features = [c for c in rows.columns if c not in (*_KEYS, LABEL, PART)]
    fit = rows[PART].to_numpy() == "fit"
    fill = rows.loc[fit, features].median().fillna(0.0)
    X = rows.loc[fit, features].fillna(fill)
    y = rows.loc[fit, LABEL].to_numpy(dtype=bool)
    X_res, y_res = smote_resample(X, y, random_state=seed)
    added = X_res.iloc[len(X):]
    synthetic = added.assign(**{LABEL: y_res[len(X):], PART: "fit", SYNTHETIC: True})
    original = rows.loc[fit].assign(**{c: X[c] for c in features}, **{SYNTHETIC: False})
    validation = rows.loc[~fit].assign(**{SYNTHETIC: False})
    balanced = pd.concat([original, synthetic, validation], ignore_index=True)
    counts = {
        "fit_rows": int(fit.sum()), "fit_peaks": int(y.sum()),
        "balanced_rows": int(len(y_res)), "balanced_peaks": int(y_res.sum()),
        "synthetic_rows": int(len(added)), "validation_rows": int((~fit).sum()),
    }
    print(f"[mlco] SMOTE: {counts['fit_peaks']:,} of {counts['fit_rows']:,} training rows were peaks;"
          f" {counts['synthetic_rows']:,} synthetic peaks added", flush=True)
    return balanced, {k: float(v) for k, v in fill.items()}, counts


def fit_peak_classifier(balanced: pd.DataFrame, state: dict) -> PeakClassifier:
    """Boost on the balanced ``fit`` rows, stop and choose the cut-off on the validation rows.

    ``state`` is ``peak_training_rows``'s state plus ``fill_values`` from ``balance_peak_rows``.
    """
    model = PeakClassifier(**state["params"])
    model.spec_ = FeatureSpec.from_dict(state["feature_spec"])
    model.thresholds_ = pd.Series(state["thresholds"], dtype="float64")
    model.fallback_threshold_ = float(state["fallback_threshold"])
    model.split_ts_ = pd.Timestamp(state["split_ts"])
    model.feature_columns_ = [c for c in balanced.columns if c not in (*_KEYS, LABEL, PART, SYNTHETIC)]
    model.fill_values_ = pd.Series(state["fill_values"], dtype="float64")
    fit = balanced[PART].to_numpy() == "fit"
    X_train, y_train = balanced.loc[fit, model.feature_columns_], balanced.loc[fit, LABEL].to_numpy(dtype=bool)
    X_val = balanced.loc[~fit, model.feature_columns_].fillna(model.fill_values_)
    y_val = balanced.loc[~fit, LABEL].to_numpy(dtype=bool)
    model.n_train_rows_ = int((fit & ~balanced[SYNTHETIC].to_numpy(dtype=bool)).sum())
    model.n_train_resampled_ = int(fit.sum())
    # The classifier's LightGBM settings are those of its parameters LightGBM also has, by name.
    lightgbm_names = lgb.LGBMClassifier().get_params()
    settings = {k: v for k, v in model.get_params().items() if k in lightgbm_names}
    classifier = lgb.LGBMClassifier(**settings, class_weight=None, random_state=model.seed, verbose=-1,
                                    n_jobs=idle_cores())
    early = {}
    if len(X_val) and 0 < y_val.sum() < len(y_val):
        early = {**_validation_data(X_val, y_val), "eval_metric": "average_precision",
                 "callbacks": [lgb.early_stopping(model.early_stopping_rounds, verbose=False)]}
    classifier.fit(X_train, y_train, **early)
    model.booster_ = classifier.booster_
    model.best_iteration_ = int(classifier.best_iteration_ or classifier.n_estimators)
    scores = model._predict_rows(X_val)
    model.decision_threshold_ = choose_threshold(y_val, scores, model.decision, model.min_precision)
    model.n_validation_rows_ = int(len(y_val))
    model.validation_pr_auc_ = float(average_precision_score(y_val, scores)) if 0 < y_val.sum() < len(y_val) else float("nan")
    print(f"[mlco] peak classifier: {model.best_iteration_} rounds, validation PR-AUC {model.validation_pr_auc_:.3f}",
          flush=True)
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


def _validation_data(X: pd.DataFrame, y: np.ndarray) -> dict:
    """Early-stopping data as this LightGBM takes it (``eval_X``/``eval_y`` from 4.6, ``eval_set`` before)."""
    if "eval_X" in inspect.signature(lgb.LGBMClassifier.fit).parameters:
        return {"eval_X": (X,), "eval_y": (y,)}
    return {"eval_set": [(X, y)]}
