"""`prometheus://` sources against a real Prometheus, backfilled from an OpenMetrics file by promtool.

The fixture writes two days of three pods at 5-minute steps: CPU as a cumulative counter in
core-seconds, memory as a gauge, requests (or, for one pod, only limits) as constant gauges.
Usage is constant within each hour, so away from the hour boundaries the ``rate()`` window
sees one rate and the reader's utilisation can be compared with what was generated.
"""

from __future__ import annotations

import logging
import time

import numpy as np
import pandas as pd
import pytest

from ml_cloud_optimizer.cli import main
from ml_cloud_optimizer.data import read_fleet
from ml_cloud_optimizer.data.schema import UTIL_MAX
from ml_cloud_optimizer.data.traces import prometheus as prom
from ml_cloud_optimizer.errors import UserInputError
from prometheus_support import free_port, running_prometheus

START = 1_704_067_200  # 2024-01-01T00:00:00Z
STEPS = 2 * 288  # two days of 5-minute slots
# pod -> (cpu cores provisioned, memory bytes provisioned, provisioned through requests?)
PODS = {
    ("shop", "web-0"): (0.5, 2 * 2**30, True),
    ("shop", "db-0"): (2.0, 8 * 2**30, True),
    ("batch", "etl-0"): (1.5, 3 * 2**30, False),  # limits only
}
WINDOW = "10m"


