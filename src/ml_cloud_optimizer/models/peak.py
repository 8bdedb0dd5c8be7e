"""Peak detection: will an entity's load exceed its own 95th percentile within the next hour?

Peaks are rare, so accuracy says nothing; models are compared on PR-AUC, recall at a fixed
precision and F1 at a threshold chosen on a validation window, always beside the rule an
operator would write without a model: "alert when the current load is above the threshold".

* ``PeakClassifier``: LightGBM on the shared feature rows (``features.build_features``),
  load-valued features divided by the entity's threshold. Rare positives are handled by
  class weights or, with ``use_smote``, by SMOTE on training rows.
* ``SequencePeakClassifier``: a GRU over the same windows as the forecasters, trained with
  the focal loss.
``models.peak_report`` sets both variants beside the rule on one time split, as one table.

The per-entity threshold is the quantile over the rows a model is trained on (before its
validation window), stored with the model, so no validation or test load defines it.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import time
from pathlib import Path
from typing import ClassVar

import lightgbm as lgb
import numpy as np
import pandas as pd
import torch
from sklearn.base import BaseEstimator
from sklearn.metrics import average_precision_score, precision_recall_curve

from ml_cloud_optimizer.data.schema import STEP_SECONDS, DataValidationError
from ml_cloud_optimizer.features import FeatureSpec, build_features, peak_labels
from ml_cloud_optimizer.features.targets import TARGET, peak_thresholds
from ml_cloud_optimizer.imbalance import FocalLoss, smote_resample
from ml_cloud_optimizer.models.sequence import (
    RecurrentNet,
    autocast_dtype,
    fit_recurrent,
    idle_cores,
    select_device,
    torch_threads,
)
from ml_cloud_optimizer.models.windows import INPUT_CHANNELS, EntityScaler, build_panel, epoch_seconds

__all__ = [
    "BasePeakModel",
    "PeakClassifier",
    "SequencePeakClassifier",
    "choose_threshold",
    "recall_at_precision",
]

_CONFIG_FILE = "peak.json"
_BOOSTER_FILE = "peak_lightgbm.txt"
_WEIGHTS_FILE = "peak_gru.pt"
_PREDICT_BATCH = 8192
_MIN_THRESHOLD = 1e-3  # an idle entity's threshold can be ~0; keep ratios finite



def recall_at_precision(y_true, score, min_precision: float) -> float:
    """Highest recall among thresholds whose precision is at least ``min_precision`` (0 when none)."""
    precision, recall, _ = precision_recall_curve(np.asarray(y_true, dtype=bool), np.asarray(score, dtype=float))
    ok = precision >= min_precision
    return float(recall[ok].max()) if ok.any() else 0.0


def choose_threshold(y_true, proba, decision: str = "f1", min_precision: float = 0.5) -> float:
    """Probability cut-off chosen on validation rows.

    ``decision="f1"`` maximises F1; ``"precision"`` takes the lowest cut-off whose precision
    reaches ``min_precision`` (the most recall at that precision), falling back to F1 when
    none does. 0.5 when the validation rows hold a single class.
    """
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
    ``_scores(metrics) -> (frame, scores)``, ``_save_model`` and ``_load_model``.
    """

    kind: ClassVar[str] = "abstract"

    def fit(self, metrics: pd.DataFrame, entities: pd.DataFrame | None = None) -> "BasePeakModel":
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
        labels = peak_labels(metrics, self.horizon, threshold=self._threshold_map(metrics["entity_id"]))
        labelled = labels.notna().to_numpy()
        train, val = train_rows & labelled, (seconds >= cutoff) & labelled
        y = labels.fillna(False).to_numpy(dtype=bool)
        if y[train].sum() < 2:
            raise ValueError(f"{self.kind}: fewer than 2 peak rows in the training window; nothing to learn from")
        return y, train, val

    def _choose_threshold(self, y_val: np.ndarray, scores: np.ndarray) -> None:
        """The decision cut-off and the validation PR-AUC, from the validation rows' scores."""
        self.decision_threshold_ = choose_threshold(y_val, scores, self.decision, self.min_precision)
        self.n_validation_rows_ = int(len(y_val))
        self.validation_pr_auc_ = (float(average_precision_score(y_val, scores))
                                   if 0 < y_val.sum() < len(y_val) else float("nan"))

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

    def save(self, directory: str | Path) -> Path:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        config = {
            "kind": self.kind,
            "params": {k: v for k, v in self.get_params().items() if k != "spec"},
            "thresholds": {str(k): float(v) for k, v in self.thresholds_.items()},
            "fallback_threshold": self.fallback_threshold_,
            "decision_threshold": self.decision_threshold_,
            "split_ts": self.split_ts_.isoformat(),
            **self._save_model(directory),
        }
        (directory / _CONFIG_FILE).write_text(json.dumps(config, indent=2, sort_keys=True))
        return directory

    @staticmethod
    def load(directory: str | Path) -> "BasePeakModel":
        """The peak model saved in ``directory``, whichever kind it is."""
        directory = Path(directory)
        path = directory / _CONFIG_FILE
        if not path.exists():
            raise FileNotFoundError(f"{directory} holds no {_CONFIG_FILE}: not a peak model directory")
        config = json.loads(path.read_text())
        cls = {c.kind: c for c in (PeakClassifier, SequencePeakClassifier)}.get(config["kind"])
        if cls is None:
            raise ValueError(f"{path}: unknown peak model kind {config['kind']!r}")
        model = cls._load_model(directory, config)
        model.thresholds_ = pd.Series(config["thresholds"], dtype="float64")
        model.fallback_threshold_ = float(config["fallback_threshold"])
        model.decision_threshold_ = float(config["decision_threshold"])
        model.split_ts_ = pd.Timestamp(config["split_ts"])
        return model

    def _threshold_map(self, entity_id: pd.Series) -> pd.Series:
        """Each entity's threshold, the pooled one for entities not seen in training."""
        unique = pd.unique(entity_id.astype(str))
        return pd.Series(self.thresholds_.reindex(unique).fillna(self.fallback_threshold_).to_numpy(), index=unique)

    def _row_thresholds(self, entity_id: pd.Series) -> np.ndarray:
        return entity_id.astype(str).map(self._threshold_map(entity_id)).to_numpy(dtype="float64")


