"""What the gradient-boosted forecasters share: targets, early stopping, the one booster loop.

Each forecaster reads ``build_features`` rows and fits one booster per horizon (and one more
per horizon for the p90 quantile), under an absolute-error (or quantile) loss: the metric it
is judged on. What it learns - the level ``y(t + h)`` or the change ``y(t + h) - y(t)`` - and
on which feature set is chosen per dataset on a validation window (``models.tabular_choice``):
the change wins on bursty load, where persistence (``z = 0``) is what to beat, the level on
load that reverts to a mean.

The libraries (``models.tabular``) differ only in how a booster is trained, run, saved and
loaded; everything else - targets, early stopping on the last window of the training data,
the Optuna search, the forecast frame - is here.

``predict_matrix`` is the one loop that turns feature rows into forecasts: ``predict``,
``predict_last`` and ``predict_features`` reach it through a frame, the model server calls it
with a request's matrix, and Optuna's trials score through the same ``predict_booster``
(target transform, then ``clip_forecast``). A forecast is the same number whichever way it
is asked for, which is what the serving tests hold bit for bit.
"""

from __future__ import annotations

import abc
import logging
import time
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from ml_cloud_optimizer.data.schema import STEP
from ml_cloud_optimizer.features.sets import FEATURE_SETS, spec_for
from ml_cloud_optimizer.features.tabular import FeatureSpec, build_feature_rows, build_features
from ml_cloud_optimizer.horizons import DEFAULT_HORIZONS, HEADLINE_HORIZON
from ml_cloud_optimizer.models.base import Forecaster, clip_forecast, forecast_column
from ml_cloud_optimizer.models.tabular_choice import (
    AUTO,
    TARGET_MODES,
    choose_config,
    nanoseconds,
    training_rows,
    validation_split,
)
from ml_cloud_optimizer.models.tabular_files import TabularFiles

__all__ = ["TARGET_MODES", "TabularForecaster"]

_log = logging.getLogger(__name__)


