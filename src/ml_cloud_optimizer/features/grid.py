"""The regular time grid that every feature and target is computed on.

Real traces miss slots. Lags, rolling windows and horizons are counted in steps, so each
entity is first laid out on its full grid (first to last timestamp, one row per step) with
the missing slots as NaN rows. On that grid a shift by ``k`` rows is exactly ``k`` steps
back in time and a window of ``n`` rows is exactly ``n`` steps long.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ml_cloud_optimizer.data.schema import STEP

__all__ = ["Grid", "regularize", "to_grid"]

_ROW = "_row"


@dataclass
class Grid:
    """Entities laid out on their regular grids, with what is needed to shift within an entity.

    Attributes:
        frame: the regularised frame (``entity_id``, ``ts``, values, ``observed``), sorted.
        pos: position of each row within its entity (0 for the first slot).
        size: number of grid rows of the row's entity.
        row: for each grid row, the position of the input row it came from (-1 for a missing slot).
    """

    frame: pd.DataFrame
    pos: np.ndarray
    size: np.ndarray
    row: np.ndarray

    def shift(self, values: np.ndarray, steps: int) -> np.ndarray:
        """``values`` moved ``steps`` rows later within each entity (negative: from the future); NaN where absent."""
        values = np.asarray(values, dtype="float64")
        out = np.full(values.shape, np.nan)
        if steps == 0:
            return values.copy()
        if steps > 0:
            out[steps:] = values[:-steps]
            out[self.pos < steps] = np.nan
        else:
            out[:steps] = values[-steps:]
            out[self.pos - steps >= self.size] = np.nan
        return out

    def group(self, frame: pd.DataFrame | pd.Series):
        """A groupby on the entity that keeps the grid's row order."""
        return frame.groupby(self.frame["entity_id"].to_numpy(), sort=False)

    def observed_rows(self, frame: pd.DataFrame, index: pd.Index) -> pd.DataFrame:
        """The rows of a grid-aligned ``frame`` that came from input rows, in input order, with the input's index."""
        keep = np.flatnonzero(self.row >= 0)
        order = np.empty(len(keep), dtype=np.int64)
        order[self.row[keep]] = keep
        out = frame.iloc[order]
        out.index = index
        return out


def to_grid(metrics: pd.DataFrame, step: pd.Timedelta = STEP) -> Grid:
    """Lay every entity of ``metrics`` out on its full grid of ``step``; see ``Grid``.

    Timestamps are snapped down to the grid; two rows of one entity in the same slot are an error.
    """
    if not {"entity_id", "ts"} <= set(metrics.columns):
        raise ValueError("metrics need entity_id and ts columns")
    frame = metrics.copy()
    frame["ts"] = pd.to_datetime(frame["ts"], utc=True).dt.floor(step)
    frame[_ROW] = np.arange(len(frame), dtype=np.int64)
    frame = frame.sort_values(["entity_id", "ts"], kind="stable")
    dup = frame.duplicated(["entity_id", "ts"])
    if dup.any():
        first = frame.loc[dup].iloc[0]
        raise ValueError(
            f"metrics: {int(dup.sum())} rows share an (entity_id, 5-minute slot) key"
            f" (first: {first['entity_id']} at {first['ts']})"
        )

    bounds = frame.groupby("entity_id", sort=False, observed=True)["ts"].agg(["min", "max", "size"])
    sizes = ((bounds["max"] - bounds["min"]) // step).to_numpy(dtype=np.int64) + 1
    if (sizes == bounds["size"].to_numpy()).all():
        grid = frame
    else:
        starts = np.repeat(np.cumsum(sizes) - sizes, sizes)
        pos = np.arange(sizes.sum(), dtype=np.int64) - starts
        ts = pd.DatetimeIndex(
            np.repeat(bounds["min"].dt.tz_convert(None).to_numpy(), sizes) + pos * step.to_timedelta64()
        )
        keys = pd.DataFrame(
            {
                "entity_id": pd.array(np.repeat(bounds.index.to_numpy(), sizes), dtype=frame["entity_id"].dtype),
                "ts": ts.tz_localize("UTC").astype(frame["ts"].dtype),
            }
        )
        grid = keys.merge(frame, on=["entity_id", "ts"], how="left", sort=False)
    grid = grid.reset_index(drop=True)
    row = grid.pop(_ROW).fillna(-1).to_numpy(dtype=np.int64)
    grid["observed"] = row >= 0
    size = np.repeat(sizes, sizes)
    pos = np.arange(len(grid), dtype=np.int64) - np.repeat(np.cumsum(sizes) - sizes, sizes)
    return Grid(frame=grid, pos=pos, size=size, row=row)


def regularize(metrics: pd.DataFrame, step: pd.Timedelta = STEP) -> pd.DataFrame:
    """Each entity reindexed to its full grid, missing slots as NaN rows, with an ``observed`` bool column.

    Sorted by ``entity_id``, ``ts``; the index is a fresh RangeIndex.
    """
    return to_grid(metrics, step).frame
