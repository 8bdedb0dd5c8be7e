"""From forecasts to capacity: recommendations, cost, autoscaling backtests and monitoring.

Demand is ``cpu_util x vcpus`` in cores per 5-minute step; every policy provisions cores in
steps of ``DEFAULT_GRANULARITY`` (0.25 core). See ``capacity`` for the definitions.

Example::

    result = replay_fleet(read_fleet("../shared/data/traces/bitbrains_rnd_2013_08"))
    result.ratio("forecast", "vpa", "core_hours")     # cost against the VPA-style policy
    recs = recommend(model.predict(history), fleet.entities, target_utilisation=0.7)
"""

from ml_cloud_optimizer.optimizer.backtest import (
    SUMMARY_COLUMNS,
    BacktestResult,
    default_forecaster,
    default_policies,
    replay_fleet,
    run_backtest,
    score_capacity,
)
from ml_cloud_optimizer.optimizer.capacity import (
    DEFAULT_GRANULARITY,
    RECOMMENDATION_COLUMNS,
    DemandGrid,
    forecasts_long,
    read_recommendations,
    recommend,
    round_up,
    store_recommendations,
)
from ml_cloud_optimizer.optimizer.monitoring import MonitoringReport, RetrainThresholds, monitor
from ml_cloud_optimizer.optimizer.policies import (
    ForecastPolicy,
    Policy,
    ReactiveHPAPolicy,
    StaticPolicy,
    VPAPolicy,
)

__all__ = [
    "DEFAULT_GRANULARITY",
    "RECOMMENDATION_COLUMNS",
    "SUMMARY_COLUMNS",
    "BacktestResult",
    "DemandGrid",
    "ForecastPolicy",
    "MonitoringReport",
    "Policy",
    "ReactiveHPAPolicy",
    "RetrainThresholds",
    "StaticPolicy",
    "VPAPolicy",
    "default_forecaster",
    "default_policies",
    "forecasts_long",
    "monitor",
    "read_recommendations",
    "recommend",
    "replay_fleet",
    "round_up",
    "run_backtest",
    "score_capacity",
    "store_recommendations",
]
