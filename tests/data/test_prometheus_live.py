"""Live: a real Prometheus scrapes a process of ours for a minute, then ``mlco ingest`` reads it back.

The scraped process (``cadvisor_fake.py``) reports its own measured CPU seconds and resident
memory under cAdvisor's and kube-state-metrics' names, so the ingested utilisation can be checked
against what psutil measures of the same process over the same minute. Unlike the backfilled
tests, the samples here come through Prometheus's scrape path (scrape loop, staleness, the
``_total`` counter and its type metadata), at a 5-second step averaged into the 5-minute slots.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import psutil
import pytest

from ml_cloud_optimizer.cli import main
from ml_cloud_optimizer.data import read_fleet
from prometheus_support import free_port, running_prometheus

SCRAPE_SECONDS = 60
BURN_CORES = 0.5
RATE_WINDOW = 10


@pytest.fixture
def burner():
    """The fake pod's process and metrics port; stopped afterwards."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, str(Path(__file__).with_name("cadvisor_fake.py")), str(port), str(BURN_CORES)]
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail("the scraped process did not start serving /metrics")
            time.sleep(0.1)
        yield proc, port
    finally:
        proc.kill()
        proc.wait()


def _record_cpu(process: psutil.Process, seconds: float) -> list[tuple[float, float]]:
    """(wall time, user+system CPU seconds) of ``process`` twice a second for ``seconds``."""
    record, until = [], time.time() + seconds
    while time.time() < until:
        record.append((time.time(), sum(process.cpu_times()[:2])))
        time.sleep(0.5)
    return record


def _cores_between(record: list[tuple[float, float]], start: float, end: float) -> float:
    """The process's mean pace over [start, end], read off the record by linear interpolation."""
    times, cpu = zip(*record, strict=True)
    return float(np.interp(end, times, cpu) - np.interp(start, times, cpu)) / (end - start)


def test_a_minute_of_live_scrapes_ingests_as_the_process_measured(burner, tmp_path):
    proc, port = burner
    config = (
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
        f"scrape_configs:\n  - job_name: pod\n    static_configs:\n      - targets: ['127.0.0.1:{port}']\n"
    )
    with running_prometheus(tmp_path / "prometheus", config=config) as hostport:
        process = psutil.Process(proc.pid)
        # A full rate window of scrapes before the range starts, then the minute itself.
        record = _record_cpu(process, RATE_WINDOW + 2 + SCRAPE_SECONDS)
        began, ended = record[0][0] + RATE_WINDOW + 2, record[-1][0]
        rss = process.memory_info().rss
        out = tmp_path / "live.parquet"
        url = f"prometheus://{hostport}?start={began:.0f}&end={ended:.0f}"
        window = f"{RATE_WINDOW}s"
        assert main(["ingest", url, "--level", "pod", "--step", "5s", "--window", window, "--out", str(out)]) == 0

    fleet = read_fleet(out)
    assert list(fleet.entities["entity_id"]) == ["live/burner-0"]
    assert fleet.entities["vcpus"].tolist() == [1.0] and fleet.entities["mem_gib"].tolist() == [1.0]
    metrics = fleet.metrics
    assert 1 <= len(metrics) <= 2  # a minute lies in one 5-minute slot or straddles two
    assert (metrics["ts"].astype("int64") // 10**9 % 300 == 0).all()
    overall = _cores_between(record, began, ended)
    assert 0.2 < overall < 1.0, f"the process burned {overall:.2f} cores, not about {BURN_CORES}"
    # The request is one core, so cpu_util is cores. A slot (T-5m, T] averages rates whose windows
    # reach RATE_WINDOW back from the slot's first step: the process's pace over that same span.
    for ts, value in zip(metrics["ts"].astype("int64") // 10**9, metrics["cpu_util"], strict=True):
        span_start, span_end = max(began, ts - 300) - RATE_WINDOW, min(ended, ts)
        assert value == pytest.approx(_cores_between(record, span_start, span_end), rel=0.15)
    assert metrics["mem_util"].iloc[-1] == pytest.approx(rss / 2**30, rel=0.15)
