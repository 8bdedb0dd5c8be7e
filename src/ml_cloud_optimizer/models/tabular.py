"""Gradient-boosted forecasters (LightGBM, XGBoost, CatBoost): one global model over all entities.

Each forecaster reads ``build_features`` rows and fits one booster per horizon (and one more
per horizon for the p90 quantile). Rather than the level, a booster learns the change from
the last value, ``z = y(t + h) - y(t)``, under an absolute-error (or quantile) loss: the metric
it is judged on. Persistence is the forecast ``z = 0``, which the model departs from only
where the data support it; on bursty cloud load that is what beats persistence at all (a
squared-error model on the level loses to it on the Bitbrains trace).

The three libraries differ only in how a booster is built, fitted, saved and loaded
(``_Backend``); everything else - targets, early stopping on the last window of the training
data, the Optuna search, the forecast frame - is shared.
"""

from __future__ import annotations

import abc
import json
import logging
import time
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from ml_cloud_optimizer.data.schema import STEP, UTIL_MAX
from ml_cloud_optimizer.features.tabular import FeatureSpec, build_features
from ml_cloud_optimizer.features.targets import make_targets, target_column
from ml_cloud_optimizer.models.base import DEFAULT_HORIZONS, HEADLINE_HORIZON, Forecaster, forecast_column, register_forecaster

__all__ = [
    "TabularForecaster",
    "LightGBMForecaster",
    "XGBoostForecaster",
    "CatBoostForecaster",
    "TARGET_MODES",
]

TARGET_MODES = ("delta", "level")
_log = logging.getLogger(__name__)
_P90 = 0.9


