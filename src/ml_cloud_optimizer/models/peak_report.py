"""Peak models beside the rule an operator would write, on one time split, as one table.

Peaks are rare, so the table reports PR-AUC, ROC-AUC, recall at a fixed precision, and F1,
precision, recall and balanced accuracy at each model's chosen threshold: LightGBM with class
weights, LightGBM with SMOTE on its training rows, and the rule "alert when the current load
is above the entity's threshold".
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.metrics import (
    average_precision_score,
    balanced_accuracy_score,
    f1_score,
    precision_score,
    recall_score,
    roc_auc_score,
)

from ml_cloud_optimizer.data.schema import epoch_seconds
from ml_cloud_optimizer.features import peak_labels
from ml_cloud_optimizer.features.targets import TARGET, peak_thresholds
from ml_cloud_optimizer.horizons import PEAK_HORIZON
from ml_cloud_optimizer.models.peak import BasePeakModel, PeakClassifier, check_metrics, recall_at_precision

__all__ = ["REPORT_COLUMNS", "peak_report"]

REPORT_COLUMNS = [
    "model",
    "pr_auc",
    "roc_auc",
    "f1",
    "precision",
    "recall",
    "balanced_accuracy",
    "recall_at_precision",
    "min_precision",
    "decision_threshold",
    "positives",
    "rows",
    "fit_seconds",
]


def peak_report(
    metrics: pd.DataFrame,
    *,
    holdout: float = 0.2,
    models: dict[str, BasePeakModel] | None = None,
    horizon: int = PEAK_HORIZON,
    quantile: float = 0.95,
    min_precision: float = 0.5,
    seed: int = 0,
) -> pd.DataFrame:
    """Peak models beside the rule baseline on the latest ``holdout`` share of time; one row each.

    Every model is fitted on the rows before the cut-off (its own validation window included)
    and scored on the rows after it, with history before the cut-off available as input.
    Labels use each entity's threshold from the training rows. The rule scores
    ``cpu_util / threshold`` and alerts above 1.

    Args:
        metrics: canonical metrics covering the training and the test window.
        holdout: share of the latest time to test on.
        models: name -> unfitted peak model; default LightGBM with and without SMOTE.
        horizon, quantile: the label (next ``horizon`` steps above the ``quantile``).
        min_precision: the precision at which ``recall_at_precision`` is read.
        seed: seed of the default models.

    Returns:
        A frame with ``REPORT_COLUMNS``, the rule first.
    """
    check_metrics(metrics)
    if models is None:
        models = {
            "lightgbm": PeakClassifier(horizon=horizon, quantile=quantile, seed=seed),
            "lightgbm_smote": PeakClassifier(horizon=horizon, quantile=quantile, use_smote=True, seed=seed),
        }
    seconds = epoch_seconds(metrics["ts"])
    cutoff = np.quantile(seconds, 1.0 - holdout)
    train = metrics.loc[seconds < cutoff]
    test = seconds >= cutoff
    labels = peak_labels(metrics, horizon, quantile=quantile, reference=train)
    scored = test & labels.notna().to_numpy()
    y = labels.fillna(False).to_numpy(dtype=bool)

    limit = metrics["entity_id"].astype(str).map(peak_thresholds(train, quantile)).astype("float64")
    limit = limit.fillna(float(train[TARGET].quantile(quantile))).to_numpy()
    rule_score = metrics[TARGET].to_numpy(dtype="float64") / np.maximum(limit, 1e-9)
    rows = [_scores_row("rule", y[scored], rule_score[scored], 1.0, min_precision, 0.0)]
    for name, model in models.items():
        model.fit(train)
        proba = model.predict_proba(metrics)["peak_prob"].reindex(metrics.index).to_numpy()
        mask = scored & ~np.isnan(proba)
        rows.append(
            _scores_row(name, y[mask], proba[mask], model.decision_threshold_, min_precision, model.fit_seconds_)
        )
    return pd.DataFrame(rows, columns=REPORT_COLUMNS)


def _scores_row(name, y, score, cut, min_precision, fit_seconds) -> dict:
    both = 0 < y.sum() < len(y)
    alert = score >= cut if name != "rule" else score > cut
    return {
        "model": name,
        "pr_auc": float(average_precision_score(y, score)) if both else float("nan"),
        "roc_auc": float(roc_auc_score(y, score)) if both else float("nan"),
        "f1": float(f1_score(y, alert, zero_division=0)),
        "precision": float(precision_score(y, alert, zero_division=0)),
        "recall": float(recall_score(y, alert, zero_division=0)),
        "balanced_accuracy": float(balanced_accuracy_score(y, alert)) if both else float("nan"),
        "recall_at_precision": recall_at_precision(y, score, min_precision) if both else float("nan"),
        "min_precision": float(min_precision),
        "decision_threshold": float(cut),
        "positives": int(y.sum()),
        "rows": len(y),
        "fit_seconds": float(fit_seconds),
    }
