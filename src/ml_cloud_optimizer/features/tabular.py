"""One feature function for training and serving: rows of lags, rolling windows and calendar.

``build_features`` lays each entity on its regular grid, computes every feature there with
vectorised shifts and per-entity rolling windows, and returns one row per input row. Every
window ends at the row's own slot and every lag looks back, so a feature at time ``t`` uses
data up to ``t`` only; features that name a horizon (``..._h12``) read the seasonal past
(yesterday at ``t + 12`` steps), never the future.

What is computed is declared by a ``FeatureSpec``, which a model directory stores as JSON so
that serving rebuilds exactly the columns the model was trained on.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, fields

import numpy as np
import pandas as pd

from ml_cloud_optimizer.features.calendar import CALENDAR_COLUMNS, calendar_features
from ml_cloud_optimizer.features.grid import to_grid
from ml_cloud_optimizer.horizons import DEFAULT_HORIZONS

__all__ = ["FeatureSpec", "build_feature_rows", "build_features", "from_hourly"]

_EPS = 1e-3
# Input rows per block of ``build_feature_rows`` (whole entities, so a block may hold more).
BLOCK_ROWS = 100_000


@dataclass
class FeatureSpec:
    """What ``build_features`` computes. Durations are pandas offset strings ("6h", "1d").

    Attributes:
        step: the grid step of the input ("5min" for metrics, "1h" for the hourly view).
        target: the column forecast, and the one given the full set of features.
        inputs: other metric columns, given as their current value.
        lags: lags of ``target`` in steps.
        seasonal_lags: seasonal periods ("same time yesterday, last week").
        horizons: steps ahead the models forecast; each adds the seasonal value at ``t + h``.
        windows: rolling windows; ``target`` gets mean, std, min, max and its distance from the mean.
        median_windows: rolling medians of ``target`` (robust recent level).
        ewm_halflives: exponentially weighted means of ``target``.
        scale_window: window of the per-entity scale (rolling std) used to standardise.
        timezone: calendar features are local to it.
        rolling_inputs: inputs that also get a rolling mean per window.
        calendar: add the calendar columns (hour, weekday and their cyclical encodings).
        derived: add the per-entity scale and z-score, the 1- and 12-step changes and the
            cpu/memory and network ratios. With ``calendar`` off and nothing but ``lags``,
            a spec describes the plain "lags of the raw level" set (``features.sets``).
    """

    step: str = "5min"
    target: str = "cpu_util"
    inputs: tuple[str, ...] = (
        "mem_util",
        "net_in_kbps",
        "net_out_kbps",
        "disk_read_kbps",
        "disk_write_kbps",
        "request_rate",
    )
    lags: tuple[int, ...] = tuple(range(1, 25))
    seasonal_lags: tuple[str, ...] = ("1d", "7d")
    horizons: tuple[int, ...] = DEFAULT_HORIZONS
    windows: tuple[str, ...] = ("6h", "24h", "7d")
    median_windows: tuple[str, ...] = ("1h",)
    ewm_halflives: tuple[str, ...] = ("15min", "1h", "6h")
    scale_window: str = "7d"
    timezone: str = "UTC"
    rolling_inputs: tuple[str, ...] = ("mem_util", "net_in_kbps", "net_out_kbps")
    calendar: bool = True
    derived: bool = True

    def __post_init__(self):
        for name in (
            "inputs",
            "lags",
            "seasonal_lags",
            "horizons",
            "windows",
            "median_windows",
            "ewm_halflives",
            "rolling_inputs",
        ):
            setattr(self, name, tuple(getattr(self, name)))
        for name in ("seasonal_lags", "windows", "median_windows", "ewm_halflives", "scale_window"):
            for duration in _as_tuple(getattr(self, name)):
                if self.steps(duration) < 1:
                    raise ValueError(f"FeatureSpec.{name}: {duration!r} is shorter than one step of {self.step}")

    def steps(self, duration: str) -> int:
        """Whole grid steps in ``duration``."""
        return int(pd.Timedelta(duration) // pd.Timedelta(self.step))

    @property
    def columns(self) -> list[str]:
        """Feature names, in the order ``build_features`` returns them."""
        t = self.target
        cols = list(CALENDAR_COLUMNS) if self.calendar else []
        cols += [t, *self.inputs]
        cols += [f"{t}_lag_{k}" for k in self.lags]
        for period in self.seasonal_lags:
            cols.append(f"{t}_lag_{period}")
            for h in self.horizons:
                cols += [f"{t}_lag_{period}_h{h}", f"{t}_seasonal_delta_{period}_h{h}"]
        for w in self.windows:
            cols += [f"{t}_{stat}_{w}" for stat in ("mean", "std", "min", "max")]
            cols.append(f"{t}_dist_{w}")
            cols += [f"{c}_mean_{w}" for c in self.rolling_inputs]
        cols += [f"{t}_median_{w}" for w in self.median_windows]
        cols += [f"{t}_dist_median_{w}" for w in self.median_windows]
        cols += [f"{t}_ewm_{hl}" for hl in self.ewm_halflives]
        if self.derived:
            cols += [f"{t}_scale", f"{t}_z", f"{t}_delta_1", f"{t}_delta_12"]
            cols += ["cpu_mem_ratio", "net_in_out_ratio"]
        return cols

    @property
    def lookback(self) -> int:
        """Steps of history after which every feature is computed from complete windows."""
        longest = [max(self.lags, default=0), 12]
        scale = (self.scale_window,) if self.derived else ()
        longest += [self.steps(d) for d in (*self.seasonal_lags, *self.windows, *self.median_windows, *scale)]
        return max(longest) + 1

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict) -> FeatureSpec:
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"FeatureSpec: unknown fields {', '.join(sorted(unknown))}")
        return cls(**data)


def _as_tuple(value) -> tuple:
    return value if isinstance(value, tuple) else (value,)


def build_features(metrics: pd.DataFrame, spec: FeatureSpec | None = None, rows=None) -> pd.DataFrame:
    """Feature rows for ``metrics``: one per input row, same index, ``entity_id``, ``ts`` then ``spec.columns``.

    ``metrics`` is the canonical long frame (missing metric columns count as NaN) or the
    warehouse's hourly view (see ``from_hourly``; use a spec with ``step="1h"``). ``rows``
    (positions, as ``iloc`` takes them) returns those input rows only, in that order: the
    windows still read every row, but only the rows kept are held, which is what a fit that
    trains on a sample of the rows needs (``build_feature_rows``).

    Each column is written once, as it is computed, into one float64 matrix of the returned
    rows, which the frame wraps without copying: the matrix is the one copy of the features
    in memory (a frame assembled from a dict of columns, reordered and then cut to the
    observed rows held up to four).
    """
    spec = spec or FeatureSpec()
    if "ts" not in metrics.columns and "hour" in metrics.columns:
        metrics = from_hourly(metrics)
    if spec.target not in metrics.columns:
        raise ValueError(f"build_features: metrics have no {spec.target!r} column")
    used = [spec.target, *dict.fromkeys([*spec.inputs, *spec.rolling_inputs])]
    frame = metrics[["entity_id", "ts", *[c for c in used if c in metrics.columns]]]
    grid = to_grid(frame, pd.Timedelta(spec.step))
    g = grid.frame
    n = len(g)
    observed = np.flatnonzero(grid.row >= 0)
    order = np.empty(len(observed), dtype=np.int64)  # the grid row of each input row
    order[grid.row[observed]] = observed
    index = metrics.index
    if rows is not None:
        order, index = order[rows], index[rows]
    names = spec.columns
    slots: dict[str, list[int]] = {}
    for i, name in enumerate(names):
        slots.setdefault(name, []).append(i)
    block = np.empty((len(names), len(order)))

    def put(name: str, values: np.ndarray) -> None:
        block[slots.pop(name)] = values[order]

    def column(name: str) -> np.ndarray:
        if name not in g.columns:
            return np.full(n, np.nan)
        return g[name].to_numpy(dtype="float64", na_value=np.nan)

    y = column(spec.target)
    y_series = pd.Series(y)
    groups = grid.group(y_series)
    t = spec.target
    if spec.calendar:
        cal = calendar_features(g["ts"], spec.timezone)
        for c in CALENDAR_COLUMNS:
            put(c, cal[c].to_numpy())
        del cal
    put(t, y)
    for c in spec.inputs:
        put(c, column(c))
    for k in spec.lags:
        put(f"{t}_lag_{k}", grid.shift(y, k))
    for period in spec.seasonal_lags:
        p = spec.steps(period)
        back = grid.shift(y, p)
        put(f"{t}_lag_{period}", back)
        for h in spec.horizons:
            ahead = grid.shift(y, p - h) if p > h else np.full(n, np.nan)
            put(f"{t}_lag_{period}_h{h}", ahead)
            put(f"{t}_seasonal_delta_{period}_h{h}", ahead - back)
    for w in spec.windows:
        roll = groups.rolling(spec.steps(w), min_periods=1)
        mean = roll.mean().to_numpy()
        put(f"{t}_mean_{w}", mean)
        put(f"{t}_std_{w}", roll.std().to_numpy())
        put(f"{t}_min_{w}", roll.min().to_numpy())
        put(f"{t}_max_{w}", roll.max().to_numpy())
        put(f"{t}_dist_{w}", y - mean)
        for c in spec.rolling_inputs:
            values = pd.Series(column(c))
            put(f"{c}_mean_{w}", grid.group(values).rolling(spec.steps(w), min_periods=1).mean().to_numpy())
    for w in spec.median_windows:
        median = groups.rolling(spec.steps(w), min_periods=1).median().to_numpy()
        put(f"{t}_median_{w}", median)
        put(f"{t}_dist_median_{w}", y - median)
    for hl in spec.ewm_halflives:
        put(f"{t}_ewm_{hl}", groups.ewm(halflife=spec.steps(hl), ignore_na=True).mean().to_numpy())
    if spec.derived:
        scale_roll = groups.rolling(spec.steps(spec.scale_window), min_periods=2)
        scale = scale_roll.std().to_numpy()
        put(f"{t}_scale", scale)
        put(f"{t}_z", (y - scale_roll.mean().to_numpy()) / (scale + _EPS))
        put(f"{t}_delta_1", y - grid.shift(y, 1))
        put(f"{t}_delta_12", y - grid.shift(y, 12))
        put("cpu_mem_ratio", column("cpu_util") / (column("mem_util") + _EPS))
        put("net_in_out_ratio", column("net_in_kbps") / (column("net_out_kbps") + 1.0))
    if slots:
        raise AssertionError(f"build_features: no values for {', '.join(slots)}")
    features = pd.DataFrame(block.T, index=index, columns=names, copy=False)
    features.insert(0, "ts", g["ts"].array[order])
    features.insert(0, "entity_id", g["entity_id"].array[order])
    return features


def build_feature_rows(
    metrics: pd.DataFrame,
    spec: FeatureSpec,
    rows,
    block_rows: int | None = None,
    then: Callable[[pd.DataFrame], pd.DataFrame] | None = None,
) -> pd.DataFrame:
    """``build_features(metrics, spec).iloc[rows]`` for ascending, distinct ``rows``, built by blocks of whole entities.

    Every feature of a row reads its own entity's rows only, so a block of entities gives its
    rows the very numbers the whole frame gives them, while only one block's grid and windows
    (about ``block_rows`` input rows, default ``BLOCK_ROWS``) and the rows kept are in memory:
    a fit that keeps a bounded sample of rows needs memory bounded by the block, whatever the
    fleet's size. ``then``, if given, turns each block's feature rows into what is kept (the
    peak classifier's narrower rows), so that only its output is held for every row.
    """
    block_rows = block_rows or BLOCK_ROWS
    keep_as = then or (lambda frame: frame)
    rows = np.asarray(rows, dtype=np.int64)
    codes = pd.factorize(metrics["entity_id"], use_na_sentinel=False)[0]
    bounds = np.concatenate([[0], np.cumsum(np.bincount(codes, minlength=1))])
    if bounds[-1] <= block_rows:
        return keep_as(build_features(metrics, spec, rows=rows))
    by_entity = np.argsort(codes, kind="stable")
    keep = np.zeros(len(metrics), dtype=bool)
    keep[rows] = True
    parts, positions = [], []
    lo, last = 0, len(bounds) - 1
    while lo < last:
        hi = min(max(int(np.searchsorted(bounds, bounds[lo] + block_rows)), lo + 1), last)
        block = np.sort(by_entity[bounds[lo] : bounds[hi]])
        mine = np.flatnonzero(keep[block])
        if len(mine):
            parts.append(keep_as(build_features(metrics.iloc[block], spec, rows=mine)))
            positions.append(block[mine])
        lo = hi
    if not parts:
        return keep_as(build_features(metrics, spec, rows=rows))
    features = pd.concat(parts) if len(parts) > 1 else parts[0]
    at = np.concatenate(positions)
    if (np.diff(at) > 0).all():  # rows in entity order (canonical metrics): no reordering copy
        return features
    return features.iloc[np.argsort(at, kind="stable")]


# The warehouse's metrics_hourly columns (``warehouse.HOURLY_COLUMNS``) mapped to canonical ones.
_HOURLY_NAMES = {"hour": "ts", "cpu_mean": "cpu_util", "mem_mean": "mem_util"}


def from_hourly(hourly: pd.DataFrame) -> pd.DataFrame:
    """The warehouse's hourly view as a metrics-shaped frame (``ts`` = the hour, means as the values)."""
    renamed = hourly.rename(columns={k: v for k, v in _HOURLY_NAMES.items() if k in hourly.columns})
    if "cpu_util" not in renamed.columns:
        raise ValueError(f"hourly view: no mean cpu column among {', '.join(map(str, hourly.columns))}")
    renamed["ts"] = pd.to_datetime(renamed["ts"], utc=True)
    return renamed
