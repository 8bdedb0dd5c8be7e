"""The forecasts every model must beat: persistence (last value) and seasonal naive (a day ago).

At one hour ahead on cloud traces persistence is hard to beat; seasonal naive is the
classic benchmark for periodic load. Both stand in every leaderboard.
"""

from __future__ import annotations

import abc
import time
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd

from ml_cloud_optimizer.data.schema import STEP
from ml_cloud_optimizer.features.grid import to_grid
from ml_cloud_optimizer.horizons import DEFAULT_HORIZONS
from ml_cloud_optimizer.models.base import Forecaster, forecast_column

__all__ = ["PersistenceForecaster", "SeasonalNaiveForecaster"]


class _NaiveForecaster(Forecaster):
    """A forecaster with nothing to learn: each forecast copies one past value of ``cpu_util``."""

    def __init__(self, horizons: tuple[int, ...] = DEFAULT_HORIZONS):
        self.horizons = horizons

    def fit(self, metrics: pd.DataFrame, entities: pd.DataFrame | None = None) -> _NaiveForecaster:
        started = time.perf_counter()
        self.fitted_ = True
        self.fit_seconds_ = time.perf_counter() - started  # what every fit records, for the tie rule
        return self

    @abc.abstractmethod
    def _lookback(self, horizon: int) -> int:
        """Steps back from the origin to the value copied for ``horizon``."""

    def predict(self, metrics: pd.DataFrame) -> pd.DataFrame:
        grid = to_grid(metrics[["entity_id", "ts", "cpu_util"]], STEP)
        y = grid.frame["cpu_util"].to_numpy(dtype="float64", na_value=np.nan)
        out = grid.frame[["entity_id", "ts"]].copy()
        for h in self.horizons:
            out[forecast_column(h)] = grid.shift(y, self._lookback(h))
        out = grid.observed_rows(out, metrics.index)
        enough = _history_steps(out) >= self.min_history - 1
        return out.loc[enough].sort_values(["entity_id", "ts"], kind="stable").reset_index(drop=True)

    def _save(self, directory: Path) -> dict:
        return {}

    @classmethod
    def _load(cls, directory: Path, metadata: dict) -> _NaiveForecaster:
        return cls(horizons=tuple(metadata["horizons"])).fit(None)


def _history_steps(frame: pd.DataFrame) -> np.ndarray:
    """Steps between each row's ts and its entity's first ts."""
    first = frame.groupby("entity_id", observed=True)["ts"].transform("min")
    return ((frame["ts"] - first) // STEP).to_numpy()


class PersistenceForecaster(_NaiveForecaster):
    """Forecasts the last observed value at every horizon."""

    kind: ClassVar[str] = "persistence"

    @property
    def min_history(self) -> int:
        return 1

    def _lookback(self, horizon: int) -> int:
        return 0


class SeasonalNaiveForecaster(_NaiveForecaster):
    """Forecasts the value one season (default a day, 288 steps) before the target time."""

    kind: ClassVar[str] = "seasonal_naive"

    def __init__(self, horizons: tuple[int, ...] = DEFAULT_HORIZONS, season: int = 288):
        self.horizons = horizons
        self.season = season

    @property
    def min_history(self) -> int:
        return self.season

    def _lookback(self, horizon: int) -> int:
        if horizon >= self.season:
            raise ValueError(f"seasonal naive: horizon {horizon} is not shorter than the season {self.season}")
        return self.season - horizon

    @classmethod
    def _load(cls, directory: Path, metadata: dict) -> SeasonalNaiveForecaster:
        season = int(metadata.get("params", {}).get("season", 288))
        return cls(horizons=tuple(metadata["horizons"]), season=season).fit(None)
