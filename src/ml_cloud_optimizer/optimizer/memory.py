"""Memory requests: sized from an upper forecast plus headroom, never below the recent peak working set.

Why memory is not sized like CPU: CPU above its request is throttled (a slowdown); memory
above it is an OOM kill (a restart). So a memory request has two floors, and the larger wins:

* the **p90 forecast** of the working set (``mem_util x mem_gib``) over the hour, times
  ``1 + headroom`` (``DEFAULT_MEM_HEADROOM`` = 15%, the VPA recommender's safety margin);
* the **recent peak working set**: the largest working set of the ``DEFAULT_PEAK_LOOKBACK``
  (7 days, about the VPA's 8-day memory history; a week covers the weekly cycle) before the
  forecast's origin. A low forecast can never size memory below what the entity already used.

The request is rounded up to ``DEFAULT_MEM_GRANULARITY`` (64 MiB, a common step for
Kubernetes memory requests, and exact in binary floating point).

The backtest's memory replay (``memory_replay``, played out by ``replay_rules.actuate`` under
the same rules as every other change) counts an **OOM kill** at every scored step whose
working set exceeds the request. Each kill costs one restart, and the request must then be
raised: ``oom_floor`` gives the VPA recommender's rule (the larger of 1.2 x the request and the
request + 100 MiB) but at least the working set that was killed; that floor holds for
``DEFAULT_OOM_HOLD`` (24 h, the VPA's memory half-life) on top of the policy's proposal.
``replay_oom`` is the same kill-and-raise rule with changes free and at every step: the replay
as it was before changes were charged, kept as a reference.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ml_cloud_optimizer.data.schema import STEP, UTIL_MAX

__all__ = [
    "DEFAULT_MEM_GRANULARITY",
    "DEFAULT_MEM_HEADROOM",
    "DEFAULT_OOM_HOLD",
    "DEFAULT_PEAK_LOOKBACK",
    "OOM_BUMP_RATIO",
    "OOM_MIN_BUMP_GIB",
    "oom_floor",
    "peak_working_set",
    "replay_oom",
    "size_memory",
]

DEFAULT_MEM_GRANULARITY = 1 / 16  # GiB: 64 MiB
DEFAULT_MEM_HEADROOM = 0.15
DEFAULT_PEAK_LOOKBACK = pd.Timedelta(days=7)
DEFAULT_OOM_HOLD = pd.Timedelta(hours=24)
OOM_BUMP_RATIO = 1.2  # the VPA recommender's oom-bump-up-ratio
OOM_MIN_BUMP_GIB = 100 / 1024  # and its oom-min-bump-up-bytes (100 MiB)


def working_set(metrics: pd.DataFrame, entities: pd.DataFrame) -> pd.Series:
    """Working set in GiB per metrics row: ``mem_util x mem_gib`` (NaN where either is unknown)."""
    if "mem_util" not in metrics.columns or "mem_gib" not in entities.columns:
        return pd.Series(np.nan, index=metrics.index, dtype="float64")
    gib = entities.assign(entity_id=entities["entity_id"].astype(str)).set_index("entity_id")["mem_gib"]
    size = metrics["entity_id"].astype(str).map(gib).to_numpy(dtype="float64")
    util = pd.to_numeric(metrics["mem_util"], errors="coerce").to_numpy(dtype="float64")
    return pd.Series(np.clip(util, 0, UTIL_MAX) * size, index=metrics.index, dtype="float64")


def peak_working_set(
    metrics: pd.DataFrame, entities: pd.DataFrame, lookback: pd.Timedelta = DEFAULT_PEAK_LOOKBACK
) -> pd.DataFrame:
    """The largest working set (GiB) of the ``lookback`` ending at each sample, per entity.

    Returns ``entity_id``, ``ts``, ``peak_mem_gib`` for every metrics row: what was known at
    that time as an origin, so a recommendation made then uses no later sample.
    """
    frame = pd.DataFrame(
        {
            "entity_id": metrics["entity_id"].astype(str).to_numpy(),
            "ts": pd.to_datetime(metrics["ts"], utc=True).to_numpy(),
            "ws": working_set(metrics, entities).to_numpy(),
        }
    ).sort_values(["entity_id", "ts"], kind="stable")
    if frame.empty:
        return pd.DataFrame({"entity_id": [], "ts": [], "peak_mem_gib": []})
    peaks = (
        frame.set_index("ts")
        .groupby("entity_id", sort=False)["ws"]
        .rolling(pd.Timedelta(lookback), min_periods=1)
        .max()
        .rename("peak_mem_gib")
        .reset_index()
    )
    peaks["ts"] = pd.to_datetime(peaks["ts"], utc=True)
    return peaks[["entity_id", "ts", "peak_mem_gib"]]


def size_memory(
    p90_gib,
    peak_gib,
    *,
    headroom: float = DEFAULT_MEM_HEADROOM,
    granularity: float = DEFAULT_MEM_GRANULARITY,
) -> np.ndarray:
    """``max(p90 x (1 + headroom), peak)`` rounded up to ``granularity`` GiB; NaN only where both are unknown."""
    from ml_cloud_optimizer.optimizer.capacity import round_up

    if headroom < 0:
        raise ValueError(f"memory headroom must not be negative, got {headroom}")
    need = np.fmax(np.asarray(p90_gib, dtype="float64") * (1.0 + headroom), np.asarray(peak_gib, dtype="float64"))
    return round_up(need, granularity)


def oom_floor(request_gib: np.ndarray, working_set_gib: np.ndarray) -> np.ndarray:
    """The request after an OOM kill: the VPA's bump of the killed request, and at least the working set killed."""
    bumped = np.maximum(request_gib * OOM_BUMP_RATIO, request_gib + OOM_MIN_BUMP_GIB)
    return np.maximum(bumped, working_set_gib)