class PeakClassifier(BasePeakModel):
    """LightGBM on the shared feature rows in threshold units; SMOTE or class weights for the rare positives.

    Args:
        horizon: steps ahead the peak label looks (12 = the next hour).
        quantile: each entity's threshold is this quantile of its training load.
        use_smote: oversample training peaks with SMOTE instead of weighting classes.
        decision: how the probability cut-off is chosen on validation ("f1" or "precision").
        min_precision: the precision ``decision="precision"`` must keep.
        validation: share of the latest time held out to stop boosting and choose the cut-off.
        n_estimators, learning_rate, num_leaves, min_child_samples, colsample_bytree, early_stopping_rounds:
            LightGBM settings; the defaults are kept small because peaks are few.
        seed: seeds LightGBM and SMOTE.
        spec: the ``FeatureSpec`` (None: the default one).
    """

    kind: ClassVar[str] = "lightgbm"

    def __init__(self, horizon: int = 12, quantile: float = 0.95, use_smote: bool = False, decision: str = "f1",
                 min_precision: float = 0.5, validation: float = 0.2, n_estimators: int = 300,
                 learning_rate: float = 0.05, num_leaves: int = 15, min_child_samples: int = 100,
                 colsample_bytree: float = 0.5, early_stopping_rounds: int = 30, seed: int = 0,
                 spec: FeatureSpec | None = None):
        self.horizon = horizon
        self.quantile = quantile
        self.use_smote = use_smote
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
        return self.spec_ if hasattr(self, "spec_") else (self.spec or FeatureSpec())

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

    def _fit_scores(self, metrics, y, train, val) -> np.ndarray:
        self.spec_ = self.spec or FeatureSpec()
        rows = self.feature_rows(metrics)
        X = rows.drop(columns=["entity_id", "ts"])
        self.fill_values_ = X.loc[train].median().fillna(0.0)
        X_train, y_train = X.loc[train].fillna(self.fill_values_), y[train]
        self.n_train_rows_ = len(X_train)
        self.n_train_positives_ = int(y_train.sum())
        if self.use_smote:
            X_train, y_train = smote_resample(X_train, y_train, random_state=self.seed)
        return self._boost(X_train, y_train, X.loc[val].fillna(self.fill_values_), y[val])

    def fit_rows(self, X_train: pd.DataFrame, y_train, X_val: pd.DataFrame, y_val, *, fill_values) -> "PeakClassifier":
        """Boost on ready ``feature_rows`` (resampled already where wanted) and choose the cut-off on ``X_val``.

        For callers that label, split and resample in steps of their own (the pipeline makes
        SMOTE a task): ``label_split`` and ``feature_rows`` give the rows, this fits on them.
        ``fill_values`` are the training medians that fill missing features at prediction.
        """
        self.fill_values_ = pd.Series(fill_values, dtype="float64")
        y_val = np.asarray(y_val, dtype=bool)
        self._choose_threshold(y_val, self._boost(X_train, np.asarray(y_train, dtype=bool),
                                                  X_val.fillna(self.fill_values_), y_val))
        return self

    def _boost(self, X_train: pd.DataFrame, y_train, X_val: pd.DataFrame, y_val) -> np.ndarray:
        """LightGBM with early stopping on the validation rows; returns their scores."""
        self.feature_columns_ = list(X_train.columns)
        self.n_train_resampled_ = len(X_train)
        model = lgb.LGBMClassifier(
            n_estimators=self.n_estimators, learning_rate=self.learning_rate, num_leaves=self.num_leaves,
            min_child_samples=self.min_child_samples, colsample_bytree=self.colsample_bytree,
            class_weight=None if self.use_smote else "balanced", random_state=self.seed, verbose=-1,
            n_jobs=idle_cores(),
        )
        early = {}
        if len(X_val) and 0 < y_val.sum() < len(y_val):
            early = {**_eval_data(X_val, y_val), "eval_metric": "average_precision",
                     "callbacks": [lgb.early_stopping(self.early_stopping_rounds, verbose=False)]}
        model.fit(X_train, y_train, **early)
        self.booster_ = model.booster_
        self.best_iteration_ = int(model.best_iteration_ or model.n_estimators)
        return self._predict_rows(X_val)

    def _predict_rows(self, X: pd.DataFrame) -> np.ndarray:
        if X.empty:
            return np.zeros(0)
        values = X[self.feature_columns_].fillna(self.fill_values_)
        return self.booster_.predict(values, num_iteration=self.best_iteration_, num_threads=idle_cores())

    def _scores(self, metrics):
        rows = self.feature_rows(metrics)
        return rows, self._predict_rows(rows)

    def _save_model(self, directory: Path) -> dict:
        self.booster_.save_model(directory / _BOOSTER_FILE, num_iteration=self.best_iteration_)
        return {
            "booster_file": _BOOSTER_FILE,
            "feature_spec": self.spec_.to_dict(),
            "feature_columns": self.feature_columns_,
            "fill_values": {k: float(v) for k, v in self.fill_values_.items()},
            "best_iteration": self.best_iteration_,
        }

    @classmethod
    def _load_model(cls, directory: Path, config: dict) -> "PeakClassifier":
        spec = FeatureSpec.from_dict(config["feature_spec"])
        model = cls(**config["params"], spec=spec)
        model.spec_ = spec
        model.booster_ = lgb.Booster(model_file=str(directory / config["booster_file"]))
        model.feature_columns_ = list(config["feature_columns"])
        model.fill_values_ = pd.Series(config["fill_values"], dtype="float64")
        model.best_iteration_ = int(config["best_iteration"])
        return model


