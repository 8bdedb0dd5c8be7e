"""The exported model directory: a forecaster, an optional peak classifier and what serving needs to know.

Layout of a bundle directory::

    metadata.json        the forecaster's metadata (kind, horizons, min_history, feature spec...)
    <model files>        the forecaster's own files, so ``Forecaster.load(dir)`` works on the directory
    peak/                the peak classifier, when there is one
    bundle.json          what the bundle adds: where it came from, its scores, the peak classifier's kind

The serving layer calls ``ModelBundle.load(dir).predict(history)`` and nothing else.

A bundle forecasts one resource (``target``: ``cpu`` or ``mem``, see ``resources``), written in
both JSON files: ``bundle.json`` for the bundle, ``metadata.json`` so that a bare
``Forecaster.load(dir)`` knows it too. A bundle saved before memory was a target has neither
and is ``cpu``. ``predict`` takes canonical history whatever the resource and presents it to
the models as they learnt it (``resources.as_target``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ml_cloud_optimizer.features import build_features
from ml_cloud_optimizer.models.base import Forecaster, forecast_column
from ml_cloud_optimizer.resources import DEFAULT_RESOURCE, UTIL_COLUMN, as_target

__all__ = ["BUNDLE_FILE", "PEAK_DIR", "ModelBundle", "default_champion_dir", "record_target"]

BUNDLE_FILE = "bundle.json"
PEAK_DIR = "peak"


class ModelBundle:
    """Forecaster + optional peak classifier + metadata, saved and loaded as one self-contained directory.

    Args:
        forecaster: a fitted ``Forecaster``.
        peak: a fitted peak classifier (``models.peak``), or None; without one ``peak_prob`` is NaN.
        metadata: JSON-able facts to keep beside the model (training data, scores, run id...);
            ``target`` names the resource both models were trained for (default: the
            forecaster's own, ``cpu`` unless it was loaded from a memory bundle).

    Example:
        >>> bundle = ModelBundle(forecaster, peak).save("model/")
        >>> ModelBundle.load("model/").predict(history)   # entity_id, ts, p50_h1, ..., peak_prob
    """

    def __init__(self, forecaster: Forecaster, peak: Any | None = None, metadata: dict | None = None):
        self.forecaster = forecaster
        self.peak = peak
        self.metadata = dict(metadata or {})
        target = self.metadata.setdefault("target", getattr(forecaster, "target", DEFAULT_RESOURCE))
        if target not in UTIL_COLUMN:
            raise ValueError(f"bundle target {target!r}: expected one of {', '.join(UTIL_COLUMN)}")
        self.forecaster.target = target  # what Forecaster.load gives back for this directory

    @property
    def target(self) -> str:
        """The resource forecast: ``cpu`` or ``mem`` (``resources.RESOURCES``)."""
        return str(self.metadata["target"])

    @property
    def kind(self) -> str:
        return self.forecaster.kind

    @property
    def horizons(self) -> tuple[int, ...]:
        return tuple(self.forecaster.horizons)

    @property
    def min_history(self) -> int:
        """Steps of history per entity that ``predict`` needs (the larger of the two models' needs)."""
        need = int(self.forecaster.min_history)
        if self.peak is not None and hasattr(self.peak, "min_history"):
            need = max(need, int(self.peak.min_history))
        return need

    @property
    def quantiles(self) -> list[str]:
        return (
            ["p50", "p90"] if self.forecaster.has_quantiles and getattr(self.forecaster, "quantile", True) else ["p50"]
        )

    @property
    def output_columns(self) -> list[str]:
        cols = [forecast_column(h, q) for h in self.horizons for q in self.quantiles]
        return ["entity_id", "ts", *cols, "peak_prob"]

    def save(self, directory: str | Path) -> Path:
        """Write the bundle into ``directory`` (created if needed) and return it."""
        directory = Path(directory)
        record_target(self.forecaster.save(directory), self.target)
        if self.peak is not None:
            self.peak.save(directory / PEAK_DIR)
        info = {
            **self.metadata,
            "kind": self.kind,
            "horizons": list(self.horizons),
            "min_history": self.min_history,
            "full_history": int(getattr(self.forecaster, "full_history", self.forecaster.min_history)),
            "quantiles": self.quantiles,
            "outputs": self.output_columns,
            "peak": None
            if self.peak is None
            else {"kind": getattr(self.peak, "kind", type(self.peak).__name__), "dir": PEAK_DIR},
        }
        (directory / BUNDLE_FILE).write_text(json.dumps(info, indent=2, sort_keys=True, default=str))
        return directory

    @classmethod
    def load(cls, directory: str | Path) -> ModelBundle:
        """Rebuild a bundle saved by ``save``; a bare forecaster directory loads as a bundle without peaks."""
        directory = Path(directory)
        if not directory.is_dir():
            raise FileNotFoundError(f"model directory {directory} does not exist")
        forecaster = Forecaster.load(directory)
        info_path = directory / BUNDLE_FILE
        info = json.loads(info_path.read_text()) if info_path.exists() else {}
        peak = None
        if info.get("peak"):
            from ml_cloud_optimizer.models.peak import BasePeakModel

            peak = BasePeakModel.load(directory / info["peak"].get("dir", PEAK_DIR))
        return cls(forecaster, peak, info)

    def predict(self, history: pd.DataFrame) -> pd.DataFrame:
        """Forecast from the last origin of each entity in ``history`` (canonical long metrics).

        Returns one row per entity with enough history: ``entity_id``, ``ts`` (the origin),
        ``p50_h{h}`` (and ``p90_h{h}``) per horizon, and ``peak_prob``, all about ``target``:
        a memory bundle's ``p50_h12`` is memory utilisation an hour ahead.
        """
        missing = [c for c in ("entity_id", "ts", UTIL_COLUMN[self.target]) if c not in history.columns]
        if missing:
            raise ValueError(f"history lacks columns {', '.join(missing)}")
        history = as_target(history, self.target)
        spec = getattr(self.forecaster, "feature_spec", None)
        shared = None
        if spec is not None and self.peak is not None and self.peak.feature_spec == spec:
            shared = build_features(history, spec)  # forecaster and classifier read the same rows
        forecasts = self.forecaster.predict_last(history, features=shared)
        if self.peak is not None and len(forecasts):
            last = self.peak.predict_proba_last(history, features=shared)
            forecasts = forecasts.merge(last[["entity_id", "ts", "peak_prob"]], on=["entity_id", "ts"], how="left")
        else:
            forecasts = forecasts.assign(peak_prob=np.nan)
        return forecasts[[c for c in self.output_columns if c in forecasts.columns]].reset_index(drop=True)


def record_target(directory: str | Path, target: str) -> Path:
    """Add ``target`` to the ``metadata.json`` of the forecaster saved in ``directory``; return it.

    ``Forecaster.load`` reads it back as the forecaster's ``target``, so a directory that is
    loaded without ``ModelBundle`` (a candidate, ``mlco recommend --model``) still says which
    resource it forecasts.
    """
    meta_path = Path(directory) / Forecaster.METADATA_FILE
    metadata = json.loads(meta_path.read_text())
    meta_path.write_text(json.dumps({**metadata, "target": target}, indent=2, sort_keys=True))
    return Path(directory)


def default_champion_dir(home: str | Path | None = None) -> Path:
    """The newest local champion: ``mlco run``'s (``$MLCO_HOME/champion``) or ``mlco train``'s (``.../train/champion``).

    Commands that take a model directory default to this, so they follow whichever of the two
    commands ran last. With neither there, the ``mlco run`` location is returned (and the
    caller says it is missing).
    """
    home = Path(home or os.environ.get("MLCO_HOME") or ".mlco")
    candidates = [
        d for d in (home / "champion", home / "train" / "champion") if (d / Forecaster.METADATA_FILE).is_file()
    ]
    if not candidates:
        return home / "champion"
    return max(candidates, key=lambda d: (d / Forecaster.METADATA_FILE).stat().st_mtime)
