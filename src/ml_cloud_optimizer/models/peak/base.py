"""What every peak model shares: labels, the time split, the decision threshold, save and load.

The per-entity threshold is the quantile over the rows a model is trained on (before its
validation window), stored with the model, so no validation or test load defines it.

``BasePeakModel.load`` reads the kind named in the saved ``peak.json`` and imports that
kind's module only (``models.registry.PEAK_MODELS``): a boosted model loads without torch.
scikit-learn's metrics are imported where a threshold is chosen, in training, not when a
model is loaded to serve.

A model's fitted state outside its network or booster (parameters, per-entity thresholds,
cut-off, decision threshold) goes in and out through ``get_state``/``from_state`` only, so
``save``/``load`` and the pipeline, which carries the state between tasks as JSON, build the
model the same way and nobody sets fitted attributes from outside.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator

from ml_cloud_optimizer.data.schema import STEP_SECONDS, DataValidationError, epoch_seconds
from ml_cloud_optimizer.features import FeatureSpec, peak_labels
from ml_cloud_optimizer.features.targets import TARGET, peak_thresholds
from ml_cloud_optimizer.models.registry import peak_entry

__all__ = ["BasePeakModel", "check_metrics", "choose_threshold", "recall_at_precision"]

CONFIG_FILE = "peak.json"


def recall_at_precision(y_true, score, min_precision: float) -> float:
    """Highest recall among thresholds whose precision is at least ``min_precision`` (0 when none)."""
    from sklearn.metrics import precision_recall_curve

    precision, recall, _ = precision_recall_curve(np.asarray(y_true, dtype=bool), np.asarray(score, dtype=float))
    ok = precision >= min_precision
    return float(recall[ok].max()) if ok.any() else 0.0


def choose_threshold(y_true, proba, decision: str = "f1", min_precision: float = 0.5) -> float:
    """Probability cut-off chosen on validation rows.

    ``decision="f1"`` maximises F1; ``"precision"`` takes the lowest cut-off whose precision
    reaches ``min_precision`` (the most recall at that precision), falling back to F1 when
    none does. 0.5 when the validation rows hold a single class.
    """
    from sklearn.metrics import precision_recall_curve

    y_true = np.asarray(y_true, dtype=bool)
    if y_true.all() or not y_true.any():
        return 0.5
    precision, recall, cuts = precision_recall_curve(y_true, np.asarray(proba, dtype=float))
    precision, recall = precision[:-1], recall[:-1]  # the last point has no threshold
    if decision == "precision":
        ok = np.flatnonzero(precision >= min_precision)
        if len(ok):
            return float(cuts[ok[np.argmax(recall[ok])]])
    elif decision != "f1":
        raise ValueError(f"decision must be 'f1' or 'precision', got {decision!r}")
    f1 = np.where(precision + recall > 0, 2 * precision * recall / np.maximum(precision + recall, 1e-12), 0.0)
    return float(cuts[int(np.argmax(f1))])


class BasePeakModel(BaseEstimator):
    """What every peak model shares: labels, the time split, the decision threshold, save and load.

    Subclasses implement ``_fit_scores(metrics, labels, train, val) -> validation scores``,
    ``_scores(metrics) -> (frame, scores)``, ``_save_model(directory) -> config`` and
    ``_load_model(directory, config)`` (files into a model ``from_state`` built).
    """

    kind: ClassVar[str] = "abstract"

    def fit(self, metrics: pd.DataFrame, entities: pd.DataFrame | None = None) -> BasePeakModel:
        """Learn from canonical metrics: the latest ``validation`` share of time picks the threshold."""
        started = time.perf_counter()
        y, train, val = self.label_split(metrics)
        self._choose_threshold(y[val], self._fit_scores(metrics, y, train, val))
        self.fit_seconds_ = time.perf_counter() - started
        return self

    def label_split(self, metrics: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Fix the validation cut-off and each entity's threshold; return the labels and the fit and validation masks.

        Rows whose label is unknown (the next hour is missing) are in neither mask.
        """
        check_metrics(metrics)
        seconds = epoch_seconds(metrics["ts"])
        self.split_ts_ = pd.Timestamp(int(np.quantile(seconds, 1.0 - self.validation)), unit="s", tz="UTC")
        cutoff = self.split_ts_.timestamp()
        # Thresholds come from the training rows only, and training labels (which look
        # ``horizon`` steps ahead) must not reach past the cut-off into the validation window.
        train_rows = seconds + self.horizon * STEP_SECONDS < cutoff
        self.thresholds_ = peak_thresholds(metrics.loc[train_rows], self.quantile)
        self.fallback_threshold_ = float(metrics.loc[train_rows, TARGET].quantile(self.quantile))
        if not train_rows.any():
            raise ValueError(f"{self.kind}: no training rows before {self.split_ts_}; give more history")
        labels = peak_labels(metrics, self.horizon, threshold=self.thresholds_for(metrics["entity_id"]))
        labelled = labels.notna().to_numpy()
        train, val = train_rows & labelled, (seconds >= cutoff) & labelled
        y = labels.fillna(False).to_numpy(dtype=bool)
        if y[train].sum() < 2:
            raise ValueError(f"{self.kind}: fewer than 2 peak rows in the training window; nothing to learn from")
        return y, train, val

    def _choose_threshold(self, y_val: np.ndarray, scores: np.ndarray) -> None:
        """The decision cut-off and the validation PR-AUC, from the validation rows' scores."""
        from sklearn.metrics import average_precision_score

        self.decision_threshold_ = choose_threshold(y_val, scores, self.decision, self.min_precision)
        self.n_validation_rows_ = len(y_val)
        self.validation_pr_auc_ = (
            float(average_precision_score(y_val, scores)) if 0 < y_val.sum() < len(y_val) else float("nan")
        )

    def predict_proba(self, metrics: pd.DataFrame) -> pd.DataFrame:
        """``entity_id``, ``ts``, ``peak_prob`` for each row the model can score, aligned with ``metrics``."""
        if not hasattr(self, "decision_threshold_"):
            raise RuntimeError(f"{type(self).__name__} is not fitted: call fit() or load() first")
        check_metrics(metrics)
        frame, scores = self._scores(metrics)
        out = frame[["entity_id", "ts"]].copy()
        out["peak_prob"] = scores
        return out

    def predict_proba_last(self, metrics: pd.DataFrame, features: pd.DataFrame | None = None) -> pd.DataFrame:
        """``predict_proba`` for the last scorable row of each entity: what serving answers.

        ``features`` (``build_features`` rows under ``feature_spec``) are used where the model
        works from them, so a bundle builds them once for forecaster and classifier.
        """
        proba = self.predict_proba(metrics)
        last = proba.loc[proba["peak_prob"].notna()].sort_values(["entity_id", "ts"], kind="stable")
        return last.groupby("entity_id", observed=True).tail(1).reset_index(drop=True)

    @property
    def feature_spec(self) -> FeatureSpec | None:
        """The ``FeatureSpec`` whose rows ``predict_proba_last`` accepts, or None."""
        return None

    def predict(self, metrics: pd.DataFrame) -> pd.DataFrame:
        """``predict_proba`` plus ``is_peak``: the probability at or above the chosen threshold."""
        out = self.predict_proba(metrics)
        out["is_peak"] = out["peak_prob"].to_numpy() >= self.decision_threshold_
        return out

    def get_state(self) -> dict:
        """Parameters and fitted state outside the network or booster, JSON-ready (``peak.json``'s keys).

        Holds ``params``, ``thresholds`` (per entity), ``fallback_threshold``, ``split_ts`` and,
        once a cut-off was chosen, ``decision_threshold``. Available from ``label_split`` on:
        the pipeline carries it between the task that labels and the one that boosts.
        """
        state = {
            "params": {k: v for k, v in self.get_params().items() if k != "spec"},
            "thresholds": {str(k): float(v) for k, v in self.thresholds_.items()},
            "fallback_threshold": float(self.fallback_threshold_),
            "split_ts": self.split_ts_.isoformat(),
        }
        if hasattr(self, "decision_threshold_"):
            state["decision_threshold"] = float(self.decision_threshold_)
        return state

    @classmethod
    def from_state(cls, state: dict) -> BasePeakModel:
        """A model with ``get_state``'s parameters and fitted state; keys it does not know are ignored.

        Without ``decision_threshold`` the model is labelled and split but not fitted (what
        ``fit_rows`` continues from); with it, and the files ``_load_model`` reads, it predicts.
        """
        model = cls(**state["params"])
        model.thresholds_ = pd.Series(state["thresholds"], dtype="float64")
        model.fallback_threshold_ = float(state["fallback_threshold"])
        model.split_ts_ = pd.Timestamp(state["split_ts"])
        if "decision_threshold" in state:
            model.decision_threshold_ = float(state["decision_threshold"])
        return model

    def save(self, directory: str | Path) -> Path:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        config = {"kind": self.kind, **self.get_state(), **self._save_model(directory)}
        (directory / CONFIG_FILE).write_text(json.dumps(config, indent=2, sort_keys=True))
        return directory

    @staticmethod
    def load(directory: str | Path) -> BasePeakModel:
        """The peak model saved in ``directory``, whichever kind it is (only that kind's module is imported)."""
        directory = Path(directory)
        path = directory / CONFIG_FILE
        if not path.exists():
            raise FileNotFoundError(f"{directory} holds no {CONFIG_FILE}: not a peak model directory")
        config = json.loads(path.read_text())
        try:
            cls = peak_entry(config["kind"]).load()
        except ValueError as error:
            raise ValueError(f"{path}: {error}") from None
        model = cls.from_state(config)
        model._load_model(directory, config)
        return model

    def thresholds_for(self, entity_id: pd.Series) -> pd.Series:
        """Each distinct entity's threshold (index: entity as str); the pooled one for entities not seen in training.

        What the labels are measured against, in training and in scoring alike.
        """
        unique = pd.unique(entity_id.astype(str))
        return pd.Series(self.thresholds_.reindex(unique).fillna(self.fallback_threshold_).to_numpy(), index=unique)

    def _row_thresholds(self, entity_id: pd.Series) -> np.ndarray:
        return entity_id.astype(str).map(self.thresholds_for(entity_id)).to_numpy(dtype="float64")


def check_metrics(metrics: pd.DataFrame) -> None:
    """Raise ``DataValidationError`` unless ``metrics`` has rows and the key and target columns."""
    missing = [c for c in ("entity_id", "ts", TARGET) if c not in metrics.columns]
    if missing:
        raise DataValidationError(f"metrics: missing columns {', '.join(missing)}")
    if metrics.empty:
        raise DataValidationError("metrics: no rows")
