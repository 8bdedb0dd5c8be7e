"""The capacity an entity needs for its forecast: vCPUs and replicas at a target utilisation.

Same definitions as ``ml_cloud_optimizer.optimizer.capacity`` (demand in cores is
``cpu_util x vcpus``, requests rounded up to its granularity), applied per answer row to
the highest forecast over the horizons asked for, so that one number covers the window.
"""

from __future__ import annotations

import numpy as np

from ml_cloud_optimizer.optimizer.capacity import DEFAULT_GRANULARITY, round_up

__all__ = ["recommend_capacity"]


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
            model has it, else p50), as a fraction of the current provisioning.
        vcpus: vCPUs of one replica.
        replicas: replicas running now.
        target_utilization: the utilisation the request is sized for, in (0, 1].
        granularity: request step in cores.

    Returns:
        ``(recommended_vcpus, recommended_replicas)``: total vCPUs rounded up to
        ``granularity``, and replicas of the current size that hold them (at least one).
    """
    demand = np.clip(np.asarray(peak_util, dtype="float64"), 0.0, None) * vcpus * replicas
    total = round_up(demand / target_utilization, granularity)
    count = np.maximum(np.ceil(total / vcpus - 1e-9), 1).astype(np.int64)
    return total, count
