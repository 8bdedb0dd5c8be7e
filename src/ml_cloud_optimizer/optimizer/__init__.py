"""From forecasts to capacity: recommendations, cost, autoscaling backtests and monitoring.

Demand is ``cpu_util x vcpus`` in cores per 5-minute step; every policy provisions cores in
steps of ``DEFAULT_GRANULARITY`` (0.25 core). See ``capacity`` for the definitions. Memory is
the working set ``mem_util x mem_gib`` in GiB, sized and replayed with OOM kills in mind
(``memory``); CPU and memory are priced apart (``prices``).

Example::

    result = replay_fleet(read_fleet("../shared/data/traces/bitbrains_rnd_2013_08"))
    result.ratio("forecast", "vpa", "core_hours")     # cost against the VPA-style policy
    recs = recommend(model.predict(history), fleet.entities, target_utilization=0.7)

Names are loaded on first use: the model server needs ``capacity`` only and must not pull in the
backtest's forecasters or SciPy with it. Nothing in this package imports the warehouse driver:
runs are stored and read by ``ml_cloud_optimizer.warehouse.optimizer_runs``.
"""

from __future__ import annotations

from ml_cloud_optimizer._lazy import lazy_exports

__all__ = [
    "DEFAULT_GRANULARITY",
    "DEFAULT_MEM_GRANULARITY",
    "DEFAULT_PRICES",
    "MEMORY_COLUMNS",
    "RECOMMENDATION_COLUMNS",
    "SUMMARY_COLUMNS",
    "BacktestResult",
    "DemandGrid",
    "ForecastPolicy",
    "MonitoringReport",
    "Policy",
    "Prices",
    "ReactiveHPAPolicy",
    "RetrainThresholds",
    "StaticPolicy",
    "VPAPolicy",
    "default_forecaster",
    "default_policies",
    "forecasts_long",
    "monitor",
    "peak_working_set",
    "read_prices",
    "recommend",
    "replay_fleet",
    "replay_oom",
    "round_up",
    "run_backtest",
    "run_memory_backtest",
    "score_capacity",
    "score_memory",
    "size_memory",
]

_HOMES = {
    "MEMORY_COLUMNS": "memory_replay",
    "SUMMARY_COLUMNS": "backtest",
    "BacktestResult": "backtest",
    "default_forecaster": "backtest",
    "default_policies": "backtest",
    "replay_fleet": "backtest",
    "run_backtest": "backtest",
    "run_memory_backtest": "memory_replay",
    "score_capacity": "backtest",
    "score_memory": "memory_replay",
    "DEFAULT_GRANULARITY": "capacity",
    "RECOMMENDATION_COLUMNS": "capacity",
    "DemandGrid": "capacity",
    "forecasts_long": "capacity",
    "recommend": "capacity",
    "round_up": "capacity",
    "DEFAULT_MEM_GRANULARITY": "memory",
    "peak_working_set": "memory",
    "replay_oom": "memory",
    "size_memory": "memory",
    "DEFAULT_PRICES": "prices",
    "Prices": "prices",
    "read_prices": "prices",
    "MonitoringReport": "monitoring",
    "RetrainThresholds": "monitoring",
    "monitor": "monitoring",
    "ForecastPolicy": "policies",
    "Policy": "policies",
    "ReactiveHPAPolicy": "policies",
    "StaticPolicy": "policies",
    "VPAPolicy": "policies",
}


__getattr__, __dir__ = lazy_exports(__name__, _HOMES)
