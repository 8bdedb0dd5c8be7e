"""The resources a forecast is about: CPU and memory.

Why a module of its own: training, serving, recommendations and the backtest all choose a
resource by the same short name (``--target cpu|mem``), and each must agree on which
utilisation column that name means and how its capacity is counted.

The forecasters learn the column named ``TARGET`` (``cpu_util``). To forecast memory, the
same machinery is given a frame in which that column holds memory utilisation and the memory
column holds CPU (``as_target``); the lags, rolling statistics and CPU/memory ratio features
are then built from memory first, CPU second, symmetrically. A model remembers the resource
it was trained for (``ModelBundle.target``), so serving and recommendations present their
inputs the same way.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["DEFAULT_RESOURCE", "RESOURCES", "UTIL_COLUMN", "as_target", "data_names", "parse_targets", "suffix"]

# resource name -> the canonical utilisation column it is measured by.
UTIL_COLUMN = {"cpu": "cpu_util", "mem": "mem_util"}
RESOURCES = tuple(UTIL_COLUMN)
# What a model forecasts when nothing says otherwise: every bundle saved before memory was a target.
DEFAULT_RESOURCE = "cpu"
# Feature names that mention both columns, as the swapped view computes them (``features.tabular``).
_RATIO_SWAPPED = {"cpu_mem_ratio": "mem_cpu_ratio"}


def as_target(metrics: pd.DataFrame, resource: str) -> pd.DataFrame:
    """``metrics`` as the forecasters should see it to forecast ``resource``.

    ``cpu`` returns ``metrics`` itself; ``mem`` returns a copy with ``cpu_util`` and
    ``mem_util`` swapped. Rows without memory are kept: they become missing target values,
    which every forecaster already skips when fitting and scoring.
    """
    if resource not in UTIL_COLUMN:
        raise ValueError(f"unknown resource {resource!r}; known: {', '.join(RESOURCES)}")
    if resource == "cpu":
        return metrics
    if "mem_util" not in metrics.columns or metrics["mem_util"].notna().sum() == 0:
        raise ValueError("this data has no mem_util values: a memory forecast needs memory utilisation")
    swapped = metrics.copy()
    # A history may leave CPU out (it is only an input to a memory forecast): NaN, as any missing metric.
    cpu = metrics["cpu_util"] if "cpu_util" in metrics.columns else np.nan
    swapped["cpu_util"], swapped["mem_util"] = metrics["mem_util"], cpu
    return swapped


def parse_targets(text: str) -> list[str]:
    """``"cpu,mem"`` -> ``["cpu", "mem"]``; duplicates dropped, unknown names a ``ValueError``."""
    names = [name.strip().lower() for name in str(text).split(",") if name.strip()]
    unknown = [name for name in names if name not in UTIL_COLUMN]
    if unknown or not names:
        raise ValueError(f"--target {text}: expected cpu, mem or cpu,mem")
    return list(dict.fromkeys(names))


def suffix(resource: str) -> str:
    """What a file or name of ``resource`` adds to CPU's: ``""`` for cpu, ``"-mem"`` for mem.

    CPU keeps the names it had before memory was a target (``champion/``, ``leaderboard.csv``),
    so every reader of those stays right; memory's sit beside them (``champion-mem/``).
    """
    if resource not in UTIL_COLUMN:
        raise ValueError(f"unknown resource {resource!r}; known: {', '.join(RESOURCES)}")
    return "" if resource == DEFAULT_RESOURCE else f"-{resource}"


def data_names(columns: list[str], resource: str) -> list[str]:
    """A model's feature columns as the canonical data names them, for a model of ``resource``.

    A memory model's features are computed on the swapped view, so its ``cpu_util_lag_1`` is
    memory one step back: ``mem_util_lag_1`` to anyone holding canonical data. Serving declares
    and reads feature rows by these names; the order stays the model's.
    """
    if resource == DEFAULT_RESOURCE:
        return list(columns)
    return [_swapped(name) for name in columns]


def _swapped(name: str) -> str:
    if name in _RATIO_SWAPPED:
        return _RATIO_SWAPPED[name]
    for mine, theirs in (("cpu_util", "mem_util"), ("mem_util", "cpu_util")):
        if name == mine or name.startswith(f"{mine}_"):
            return theirs + name[len(mine) :]
    return name
