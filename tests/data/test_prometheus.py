"""`prometheus://` sources against a real Prometheus, backfilled from an OpenMetrics file by promtool.

The fixture writes two days at 5-minute steps of six pods (two replicas of one Deployment's
current ReplicaSet, one of it is added on day two, a replica of its old ReplicaSet that goes
after 12 hours, a StatefulSet pod, a DaemonSet pod, a bare pod with limits only) and three
nodes: cAdvisor CPU as a cumulative counter in core-seconds and memory as a gauge,
kube-state-metrics requests (or limits) and owners, node_exporter CPU counters per CPU and mode
and memory gauges. Usage is constant within each hour, so away from the hour boundaries the
``rate()`` window sees one rate and what the reader computes can be compared with what was
generated.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from urllib.parse import quote

import numpy as np
import pandas as pd
import pytest

from ml_cloud_optimizer.cli import main
from ml_cloud_optimizer.data import read_fleet
from ml_cloud_optimizer.data.schema import UTIL_MAX
from ml_cloud_optimizer.data.traces.prometheus import api, levels
from ml_cloud_optimizer.errors import UserInputError
from prometheus_support import RecordingPrometheus, free_port, running_prometheus, secured_web_config

START = 1_704_067_200  # 2024-01-01T00:00:00Z
STEPS = 2 * 288  # two days of 5-minute slots
HOURS = STEPS // 12
GIB = 2**30
WINDOW = "10m"


@dataclass(frozen=True)
class Pod:
    cores: float  # provisioned (request, or limit when not by_request)
    mem: float  # bytes provisioned
    owner: tuple[str, str] | None  # (kind, name) in kube_pod_owner
    first_hour: int = 0
    last_hour: int = HOURS  # its last sample is at this hour
    by_request: bool = True


PODS = {
    ("shop", "web-7d9f-a"): Pod(0.25, 1 * GIB, ("ReplicaSet", "web-7d9f")),
    ("shop", "web-7d9f-b"): Pod(0.25, 1 * GIB, ("ReplicaSet", "web-7d9f"), first_hour=24),  # scaled up on day 2
    ("shop", "web-5c4b-c"): Pod(0.25, 1 * GIB, ("ReplicaSet", "web-5c4b"), last_hour=12),  # old ReplicaSet, gone
    ("shop", "db-0"): Pod(2.0, 8 * GIB, ("StatefulSet", "db")),
    ("monitoring", "agent-x1"): Pod(0.1, 0.25 * GIB, ("DaemonSet", "agent")),
    ("batch", "etl-0"): Pod(1.5, 3 * GIB, None, by_request=False),  # limits only, no owner
}
REPLICASETS = {("shop", "web-7d9f"): ("Deployment", "web"), ("shop", "web-5c4b"): ("Deployment", "web")}
WORKLOADS = {
    "shop/Deployment/web": 0.5,
    "shop/StatefulSet/db": 2.0,
    "monitoring/DaemonSet/agent": 0.1,
    "batch/Pod/etl-0": 1.5,
}
# instance -> (node label on its series, nodename in node_uname_info, CPUs, memory bytes)
NODES = {
    "10.0.0.1:9100": ("node-a", None, 4, 16 * GIB),
    "10.0.0.2:9100": (None, "node-b", 2, 8 * GIB),
    "10.0.0.3:9100": (None, None, 1, 4 * GIB),
}
NODE_NAMES = {"node-a": 4, "node-b": 2, "10.0.0.3:9100": 1}


def _stamps(first_hour: int, last_hour: int) -> np.ndarray:
    return START + 300 * np.arange(first_hour * 12, last_hour * 12 + 1)


def _counter(stamps: np.ndarray, per_hour: np.ndarray, scale: float) -> np.ndarray:
    """Cumulative seconds whose rate over (t-5m, t] is ``per_hour`` of the hour of t-5m, times ``scale``."""
    return np.r_[0.0, np.cumsum(per_hour[(stamps[:-1] - START) // 3600] * scale * 300)]


def _generate() -> tuple[str, dict[str, pd.DataFrame]]:
    """The OpenMetrics text and, per level, the utilisation it encodes per (entity_id, ts, steady)."""
    rng = np.random.default_rng(7)
    fam: dict[str, list[str]] = {
        name: []
        for name in (
            "container_cpu_usage_seconds",
            "container_memory_working_set_bytes",
            "kube_pod_container_resource_requests",
            "kube_pod_container_resource_limits",
            "kube_pod_owner",
            "kube_replicaset_owner",
            "node_cpu_seconds",
            "node_memory_MemTotal_bytes",
            "node_memory_MemAvailable_bytes",
            "node_uname_info",
        )
    }
    pod_rows = []
    for (ns, pod), spec in PODS.items():
        stamps = _stamps(spec.first_hour, spec.last_hour)
        hours = (stamps - START) // 3600
        cpu_h, mem_h = rng.uniform(0.1, 1.2, HOURS + 1), rng.uniform(0.2, 1.1, HOURS + 1)
        # Two containers per pod, splitting usage and requests 70/30.
        for container, share in (("app", 0.7), ("sidecar", 0.3)):
            labels = f'namespace="{ns}",pod="{pod}",container="{container}"'
            counter = _counter(stamps, cpu_h, spec.cores * share)
            fam["container_cpu_usage_seconds"] += [
                f"container_cpu_usage_seconds_total{{{labels}}} {c:.6f} {t}"
                for c, t in zip(counter, stamps, strict=True)
            ]
            fam["container_memory_working_set_bytes"] += [
                f"container_memory_working_set_bytes{{{labels}}} {m:.1f} {t}"
                for m, t in zip(mem_h[hours] * spec.mem * share, stamps, strict=True)
            ]
            family = "kube_pod_container_resource_" + ("requests" if spec.by_request else "limits")
            for resource, unit, amount in (("cpu", "core", spec.cores), ("memory", "byte", spec.mem)):
                fam[family] += [
                    f'{family}{{{labels},resource="{resource}",unit="{unit}"}} {amount * share} {t}' for t in stamps
                ]
        kind, name = spec.owner or ("<none>", "<none>")
        controller = "true" if spec.owner else "<none>"
        owner = (
            f'namespace="{ns}",pod="{pod}",owner_kind="{kind}",owner_name="{name}",owner_is_controller="{controller}"'
        )
        fam["kube_pod_owner"] += [f"kube_pod_owner{{{owner}}} 1 {t}" for t in stamps]
        if spec.owner and spec.owner[0] == "ReplicaSet":
            kind, name = REPLICASETS[(ns, spec.owner[1])]
        workload = f"{ns}/{kind}/{name}" if spec.owner else f"{ns}/Pod/{pod}"
        pod_rows.append(
            pd.DataFrame(
                {
                    "pod": f"{ns}/{pod}",
                    "workload": workload,
                    "slot": stamps,
                    "cores": cpu_h[hours] * spec.cores,
                    "cpu_request": spec.cores,
                    "mem_bytes": mem_h[hours] * spec.mem,
                    "mem_request": spec.mem,
                }
            )
        )
    for (ns, rs), (kind, name) in REPLICASETS.items():
        labels = (
            f'namespace="{ns}",replicaset="{rs}",owner_kind="{kind}",owner_name="{name}",owner_is_controller="true"'
        )
        fam["kube_replicaset_owner"] += [f"kube_replicaset_owner{{{labels}}} 1 {t}" for t in _stamps(0, HOURS)]

    node_rows = []
    stamps = _stamps(0, HOURS)
    hours = (stamps - START) // 3600
    for instance, (node, nodename, cpus, mem) in NODES.items():
        base = f'instance="{instance}",job="node"' + (f',node="{node}"' if node else "")
        busy_h, mem_h = rng.uniform(0.05, 0.95, HOURS + 1), rng.uniform(0.2, 0.9, HOURS + 1)
        for cpu in range(cpus):
            for mode, share in (("idle", None), ("user", 0.7), ("system", 0.3)):
                per_hour = 1 - busy_h if share is None else busy_h * share
                counter = _counter(stamps, per_hour, 1.0) + 1e5  # a counter that started before the range
                fam["node_cpu_seconds"] += [
                    f'node_cpu_seconds_total{{{base},cpu="{cpu}",mode="{mode}"}} {c:.6f} {t}'
                    for c, t in zip(counter, stamps, strict=True)
                ]
        fam["node_memory_MemTotal_bytes"] += [f"node_memory_MemTotal_bytes{{{base}}} {mem} {t}" for t in stamps]
        fam["node_memory_MemAvailable_bytes"] += [
            f"node_memory_MemAvailable_bytes{{{base}}} {a:.1f} {t}"
            for a, t in zip(mem * (1 - mem_h[hours]), stamps, strict=True)
        ]
        if nodename:
            uname = f'instance="{instance}",job="node",nodename="{nodename}",sysname="Linux"'
            fam["node_uname_info"] += [f"node_uname_info{{{uname}}} 1 {t}" for t in stamps]
        node_rows.append(
            pd.DataFrame(
                {
                    "entity_id": node or nodename or instance,
                    "slot": stamps,
                    "cpu_util": busy_h[hours],
                    "mem_util": mem_h[hours],
                }
            )
        )

    lines = []
    for name, samples in fam.items():
        kind = "counter" if name.endswith("cpu_usage_seconds") or name == "node_cpu_seconds" else "gauge"
        lines += [f"# TYPE {name} {kind}", *samples]
    text = "\n".join([*lines, "# EOF", ""])
    pods = pd.concat(pod_rows, ignore_index=True)
    sums = pods.groupby(["workload", "slot"], as_index=False)[
        ["cores", "cpu_request", "mem_bytes", "mem_request"]
    ].sum()
    truth = {
        "pod": pods.assign(
            entity_id=pods["pod"],
            cpu_util=pods["cores"] / pods["cpu_request"],
            mem_util=pods["mem_bytes"] / pods["mem_request"],
        ),
        "workload": sums.assign(
            entity_id=sums["workload"],
            cpu_util=sums["cores"] / sums["cpu_request"],
            mem_util=sums["mem_bytes"] / sums["mem_request"],
        ),
        "node": pd.concat(node_rows, ignore_index=True),
    }
    for level, frame in truth.items():
        minute = (frame["slot"] - START) % 3600
        truth[level] = pd.DataFrame(
            {
                "entity_id": frame["entity_id"],
                "ts": pd.to_datetime(frame["slot"], unit="s", utc=True),
                "cpu_util": frame["cpu_util"],
                "mem_util": frame["mem_util"],
                "steady": (minute >= 20 * 60) & (frame["slot"] >= START + 1800),
            }
        )
    return text, truth


@pytest.fixture(scope="module")
def generated():
    return _generate()


@pytest.fixture(scope="module")
def prometheus(generated, tmp_path_factory):
    """(host:port, generated truth per level) of a Prometheus serving the backfilled trace."""
    text, truth = generated
    with running_prometheus(tmp_path_factory.mktemp("prometheus"), text) as hostport:
        yield hostport, truth


USERS = {"alice": "correct horse"}


@pytest.fixture(scope="module")
def secured(generated, tmp_path_factory):
    """(host:port, CA file) of a Prometheus behind TLS (a throwaway CA) and basic auth (``USERS``)."""
    root = tmp_path_factory.mktemp("secured")
    web_config, ca_file = secured_web_config(root / "tls", USERS)
    ready = f"https://alice:{quote(USERS['alice'])}@127.0.0.1:{{port}}/-/ready"
    with running_prometheus(root, generated[0], web_config=web_config, ready_url=ready) as hostport:
        yield hostport, ca_file


def _url(hostport: str, scheme: str = "prometheus", **extra: str) -> str:
    query = {
        "start": "2024-01-01T00:00:00Z",
        "end": str(START + STEPS * 300),
        "step": "5m",
        "level": "pod",
        "window": WINDOW,
        **extra,
    }
    return f"{scheme}://{hostport}?" + "&".join(f"{k}={quote(str(v), safe=':')}" for k, v in query.items() if v)


def _relative_error(fleet, truth, column, entity=None):
    truth = truth[truth["steady"] & (truth["entity_id"] == entity if entity else truth["steady"])]
    merged = truth.merge(fleet.metrics[["entity_id", "ts", column]], on=["entity_id", "ts"], suffixes=("_true", ""))
    assert len(merged) > 0.5 * len(truth), "too few steady slots came back"
    return (merged[column] - merged[f"{column}_true"]).abs().mean() / merged[f"{column}_true"].mean()


def _one_line_error(info) -> str:
    message = str(info.value)
    assert "\n" not in message
    return message


# --- levels ----------------------------------------------------------------------------------


def test_reads_pod_utilisation_as_generated(prometheus):
    hostport, truth = prometheus
    began = time.perf_counter()
    fleet = read_fleet(_url(hostport))
    seconds = time.perf_counter() - began
    print(f"ingest: {4 * len(fleet.metrics) / seconds:,.0f} samples/s ({len(fleet.metrics)} rows in {seconds:.2f} s)")
    assert sorted(fleet.entities["entity_id"]) == sorted(f"{ns}/{pod}" for ns, pod in PODS)
    cpu_error, mem_error = (
        _relative_error(fleet, truth["pod"], "cpu_util"),
        _relative_error(fleet, truth["pod"], "mem_util"),
    )
    print(f"relative error: cpu {cpu_error:.2e}, mem {mem_error:.2e}")
    assert cpu_error < 0.02
    assert mem_error < 0.02
    assert (fleet.metrics["ts"].astype("int64") // 10**9 % 300 == 0).all()
    entities = fleet.entities.set_index("entity_id")
    assert entities["vcpus"].dtype == "float64"
    assert entities.loc["shop/web-7d9f-a", "vcpus"] == pytest.approx(0.25)  # a 250m request stays 0.25 of a core
    assert entities.loc["shop/web-7d9f-a", "instance_type"] == "k8s-pod-0.25c-1g"
    assert entities.loc["batch/etl-0", "vcpus"] == pytest.approx(1.5)  # from limits
    assert entities.loc["shop/db-0", "mem_gib"] == pytest.approx(8.0)
    assert fleet.gaps["missing_slots"].sum() == 0
    assert fleet.source.startswith(f"prometheus:prometheus://{hostport}?start={START}&end=")


def test_workload_level_rolls_pods_up_to_their_controllers(prometheus):
    hostport, truth = prometheus
    fleet = read_fleet(_url(hostport, level="workload"))
    entities = fleet.entities.set_index("entity_id")
    assert sorted(entities.index) == sorted(WORKLOADS)
    for workload, cores in WORKLOADS.items():
        assert entities.loc[workload, "vcpus"] == pytest.approx(cores), workload
    # The Deployment: 2 x 0.25 cores for most of the range (the median), one replica from hour 12 to 24.
    assert entities.loc["shop/Deployment/web", "instance_type"] == "k8s-deployment-0.5c-2g"
    assert entities.loc["shop/Deployment/web", "mem_gib"] == pytest.approx(2.0)
    assert entities.loc["shop/Deployment/web", "service"] == "shop"
    for column in ("cpu_util", "mem_util"):
        error = _relative_error(fleet, truth["workload"], column)
        print(f"workload {column} relative error {error:.2e}")
        assert error < 0.02
    # Replicas coming and going: each phase of the Deployment is right on its own.
    web = truth["workload"][truth["workload"]["entity_id"] == "shop/Deployment/web"]
    hour = (web["ts"].astype("int64") // 10**9 - START) // 3600
    for phase in ((hour < 12), (hour >= 12) & (hour < 24), (hour >= 24)):
        part = web[phase.to_numpy()]
        assert _relative_error(fleet, part, "cpu_util", "shop/Deployment/web") < 0.02


def test_workload_is_the_default_level(prometheus):
    hostport, _ = prometheus
    fleet = read_fleet(_url(hostport, level=""))
    assert "shop/Deployment/web" in set(fleet.entities["entity_id"])
    assert "&level=workload&" in fleet.source


def test_node_level_from_node_exporter(prometheus):
    hostport, truth = prometheus
    fleet = read_fleet(_url(hostport, level="node"))
    entities = fleet.entities.set_index("entity_id")
    assert sorted(entities.index) == sorted(NODE_NAMES)  # node label, else nodename, else instance
    for node, cpus in NODE_NAMES.items():
        assert entities.loc[node, "vcpus"] == cpus
    assert entities.loc["node-a", "mem_gib"] == pytest.approx(16.0)
    assert (entities["service"] == "node").all()
    for column in ("cpu_util", "mem_util"):
        error = _relative_error(fleet, truth["node"], column)
        print(f"node {column} relative error {error:.2e}")
        assert error < 0.02


def test_chunked_range_gives_the_same_fleet(prometheus):
    hostport, _ = prometheus
    whole = read_fleet(_url(hostport, level="workload"))
    chunked = read_fleet(_url(hostport, level="workload"), max_points=20, concurrency=3)  # 577 slots: 29 chunks
    pd.testing.assert_frame_equal(whole.metrics, chunked.metrics)
    pd.testing.assert_frame_equal(whole.entities, chunked.entities)


# --- filters -----------------------------------------------------------------------------------


def test_namespace_filter(prometheus):
    hostport, _ = prometheus
    fleet = read_fleet(_url(hostport, namespace="batch"))
    assert list(fleet.entities["entity_id"]) == ["batch/etl-0"]


def test_selector_filters_the_pod_series(prometheus):
    hostport, _ = prometheus
    fleet = read_fleet(_url(hostport, selector='pod=~"db-.*|etl-.*"'))
    assert sorted(fleet.entities["entity_id"]) == ["batch/etl-0", "shop/db-0"]
    fleet = read_fleet(_url(hostport, level="workload"), selector='{namespace="shop", pod!~"web-.*"}')
    assert list(fleet.entities["entity_id"]) == ["shop/StatefulSet/db"]


@pytest.mark.parametrize(
    "selector", ["app=web", 'app="web" tier="db"', '__name__="up"', 'app=~"web', '="x"', 'app=="web"']
)
def test_bad_selector_is_one_line_user_error(selector, capsys):
    with pytest.raises(UserInputError, match="selector") as info:
        read_fleet(_url("127.0.0.1:9"), selector=selector)
    _one_line_error(info)
    assert main(["ingest", _url("127.0.0.1:9"), "--selector", selector]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "selector" in err


def test_flags_override_the_url(prometheus, tmp_path, capsys):
    hostport, _ = prometheus
    out = tmp_path / "f.parquet"
    url = _url(hostport, level="workload", namespace="batch")
    assert (
        main(
            [
                "-q",
                "ingest",
                url,
                "--level",
                "pod",
                "--namespace",
                "shop",
                "--end",
                "2024-01-02T00:00:00Z",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    fleet = read_fleet(out)
    assert sorted(fleet.entities["entity_id"]) == sorted(
        f"shop/{pod}" for ns, pod in PODS if ns == "shop" and pod != "web-7d9f-b"
    )
    assert fleet.metrics["ts"].max() == pd.Timestamp("2024-01-02T00:00:00Z")
    assert "\r" not in capsys.readouterr().err  # -q (and no terminal): no progress bar


def test_prometheus_flags_need_a_prometheus_source(tmp_path, capsys):
    trace = tmp_path / "t.csv"
    trace.write_text("ts,entity_id,cpu_util\n")
    assert main(["ingest", str(trace), "--level", "pod"]) == 2
    assert "prometheus://" in capsys.readouterr().err


@pytest.mark.parametrize(
    "url",
    [
        "prometheus://",
        "prometheus://127.0.0.1:notaport",
        "prometheus://127.0.0.1:9090?level=cluster",
        "prometheus://127.0.0.1:9090?level=node&namespace=shop",
        "prometheus://127.0.0.1:9090?step=1m",
        "prometheus://127.0.0.1:9090?start=yesterday-ish",
        "prometheus://127.0.0.1:9090?bogus=1",
        "prometheus+https://alice:secret@127.0.0.1:9090",
    ],
)
def test_bad_url_is_one_line_user_error(url):
    with pytest.raises(UserInputError) as info:
        read_fleet(url)
    assert "secret" not in _one_line_error(info)


def test_unreachable_server_is_one_line_user_error():
    with pytest.raises(UserInputError, match="cannot reach Prometheus") as info:
        read_fleet(f"prometheus://127.0.0.1:{free_port()}?start=0&end=3600", retries=1, backoff=0.01)
    _one_line_error(info)


def test_mlco_ingest_writes_the_fleet(prometheus, tmp_path, capsys):
    hostport, _ = prometheus
    out = tmp_path / "f.parquet"
    assert main(["ingest", _url(hostport), "--out", str(out)]) == 0
    assert f"{len(PODS)} entities" in capsys.readouterr().out
    assert len(read_fleet(out).metrics) == len(read_fleet(_url(hostport)).metrics)


# --- a secured server ------------------------------------------------------------------------


def test_basic_auth_and_tls_with_a_ca_file(secured, prometheus, tmp_path, monkeypatch):
    hostport, ca_file = secured
    monkeypatch.setenv(api.PASSWORD_ENV, USERS["alice"])
    fleet = read_fleet(_url(hostport, "prometheus+https", user="alice", ca_file=str(ca_file)))
    plain = read_fleet(_url(prometheus[0]))
    pd.testing.assert_frame_equal(fleet.metrics, plain.metrics)
    assert USERS["alice"] not in fleet.source
    # The same from a password file, and with the flags of `mlco ingest`.
    monkeypatch.delenv(api.PASSWORD_ENV)
    secret = tmp_path / "password"
    secret.write_text(USERS["alice"] + "\n")
    out = tmp_path / "f.parquet"
    argv = ["ingest", _url(hostport, "prometheus+https"), "--basic-auth-user", "alice"]
    argv += ["--basic-auth-password-file", str(secret), "--ca-file", str(ca_file), "--out", str(out)]
    assert main(argv) == 0
    assert len(read_fleet(out).metrics) == len(plain.metrics)


def test_wrong_password_is_a_one_line_401(secured, monkeypatch):
    hostport, ca_file = secured
    monkeypatch.setenv(api.PASSWORD_ENV, "wrong")
    waits: list[float] = []
    monkeypatch.setattr(api.time, "sleep", waits.append)
    with pytest.raises(UserInputError, match="HTTP 401") as info:
        read_fleet(_url(hostport, "prometheus+https", user="alice", ca_file=str(ca_file)), backoff=1.0)
    assert "wrong" not in _one_line_error(info)
    assert waits == []  # a 401 is not retried, so nothing waits for a retry


def test_unknown_certificate_is_a_one_line_error(secured, monkeypatch):
    hostport, _ = secured
    monkeypatch.setenv(api.PASSWORD_ENV, USERS["alice"])
    with pytest.raises(UserInputError, match="ca_file") as info:
        read_fleet(_url(hostport, "prometheus+https", user="alice"))
    _one_line_error(info)


def test_user_without_password_is_a_one_line_error(monkeypatch):
    monkeypatch.delenv(api.PASSWORD_ENV, raising=False)
    with pytest.raises(UserInputError, match=api.PASSWORD_ENV) as info:
        read_fleet(_url("127.0.0.1:9", "prometheus+https", user="alice"))
    _one_line_error(info)


def test_bearer_token_is_sent(tmp_path, monkeypatch):
    # Prometheus cannot check bearer tokens (a proxy in front of it does), so a recording stand-in
    # shows what mlco sends: from token_file, from the environment, from the pod's service account.
    token = tmp_path / "token"
    token.write_text("from-file\n")
    account = tmp_path / "serviceaccount-token"
    account.write_text("from-serviceaccount")
    monkeypatch.setattr(api, "SERVICEACCOUNT_TOKEN", str(account))
    monkeypatch.setenv(api.TOKEN_ENV, "from-env")
    with RecordingPrometheus() as fake:
        for token_file, expected in (
            (str(token), "from-file"),
            (None, "from-env"),
            ("serviceaccount", "from-serviceaccount"),
        ):
            fake.headers.clear()
            fleet = read_fleet(_url(fake.hostport), token_file=token_file)
            assert list(fleet.entities["entity_id"]) == ["ns/p"]
            assert {h.get("Authorization") for h in fake.headers} == {f"Bearer {expected}"}
        monkeypatch.delenv(api.TOKEN_ENV)
        fake.headers.clear()
        read_fleet(_url(fake.hostport))
        assert all("Authorization" not in h for h in fake.headers)  # nothing sent unless asked
        with pytest.raises(UserInputError, match="token_file") as info:
            read_fleet(_url(fake.hostport), token_file=str(tmp_path / "missing"))
        _one_line_error(info)


# --- progress and parts ------------------------------------------------------------------------


class _Terminal:
    def __init__(self) -> None:
        self.text = ""

    def isatty(self) -> bool:
        return True

    def write(self, text: str) -> None:
        self.text += text

    def flush(self) -> None:
        pass


@pytest.mark.parametrize("level, drawn", [(logging.INFO, True), (logging.WARNING, False)])
def test_progress_bar_only_on_a_terminal_when_not_quiet(monkeypatch, caplog, level, drawn):
    terminal = _Terminal()
    monkeypatch.setattr(api.sys, "stderr", terminal)
    caplog.set_level(level, logger="ml_cloud_optimizer")  # what -q does: WARNING
    progress = api._Progress(3)
    for _ in range(3):
        progress.advance()
    progress.close()
    assert ("3/3 chunks" in terminal.text) is drawn


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
        fleet = levels.to_fleet(frame, "prometheus://test", "k8s", "pod")
    assert list(fleet.metrics["cpu_util"]) == [0.5, UTIL_MAX]
    assert list(fleet.metrics["mem_util"]) == [0.5, 0.0]
    assert "2 utilisation values clipped" in caplog.text
    assert "1 pods have no CPU request" in caplog.text
    assert list(fleet.entities["entity_id"]) == ["ns/a"]
