"""Gradient-boosted forecasters (LightGBM, XGBoost, CatBoost): one global model over all entities.

What the three share - delta targets, early stopping, tuning, the one booster loop
``predict_matrix`` - is ``TabularForecaster`` in ``models.tabular_base``; a class here only
says how its library trains, runs, saves and loads a booster, and which parameters Optuna
may search. The libraries are imported inside those methods, so importing this module (as
the registry does to load a kind) costs none of them.
"""

from __future__ import annotations

from typing import Any, ClassVar

from ml_cloud_optimizer.models.base import register_forecaster
from ml_cloud_optimizer.models.tabular_base import TARGET_MODES, TabularForecaster

__all__ = [
    "TARGET_MODES",
    "CatBoostForecaster",
    "LightGBMForecaster",
    "TabularForecaster",
    "XGBoostForecaster",
]

_P90 = 0.9


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

    def train_booster(self, params, loss, X, z, valid, rounds):
        import lightgbm as lgb

        objective = {"objective": "l1"} if loss == "p50" else {"objective": "quantile", "alpha": _P90}
        full = {
            **params,
            **objective,
            "learning_rate": self.learning_rate,
            "num_threads": self.n_jobs,
            "seed": self.random_state,
            "verbose": -1,
        }
        train = lgb.Dataset(X, z, free_raw_data=True)
        kwargs = {}
        if valid is not None:
            kwargs["valid_sets"] = [lgb.Dataset(valid[0], valid[1], reference=train)]
            kwargs["callbacks"] = [lgb.early_stopping(self.early_stopping_rounds, verbose=False)]
        booster = lgb.train(full, train, num_boost_round=rounds, **kwargs)
        used = (
            booster.best_iteration if valid is not None and booster.best_iteration > 0 else booster.current_iteration()
        )
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

    def train_booster(self, params, loss, X, z, valid, rounds):
        import xgboost as xgb

        if loss == "p50":
            objective = {"objective": "reg:absoluteerror"}
        else:
            objective = {"objective": "reg:quantileerror", "quantile_alpha": _P90}
        full = {
            **params,
            **objective,
            "eta": self.learning_rate,
            "nthread": self.n_jobs,
            "seed": self.random_state,
            "tree_method": "hist",
            "verbosity": 0,
        }
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

    def train_booster(self, params, loss, X, z, valid, rounds):
        from catboost import CatBoostRegressor, Pool

        loss_function = "MAE" if loss == "p50" else f"Quantile:alpha={_P90}"
        model = CatBoostRegressor(
            **params,
            loss_function=loss_function,
            iterations=rounds,
            learning_rate=self.learning_rate,
            thread_count=self.n_jobs,
            random_seed=self.random_state,
            verbose=False,
            allow_writing_files=False,
        )
        kwargs = {}
        if valid is not None:
            kwargs = {
                "eval_set": Pool(valid[0], valid[1]),
                "early_stopping_rounds": self.early_stopping_rounds,
                "use_best_model": True,
            }
        model.fit(Pool(X, z), **kwargs)
        return model, model.tree_count_

    def _predict_booster(self, booster, X):
        return booster.predict(X)

    def _save_booster(self, booster, path):
        booster.save_model(str(path), format="cbm")

    def _load_booster(self, path):
        from catboost import CatBoostRegressor

        return CatBoostRegressor().load_model(str(path), format="cbm")
