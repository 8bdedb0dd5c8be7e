"""How many CPU cores a model may use, shared by the boosters and the torch models without importing torch."""

from __future__ import annotations

import os

__all__ = ["idle_cores"]


def idle_cores() -> int:
    """Cores this process may use that other processes are not already keeping busy (at least 1).

    Small recurrent nets gain little from a second thread, and OpenMP threads competing
    with other busy processes for the same cores slow training down by an order of
    magnitude, so the 1-minute load average (which counts this process) is taken off.
    """
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):
        return cores
    return int(min(cores, max(1, round(cores - load) + 1)))
