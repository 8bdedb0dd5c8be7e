"""Memory's replay, scored: what each policy provisioned, the OOM kills it suffered and the restarts they cost.

Why apart from CPU's scoring (``backtest``): memory cannot be throttled. A step whose working
set exceeds the request is an OOM kill, and the request is then raised, so a policy's figures
depend on its own kills, step by step. The kills, the raise and every other change are played
out by ``replay_rules.actuate`` under the same rules as CPU's (minimum interval, start-up
delay, eviction or in-place resize), so memory and CPU pay alike. Figures per policy, beside
CPU's in the backtest summary:

* ``mem_gib_hours`` / ``mem_cost_usd``: GiB requested over the scored steps, in hours, and
  their price at the RAM rate;
* ``oom_kills``: scored entity-steps whose working set exceeded the request;
  ``oom_entities``: entities killed at least once;
* ``restarts``: OOM kills plus memory evictions (each recreates the container once);
* ``mem_changes_per_workload_day``: memory request changes per entity-day of samples (churn);
  ``mem_evictions``: how many of them recreated the pod;
* ``working_set_gib_hours``: the working set itself, in GiB-hours.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ml_cloud_optimizer.data.schema import STEP, STEP_SECONDS
from ml_cloud_optimizer.optimizer.capacity import DemandGrid, round_up
from ml_cloud_optimizer.optimizer.memory import DEFAULT_MEM_GRANULARITY, DEFAULT_OOM_HOLD
from ml_cloud_optimizer.optimizer.policies import Policy
from ml_cloud_optimizer.optimizer.replay_rules import Actuation, ReplayRules, actuate

__all__ = ["MEMORY_COLUMNS", "memory_row", "replay_memory_policy", "run_memory_backtest", "score_memory"]

_STEP_HOURS = STEP_SECONDS / 3600.0
_STEPS_PER_DAY = 86_400 // STEP_SECONDS

# Memory's figures per policy, beside CPU's in the summary (NaN where the trace has no memory).
MEMORY_COLUMNS = [
    "mem_gib_hours",
    "mem_cost_usd",
    "oom_kills",
    "restarts",
    "oom_entities",
    "working_set_gib_hours",
    "mem_changes_per_workload_day",
    "mem_evictions",
]


def score_memory(
    grid: DemandGrid,
    provisioned: np.ndarray,
    kills: np.ndarray,
    start: int,
    *,
    changes: np.ndarray | None = None,
    evictions: np.ndarray | None = None,
    end: int | None = None,
) -> dict[str, float]:
    """Memory's figures (``MEMORY_COLUMNS``) for one policy, over steps ``start`` to ``end``."""
    rows = slice(start, end)
    demand = grid.demand[rows]
    seen = ~np.isnan(demand)
    if not seen.any():
        raise ValueError("the replay window holds no memory samples")
    c = np.where(seen, provisioned[rows], 0.0)
    killed = kills[rows] & seen
    evicted = int(evictions[rows].sum()) if evictions is not None else 0
    changed = int(changes[rows].sum()) if changes is not None else 0
    workload_days = seen.sum() / _STEPS_PER_DAY
    return {
        "mem_gib_hours": float(c.sum() * _STEP_HOURS),
        "mem_cost_usd": float((c * grid.price_per_core_hour).sum() * _STEP_HOURS),
        "oom_kills": int(killed.sum()),
        "restarts": int(killed.sum()) + evicted,
        "oom_entities": int(killed.any(axis=0).sum()),
        "working_set_gib_hours": float(np.where(seen, demand, 0.0).sum() * _STEP_HOURS),
        "mem_changes_per_workload_day": float(changed / workload_days),
        "mem_evictions": evicted,
    }


def memory_row(grid: DemandGrid, act: Actuation, start: int, end: int | None = None) -> dict[str, float]:
    """``score_memory`` of one actuation."""
    return score_memory(grid, act.request, act.kills, start, changes=act.changes, evictions=act.evictions, end=end)


def replay_memory_policy(
    grid: DemandGrid,
    policy: Policy,
    start: int,
    granularity: float,
    rules: ReplayRules,
    hold_steps: int = DEFAULT_OOM_HOLD // STEP,
) -> Actuation:
    """Play one policy's memory out under ``rules``, OOM kills included, from each entity's current GiB."""
    plan = policy.bounds(grid, start, granularity)
    initial = round_up(grid.vcpus, granularity)
    return actuate(plan, grid.demand, rules, initial, oom=True, granularity=granularity, hold_steps=hold_steps)


def run_memory_backtest(
    grid: DemandGrid,
    policies: list[Policy],
    *,
    start: int,
    granularity: float = DEFAULT_MEM_GRANULARITY,
    hold_steps: int = DEFAULT_OOM_HOLD // STEP,
    rules: ReplayRules | None = None,
) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """Play each policy's memory out on a memory ``grid`` under ``rules`` (default ``ReplayRules()``) and score it.

    Returns one row per policy (``policy`` and ``MEMORY_COLUMNS``) and each policy's memory
    as requested, OOM raises included.
    """
    if grid.resource != "mem":
        raise ValueError("run_memory_backtest needs a memory grid (DemandGrid.from_fleet(fleet, 'mem'))")
    if not 0 < start < len(grid.ts):
        raise ValueError(f"replay start {start} must fall inside the memory grid of {len(grid.ts)} steps")
    rules = rules or ReplayRules()
    rows, capacity = [], {}
    for policy in policies:
        act = replay_memory_policy(grid, policy, start, granularity, rules, hold_steps)
        capacity[policy.name] = act.request
        rows.append({"policy": policy.name, **memory_row(grid, act, start)})
    return pd.DataFrame(rows, columns=["policy", *MEMORY_COLUMNS]), capacity