class TabularForecaster(Forecaster):
    """Shared fit/predict/save/load of the gradient-boosted forecasters; subclasses add a backend.

    Args:
        horizons: steps ahead to forecast.
        features: ``FeatureSpec`` fields to override (its ``horizons`` follow ``horizons``).
        target_mode: "delta" (learn y(t+h) - y(t), see the module doc) or "level" (learn y(t+h)).
        quantile: fit a p90 booster per horizon too (``p90_h{h}`` columns).
        n_estimators: most boosting rounds; early stopping usually ends sooner.
        learning_rate: shrinkage.
        early_stopping_rounds: rounds without improvement on the validation window before stopping.
        validation_fraction: share of the training span, at its end, used for early stopping.
        refit: after early stopping, refit on all rows with the best round count.
        max_train_rows: rows kept per horizon, evenly spaced in time (neighbouring origins are
            nearly copies of each other); ``None`` keeps all.
        n_trials, timeout: Optuna budget for tuning on time-series folds (0 and 0: defaults).
        params: library parameters overriding the defaults (what tuning fills in).
        n_jobs: threads.
        random_state: seed.
    """

    has_quantiles: ClassVar[bool] = True
    default_params: ClassVar[dict[str, Any]] = {}

    def __init__(
        self,
        horizons: tuple[int, ...] = DEFAULT_HORIZONS,
        features: dict | None = None,
        target_mode: str = "delta",
        quantile: bool = True,
        n_estimators: int = 500,
        learning_rate: float = 0.1,
        early_stopping_rounds: int = 50,
        validation_fraction: float = 0.1,
        refit: bool = True,
        max_train_rows: int | None = 100_000,
        n_trials: int = 0,
        timeout: float = 0,
        params: dict | None = None,
        n_jobs: int = 2,
        random_state: int = 0,
    ):
        self.horizons = horizons
        self.features = features
        self.target_mode = target_mode
        self.quantile = quantile
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.early_stopping_rounds = early_stopping_rounds
        self.validation_fraction = validation_fraction
        self.refit = refit
        self.max_train_rows = max_train_rows
        self.n_trials = n_trials
        self.timeout = timeout
        self.params = params
        self.n_jobs = n_jobs
        self.random_state = random_state

    # ----------------------------------------------------------------- what a backend provides
    @abc.abstractmethod
    def _train(self, params: dict, loss: str, X, z, valid, rounds: int):
        """Fit one booster for ``loss`` ("p50" or "p90") and return ``(booster, rounds_used)``.

        ``valid`` is ``(X, z)`` for early stopping, or None to run all ``rounds``.
        """

    @abc.abstractmethod
    def _predict_booster(self, booster, X: np.ndarray) -> np.ndarray:
        """The booster's raw prediction (in target units) for the design matrix ``X``."""

    @abc.abstractmethod
    def _save_booster(self, booster, path: Path) -> None: ...

    @abc.abstractmethod
    def _load_booster(self, path: Path): ...

    file_suffix: ClassVar[str] = ".model"

    @staticmethod
    def search_space(trial) -> dict:
        """Library parameters an Optuna ``trial`` proposes; subclasses widen it."""
        return {}

    # ----------------------------------------------------------------- shared logic
    @property
    def feature_spec(self) -> FeatureSpec:
        return FeatureSpec(**{**(self.features or {}), "horizons": tuple(self.horizons)})

    @property
    def min_history(self) -> int:
        """Enough for the lags; longer windows and seasonal lags use what there is (see ``full_history``)."""
        return max(max(self.feature_spec.lags, default=0), 12) + 1

    @property
    def full_history(self) -> int:
        """Steps after which every feature is computed from complete windows."""
        return self.feature_spec.lookback

    def _check(self) -> None:
        if self.target_mode not in TARGET_MODES:
            raise ValueError(f"target_mode {self.target_mode!r}: expected one of {', '.join(TARGET_MODES)}")
        if not 0 < self.validation_fraction < 0.5:
            raise ValueError(f"validation_fraction {self.validation_fraction}: expected a value in (0, 0.5)")

    def _design(self, features: pd.DataFrame) -> np.ndarray:
        return features[self.feature_spec.columns].to_numpy(dtype="float32", na_value=np.nan)

    def _anchor(self, features: pd.DataFrame) -> np.ndarray:
        """The last observed value at each origin: what a delta forecast is added to."""
        return features[self.feature_spec.target].to_numpy(dtype="float64", na_value=np.nan)

    def _to_target(self, y, anchor):
        return y if self.target_mode == "level" else y - anchor

    def _from_target(self, z, anchor):
        return z if self.target_mode == "level" else anchor + z

    def _merged_params(self) -> dict:
        return {**self.default_params, **(self.params or {})}

    def fit(self, metrics: pd.DataFrame, entities: pd.DataFrame | None = None) -> "TabularForecaster":
        """Fit a p50 (and p90) booster per horizon on every origin of ``metrics`` with a known future."""
        self._check()
        features = build_features(metrics, self.feature_spec)
        targets = make_targets(metrics, self.horizons)
        X = self._design(features)
        anchor = self._anchor(features)
        ts = features["ts"]
        params = self._merged_params()
        if self.n_trials or self.timeout:
            from ml_cloud_optimizer.models.tuning import tune_tabular

            h = HEADLINE_HORIZON if HEADLINE_HORIZON in self.horizons else max(self.horizons)
            y = targets[target_column(h)].to_numpy(dtype="float64", na_value=np.nan)
            rows = self._training_rows(y, anchor, ts)
            self.study_ = tune_tabular(self, X[rows], y[rows], anchor[rows], ts.iloc[rows], h)
            params = {**params, **self.study_.best_params}
        self.params_ = params
        self.boosters_, self.rounds_ = {}, {}
        for h in self.horizons:
            y = targets[target_column(h)].to_numpy(dtype="float64", na_value=np.nan)
            rows = self._training_rows(y, anchor, ts)
            if len(rows) < 100:
                raise ValueError(f"{self.kind}: only {len(rows)} training rows with a known value {h} steps ahead")
            losses = ("p50", "p90") if self.quantile else ("p50",)
            for loss in losses:
                started = time.perf_counter()
                booster, rounds = self.fit_booster(params, loss, X[rows], y[rows], anchor[rows], ts.iloc[rows], h)
                _log.info("%s %s: %d rounds on %d rows in %.1fs", self.kind, forecast_column(h, loss), rounds,
                          len(rows), time.perf_counter() - started)
                self.boosters_[forecast_column(h, loss)] = booster
                self.rounds_[forecast_column(h, loss)] = int(rounds)
        return self

    def _training_rows(self, y, anchor, ts: pd.Series) -> np.ndarray:
        rows = np.flatnonzero(~np.isnan(y) & ~np.isnan(anchor))
        if self.max_train_rows and len(rows) > self.max_train_rows:
            order = rows[np.argsort(_nanoseconds(ts)[rows], kind="stable")]
            rows = np.sort(order[np.linspace(0, len(order) - 1, self.max_train_rows).astype(np.int64)])
        return rows

    def fit_booster(self, params, loss, X, y, anchor, ts: pd.Series, horizon: int):
        """Fit one booster with early stopping on the last ``validation_fraction`` of the span (refit optional).

        The training part ends ``horizon`` steps before the validation window starts, so no
        training target lies inside it.
        """
        z = self._to_target(y, anchor)
        t = _nanoseconds(ts)
        start, end = t.min(), t.max()
        cut = start + (end - start) * (1 - self.validation_fraction)
        fit_rows = t + horizon * STEP.value < cut
        val_rows = t >= cut
        if fit_rows.sum() < 50 or val_rows.sum() < 20:
            return self._train(params, loss, X, z, None, self.n_estimators)
        booster, rounds = self._train(params, loss, X[fit_rows], z[fit_rows], (X[val_rows], z[val_rows]),
                                      self.n_estimators)
        if self.refit:
            booster, rounds = self._train(params, loss, X, z, None, max(int(rounds * 1.1), 1))
        return booster, rounds

    def predict(self, metrics: pd.DataFrame) -> pd.DataFrame:
        """Forecast frame for every origin with ``min_history`` steps behind it."""
        features = build_features(metrics, self.feature_spec)
        return self.predict_features(features, check_history=True)

    def predict_last(self, metrics: pd.DataFrame, features: pd.DataFrame | None = None) -> pd.DataFrame:
        """Forecasts from the last origin of each entity; features are built once, boosters run on one row each."""
        if features is None:
            features = build_features(metrics, self.feature_spec)
        last = features.sort_values(["entity_id", "ts"], kind="stable").groupby("entity_id", observed=True).tail(1)
        first = features.groupby("entity_id", observed=True)["ts"].min()
        enough = (last["ts"] - last["entity_id"].map(first).astype(last["ts"].dtype)) // STEP >= self.min_history - 1
        return self.predict_features(last.loc[enough.to_numpy()])

    def predict_features(self, features: pd.DataFrame, check_history: bool = False) -> pd.DataFrame:
        """Forecast frame from ready-made ``build_features`` rows (what serving may send instead of history).

        Every row with a current value is forecast; with ``check_history`` only rows with
        ``min_history`` steps of their entity before them (as ``predict`` does).
        """
        missing = [c for c in ["entity_id", "ts", *self.feature_spec.columns] if c not in features.columns]
        if missing:
            raise ValueError(f"{self.kind}: feature rows lack {len(missing)} columns (first: {missing[0]})")
        anchor_all = features[self.feature_spec.target].to_numpy(dtype="float64", na_value=np.nan)
        keep = ~np.isnan(anchor_all)
        if check_history:
            first = features.groupby("entity_id", observed=True)["ts"].transform("min")
            keep &= ((features["ts"] - first) // STEP).to_numpy() >= self.min_history - 1
        rows = features.loc[keep]
        X = self._design(rows)
        anchor = self._anchor(rows)
        out = rows[["entity_id", "ts"]].copy()
        for h in self.horizons:
            for loss in ("p50", "p90"):
                name = forecast_column(h, loss)
                if name in self.boosters_:
                    z = self._predict_booster(self.boosters_[name], X) if len(X) else np.empty(0)
                    out[name] = np.clip(self._from_target(z, anchor), 0.0, UTIL_MAX)
            if self.quantile:
                p50, p90 = forecast_column(h, "p50"), forecast_column(h, "p90")
                out[p90] = np.fmax(out[p90], out[p50])
        return out.sort_values(["entity_id", "ts"], kind="stable").reset_index(drop=True)

    def _save(self, directory: Path) -> dict:
        files = {}
        for name, booster in self.boosters_.items():
            files[name] = f"{name}{self.file_suffix}"
            self._save_booster(booster, directory / files[name])
        return {
            "feature_spec": self.feature_spec.to_dict(),
            "target_mode": self.target_mode,
            "booster_files": files,
            "booster_params": json.loads(json.dumps(self.params_, default=repr)),
            "rounds": self.rounds_,
            "full_history": int(self.full_history),
            "quantiles": ["p50", "p90"] if self.quantile else ["p50"],
        }

    @classmethod
    def _load(cls, directory: Path, metadata: dict) -> "TabularForecaster":
        params = {k: v for k, v in metadata.get("params", {}).items() if k in cls._get_param_names()}
        params["horizons"] = tuple(metadata["horizons"])
        model = cls(**params)
        model.features = {k: v for k, v in metadata["feature_spec"].items() if k != "horizons"}
        model.params_ = metadata.get("booster_params", {})
        model.rounds_ = metadata.get("rounds", {})
        model.boosters_ = {}
        for name, file in metadata["booster_files"].items():
            path = directory / file
            if not path.exists():
                raise FileNotFoundError(f"{directory}: model file {file} named in metadata is missing")
            model.boosters_[name] = model._load_booster(path)
        return model


def _nanoseconds(ts: pd.Series) -> np.ndarray:
    return pd.to_datetime(ts, utc=True).dt.tz_convert(None).to_numpy(dtype="datetime64[ns]").view("int64")


@register_forecaster
class LightGBMForecaster(TabularForecaster):
    """LightGBM booster per horizon and quantile; absolute-error objective for p50."""

    kind: ClassVar[str] = "lightgbm"
    file_suffix: ClassVar[str] = ".txt"
    default_params: ClassVar[dict[str, Any]] = {
        "num_leaves": 63,
        "min_data_in_leaf": 200,
        "feature_fraction": 0.8,
        "bagging_fraction": 0.8,
        "bagging_freq": 1,
        "lambda_l2": 1.0,
    }

    @staticmethod
    def search_space(trial) -> dict:
        return {
            "num_leaves": trial.suggest_int("num_leaves", 15, 255, log=True),
            "min_data_in_leaf": trial.suggest_int("min_data_in_leaf", 20, 1000, log=True),
            "feature_fraction": trial.suggest_float("feature_fraction", 0.4, 1.0),
            "lambda_l2": trial.suggest_float("lambda_l2", 1e-3, 10.0, log=True),
        }

    def _train(self, params, loss, X, z, valid, rounds):
        import lightgbm as lgb

        objective = {"objective": "l1"} if loss == "p50" else {"objective": "quantile", "alpha": _P90}
        full = {**params, **objective, "learning_rate": self.learning_rate, "num_threads": self.n_jobs,
                "seed": self.random_state, "verbose": -1}
        train = lgb.Dataset(X, z, free_raw_data=True)
        kwargs = {}
        if valid is not None:
            kwargs["valid_sets"] = [lgb.Dataset(valid[0], valid[1], reference=train)]
            kwargs["callbacks"] = [lgb.early_stopping(self.early_stopping_rounds, verbose=False)]
        booster = lgb.train(full, train, num_boost_round=rounds, **kwargs)
        used = booster.best_iteration if valid is not None and booster.best_iteration > 0 else booster.current_iteration()
        return booster, used

    def _predict_booster(self, booster, X):
        return booster.predict(X, num_iteration=self.rounds_for(booster))

    @staticmethod
    def rounds_for(booster):
        best = booster.best_iteration
        return best if best and best > 0 else None

    def _save_booster(self, booster, path):
        booster.save_model(str(path), num_iteration=self.rounds_for(booster))

    def _load_booster(self, path):
        import lightgbm as lgb

        return lgb.Booster(model_file=str(path))


@register_forecaster
class XGBoostForecaster(TabularForecaster):
    """XGBoost (hist) booster per horizon and quantile; absolute-error objective for p50."""

    kind: ClassVar[str] = "xgboost"
    file_suffix: ClassVar[str] = ".ubj"
    default_params: ClassVar[dict[str, Any]] = {
        "max_depth": 8,
        "min_child_weight": 5.0,
        "subsample": 0.8,
        "colsample_bytree": 0.8,
        "reg_lambda": 1.0,
        "max_bin": 256,
    }

    @staticmethod
    def search_space(trial) -> dict:
        return {
            "max_depth": trial.suggest_int("max_depth", 3, 10),
            "min_child_weight": trial.suggest_float("min_child_weight", 0.5, 50.0, log=True),
            "colsample_bytree": trial.suggest_float("colsample_bytree", 0.4, 1.0),
            "reg_lambda": trial.suggest_float("reg_lambda", 1e-3, 10.0, log=True),
        }

    def _train(self, params, loss, X, z, valid, rounds):
        import xgboost as xgb

        if loss == "p50":
            objective = {"objective": "reg:absoluteerror"}
        else:
            objective = {"objective": "reg:quantileerror", "quantile_alpha": _P90}
        full = {**params, **objective, "eta": self.learning_rate, "nthread": self.n_jobs,
                "seed": self.random_state, "tree_method": "hist", "verbosity": 0}
        train = xgb.QuantileDMatrix(X, z)
        kwargs = {}
        if valid is not None:
            kwargs["evals"] = [(xgb.DMatrix(valid[0], valid[1]), "valid")]
            kwargs["early_stopping_rounds"] = self.early_stopping_rounds
        booster = xgb.train(full, train, num_boost_round=rounds, verbose_eval=False, **kwargs)
        if valid is not None:
            booster = booster[: booster.best_iteration + 1]
        return booster, booster.num_boosted_rounds()

    def _predict_booster(self, booster, X):
        return booster.inplace_predict(X)

    def _save_booster(self, booster, path):
        booster.save_model(str(path))

    def _load_booster(self, path):
        import xgboost as xgb

        booster = xgb.Booster()
        booster.load_model(str(path))
        return booster


@register_forecaster
class CatBoostForecaster(TabularForecaster):
    """CatBoost (oblivious trees) booster per horizon and quantile; MAE loss for p50."""

    kind: ClassVar[str] = "catboost"
    file_suffix: ClassVar[str] = ".cbm"
    default_params: ClassVar[dict[str, Any]] = {
        "depth": 8,
        "l2_leaf_reg": 3.0,
        "border_count": 128,
    }

    @staticmethod
    def search_space(trial) -> dict:
        return {
            "depth": trial.suggest_int("depth", 4, 10),
            "l2_leaf_reg": trial.suggest_float("l2_leaf_reg", 0.1, 30.0, log=True),
        }

    def _train(self, params, loss, X, z, valid, rounds):
        from catboost import CatBoostRegressor, Pool

        loss_function = "MAE" if loss == "p50" else f"Quantile:alpha={_P90}"
        model = CatBoostRegressor(
            **params, loss_function=loss_function, iterations=rounds, learning_rate=self.learning_rate,
            thread_count=self.n_jobs, random_seed=self.random_state, verbose=False, allow_writing_files=False,
        )
        kwargs = {}
        if valid is not None:
            kwargs = {"eval_set": Pool(valid[0], valid[1]),
                      "early_stopping_rounds": self.early_stopping_rounds, "use_best_model": True}
        model.fit(Pool(X, z), **kwargs)
        return model, model.tree_count_

    def _predict_booster(self, booster, X):
        return booster.predict(X)

    def _save_booster(self, booster, path):
        booster.save_model(str(path), format="cbm")

    def _load_booster(self, path):
        from catboost import CatBoostRegressor

        return CatBoostRegressor().load_model(str(path), format="cbm")