def replay_oom(
    demand: np.ndarray,
    planned: np.ndarray,
    start: int,
    *,
    granularity: float = DEFAULT_MEM_GRANULARITY,
    hold_steps: int = DEFAULT_OOM_HOLD // STEP,
) -> tuple[np.ndarray, np.ndarray]:
    """Replay OOM kills over the scored steps, changes free: the memory provisioned, and where kills happened.

    The backtest charges changes (``replay_rules.actuate`` with ``oom=True``); this is the free
    reference it replaced.

    At each step from ``start`` on, the provisioned memory is the policy's plan or, for
    ``hold_steps`` after a kill, the raised floor (``oom_floor``, rounded up to ``granularity``)
    if that is larger. A step whose working set exceeds it is a kill. Steps without a sample
    (NaN demand) kill nothing.

    Args:
        demand: working set in GiB, shape (steps, entities), NaN where unknown.
        planned: the policy's memory in GiB, same shape.
        start: first scored step.

    Returns:
        ``(provisioned, kills)``: provisioned GiB (the plan before ``start``) and a boolean
        matrix of OOM kills, both of ``demand``'s shape.
    """
    from ml_cloud_optimizer.optimizer.capacity import round_up

    provisioned = np.array(planned, dtype="float64", copy=True)
    kills = np.zeros(demand.shape, dtype=bool)
    floor = np.zeros(demand.shape[1])
    until = np.full(demand.shape[1], -1)
    # A kill raises the request for the steps after it, so the replay runs step by step, vectorised across entities.
    for t in range(start, demand.shape[0]):
        active = until >= t
        current = np.where(active, np.maximum(provisioned[t], floor), provisioned[t])
        provisioned[t] = current
        killed = demand[t] > current + 1e-9  # NaN compares False: no sample, no kill
        if killed.any():
            kills[t] = killed
            floor = np.where(killed, round_up(oom_floor(current, np.nan_to_num(demand[t])), granularity), floor)
            until = np.where(killed, t + hold_steps, until)
    return provisioned, kills
