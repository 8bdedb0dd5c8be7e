"""Metrics -> window tensors for the sequence models, without a Python loop per sample.

Every entity is laid out on its regular 5-minute grid (``features.regularize``) and all
entities are stacked into one ``[rows, channels]`` array. A window of ``w`` steps ending at
row ``t`` is then rows ``t - w + 1 .. t``, so the set of all windows is a strided view of
that array (``as_strided``) and a batch of windows is one indexing operation on it. Which
windows may be used is decided by vectorised masks (``origins``, ``complete``, ``targets``),
never by a Python loop per sample.

Real traces have holes: a VM first seen an hour ago, a day missing from PlanetLab. A missing
slot is filled with the last value before it and flagged 0 in the ``observed`` channel, and a
window reaching back before its entity's first slot is zero there (``observed`` 0 too), so
a model can forecast from any present slot and learn what the mask means, rather than
forecasting only where a whole clean window exists.

Values are scaled per entity (``EntityScaler``), fitted on the training window and stored
with the model, so the same history always gives the same inputs.

A ``Panel`` holds its inputs as a torch tensor on the training device, so this module imports
torch; only the recurrent models (``sequence``, ``peak.recurrent``) and their shared machinery
in ``_torch`` import it, and serving a tabular champion never does.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from ml_cloud_optimizer.data.schema import DataValidationError, epoch_seconds
from ml_cloud_optimizer.features import regularize

__all__ = ["INPUT_CHANNELS", "SCALED_COLUMNS", "EntityScaler", "Panel", "build_panel", "epoch_seconds"]

# Metric -> whether it is log1p-compressed before scaling (throughputs span orders of magnitude).
SCALED_COLUMNS: dict[str, bool] = {
    "cpu_util": False,
    "mem_util": False,
    "net_in_kbps": True,
    "net_out_kbps": True,
}

INPUT_CHANNELS: tuple[str, ...] = (
    "cpu_z",  # cpu_util scaled per entity
    "cpu",  # cpu_util as a fraction: saturation near 1.0 means something whatever the entity
    "mem_z",
    "net_in_z",
    "net_out_z",
    "observed",  # 0 where a missing slot was filled forward (only ever at prediction time)
    "day_sin",
    "day_cos",
    "week_sin",
    "week_cos",
    "cpu_z_seasonal",  # cpu_z one day earlier, shifted forward by the longest horizon (0 where unobserved)
    "seasonal_observed",  # 1 where that day-earlier slot was present: 0 says cpu_z_seasonal is no value
)

_GLOBAL = "__global__"
_MIN_STD = 1e-3
_SECONDS_PER_DAY = 86_400
_EPOCH_WEEKDAY = 3  # 1970-01-01 was a Thursday (Monday = 0)


@dataclass
class EntityScaler:
    """Per-entity mean and standard deviation of each scaled metric, plus a pooled fallback row.

    Entities not seen in training (a new VM sent to the model server) are scaled with the
    statistics pooled over all training rows.
    """

    stats: pd.DataFrame  # index: entity_id and _GLOBAL; columns: "<metric>_mean", "<metric>_std"

    @classmethod
    def fit(cls, grid: pd.DataFrame) -> EntityScaler:
        values = _transformed(grid)
        values["entity_id"] = grid["entity_id"].astype(str).to_numpy()
        grouped = values.groupby("entity_id", sort=True)
        means, stds = grouped.mean(), grouped.std(ddof=0)
        pooled_mean = values.drop(columns="entity_id").mean()
        pooled_std = values.drop(columns="entity_id").std(ddof=0)
        means.loc[_GLOBAL], stds.loc[_GLOBAL] = pooled_mean, pooled_std
        means = means.fillna(pooled_mean).fillna(0.0)
        stds = stds.fillna(pooled_std).fillna(1.0).clip(lower=_MIN_STD)
        stats = pd.concat([means.add_suffix("_mean"), stds.add_suffix("_std")], axis=1)
        return cls(stats=stats.astype("float64"))

    def lookup(self, entity_id: pd.Series) -> pd.DataFrame:
        """Statistics for each row's entity (the pooled ones for unknown entities), row-aligned."""
        keys = entity_id.astype(str).to_numpy()
        known = np.isin(keys, self.stats.index.to_numpy())
        keys = np.where(known, keys, _GLOBAL)
        return self.stats.loc[keys].reset_index(drop=True)

    def to_dict(self) -> dict:
        return {
            "columns": list(self.stats.columns),
            "index": list(self.stats.index),
            "values": self.stats.to_numpy().tolist(),
        }

    @classmethod
    def from_dict(cls, data: dict) -> EntityScaler:
        stats = pd.DataFrame(data["values"], index=pd.Index(data["index"], name="entity_id"), columns=data["columns"])
        return cls(stats=stats.astype("float64"))


