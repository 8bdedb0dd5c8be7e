"""Where a run's data comes from: the synthetic generator or a real trace, as one canonical fleet."""

from __future__ import annotations

import time

from ml_cloud_optimizer.data.io import read_fleet
from ml_cloud_optimizer.data.schema import Fleet
from ml_cloud_optimizer.data.synthetic import generate_fleet

__all__ = ["SYNTHETIC", "acquire_fleet"]

SYNTHETIC = "synthetic"


def acquire_fleet(source: str, *, records: int, seed: int = 0) -> Fleet:
    """``source`` "synthetic": ``records`` generated rows; otherwise a trace path (format detected)."""
    started = time.perf_counter()
    if source == SYNTHETIC:
        fleet = generate_fleet(records, seed=seed)
    else:
        fleet = read_fleet(source)
    print(
        f"[mlco] data: {len(fleet.metrics):,} rows, {len(fleet.entities)} entities from {source}"
        f" in {time.perf_counter() - started:.1f} s",
        flush=True,
    )
    return fleet