def _generate() -> tuple[str, pd.DataFrame]:
    """The OpenMetrics text and the utilisation it encodes, per (entity_id, ts, steady)."""
    rng = np.random.default_rng(7)
    stamps = START + 300 * np.arange(STEPS + 1)
    hours = (stamps - START) // 3600
    cpu_lines, mem_lines, req_lines, lim_lines, truth = [], [], [], [], []
    for (ns, pod), (cores, mem, by_request) in PODS.items():
        cpu_h = rng.uniform(0.1, 1.2, hours.max() + 1)
        mem_h = rng.uniform(0.2, 1.1, hours.max() + 1)
        # Two containers per pod, splitting the usage 70/30; the counter over (t-5m, t] runs at the hour of t-5m.
        for container, share in (("app", 0.7), ("sidecar", 0.3)):
            labels = f'namespace="{ns}",pod="{pod}",container="{container}"'
            counter = np.r_[0.0, np.cumsum(cpu_h[((stamps[:-1] - START) // 3600)] * cores * share * 300)]
            cpu_lines += [
                f"container_cpu_usage_seconds_total{{{labels}}} {c:.6f} {t}"
                for c, t in zip(counter, stamps, strict=True)
            ]
            mem_lines += [
                f"container_memory_working_set_bytes{{{labels}}} {m:.1f} {t}"
                for m, t in zip(mem_h[hours] * mem * share, stamps, strict=True)
            ]
            target = req_lines if by_request else lim_lines
            for resource, unit, amount in (("cpu", "core", cores), ("memory", "byte", mem)):
                target += [f'{labels},resource="{resource}",unit="{unit}"}} {amount * share} {t}' for t in stamps]
        minute = (stamps - START) % 3600
        truth.append(
            pd.DataFrame(
                {
                    "entity_id": f"{ns}/{pod}",
                    "ts": pd.to_datetime(stamps, unit="s", utc=True),
                    "cpu_util": cpu_h[hours],
                    "mem_util": mem_h[hours],
                    "steady": (minute >= 20 * 60) & (stamps >= START + 1800),
                }
            )
        )
    req_lines = ["kube_pod_container_resource_requests{" + line for line in req_lines]
    lim_lines = ["kube_pod_container_resource_limits{" + line for line in lim_lines]
    text = "\n".join(
        [
            "# TYPE container_cpu_usage_seconds counter",
            *cpu_lines,
            "# TYPE container_memory_working_set_bytes gauge",
            *mem_lines,
            "# TYPE kube_pod_container_resource_requests gauge",
            *req_lines,
            "# TYPE kube_pod_container_resource_limits gauge",
            *lim_lines,
            "# EOF",
            "",
        ]
    )
    return text, pd.concat(truth, ignore_index=True)


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory):
    """(host:port, generated truth) of a Prometheus serving the backfilled trace; stopped afterwards."""
    text, truth = _generate()
    with running_prometheus(tmp_path_factory.mktemp("prometheus"), text) as hostport:
        yield hostport, truth


def _url(hostport: str, **extra: str) -> str:
    query = {
        "start": "2024-01-01T00:00:00Z",
        "end": str(START + STEPS * 300),
        "step": "5m",
        "level": "pod",
        "window": WINDOW,
        **extra,
    }
    return f"prometheus://{hostport}?" + "&".join(f"{k}={v}" for k, v in query.items())


def _relative_error(fleet, truth, column):
    merged = truth[truth["steady"]].merge(
        fleet.metrics[["entity_id", "ts", column]], on=["entity_id", "ts"], suffixes=("_true", "")
    )
    assert len(merged) > 0.5 * truth["steady"].sum(), "too few steady slots came back"
    return (merged[column] - merged[f"{column}_true"]).abs().mean() / merged[f"{column}_true"].mean()


def test_reads_pod_utilisation_as_generated(prometheus):
    hostport, truth = prometheus
    began = time.perf_counter()
    fleet = read_fleet(_url(hostport))
    seconds = time.perf_counter() - began
    print(f"ingest: {4 * len(fleet.metrics) / seconds:,.0f} samples/s ({len(fleet.metrics)} rows in {seconds:.2f} s)")
    assert sorted(fleet.entities["entity_id"]) == sorted(f"{ns}/{pod}" for ns, pod in PODS)
    cpu_error, mem_error = _relative_error(fleet, truth, "cpu_util"), _relative_error(fleet, truth, "mem_util")
    print(f"relative error: cpu {cpu_error:.2e}, mem {mem_error:.2e}")
    assert cpu_error < 0.02
    assert mem_error < 0.02
    assert (fleet.metrics["ts"].astype("int64") // 10**9 % 300 == 0).all()
    entities = fleet.entities.set_index("entity_id")
    assert entities.loc["shop/web-0", "vcpus"] == 1  # 0.5 cores rounded up: the schema keeps whole vCPUs
    assert entities.loc["batch/etl-0", "vcpus"] == 2  # from limits, 1.5 rounded up
    assert entities.loc["shop/db-0", "mem_gib"] == pytest.approx(8.0)
    assert fleet.gaps["missing_slots"].sum() == 0


def test_namespace_filter(prometheus):
    hostport, _ = prometheus
    fleet = read_fleet(_url(hostport, namespace="batch"))
    assert list(fleet.entities["entity_id"]) == ["batch/etl-0"]


def test_chunked_range_gives_the_same_fleet(prometheus):
    hostport, _ = prometheus
    whole = read_fleet(_url(hostport))
    chunked = read_fleet(_url(hostport), max_points=50)  # 577 slots: 12 chunks per series
    pd.testing.assert_frame_equal(whole.metrics, chunked.metrics)
    pd.testing.assert_frame_equal(whole.entities, chunked.entities)


@pytest.mark.parametrize(
    "url",
    [
        "prometheus://",
        "prometheus://127.0.0.1:notaport",
        "prometheus://127.0.0.1:9090?level=node",
        "prometheus://127.0.0.1:9090?step=1m",
        "prometheus://127.0.0.1:9090?start=yesterday-ish",
        "prometheus://127.0.0.1:9090?bogus=1",
    ],
)
def test_bad_url_is_one_line_user_error(url):
    with pytest.raises(UserInputError) as info:
        read_fleet(url)
    assert "\n" not in str(info.value)


def test_unreachable_server_is_one_line_user_error():
    with pytest.raises(UserInputError, match="cannot reach Prometheus") as info:
        read_fleet(f"prometheus://127.0.0.1:{free_port()}?start=0&end=3600", retries=1, backoff=0.01)
    assert "\n" not in str(info.value)


def test_mlco_ingest_writes_the_fleet(prometheus, tmp_path, capsys):
    hostport, _ = prometheus
    out = tmp_path / "f.parquet"
    assert main(["ingest", _url(hostport), "--out", str(out)]) == 0
    assert "3 entities" in capsys.readouterr().out
    assert len(read_fleet(out).metrics) == len(read_fleet(_url(hostport)).metrics)


def test_utilisation_beyond_the_contract_is_clipped_and_counted(caplog):
    index = pd.MultiIndex.from_tuples([("ns/a", START), ("ns/a", START + 300), ("ns/b", START)])
    frame = pd.DataFrame(
        {
            "cores": [0.5, 3.0, 1.0],
            "mem_bytes": [2**30, -1.0, 2**30],
            "cpu_request": [1.0, 1.0, 0.0],  # ns/b: no request nor limit, left out
            "mem_request": [2.0 * 2**30, 2.0 * 2**30, 2**30],
        },
        index=index,
    )
    with caplog.at_level(logging.INFO, logger="ml_cloud_optimizer"):
        fleet = prom._to_fleet(frame, "prometheus://test", "k8s")
    assert list(fleet.metrics["cpu_util"]) == [0.5, UTIL_MAX]
    assert list(fleet.metrics["mem_util"]) == [0.5, 0.0]
    assert "2 utilisation values clipped" in caplog.text
    assert "1 pods have no CPU request" in caplog.text
    assert list(fleet.entities["entity_id"]) == ["ns/a"]
