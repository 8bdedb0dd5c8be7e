"""Memory's replay, scored: what each policy provisioned, the OOM kills it suffered and the restarts they cost.

Why apart from CPU's scoring (``backtest``): memory cannot be throttled. A step whose working
set exceeds what a policy provisioned is an OOM kill; the request is then raised
(``memory.replay_oom``), so a policy's figures depend on its own kills, step by step. The
figures sit beside CPU's in the backtest summary, one row per policy.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ml_cloud_optimizer.data.schema import STEP, STEP_SECONDS
from ml_cloud_optimizer.optimizer.capacity import DemandGrid
from ml_cloud_optimizer.optimizer.memory import DEFAULT_MEM_GRANULARITY, DEFAULT_OOM_HOLD, replay_oom
from ml_cloud_optimizer.optimizer.policies import Policy

__all__ = ["MEMORY_COLUMNS", "run_memory_backtest", "score_memory"]

_STEP_HOURS = STEP_SECONDS / 3600.0

# Memory's figures per policy, beside CPU's in the summary (NaN where the trace has no memory).
MEMORY_COLUMNS = [
    "mem_gib_hours",
    "mem_cost_usd",
    "oom_kills",
    "restarts",
    "oom_entities",
    "working_set_gib_hours",
]


def score_memory(grid: DemandGrid, provisioned: np.ndarray, kills: np.ndarray, start: int) -> dict[str, float]:
    """Memory's figures (``MEMORY_COLUMNS``) for one policy, over the steps from ``start`` on."""
    demand = grid.demand[start:]
    seen = ~np.isnan(demand)
    if not seen.any():
        raise ValueError("the replay window holds no memory samples")
    c = np.where(seen, provisioned[start:], 0.0)
    killed = kills[start:] & seen
    return {
        "mem_gib_hours": float(c.sum() * _STEP_HOURS),
        "mem_cost_usd": float((c * grid.price_per_core_hour).sum() * _STEP_HOURS),
        "oom_kills": int(killed.sum()),
        "restarts": int(killed.sum()),  # each OOM kill restarts the container once
        "oom_entities": int(killed.any(axis=0).sum()),
        "working_set_gib_hours": float(np.where(seen, demand, 0.0).sum() * _STEP_HOURS),
    }


def run_memory_backtest(
    grid: DemandGrid,
    policies: list[Policy],
    *,
    start: int,
    granularity: float = DEFAULT_MEM_GRANULARITY,
    hold_steps: int = DEFAULT_OOM_HOLD // STEP,
) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """Plan each policy's memory on a memory ``grid``, replay its OOM kills, and score it.

    Returns one row per policy (``policy`` and ``MEMORY_COLUMNS``) and each policy's memory
    as provisioned, OOM bumps included.
    """
    if grid.resource != "mem":
        raise ValueError("run_memory_backtest needs a memory grid (DemandGrid.from_fleet(fleet, 'mem'))")
    if not 0 < start < len(grid.ts):
        raise ValueError(f"replay start {start} must fall inside the memory grid of {len(grid.ts)} steps")
    rows, capacity = [], {}
    for policy in policies:
        plan = policy.plan(grid, start, granularity)
        provisioned, kills = replay_oom(grid.demand, plan, start, granularity=granularity, hold_steps=hold_steps)
        capacity[policy.name] = provisioned
        rows.append({"policy": policy.name, **score_memory(grid, provisioned, kills, start)})
    return pd.DataFrame(rows, columns=["policy", *MEMORY_COLUMNS]), capacity
