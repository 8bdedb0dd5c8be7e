"""The one interface every forecaster follows, so evaluation, export and serving treat all alike.

A forecaster learns from canonical long metrics (see ``ml_cloud_optimizer.data.schema``)
and forecasts ``cpu_util`` at fixed horizons, counted in 5-minute steps. It builds its own
inputs (feature rows for tabular models, windows for sequence models) from the history it
is given, with the shared feature function, so that the history a client sends to the
model server is enough to forecast.

Forecast frame, the output of ``predict``: one row per (entity, origin ``ts``) at which the
history allows a forecast, with columns ``entity_id``, ``ts`` and, per horizon ``h`` in
``horizons``, ``p50_h{h}`` (the forecast of ``cpu_util`` at ``ts + h * 5 min``) and, for
models that have a quantile head, ``p90_h{h}``.
"""

from __future__ import annotations

import abc
import importlib
import json
from pathlib import Path
from typing import ClassVar

import pandas as pd
from sklearn.base import BaseEstimator

__all__ = [
    "DEFAULT_HORIZONS",
    "HEADLINE_HORIZON",
    "Forecaster",
    "forecast_column",
    "register_forecaster",
    "forecaster_class",
]

DEFAULT_HORIZONS: tuple[int, ...] = (1, 12)
HEADLINE_HORIZON = 12  # one hour ahead: the champion is chosen on it

_REGISTRY: dict[str, type["Forecaster"]] = {}


def forecast_column(horizon: int, quantile: str = "p50") -> str:
    """Name of the forecast column for ``horizon`` steps ahead, e.g. ``p50_h12``."""
    return f"{quantile}_h{horizon}"


def register_forecaster(cls: type["Forecaster"]) -> type["Forecaster"]:
    """Class decorator: make ``cls`` loadable by its ``kind`` from a model directory."""
    _REGISTRY[cls.kind] = cls
    return cls


# Where each built-in kind is defined, imported on first use so that loading a LightGBM model
# never pays for importing torch.
_BUILTIN_MODULES = {
    "persistence": "ml_cloud_optimizer.models.baselines",
    "seasonal_naive": "ml_cloud_optimizer.models.baselines",
    "lightgbm": "ml_cloud_optimizer.models.tabular",
    "xgboost": "ml_cloud_optimizer.models.tabular",
    "catboost": "ml_cloud_optimizer.models.tabular",
    "lstm": "ml_cloud_optimizer.models.sequence",
    "gru": "ml_cloud_optimizer.models.sequence",
}


def forecaster_class(kind: str) -> type["Forecaster"]:
    """The forecaster class registered for ``kind`` ("lightgbm", "lstm", ...)."""
    if kind not in _REGISTRY and kind in _BUILTIN_MODULES:
        importlib.import_module(_BUILTIN_MODULES[kind])
    try:
        return _REGISTRY[kind]
    except KeyError:
        known = ", ".join(sorted({*_REGISTRY, *_BUILTIN_MODULES}))
        raise ValueError(f"unknown model kind {kind!r}; known: {known}") from None


class Forecaster(BaseEstimator, abc.ABC):
    """scikit-learn style: ``__init__`` stores parameters, ``fit`` returns self, fitted state ends in ``_``.

    Subclasses set ``kind`` and implement ``fit``, ``predict``, ``_save`` and ``_load``;
    ``save``/``load`` add the metadata JSON that serving reads.
    """

    kind: ClassVar[str] = "abstract"
    has_quantiles: ClassVar[bool] = False
    METADATA_FILE: ClassVar[str] = "metadata.json"

    horizons: tuple[int, ...] = DEFAULT_HORIZONS

    @abc.abstractmethod
    def fit(self, metrics: pd.DataFrame, entities: pd.DataFrame | None = None) -> "Forecaster":
        """Learn from canonical metrics (long frame, possibly with gaps)."""

    @abc.abstractmethod
    def predict(self, metrics: pd.DataFrame) -> pd.DataFrame:
        """Forecast frame for every origin in ``metrics`` that has ``min_history`` steps behind it."""

    def predict_last(self, metrics: pd.DataFrame, features: pd.DataFrame | None = None) -> pd.DataFrame:
        """Forecast frame for the last origin of each entity only: what serving answers.

        The default forecasts every origin and keeps the last; models override it when
        they can skip the others. ``features``, the ``build_features`` rows of ``metrics``
        under this model's spec, saves a model that uses them from building them again.
        """
        forecasts = self.predict(metrics)
        last = forecasts.sort_values(["entity_id", "ts"], kind="stable").groupby("entity_id", observed=True).tail(1)
        return last.reset_index(drop=True)

    @property
    @abc.abstractmethod
    def min_history(self) -> int:
        """Steps of history (5-minute samples) needed before the first forecast."""

    @abc.abstractmethod
    def _save(self, directory: Path) -> dict:
        """Write model files into ``directory``; return extra metadata (feature spec...)."""

    @classmethod
    @abc.abstractmethod
    def _load(cls, directory: Path, metadata: dict) -> "Forecaster":
        """Rebuild a fitted forecaster from ``directory``."""

    def save(self, directory: str | Path) -> Path:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        extra = self._save(directory)
        metadata = {
            "kind": self.kind,
            "horizons": list(self.horizons),
            "min_history": int(self.min_history),
            "quantiles": ["p50", "p90"] if self.has_quantiles else ["p50"],
            "params": {k: _jsonable(v) for k, v in self.get_params().items()},
            **extra,
        }
        (directory / self.METADATA_FILE).write_text(json.dumps(metadata, indent=2, sort_keys=True))
        return directory

    @staticmethod
    def load(directory: str | Path) -> "Forecaster":
        directory = Path(directory)
        meta_path = directory / Forecaster.METADATA_FILE
        if not meta_path.exists():
            raise FileNotFoundError(f"{directory} holds no {Forecaster.METADATA_FILE}: not a model directory")
        metadata = json.loads(meta_path.read_text())
        return forecaster_class(metadata["kind"])._load(directory, metadata)


def _jsonable(value):
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return repr(value)
