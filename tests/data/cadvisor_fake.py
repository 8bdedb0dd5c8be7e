"""A fake kubelet for the live scrape test: this process's own CPU and memory under cAdvisor's names.

Run as ``python cadvisor_fake.py PORT CORES``: it serves ``/metrics`` on loopback, burns about
``CORES`` of CPU in busy threads, and reports itself as one pod ``live/burner-0`` with one
container, the way a kubelet's cAdvisor endpoint and kube-state-metrics would:

* ``container_cpu_usage_seconds_total``: the process's real user+system CPU seconds (a counter);
* ``container_memory_working_set_bytes``: its real resident set size;
* ``kube_pod_container_resource_requests``: a fixed request of 1 core and 1 GiB.

It is a fake only in that no kubelet runs here; every number it reports is measured.
"""

from __future__ import annotations

import sys
import threading
import time

import psutil
from prometheus_client import start_http_server
from prometheus_client.core import REGISTRY, CounterMetricFamily, GaugeMetricFamily

LABELS = {"namespace": "live", "pod": "burner-0", "container": "app"}
REQUEST_CORES, REQUEST_BYTES = 1.0, 2**30


class _Pod:
    """Collector reading this process's CPU and memory at every scrape."""

    def __init__(self) -> None:
        self.process = psutil.Process()

    def collect(self):
        times = self.process.cpu_times()
        names, values = list(LABELS), list(LABELS.values())
        cpu = CounterMetricFamily("container_cpu_usage_seconds", "CPU seconds used", labels=names)
        cpu.add_metric(values, times.user + times.system)
        mem = GaugeMetricFamily("container_memory_working_set_bytes", "working set", labels=names)
        mem.add_metric(values, self.process.memory_info().rss)
        requests = GaugeMetricFamily(
            "kube_pod_container_resource_requests", "requests", labels=[*names, "resource", "unit"]
        )
        requests.add_metric([*values, "cpu", "core"], REQUEST_CORES)
        requests.add_metric([*values, "memory", "byte"], REQUEST_BYTES)
        yield from (cpu, mem, requests)


def _burn(duty: float) -> None:
    """Busy for ``duty`` of every 10 ms, asleep for the rest."""
    while True:
        until = time.perf_counter() + 0.01 * duty
        while time.perf_counter() < until:
            pass
        time.sleep(0.01 * (1 - duty))


def main() -> None:
    port, cores = int(sys.argv[1]), float(sys.argv[2])
    REGISTRY.register(_Pod())
    start_http_server(port, addr="127.0.0.1")
    # One thread per started core; the GIL caps the process near one core, so ask for at most ~0.8.
    threading.Thread(target=_burn, args=(cores,), daemon=True).start()
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    main()