class SequencePeakClassifier(BasePeakModel):
    """A GRU over the forecasters' windows, plus the load's distance from the threshold, with the focal loss.

    Args:
        horizon, quantile, decision, min_precision, validation: as for ``PeakClassifier``.
        window, hidden, layers, epochs, batch_size, lr, patience, samples_per_epoch, seasonal_lag,
            device, seed, num_threads: as for ``sequence.SequenceForecaster``.
        gamma, alpha: the focal loss's focusing exponent and positive-class weight.
    """

    kind: ClassVar[str] = "gru_focal"

    def __init__(self, horizon: int = 12, quantile: float = 0.95, decision: str = "f1", min_precision: float = 0.5,
                 validation: float = 0.2, window: int = 48, hidden: int = 32, layers: int = 1, epochs: int = 6,
                 batch_size: int = 256, lr: float = 3e-3, patience: int = 2, samples_per_epoch: int | None = 32_768,
                 seasonal_lag: int = 288, gamma: float = 2.0, alpha: float | None = 0.5, device: str = "auto",
                 seed: int = 0, num_threads: int | None = None):
        self.horizon = horizon
        self.quantile = quantile
        self.decision = decision
        self.min_precision = min_precision
        self.validation = validation
        self.window = window
        self.hidden = hidden
        self.layers = layers
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.patience = patience
        self.samples_per_epoch = samples_per_epoch
        self.seasonal_lag = seasonal_lag
        self.gamma = gamma
        self.alpha = alpha
        self.device = device
        self.seed = seed
        self.num_threads = num_threads

    @property
    def min_history(self) -> int:
        back = self.seasonal_lag - self.horizon if self.seasonal_lag else 0
        return int(self.window + max(back, 0))

    def _network(self) -> RecurrentNet:
        return RecurrentNet("gru", len(INPUT_CHANNELS) + 1, self.hidden, self.layers, 1)

    def _panel(self, metrics: pd.DataFrame, device: torch.device):
        """The forecasters' panel with one more channel: load minus the entity's threshold, in its scale."""
        panel, self.scaler_ = build_panel(metrics, getattr(self, "scaler_", None), seasonal_lag=self.seasonal_lag,
                                          lead=self.horizon, device=device)
        gap = (panel.level - self._row_thresholds(panel.frame["entity_id"])) / panel.scale
        extra = torch.as_tensor(gap, dtype=torch.float32, device=device)[:, None]
        return dataclasses.replace(panel, inputs=torch.cat([panel.inputs, extra], dim=1).contiguous())

    def _fit_scores(self, metrics, y, train, val) -> np.ndarray:
        device = select_device(self.device)
        with torch_threads(self.num_threads):
            panel = self._panel(metrics, device)
            grid_rows = _grid_rows(panel, metrics)  # metrics row -> panel row
            usable = panel.origins(self.min_history) & panel.complete(self.window)
            ok_rows = usable[grid_rows]
            targets = np.zeros((len(panel), 1), dtype=np.float32)
            targets[grid_rows, 0] = y
            train_rows, val_rows = grid_rows[train & ok_rows], grid_rows[val & ok_rows]
            self.n_train_rows_ = self.n_train_resampled_ = len(train_rows)
            self.n_train_positives_ = int(targets[train_rows, 0].sum())
            torch.manual_seed(self.seed)
            self.net_ = self._network().to(device)
            self.history_ = fit_recurrent(
                self.net_, panel, torch.from_numpy(targets).to(device), train_rows, val_rows,
                FocalLoss(self.gamma, self.alpha), window=self.window, epochs=self.epochs,
                batch_size=self.batch_size, lr=self.lr, patience=self.patience,
                samples_per_epoch=self.samples_per_epoch, seed=self.seed, device=device,
            ).epochs
            scores = self._panel_scores(panel, grid_rows, device)
        self.net_.to("cpu").eval()
        return np.nan_to_num(scores[val], nan=0.0)

    def _panel_scores(self, panel, grid_rows: np.ndarray, device: torch.device) -> np.ndarray:
        """Peak probability per metrics row (NaN where the window is too short)."""
        rows = np.flatnonzero(panel.origins(self.min_history))
        net = self.net_.to(device).eval()
        proba = np.full(len(panel), np.nan)
        chunks = []
        with torch.inference_mode():
            index = torch.as_tensor(rows, dtype=torch.long, device=device)
            for start in range(0, len(index), _PREDICT_BATCH):
                x = panel.windows(index[start:start + _PREDICT_BATCH], self.window)
                with torch.autocast(device.type, dtype=autocast_dtype(device) or torch.float32,
                                    enabled=device.type == "cuda"):
                    chunks.append(torch.sigmoid(net(x).float()).cpu())
        if chunks:
            proba[rows] = torch.cat(chunks).numpy()[:, 0]
        return proba[grid_rows]

    def _scores(self, metrics):
        device = select_device(self.device)
        with torch_threads(self.num_threads):
            panel = self._panel(metrics, device)
            scores = self._panel_scores(panel, _grid_rows(panel, metrics), device)
        self.net_.to("cpu")
        frame = metrics[["entity_id", "ts"]].copy()
        frame["ts"] = pd.to_datetime(frame["ts"], utc=True)
        keep = ~np.isnan(scores)
        return frame.loc[keep], scores[keep]

    def _save_model(self, directory: Path) -> dict:
        torch.save(self.net_.state_dict(), directory / _WEIGHTS_FILE)
        return {"weights_file": _WEIGHTS_FILE, "scaler": self.scaler_.to_dict(),
                "input_channels": [*INPUT_CHANNELS, "cpu_over_threshold"]}

    @classmethod
    def _load_model(cls, directory: Path, config: dict) -> "SequencePeakClassifier":
        model = cls(**config["params"])
        model.net_ = model._network()
        model.net_.load_state_dict(torch.load(directory / config["weights_file"], map_location="cpu",
                                              weights_only=True))
        model.net_.eval()
        model.scaler_ = EntityScaler.from_dict(config["scaler"])
        return model