class TabularForecaster(TabularFiles, Forecaster):
    """Shared fit/predict/save/load of the gradient-boosted forecasters; subclasses add a backend.

    Args:
        horizons: steps ahead to forecast.
        features: ``FeatureSpec`` fields to override (its ``horizons`` follow ``horizons``); the
            base of every feature set.
        target_mode: "delta" (learn y(t+h) - y(t)), "level" (learn y(t+h)) or "auto" (the one
            that does better on the validation window, see the module doc).
        feature_set: "rich", "lags" (``features.sets``) or "auto" (chosen alike).
        quantile: fit a p90 booster per horizon too (``p90_h{h}`` columns).
        n_estimators: most boosting rounds; early stopping usually ends sooner.
        learning_rate: shrinkage.
        early_stopping_rounds: rounds without improvement on the validation window before stopping.
        validation_fraction: share of the training span, at its end, used for early stopping
            and for the "auto" choices.
        refit: after early stopping, refit on all rows with the best round count.
        max_train_rows: rows kept per horizon, evenly spaced in time (neighbouring origins are
            nearly copies of each other); ``None`` keeps all.
        n_trials, timeout: Optuna budget for tuning on time-series folds (0 and 0: defaults).
        params: library parameters overriding the defaults (what tuning fills in).
        p90_margin: added to the p90 forecast per horizon (``{12: 0.01}``): a conformal margin
            fitted on a validation window by evaluation (``evaluation.selection``); None adds nothing.
        n_jobs: threads.
        random_state: seed.

    Fitted state (set by ``fit`` and by ``Forecaster.load`` alike):
        spec_: the ``FeatureSpec`` the boosters were trained on.
        target_mode_, feature_set_, config_scores_: the configuration used and the validation
            MAE of each one tried (empty when none was tried).
        feature_columns_: ``spec_.columns``, the column order of ``predict_matrix``'s input.
        target_index_: position of the current value (``spec_.target``) in that order.
        boosters_, rounds_, params_: boosters and round counts by forecast column; parameters.
        fit_seconds_: wall time of ``fit`` (as saved, for a loaded model).
    """

    has_quantiles: ClassVar[bool] = True
    default_params: ClassVar[dict[str, Any]] = {}
    file_suffix: ClassVar[str] = ".model"

    def __init__(
        self,
        horizons: tuple[int, ...] = DEFAULT_HORIZONS,
        features: dict | None = None,
        target_mode: str = AUTO,
        feature_set: str = AUTO,
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
        p90_margin: dict | None = None,
        n_jobs: int = 2,
        random_state: int = 0,
    ):
        self.horizons = horizons
        self.features = features
        self.target_mode = target_mode
        self.feature_set = feature_set
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
        self.p90_margin = p90_margin
        self.n_jobs = n_jobs
        self.random_state = random_state

    # ----------------------------------------------------------------- what a backend provides
    @abc.abstractmethod
    def train_booster(self, params: dict, loss: str, X, z, valid, rounds: int):
        """Fit one booster for ``loss`` ("p50" or "p90") on targets ``z``; return ``(booster, rounds_used)``.

        ``params`` are library parameters (``base_params()`` plus what tuning proposes);
        ``valid`` is ``(X, z)`` for early stopping, or None to run all ``rounds``. Public so
        that benchmarks time exactly the step ``fit`` runs.
        """

    @abc.abstractmethod
    def _predict_booster(self, booster, X: np.ndarray) -> np.ndarray:
        """The booster's raw prediction (in target units) for the design matrix ``X``."""

    @abc.abstractmethod
    def _save_booster(self, booster, path: Path) -> None: ...

    @abc.abstractmethod
    def _load_booster(self, path: Path): ...

    @staticmethod
    def search_space(trial) -> dict:  # noqa: ARG004 (the interface subclasses override)
        """Library parameters an Optuna ``trial`` proposes; subclasses widen it."""
        return {}

    # ----------------------------------------------------------------- features and targets
    @property
    def feature_spec(self) -> FeatureSpec:
        """``spec_`` once fitted or loaded; before that, the spec the parameters describe."""
        return self.spec_ if hasattr(self, "spec_") else self._spec_from_params()

    def _spec_from_params(self) -> FeatureSpec:
        return FeatureSpec(**{**(self.features or {}), "horizons": tuple(self.horizons)})

    def _set_spec(self, spec: FeatureSpec) -> None:
        """The fitted feature state, so that the matrix path needs no spec rebuilt per call."""
        self.spec_ = spec
        self.feature_columns_ = list(spec.columns)
        self.target_index_ = self.feature_columns_.index(spec.target)

    @property
    def min_history(self) -> int:
        """Enough for the lags; longer windows and seasonal lags use what there is (see ``full_history``)."""
        return max(max(self.feature_spec.lags, default=0), 12) + 1

    @property
    def full_history(self) -> int:
        """Steps after which every feature is computed from complete windows."""
        return self.feature_spec.lookback

    def _check(self) -> None:
        if self.target_mode not in (*TARGET_MODES, AUTO):
            raise ValueError(f"target_mode {self.target_mode!r}: expected one of {', '.join(TARGET_MODES)} or auto")
        if self.feature_set not in (*FEATURE_SETS, AUTO):
            raise ValueError(f"feature_set {self.feature_set!r}: expected one of {', '.join(FEATURE_SETS)} or auto")
        if not 0 < self.validation_fraction < 0.5:
            raise ValueError(f"validation_fraction {self.validation_fraction}: expected a value in (0, 0.5)")

    def _design(self, features: pd.DataFrame) -> np.ndarray:
        """The float32 matrix of ``features``, which ``fit`` gives the training rows only (``training_rows``)."""
        return features[self.feature_spec.columns].to_numpy(dtype="float32", na_value=np.nan)

    def _anchor(self, features: pd.DataFrame) -> np.ndarray:
        """The last observed value at each origin: what a delta forecast is added to."""
        return features[self.feature_spec.target].to_numpy(dtype="float64", na_value=np.nan)

    def _to_target(self, y, anchor):
        return y if self.target_mode_ == "level" else y - anchor

    def _from_target(self, z, anchor):
        return z if self.target_mode_ == "level" else anchor + z

    def base_params(self) -> dict:
        """Library parameters before tuning: the class defaults under the ``params`` given."""
        return {**self.default_params, **(self.params or {})}

    # ----------------------------------------------------------------- fitting
    def fit(self, metrics: pd.DataFrame, entities: pd.DataFrame | None = None) -> TabularForecaster:
        """Fit a p50 (and p90) booster per horizon on every origin of ``metrics`` with a known future.

        The rows are chosen first (``training_rows``) and features built for them alone, a
        block of entities at a time, so the fit's memory follows ``max_train_rows``, not the fleet.
        """
        started = time.perf_counter()
        self._check()
        picked = training_rows(self, metrics, self._spec_from_params())
        choice = choose_config(self, metrics, picked)
        self.target_mode_, self.feature_set_ = choice.target_mode, choice.feature_set
        self.config_scores_ = choice.scores
        if choice.scores:
            scores = ", ".join(f"{k} {v:.5g}" for k, v in choice.scores.items())
            _log.info("%s: %s target on %s features (validation MAE %s)", self.kind, *self.config_, scores)
        self._set_spec(spec_for(self.feature_set_, self._spec_from_params()))
        features = choice.features
        if features is None or choice.spec != self.spec_:
            features = build_feature_rows(metrics, self.spec_, picked.positions)
        X = self._design(features)
        anchor = self._anchor(features)
        ts = features["ts"]
        del features, choice
        params = self.base_params()
        if self.n_trials or self.timeout:
            from ml_cloud_optimizer.models.tuning import tune_tabular

            h = HEADLINE_HORIZON if HEADLINE_HORIZON in self.horizons else max(self.horizons)
            rows, y = picked.rows[h], picked.y[h]
            self.study_ = tune_tabular(self, X[rows], y[rows], anchor[rows], ts.iloc[rows], h)
            params = {**params, **self.study_.best_params}
        self.params_ = params
        self.boosters_, self.rounds_ = {}, {}
        for h in self.horizons:
            rows, y = picked.rows[h], picked.y[h]
            if len(rows) < 100:
                raise ValueError(f"{self.kind}: only {len(rows)} training rows with a known value {h} steps ahead")
            losses = ("p50", "p90") if self.quantile else ("p50",)
            for loss in losses:
                step = time.perf_counter()
                booster, rounds = self.fit_booster(params, loss, X[rows], y[rows], anchor[rows], ts.iloc[rows], h)
                _log.debug(
                    "%s %s: %d rounds on %d rows in %.1fs",
                    self.kind,
                    forecast_column(h, loss),
                    rounds,
                    len(rows),
                    time.perf_counter() - step,
                )
                self.boosters_[forecast_column(h, loss)] = booster
                self.rounds_[forecast_column(h, loss)] = int(rounds)
        self.fit_seconds_ = time.perf_counter() - started
        return self

    def _training_rows(self, y, anchor, ts: pd.Series) -> np.ndarray:
        rows = np.flatnonzero(~np.isnan(y) & ~np.isnan(anchor))
        if self.max_train_rows and len(rows) > self.max_train_rows:
            order = rows[np.argsort(nanoseconds(ts)[rows], kind="stable")]
            rows = np.sort(order[np.linspace(0, len(order) - 1, self.max_train_rows).astype(np.int64)])
        return rows

    def fit_booster(self, params, loss, X, y, anchor, ts: pd.Series, horizon: int):
        """Fit one booster with early stopping on the last ``validation_fraction`` of the span (refit optional).

        The training part ends ``horizon`` steps before the validation window starts, so no
        training target lies inside it.
        """
        z = self._to_target(y, anchor)
        fit_rows, val_rows = validation_split(nanoseconds(ts), self.validation_fraction, horizon)
        if fit_rows.sum() < 50 or val_rows.sum() < 20:
            return self.train_booster(params, loss, X, z, None, self.n_estimators)
        booster, rounds = self.train_booster(
            params, loss, X[fit_rows], z[fit_rows], (X[val_rows], z[val_rows]), self.n_estimators
        )
        if self.refit:
            booster, rounds = self.train_booster(params, loss, X, z, None, max(int(rounds * 1.1), 1))
        return booster, rounds

    # ----------------------------------------------------------------- forecasting
    def predict_booster(self, booster, X: np.ndarray, anchor: np.ndarray) -> np.ndarray:
        """One booster's forecasts in utilisation units: its raw output, the target transform, ``clip_forecast``.

        Args:
            booster: one of ``boosters_`` (or a trial's booster during tuning).
            X: float32 design matrix in ``feature_columns_`` order, NaN allowed.
            anchor: float64 current value per row (column ``target_index_`` of the rows).

        Returns:
            float64 array of ``len(X)`` forecasts; empty (without calling the booster) for no rows.
        """
        z = self._predict_booster(booster, X) if len(X) else np.empty(0)
        return clip_forecast(self._from_target(z, anchor))

    def predict_matrix(
        self, X: np.ndarray, horizons: tuple[int, ...] | None = None, quantiles: tuple[str, ...] = ("p50", "p90")
    ) -> dict[str, np.ndarray]:
        """Forecasts for a matrix of ready-made feature rows: the one booster loop every prediction runs.

        Args:
            X: ``(rows, len(feature_columns_))`` numbers in ``feature_columns_`` order (the
                columns of ``build_features`` under ``spec_``), NaN for missing features.
                Pass float64, as ``predict_features`` does: the boosters see the matrix as
                float32, but the current value (column ``target_index_``), which a delta
                forecast is added to, is read as given, so float32 input rounds it. A row
                whose current value is NaN forecasts NaN.
            horizons: horizons to forecast (default: ``horizons``); only their boosters run,
                so a client that asks for one forecast pays for one booster. A horizon
                without boosters is skipped, not an error: callers check what they accept.
            quantiles: of ``"p50"`` and ``"p90"``. p50 always runs, since p90 is kept at or
                above it; a quantile without boosters (``quantile=False``) is skipped.

        Returns:
            ``{"p50_h12": array, "p90_h12": array, ...}`` (``forecast_column`` names; per
            horizon p50 then p90, horizons in the order asked), each an array of length
            ``len(X)``, clipped to ``[0, UTIL_MAX]`` by ``clip_forecast``; p90 is floored by
            p50 with ``np.fmax`` (a NaN p50 leaves p90 as it is).

        Example:
            >>> out = model.predict_matrix(rows[model.feature_columns_].to_numpy("float64"), horizons=(12,))
            >>> sorted(out)
            ['p50_h12', 'p90_h12']
        """
        X = np.asarray(X)
        design = np.ascontiguousarray(X, dtype=np.float32)
        anchor = np.asarray(X[:, self.target_index_], dtype="float64")
        quantiles = ("p50", *(q for q in quantiles if q != "p50"))
        out: dict[str, np.ndarray] = {}
        for h in horizons or self.horizons:
            for quantile in quantiles:
                name = forecast_column(h, quantile)
                if name in self.boosters_:
                    out[name] = self.predict_booster(self.boosters_[name], design, anchor)
            p50, p90 = forecast_column(h, "p50"), forecast_column(h, "p90")
            if p90 in out:
                out[p90] = np.fmax(clip_forecast(out[p90] + self._margin(h)), out[p50])
        return out

    @property
    def config_(self) -> tuple[str, str]:
        """The fitted (target mode, feature set)."""
        return self.target_mode_, self.feature_set_

    def _margin(self, horizon: int) -> float:
        """The p90 margin of ``horizon`` (keys may be text: saved parameters go through JSON)."""
        margin = self.p90_margin or {}
        return float(margin.get(horizon, margin.get(str(horizon), 0.0)))

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
        ``min_history`` steps of their entity before them (as ``predict`` does). The numbers
        come from ``predict_matrix``.
        """
        missing = [c for c in ["entity_id", "ts", *self.feature_columns_] if c not in features.columns]
        if missing:
            raise ValueError(f"{self.kind}: feature rows lack {len(missing)} columns (first: {missing[0]})")
        keep = ~np.isnan(features[self.spec_.target].to_numpy(dtype="float64", na_value=np.nan))
        if check_history:
            first = features.groupby("entity_id", observed=True)["ts"].transform("min")
            keep &= ((features["ts"] - first) // STEP).to_numpy() >= self.min_history - 1
        rows = features.loc[keep]
        out = rows[["entity_id", "ts"]].copy()
        matrix = rows[self.feature_columns_].to_numpy(dtype="float64", na_value=np.nan)
        for name, values in self.predict_matrix(matrix).items():
            out[name] = values
        return out.sort_values(["entity_id", "ts"], kind="stable").reset_index(drop=True)
