"""Calendar features: when in the day and week a slot falls, as integers and as points on a circle.

The sin/cos pair makes 23:55 and 00:00 neighbours, which a plain hour number does not.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["CALENDAR_COLUMNS", "calendar_features"]

CALENDAR_COLUMNS = ["hour", "dow", "is_weekend", "hour_sin", "hour_cos", "dow_sin", "dow_cos"]


def calendar_features(ts: pd.Series, timezone: str = "UTC") -> pd.DataFrame:
    """Hour of day, day of week (Monday = 0), weekend flag and their cyclical encodings, in ``timezone``."""
    local = pd.to_datetime(ts, utc=True).dt.tz_convert(timezone)
    hour = local.dt.hour.to_numpy()
    day_fraction = (hour + local.dt.minute.to_numpy() / 60.0) / 24.0
    dow = local.dt.dayofweek.to_numpy()
    week_fraction = (dow + day_fraction) / 7.0
    return pd.DataFrame(
        {
            "hour": hour.astype("float64"),
            "dow": dow.astype("float64"),
            "is_weekend": (dow >= 5).astype("float64"),
            "hour_sin": np.sin(2 * np.pi * day_fraction),
            "hour_cos": np.cos(2 * np.pi * day_fraction),
            "dow_sin": np.sin(2 * np.pi * week_fraction),
            "dow_cos": np.cos(2 * np.pi * week_fraction),
        },
        index=ts.index,
    )
