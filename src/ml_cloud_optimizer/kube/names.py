"""The names a cluster sees: our recommender's name in VPAs, and the exporter's series and labels.

One module, because three parties must agree on them: the exporter that writes the series, the
KEDA ScaledObjects and PrometheusRules that query them, and the VPAs that name the recommender.

Series (all gauges; ``horizon`` is a duration such as ``5m`` or ``1h``, ``quantile`` ``0.5`` or
``0.9``; a workload is ``namespace``, ``kind`` (Deployment, StatefulSet, ...) and ``workload`` (its
name); forecasts are totals over the workload's replicas):

* ``mlco_forecast_cpu_cores{namespace,kind,workload,horizon,quantile}``: CPU cores in use then;
* ``mlco_forecast_memory_bytes{namespace,kind,workload,horizon,quantile}``: working set then;
* ``mlco_recommended_request{namespace,kind,workload,container,resource,unit}``: the request per
  pod (``resource`` ``cpu`` with ``unit`` ``core``, or ``memory`` with ``unit`` ``byte``);
* ``mlco_current_capacity{namespace,kind,workload,resource,unit}``: what the workload's replicas
  request now, in total (cores or bytes), so rules can compare a forecast with it;
* ``mlco_peak_probability{namespace,kind,workload,horizon}``: chance of a peak within the horizon;
* ``mlco_forecast_coverage{namespace,kind,workload,resource}``: share of recent origins whose p90
  held (usage at or below it), over ``COVERAGE_LOOKBACK``;
* ``mlco_auto_apply_allowed{namespace,kind,workload}``: 1 when coverage is at least its target,
  so a recommendation may be applied without a person, else 0 (shadow only);
* ``mlco_last_cycle_timestamp_seconds``: when the last cycle that produced forecasts ended;
* ``mlco_cycle_success``: 1 when the last cycle produced forecasts, 0 when it failed.
"""

from __future__ import annotations

__all__ = [
    "AUTO_APPLY_ALLOWED",
    "COVERAGE_TARGET",
    "CURRENT_CAPACITY",
    "CYCLE_SUCCESS",
    "FORECAST_COVERAGE",
    "FORECAST_CPU",
    "FORECAST_MEMORY",
    "LAST_CYCLE",
    "PEAK_PROBABILITY",
    "RECOMMENDED_REQUEST",
    "RECOMMENDER_NAME",
    "WORKLOAD_LABELS",
    "horizon_label",
]

RECOMMENDER_NAME = "mlco"  # spec.recommenders[].name of the VPAs we serve

FORECAST_CPU = "mlco_forecast_cpu_cores"
FORECAST_MEMORY = "mlco_forecast_memory_bytes"
RECOMMENDED_REQUEST = "mlco_recommended_request"
CURRENT_CAPACITY = "mlco_current_capacity"
PEAK_PROBABILITY = "mlco_peak_probability"
FORECAST_COVERAGE = "mlco_forecast_coverage"
AUTO_APPLY_ALLOWED = "mlco_auto_apply_allowed"
LAST_CYCLE = "mlco_last_cycle_timestamp_seconds"
CYCLE_SUCCESS = "mlco_cycle_success"

WORKLOAD_LABELS = ("namespace", "kind", "workload")

# Below this share of held p90s over the lookback, a workload's recommendations are shadow only.
COVERAGE_TARGET = 0.8


def horizon_label(steps: int) -> str:
    """A horizon of ``steps`` 5-minute steps as Prometheus writes durations: ``5m``, ``1h``, ``1h30m``."""
    minutes = 5 * int(steps)
    hours, minutes = divmod(minutes, 60)
    return (f"{hours}h" if hours else "") + (f"{minutes}m" if minutes or not hours else "")
