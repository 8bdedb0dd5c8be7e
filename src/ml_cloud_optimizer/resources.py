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

import pandas as pd

__all__ = ["RESOURCES", "UTIL_COLUMN", "as_target", "parse_targets"]

# resource name -> the canonical utilisation column it is measured by.
UTIL_COLUMN = {"cpu": "cpu_util", "mem": "mem_util"}
RESOURCES = tuple(UTIL_COLUMN)


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
    swapped["cpu_util"], swapped["mem_util"] = metrics["mem_util"], metrics["cpu_util"]
    return swapped


def parse_targets(text: str) -> list[str]:
    """``"cpu,mem"`` -> ``["cpu", "mem"]``; duplicates dropped, unknown names a ``ValueError``."""
    names = [name.strip().lower() for name in str(text).split(",") if name.strip()]
    unknown = [name for name in names if name not in UTIL_COLUMN]
    if unknown or not names:
        raise ValueError(f"--target {text}: expected cpu, mem or cpu,mem")
    return list(dict.fromkeys(names))
