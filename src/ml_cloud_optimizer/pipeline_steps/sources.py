"""Where a run's data comes from: the synthetic generator or a real trace, as one canonical fleet."""

from __future__ import annotations

import logging
import time

from ml_cloud_optimizer.data.io import read_fleet
from ml_cloud_optimizer.data.schema import Fleet
from ml_cloud_optimizer.data.synthetic import generate_fleet

__all__ = ["SYNTHETIC", "acquire_fleet"]

_log = logging.getLogger(__name__)

SYNTHETIC = "synthetic"


def acquire_fleet(source: str, *, records: int, seed: int = 0) -> Fleet:
    """``source`` "synthetic": ``records`` generated rows; otherwise a trace path (format detected)."""
    started = time.perf_counter()
    fleet = generate_fleet(records, seed=seed) if source == SYNTHETIC else read_fleet(source)
    _log.info(
        "data: %s rows, %d entities from %s in %.1f s",
        f"{len(fleet.metrics):,}",
        len(fleet.entities),
        source,
        time.perf_counter() - started,
    )
    return fleet