@dataclass
class Panel:
    """All entities on their grids, flattened into one array so that windows are strided views.

    Attributes:
        frame: the regularised frame (``entity_id``, ``ts``, ``observed``, metrics), one row per slot.
        inputs: ``[rows, len(INPUT_CHANNELS)]`` float32 tensor, on the device the model runs on.
        level: ``cpu_util`` per row, filled forward over missing slots (the value forecasts start from).
        scale: ``cpu_util`` standard deviation of the row's entity (targets are measured in it).
        observed: whether the slot was present in the input.
        position: steps since the entity's first slot.
        size: number of slots of the row's entity.
        steps_back: ``position`` as a long tensor on the inputs' device (for ``windows``' padding).
    """

    frame: pd.DataFrame
    inputs: torch.Tensor
    level: np.ndarray
    scale: np.ndarray
    observed: np.ndarray
    position: np.ndarray
    size: np.ndarray
    steps_back: torch.Tensor
    _padded: dict[int, torch.Tensor] = field(default_factory=dict, init=False, repr=False)

    def __len__(self) -> int:
        return len(self.frame)

    def origins(self, min_history: int) -> np.ndarray:
        """Rows that can be forecast from: present, with ``min_history`` slots of their entity up to them."""
        return self.observed & (self.position >= min_history - 1)

    def complete(self, window: int) -> np.ndarray:
        """Rows whose last ``window`` slots all lie in their entity and were all present."""
        present = np.concatenate([[0], np.cumsum(self.observed, dtype=np.int64)])
        ends = np.arange(1, len(self) + 1)
        counts = present[ends] - present[np.maximum(ends - window, 0)]
        return (self.position >= window - 1) & (counts == window)

    def targets(self, horizons: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        """Change of ``cpu_util`` from each row to ``h`` steps later, in the entity's scale, per horizon.

        Returns ``(y, ok)``: ``y`` is ``[rows, len(horizons)]`` float32 (0 where absent) and
        ``ok`` marks rows whose every target slot lies in the entity and was present.
        """
        cpu = self.frame["cpu_util"].to_numpy(dtype="float64", na_value=np.nan)
        y = np.zeros((len(self), len(horizons)), dtype=np.float32)
        ok = self.observed.copy()
        for k, h in enumerate(horizons):
            ahead = np.arange(len(self)) + h
            inside = self.position + h < self.size
            ahead = np.where(inside, ahead, 0)
            present = inside & self.observed[ahead]
            ok &= present
            y[:, k] = np.where(present, (cpu[ahead] - cpu) / self.scale, 0.0)
        return np.nan_to_num(y), ok

    def windows(self, rows: torch.Tensor, window: int) -> torch.Tensor:
        """``[len(rows), window, channels]`` windows ending at ``rows``, on the inputs' device.

        Steps before the row's entity begins are all zero (``observed`` 0 among them), so a
        window never shows another entity's data and a short history is a padded window.

        The windows are a strided view of the inputs with ``window - 1`` zero rows on top (one
        indexing operation per batch); only rows less than a window into their entity need the
        mask. On a GPU it is applied to every batch, since asking whether a batch needs it would
        make the host wait for the device; on the CPU the question is cheap and the multiply is
        not, and it is rare (one window's worth of rows per entity).
        """
        padded = self._padded.get(window)
        if padded is None:
            n, c = self.inputs.shape
            top = torch.zeros(window - 1, c, dtype=self.inputs.dtype, device=self.inputs.device)
            padded = torch.cat([top, self.inputs]).as_strided((n, window, c), (c, c, 1))
            self._padded = {window: padded}  # one window size at a time: each copy is the panel's size
        x = padded[rows]
        back = self.steps_back[rows]
        if window > 1 and (x.is_cuda or bool((back < window - 1).any())):
            steps = torch.arange(1 - window, 1, device=x.device)
            x = x * (steps >= -back[:, None]).unsqueeze(-1).to(x.dtype)
        return x


def build_panel(
    metrics: pd.DataFrame,
    scaler: EntityScaler | None = None,
    *,
    seasonal_lag: int = 288,
    lead: int = 12,
    device: torch.device | str = "cpu",
) -> tuple[Panel, EntityScaler]:
    """Regularise ``metrics``, scale them per entity and build the input channels.

    Args:
        metrics: canonical long metrics (``entity_id``, ``ts``, ``cpu_util``; other metrics optional).
        scaler: statistics to scale with; fitted on ``metrics`` when None (training).
        seasonal_lag: steps back for the seasonal channel (288 = one day); 0 leaves it at 0.
        lead: how far past each step the seasonal channel looks (the longest horizon), so that
            at the last step it holds the value one day before the slot being forecast.
        device: where the input tensor is placed.

    Returns:
        The panel and the scaler used.
    """
    missing = [c for c in ("entity_id", "ts", "cpu_util") if c not in metrics.columns]
    if missing:
        raise DataValidationError(f"metrics: missing columns {', '.join(missing)}")
    if metrics.empty:
        raise DataValidationError("metrics: no rows")
    columns = ["entity_id", "ts", *[c for c in SCALED_COLUMNS if c in metrics.columns]]
    frame = metrics[columns].copy()
    for col in SCALED_COLUMNS:
        if col not in frame.columns:
            frame[col] = np.nan
    grid = regularize(frame)
    scaler = EntityScaler.fit(grid) if scaler is None else scaler

    observed = grid["observed"].to_numpy(dtype=bool)
    entity = grid["entity_id"].astype(str).to_numpy()
    starts = np.flatnonzero(np.r_[True, entity[1:] != entity[:-1]])
    sizes = np.diff(np.r_[starts, len(grid)])
    position = np.arange(len(grid)) - np.repeat(starts, sizes)
    size = np.repeat(sizes, sizes)

    stats = scaler.lookup(grid["entity_id"])
    filled = _transformed(grid).groupby(entity, sort=False).ffill()
    channels = {}
    for col in SCALED_COLUMNS:
        z = (filled[col].to_numpy() - stats[f"{col}_mean"].to_numpy()) / stats[f"{col}_std"].to_numpy()
        channels[col] = np.nan_to_num(z, nan=0.0)
    level = filled["cpu_util"].to_numpy()
    level = np.where(np.isnan(level), stats["cpu_util_mean"].to_numpy(), level)

    seconds = epoch_seconds(grid["ts"])
    day = (seconds % _SECONDS_PER_DAY) / _SECONDS_PER_DAY
    week = (((seconds // _SECONDS_PER_DAY) + _EPOCH_WEEKDAY) % 7 + day) / 7

    seasonal = np.zeros(len(grid))
    seasonal_seen = np.zeros(len(grid), dtype=bool)
    back = seasonal_lag - lead
    if seasonal_lag > 0 and back > 0:
        source = np.arange(len(grid)) - back
        inside = position >= back
        seasonal_seen[inside] = observed[source[inside]]
        seasonal[seasonal_seen] = channels["cpu_util"][source[seasonal_seen]]

    series = {
        "cpu_z": channels["cpu_util"],
        "cpu": np.nan_to_num(level, nan=0.0),
        "mem_z": channels["mem_util"],
        "net_in_z": channels["net_in_kbps"],
        "net_out_z": channels["net_out_kbps"],
        "observed": observed.astype(np.float64),
        "day_sin": np.sin(2 * np.pi * day),
        "day_cos": np.cos(2 * np.pi * day),
        "week_sin": np.sin(2 * np.pi * week),
        "week_cos": np.cos(2 * np.pi * week),
        "cpu_z_seasonal": seasonal,
        "seasonal_observed": seasonal_seen.astype(np.float64),
    }
    inputs = torch.from_numpy(np.stack([series[c] for c in INPUT_CHANNELS], axis=1).astype(np.float32))
    panel = Panel(
        frame=grid,
        inputs=inputs.to(device).contiguous(),
        level=level,
        scale=stats["cpu_util_std"].to_numpy(),
        observed=observed,
        position=position,
        size=size,
        steps_back=torch.as_tensor(position, dtype=torch.long, device=device),
    )
    return panel, scaler


def _transformed(grid: pd.DataFrame) -> pd.DataFrame:
    """The scaled metrics as float64, throughputs log1p-compressed."""
    out = {}
    for col, log in SCALED_COLUMNS.items():
        values = grid[col].to_numpy(dtype="float64", na_value=np.nan)
        out[col] = np.log1p(np.maximum(values, 0.0)) if log else values
    return pd.DataFrame(out, index=grid.index)
