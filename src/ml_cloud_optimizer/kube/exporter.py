"""The forecasts as Prometheus gauges, so KEDA, alerts and dashboards read them like any other series.

``ForecastCollector`` renders the latest ``Cycle`` at every scrape (``names`` fixes the series and
labels). A cycle that failed keeps the last good forecasts on show, so a KEDA trigger does not
see its metric vanish and scale in, while ``mlco_cycle_success`` drops to 0 and
``mlco_last_cycle_timestamp_seconds`` stops moving, which the PrometheusRule alerts on.
Forecasts older than ``max_age`` are dropped rather than served as if current.
"""

from __future__ import annotations

import math
import threading
import time

from prometheus_client.core import CollectorRegistry, GaugeMetricFamily
from prometheus_client.registry import Collector

from ml_cloud_optimizer.kube import names
from ml_cloud_optimizer.kube.forecasting import Cycle

__all__ = ["ForecastCollector", "serve"]

_QUANTILES = (("0.5", 0), ("0.9", 1))


class ForecastCollector(Collector):
    """Holds the last good cycle; ``update(cycle)`` after each one, scrapes read it."""

    def __init__(self, max_age: float = 3600.0, clock=time.time) -> None:
        self._lock = threading.Lock()
        self._good: Cycle | None = None
        self._success: float | None = None
        self.max_age, self.clock = max_age, clock

    def update(self, cycle: Cycle) -> None:
        with self._lock:
            self._success = 0.0 if cycle.failure else 1.0
            if not cycle.failure:
                self._good = cycle

    def collect(self):
        with self._lock:
            good, success = self._good, self._success
        labels = list(names.WORKLOAD_LABELS)
        cpu = GaugeMetricFamily(
            names.FORECAST_CPU,
            "Forecast CPU cores in use, total over replicas.",
            labels=[*labels, "horizon", "quantile"],
        )
        mem = GaugeMetricFamily(
            names.FORECAST_MEMORY,
            "Forecast working set bytes, total over replicas.",
            labels=[*labels, "horizon", "quantile"],
        )
        request = GaugeMetricFamily(
            names.RECOMMENDED_REQUEST,
            "Recommended request per pod and container.",
            labels=[*labels, "container", "resource", "unit"],
        )
        capacity = GaugeMetricFamily(
            names.CURRENT_CAPACITY,
            "What the workload's replicas request now, in total.",
            labels=[*labels, "resource", "unit"],
        )
        peak = GaugeMetricFamily(
            names.PEAK_PROBABILITY, "Probability of a peak within the horizon.", labels=[*labels, "horizon"]
        )
        coverage = GaugeMetricFamily(
            names.FORECAST_COVERAGE, "Share of recent origins whose p90 held.", labels=[*labels, "resource"]
        )
        allowed = GaugeMetricFamily(
            names.AUTO_APPLY_ALLOWED, "1 when recent coverage allows auto-apply.", labels=labels
        )
        fresh = good is not None and self.clock() - good.ended <= self.max_age
        for f in good.forecasts.values() if fresh and good is not None else ():
            w = [f.workload.namespace, f.workload.kind, f.workload.name]
            for family, series in ((cpu, f.cpu), (mem, f.memory)):
                for h, pair in series.items():
                    for quantile, i in _QUANTILES:
                        family.add_metric([*w, names.horizon_label(h), quantile], pair[i])
            capacity.add_metric([*w, "cpu", "core"], f.capacity_cores)
            if math.isfinite(f.capacity_bytes):
                capacity.add_metric([*w, "memory", "byte"], f.capacity_bytes)
            if math.isfinite(f.peak_probability):
                from ml_cloud_optimizer.horizons import PEAK_HORIZON

                peak.add_metric([*w, names.horizon_label(PEAK_HORIZON)], f.peak_probability)
            for resource, share in f.coverage.items():
                if math.isfinite(share):
                    coverage.add_metric([*w, resource], share)
            allowed.add_metric(w, 1.0 if f.confident else 0.0)
            for c in f.sizing.containers if f.sizing is not None else ():
                if c.cpu is not None:
                    request.add_metric([*w, c.name, "cpu", "core"], c.cpu.target)
                if c.memory is not None:
                    request.add_metric([*w, c.name, "memory", "byte"], c.memory.target)
        yield from (cpu, mem, request, capacity, peak, coverage, allowed)
        if success is not None:
            yield GaugeMetricFamily(names.CYCLE_SUCCESS, "1 when the last cycle produced forecasts.", value=success)
        if good is not None:
            yield GaugeMetricFamily(
                names.LAST_CYCLE, "When the last good cycle ended (unix seconds).", value=good.ended
            )


def serve(collector: ForecastCollector, port: int, addr: str = "0.0.0.0"):
    """Serve ``collector`` alone on ``http://addr:port/metrics``; returns the server and its thread."""
    from prometheus_client import start_http_server

    registry = CollectorRegistry()
    registry.register(collector)
    return start_http_server(port, addr=addr, registry=registry)
