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
import json
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator

from ml_cloud_optimizer.data.schema import UTIL_MAX
from ml_cloud_optimizer.horizons import DEFAULT_HORIZONS
from ml_cloud_optimizer.models.registry import FORECASTERS, forecaster_entry

__all__ = [
    "Forecaster",
    "clip_forecast",
    "forecast_column",
    "forecaster_class",
    "register_forecaster",
]


def forecast_column(horizon: int, quantile: str = "p50") -> str:
    """Name of the forecast column for ``horizon`` steps ahead, e.g. ``p50_h12``."""
    return f"{quantile}_h{horizon}"


def clip_forecast(values):
    """Forecasts limited to what utilisation can be, ``[0, UTIL_MAX]``: the one clipping rule.

    Every model, tuning's scoring and serving clip through here, so a forecast means the same
    wherever it is made.
    """
    return np.clip(values, 0.0, UTIL_MAX)


def register_forecaster(cls: type[Forecaster]) -> type[Forecaster]:
    """Class decorator kept while model modules still carry it: the class unchanged.

    Kinds are registered in ``models.registry``; this only insists that ``cls.kind`` is there,
    so a class nobody can load by its kind is caught at import.
    """
    assert cls.kind in FORECASTERS, f"{cls.__name__}: kind {cls.kind!r} is not in models.registry.FORECASTERS"
    return cls


def forecaster_class(kind: str) -> type[Forecaster]:
    """The forecaster class for ``kind`` ("lightgbm", "lstm", ...), its module imported on first use."""
    return forecaster_entry(kind).load()


class Forecaster(BaseEstimator, abc.ABC):
    """scikit-learn style: ``__init__`` stores parameters, ``fit`` returns self, fitted state ends in ``_``.

    Subclasses set ``kind`` and implement ``fit``, ``predict``, ``_save`` and ``_load``;
    ``save``/``load`` add the metadata JSON that serving reads.
    """

    kind: ClassVar[str] = "abstract"
    has_quantiles: ClassVar[bool] = False
    METADATA_FILE: ClassVar[str] = "metadata.json"

    horizons: tuple[int, ...] = DEFAULT_HORIZONS
    # The resource forecast (``resources``): set from a bundle's metadata by ``load``; "cpu" otherwise.
    target: str = "cpu"

    @abc.abstractmethod
    def fit(self, metrics: pd.DataFrame, entities: pd.DataFrame | None = None) -> Forecaster:
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
    def _load(cls, directory: Path, metadata: dict) -> Forecaster:
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
    def load(directory: str | Path) -> Forecaster:
        directory = Path(directory)
        meta_path = directory / Forecaster.METADATA_FILE
        if not meta_path.exists():
            raise FileNotFoundError(f"{directory} holds no {Forecaster.METADATA_FILE}: not a model directory")
        metadata = json.loads(meta_path.read_text())
        model = forecaster_class(metadata["kind"])._load(directory, metadata)
        model.target = str(metadata.get("target", "cpu"))
        return model


def _jsonable(value):
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return repr(value)
