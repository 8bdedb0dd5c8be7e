"""The capacity an entity needs for its forecast: vCPUs and replicas, or memory, at a target utilisation.

Same definitions as ``ml_cloud_optimizer.optimizer.capacity`` (demand in cores is
``cpu_util x vcpus``, requests rounded up to its granularity), applied per answer row to
the highest forecast over the horizons asked for, so that one number covers the window.

Everything is computed in float64 and clipped to the bounds of ``serving.types`` before
the one cast to int64: the parser already refuses what lies outside them, and clipping again
here means no input (a forecast of infinity, NaN, a caller that skipped the parser) can
overflow the cast into a negative or wrapped-around replica count.

Memory (``recommend_memory``) is sized per replica, not spread over more replicas, and never
below the highest utilisation the request shows: a replica short of memory is killed, not slowed.
"""

from __future__ import annotations

import numpy as np

from ml_cloud_optimizer.data.schema import UTIL_MAX
from ml_cloud_optimizer.optimizer.capacity import DEFAULT_GRANULARITY, round_up
from ml_cloud_optimizer.serving.types import (
    MAX_GRANULARITY,
    MAX_MEM_GIB,
    MAX_RECOMMENDED_MEM_GIB,
    MAX_RECOMMENDED_REPLICAS,
    MAX_RECOMMENDED_VCPUS,
    MAX_REPLICAS,
    MAX_TARGET_UTILIZATION,
    MAX_VCPUS,
    MEM_GRANULARITY_GIB,
    MIN_GRANULARITY,
    MIN_MEM_GIB,
    MIN_TARGET_UTILIZATION,
    MIN_VCPUS,
)

__all__ = ["recommend_capacity", "recommend_memory"]


def recommend_capacity(
    peak_util: np.ndarray,
    vcpus: np.ndarray,
    replicas: np.ndarray,
    target_utilization: float,
    granularity: float = DEFAULT_GRANULARITY,
) -> tuple[np.ndarray, np.ndarray]:
    """vCPUs in all and replicas that keep utilisation at ``target_utilization`` under the forecast peak.

    Args:
        peak_util: per row, the highest forecast utilisation over the horizons (p90 where the
            model has it, else p50), as a fraction of the current provisioning. Read within
            ``[0, UTIL_MAX]`` (no sample can show more); NaN (no forecast) keeps the current capacity.
        vcpus: vCPUs of one replica, clipped to ``[MIN_VCPUS, MAX_VCPUS]``.
        replicas: replicas running now, clipped to ``[1, MAX_REPLICAS]``.
        target_utilization: the utilisation the request is sized for, in
            ``[MIN_TARGET_UTILIZATION, MAX_TARGET_UTILIZATION]``.
        granularity: request step in cores, in ``[MIN_GRANULARITY, MAX_GRANULARITY]``.

    Returns:
        ``(recommended_vcpus, recommended_replicas)``: total vCPUs rounded up to
        ``granularity`` (finite, at most ``MAX_RECOMMENDED_VCPUS``), and replicas of the
        current size that hold them (int64 in ``[1, MAX_RECOMMENDED_REPLICAS]``).

    Raises:
        ValueError: ``target_utilization`` or ``granularity`` outside its bounds (server
            settings; a client's target is refused by the parser first).
    """
    _check_target(target_utilization)
    if not MIN_GRANULARITY <= granularity <= MAX_GRANULARITY:
        raise ValueError(f"granularity must be in [{MIN_GRANULARITY}, {MAX_GRANULARITY}] cores, got {granularity}")
    peak = np.asarray(peak_util, dtype="float64")
    size = np.clip(np.asarray(vcpus, dtype="float64"), MIN_VCPUS, MAX_VCPUS)
    count = np.clip(np.asarray(replicas, dtype="float64"), 1.0, MAX_REPLICAS)
    # No forecast: size for the target, i.e. keep what runs now.
    util = np.where(np.isnan(peak), target_utilization, np.clip(peak, 0.0, UTIL_MAX))
    demand = util * size * count
    total = np.minimum(round_up(demand / target_utilization, granularity), MAX_RECOMMENDED_VCPUS)
    needed = np.clip(np.ceil(total / size - 1e-9), 1.0, MAX_RECOMMENDED_REPLICAS)
    return total, needed.astype(np.int64)


def recommend_memory(
    peak_util: np.ndarray, observed_util: np.ndarray, mem_gib: np.ndarray, target_utilization: float
) -> np.ndarray:
    """GiB of one replica that keep memory utilisation at ``target_utilization`` under the forecast peak.

    Args:
        peak_util: per row, the highest forecast memory utilisation over the horizons (p90
            where the model has it), a fraction of ``mem_gib``, read within ``[0, UTIL_MAX]``;
            NaN (no forecast) keeps the current size.
        observed_util: per row, the highest memory utilisation the request shows (NaN: none);
            the answer never falls below it, headroom or not.
        mem_gib: GiB of one replica now, clipped to ``[MIN_MEM_GIB, MAX_MEM_GIB]``.
        target_utilization: as for ``recommend_capacity``.

    Returns:
        ``recommended_mem_gib``: rounded up to ``MEM_GRANULARITY_GIB`` (16 MiB), at least one
        granule and at most ``MAX_RECOMMENDED_MEM_GIB``.

    Raises:
        ValueError: ``target_utilization`` outside its bounds.
    """
    _check_target(target_utilization)
    peak = np.asarray(peak_util, dtype="float64")
    size = np.clip(np.asarray(mem_gib, dtype="float64"), MIN_MEM_GIB, MAX_MEM_GIB)
    util = np.where(np.isnan(peak), target_utilization, np.clip(peak, 0.0, UTIL_MAX))
    seen = np.clip(np.nan_to_num(np.asarray(observed_util, dtype="float64"), nan=0.0), 0.0, UTIL_MAX)
    need = np.maximum(util / target_utilization, seen) * size
    return np.minimum(round_up(need, MEM_GRANULARITY_GIB), MAX_RECOMMENDED_MEM_GIB)


def _check_target(target_utilization: float) -> None:
    if not MIN_TARGET_UTILIZATION <= target_utilization <= MAX_TARGET_UTILIZATION:
        raise ValueError(
            f"target utilization must be in [{MIN_TARGET_UTILIZATION}, {MAX_TARGET_UTILIZATION}],"
            f" got {target_utilization}"
        )