def _eval_data(X, y) -> dict:
    """Validation data in the form this LightGBM takes (``eval_X``/``eval_y`` from 4.6, ``eval_set`` before)."""
    if "eval_X" in inspect.signature(lgb.LGBMClassifier.fit).parameters:
        return {"eval_X": (X,), "eval_y": (y,)}
    return {"eval_set": [(X, y)]}


def _grid_rows(panel, metrics: pd.DataFrame) -> np.ndarray:
    """For each metrics row, its row in the panel (both keyed by entity and 5-minute slot)."""
    keys = pd.MultiIndex.from_arrays([panel.frame["entity_id"].astype(str), panel.frame["ts"]])
    wanted = pd.MultiIndex.from_arrays([
        metrics["entity_id"].astype(str), pd.to_datetime(metrics["ts"], utc=True).dt.floor(f"{STEP_SECONDS}s"),
    ])
    return keys.get_indexer(wanted)


def check_metrics(metrics: pd.DataFrame) -> None:
    """Raise ``DataValidationError`` unless ``metrics`` has rows and the key and target columns."""
    missing = [c for c in ("entity_id", "ts", TARGET) if c not in metrics.columns]
    if missing:
        raise DataValidationError(f"metrics: missing columns {', '.join(missing)}")
    if metrics.empty:
        raise DataValidationError("metrics: no rows")
