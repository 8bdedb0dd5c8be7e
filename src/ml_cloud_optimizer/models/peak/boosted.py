"""``PeakClassifier``: LightGBM on the shared feature rows, in units of each entity's threshold.

Load-valued features (``features.build_features``) are divided by the entity's threshold, so
the rows say "how close to a peak" alike for every entity. Rare positives are handled by class
weights or, with ``use_smote``, by SMOTE on training rows.

This is the peak model the model server loads beside a tabular champion, so it imports
neither torch nor imbalanced-learn (``imbalance`` imports it only when SMOTE runs).
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import ClassVar

import lightgbm as lgb
import numpy as np
import pandas as pd

from ml_cloud_optimizer.features import FeatureSpec, build_features
from ml_cloud_optimizer.features.tabular import build_feature_rows
from ml_cloud_optimizer.horizons import PEAK_HORIZON
from ml_cloud_optimizer.imbalance import MAJORITY_CAP, cap_majority, smote_resample
from ml_cloud_optimizer.models.cores import idle_cores
from ml_cloud_optimizer.models.peak.base import BasePeakModel, check_metrics

__all__ = ["PeakClassifier"]

_BOOSTER_FILE = "peak_lightgbm.txt"
_MIN_THRESHOLD = 1e-3  # an idle entity's threshold can be ~0; keep ratios finite


class PeakClassifier(BasePeakModel):
    """LightGBM on the shared feature rows in threshold units; SMOTE or class weights for the rare positives.

    Args:
        horizon: steps ahead the peak label looks (12 = the next hour).
        quantile: each entity's threshold is this quantile of its training load.
        use_smote: oversample training peaks with SMOTE instead of weighting classes.
        majority_cap: with ``use_smote``, the most ordinary (non-peak) training rows kept before
            SMOTE, a seeded uniform sample (``imbalance.cap_majority``); None keeps all.
        decision: how the probability cut-off is chosen on validation ("f1" or "precision").
        min_precision: the precision ``decision="precision"`` must keep.
        validation: share of the latest time held out to stop boosting and choose the cut-off.
        n_estimators, learning_rate, num_leaves, min_child_samples, colsample_bytree, early_stopping_rounds:
            LightGBM settings; the defaults are kept small because peaks are few.
        seed: seeds LightGBM and SMOTE.
        spec: the ``FeatureSpec`` (None: the default one).
    """

    kind: ClassVar[str] = "lightgbm"

    def __init__(
        self,
        horizon: int = PEAK_HORIZON,
        quantile: float = 0.95,
        use_smote: bool = False,
        majority_cap: int | None = MAJORITY_CAP,
        decision: str = "f1",
        min_precision: float = 0.5,
        validation: float = 0.2,
        n_estimators: int = 300,
        learning_rate: float = 0.05,
        num_leaves: int = 15,
        min_child_samples: int = 100,
        colsample_bytree: float = 0.5,
        early_stopping_rounds: int = 30,
        seed: int = 0,
        spec: FeatureSpec | None = None,
    ):
        self.horizon = horizon
        self.quantile = quantile
        self.use_smote = use_smote
        self.majority_cap = majority_cap
        self.decision = decision
        self.min_precision = min_precision
        self.validation = validation
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.num_leaves = num_leaves
        self.min_child_samples = min_child_samples
        self.colsample_bytree = colsample_bytree
        self.early_stopping_rounds = early_stopping_rounds
        self.seed = seed
        self.spec = spec

    @property
    def feature_spec(self) -> FeatureSpec:
        """``spec_`` once labelled (``label_split``) or loaded; before that, the ``spec`` parameter's."""
        return self.spec_ if hasattr(self, "spec_") else (self.spec or FeatureSpec())

    def label_split(self, metrics: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``BasePeakModel.label_split``, fixing ``spec_`` first: the state a split hands on includes the spec."""
        self.spec_ = self.spec or FeatureSpec()
        return super().label_split(metrics)

    def get_state(self) -> dict:
        """``BasePeakModel.get_state`` plus ``feature_spec``, the spec the feature rows are built with."""
        return {**super().get_state(), "feature_spec": self.feature_spec.to_dict()}

    @classmethod
    def from_state(cls, state: dict) -> PeakClassifier:
        spec = FeatureSpec.from_dict(state["feature_spec"])
        model = super().from_state({**state, "params": {**state["params"], "spec": spec}})
        model.spec_ = spec
        return model

    def predict_proba_last(self, metrics: pd.DataFrame, features: pd.DataFrame | None = None) -> pd.DataFrame:
        if not hasattr(self, "decision_threshold_"):
            raise RuntimeError(f"{type(self).__name__} is not fitted: call fit() or load() first")
        check_metrics(metrics)
        rows = self.feature_rows(metrics, features)
        last = rows.sort_values(["entity_id", "ts"], kind="stable").groupby("entity_id", observed=True).tail(1)
        out = last[["entity_id", "ts"]].reset_index(drop=True)
        out["peak_prob"] = self._predict_rows(last)
        return out

    def feature_rows(self, metrics: pd.DataFrame, rows: pd.DataFrame | None = None) -> pd.DataFrame:
        """Shared feature rows re-expressed in units of each entity's threshold, plus time of day.

        Every load-valued feature (current value, lags, rolling statistics, seasonal values)
        is divided by the entity's threshold, so the rows say "how close to a peak" the same
        way for every entity and a new entity needs nothing but its threshold. Raw levels,
        other metrics and day-of-week position are left out: with a few weeks of history they
        let the trees memorise entities and dates instead of learning what precedes a peak.
        """
        spec = self.feature_spec
        if rows is None:
            rows = build_features(metrics, spec)
        limit = np.maximum(self._row_thresholds(rows["entity_id"]), _MIN_THRESHOLD)
        t = spec.target
        out = {"entity_id": rows["entity_id"], "ts": rows["ts"]}
        for col in spec.columns:
            if col == t or (col.startswith(f"{t}_") and col != f"{t}_z"):
                out[f"{col}_per_threshold"] = rows[col].to_numpy(dtype="float64") / limit
        for col in (f"{t}_z", "hour_sin", "hour_cos", "is_weekend"):
            if col in rows.columns:
                out[col] = rows[col]
        return pd.DataFrame(out, index=rows.index)

    def feature_rows_at(self, metrics: pd.DataFrame, positions) -> pd.DataFrame:
        """``feature_rows(metrics).iloc[positions]``, built by blocks of whole entities.

        Only the classifier's rows are kept for every position, never the shared feature matrix
        they are computed from (``build_feature_rows``): that is built one block of entities at
        a time, so the fit and the pipeline's peak rows hold one copy of their own columns.
        """
        return build_feature_rows(
            metrics, self.feature_spec, positions, then=lambda features: self.feature_rows(metrics, features)
        )

    def _fit_scores(self, metrics, y, train, val) -> np.ndarray:
        used = np.flatnonzero(train | val)
        X = self.feature_rows_at(metrics, used).drop(columns=["entity_id", "ts"])
        train, val = train[used], val[used]
        y = y[used]
        self.fill_values_ = X.loc[train].median().fillna(0.0)
        X_train, y_train = X.loc[train].fillna(self.fill_values_), y[train]
        self.n_train_rows_ = len(X_train)
        self.n_train_positives_ = int(y_train.sum())
        if self.use_smote:
            keep = cap_majority(y_train, self.majority_cap, random_state=self.seed)
            X_train, y_train = smote_resample(X_train[keep], y_train[keep], random_state=self.seed)
        return self._boost(X_train, y_train, X.loc[val].fillna(self.fill_values_), y[val])

    def fit_rows(
        self,
        X_train: pd.DataFrame,
        y_train,
        X_val: pd.DataFrame,
        y_val,
        *,
        fill_values,
        n_train_rows: int | None = None,
    ) -> PeakClassifier:
        """Boost on ready ``feature_rows`` (resampled already where wanted) and choose the cut-off on ``X_val``.

        For callers that label, split and resample in steps of their own (the pipeline makes
        SMOTE a task): ``label_split`` and ``feature_rows`` give the rows (or ``from_state`` the
        model they were labelled with), this fits on them. ``fill_values`` are the training
        medians that fill missing features at prediction; ``n_train_rows`` counts the training
        rows before resampling (default: ``len(X_train)``, right when nothing was resampled).
        """
        self.fill_values_ = pd.Series(fill_values, dtype="float64")
        self.n_train_rows_ = int(len(X_train) if n_train_rows is None else n_train_rows)
        y_val = np.asarray(y_val, dtype=bool)
        self._choose_threshold(
            y_val, self._boost(X_train, np.asarray(y_train, dtype=bool), X_val.fillna(self.fill_values_), y_val)
        )
        return self

    def _boost(self, X_train: pd.DataFrame, y_train, X_val: pd.DataFrame, y_val) -> np.ndarray:
        """LightGBM with early stopping on the validation rows; returns their scores."""
        self.feature_columns_ = list(X_train.columns)
        self.n_train_resampled_ = len(X_train)
        model = lgb.LGBMClassifier(
            n_estimators=self.n_estimators,
            learning_rate=self.learning_rate,
            num_leaves=self.num_leaves,
            min_child_samples=self.min_child_samples,
            colsample_bytree=self.colsample_bytree,
            class_weight=None if self.use_smote else "balanced",
            random_state=self.seed,
            verbose=-1,
            n_jobs=idle_cores(),
        )
        early = {}
        if len(X_val) and 0 < y_val.sum() < len(y_val):
            early = {
                **_eval_data(X_val, y_val),
                "eval_metric": "average_precision",
                "callbacks": [lgb.early_stopping(self.early_stopping_rounds, verbose=False)],
            }
        model.fit(X_train, y_train, **early)
        self.booster_ = model.booster_
        self.best_iteration_ = int(model.best_iteration_ or model.n_estimators)
        return self._predict_rows(X_val)

    def _predict_rows(self, X: pd.DataFrame) -> np.ndarray:
        if X.empty:
            return np.zeros(0)
        values = X[self.feature_columns_].fillna(self.fill_values_)
        return np.asarray(self.booster_.predict(values, num_iteration=self.best_iteration_, num_threads=idle_cores()))

    def _scores(self, metrics):
        rows = self.feature_rows_at(metrics, np.arange(len(metrics)))
        return rows, self._predict_rows(rows)

    def _save_model(self, directory: Path) -> dict:
        self.booster_.save_model(directory / _BOOSTER_FILE, num_iteration=self.best_iteration_)
        return {
            "booster_file": _BOOSTER_FILE,
            "feature_columns": self.feature_columns_,
            "fill_values": {k: float(v) for k, v in self.fill_values_.items()},
            "best_iteration": self.best_iteration_,
        }

    def _load_model(self, directory: Path, config: dict) -> None:
        self.booster_ = lgb.Booster(model_file=str(directory / config["booster_file"]))
        self.feature_columns_ = list(config["feature_columns"])
        self.fill_values_ = pd.Series(config["fill_values"], dtype="float64")
        self.best_iteration_ = int(config["best_iteration"])


def _eval_data(X, y) -> dict:
    """Validation data in the form this LightGBM takes (``eval_X``/``eval_y`` from 4.6, ``eval_set`` before)."""
    if "eval_X" in inspect.signature(lgb.LGBMClassifier.fit).parameters:
        return {"eval_X": (X,), "eval_y": (y,)}
    return {"eval_set": [(X, y)]}
