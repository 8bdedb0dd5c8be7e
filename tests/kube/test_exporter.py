"""The forecast exporter: its series, and a real Prometheus that scrapes it and answers KEDA's query.

The last test is the cluster's path end to end on loopback: Debian's Prometheus scrapes our
``/metrics``, and the query an emitted ScaledObject's forecast trigger carries
(``emit.forecast_query``), run against that Prometheus, returns the forecast we computed.
"""

from __future__ import annotations

import time

import httpx
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from ml_cloud_optimizer.cli import main
from ml_cloud_optimizer.kube import names
from ml_cloud_optimizer.kube.emit import forecast_query
from ml_cloud_optimizer.kube.exporter import ForecastCollector, serve
from ml_cloud_optimizer.kube.forecasting import Cycle, Forecasting
from ml_cloud_optimizer.models.bundle import ModelBundle
from prometheus_support import free_port, running_prometheus


@pytest.fixture(scope="module")
def cycle(workload_fleet, champions) -> Cycle:
    cpu, mem = ModelBundle.load(champions / "champion"), ModelBundle.load(champions / "champion-mem")
    result = Forecasting(str(workload_fleet), cpu, mem).run()
    assert result.failure is None and len(result.forecasts) == 2
    return result


def _samples(collector: ForecastCollector) -> dict:
    registry = CollectorRegistry()
    registry.register(collector)
    text = generate_latest(registry).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_every_series_carries_the_workload_and_the_forecast_values(cycle):
    collector = ForecastCollector(clock=lambda: cycle.ended)
    collector.update(cycle)
    samples = _samples(collector)
    web = cycle.forecasts["shop/Deployment/web"]
    key = {"namespace": "shop", "kind": "Deployment", "workload": "web"}
    for h, (p50, p90) in web.cpu.items():
        for quantile, value in (("0.5", p50), ("0.9", p90)):
            labels = tuple(sorted({**key, "horizon": names.horizon_label(h), "quantile": quantile}.items()))
            assert samples[(names.FORECAST_CPU, labels)] == pytest.approx(value)
    assert samples[(names.CURRENT_CAPACITY, tuple(sorted({**key, "resource": "cpu", "unit": "core"}.items())))] == (
        pytest.approx(web.capacity_cores)
    )
    requests = [k for k in samples if k[0] == names.RECOMMENDED_REQUEST and ("workload", "web") in k[1]]
    assert {dict(k[1])["resource"] for k in requests} == {"cpu", "memory"}
    assert {k[0] for k in samples} >= {names.FORECAST_MEMORY, names.FORECAST_COVERAGE, names.AUTO_APPLY_ALLOWED}
    assert samples[(names.CYCLE_SUCCESS, ())] == 1.0


def test_a_failed_cycle_keeps_the_forecasts_and_reports_the_failure(cycle):
    collector = ForecastCollector(clock=lambda: cycle.ended)
    collector.update(cycle)
    collector.update(Cycle(ended=cycle.ended + 300, failure="reading metrics failed: connection refused"))
    samples = _samples(collector)
    assert samples[(names.CYCLE_SUCCESS, ())] == 0.0
    assert samples[(names.LAST_CYCLE, ())] == cycle.ended  # the last good cycle's time stops moving
    assert any(k[0] == names.FORECAST_CPU for k in samples)


def test_forecasts_older_than_max_age_are_not_served(cycle):
    collector = ForecastCollector(max_age=600, clock=lambda: cycle.ended + 601)
    collector.update(cycle)
    assert not any(k[0] == names.FORECAST_CPU for k in _samples(collector))


def test_exporter_once_prints_the_gauges(workload_fleet, champions, capsys):
    argv = ["exporter", "--once", "--source", str(workload_fleet), "--model", str(champions / "champion")]
    assert main(argv) == 0
    families = {f.name for f in text_string_to_metric_families(capsys.readouterr().out)}
    assert {names.FORECAST_CPU, names.FORECAST_MEMORY, names.RECOMMENDED_REQUEST} <= families


def test_prometheus_scrapes_the_exporter_and_the_keda_query_returns_the_forecast(cycle, tmp_path):
    collector = ForecastCollector()
    collector.update(cycle)
    port = free_port()
    server, _ = serve(collector, port, "127.0.0.1")
    config = (
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
        f"scrape_configs:\n  - job_name: mlco\n    static_configs:\n      - targets: ['127.0.0.1:{port}']\n"
    )
    web = cycle.forecasts["shop/Deployment/web"]
    query = forecast_query(web.workload, "1h")
    try:
        with running_prometheus(tmp_path / "prometheus", config=config) as hostport:
            deadline, result = time.monotonic() + 60, []
            while not result and time.monotonic() < deadline:
                answer = httpx.get(f"http://{hostport}/api/v1/query", params={"query": query}, timeout=5).json()
                assert answer["status"] == "success", answer
                result = answer["data"]["result"]
                time.sleep(0.5)
    finally:
        server.shutdown()
    assert result, f"Prometheus never returned {query}"
    (series,) = result
    assert float(series["value"][1]) == pytest.approx(web.cpu[12][1], rel=1e-9)
