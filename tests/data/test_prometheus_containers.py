"""Container shapes from a real Prometheus, backfilled by promtool, and `mlco recommend --emit` from it.

The fixture writes one day at 5-minute steps of cAdvisor usage and kube-state-metrics requests
and owners (the series and labels of ``test_prometheus``) for: a Deployment ``shop/web`` with
two pods of its current ReplicaSet (containers ``app`` 400m/768Mi and ``sidecar`` 100m/256Mi)
and a pod of an old ReplicaSet that went 12 hours before the end; a StatefulSet ``shop/db``
whose sidecar requests CPU but no memory; a DaemonSet ``monitoring/agent`` whose containers
request memory only; a bare pod ``batch/etl-0`` with one container.
"""

from __future__ import annotations

from urllib.parse import quote

import numpy as np
import pytest
import yaml

from crd_schemas import crd_errors
from ml_cloud_optimizer.cli import main
from ml_cloud_optimizer.data.traces.prometheus.containers import workload_shapes
from ml_cloud_optimizer.errors import UserInputError
from ml_cloud_optimizer.kube.quantities import parse_bytes, parse_cores
from ml_cloud_optimizer.kube.sizing import ContainerShape, WorkloadShape
from prometheus_support import free_port, running_prometheus

START = 1_704_067_200  # 2024-01-01T00:00:00Z
HOURS = 24
END = START + HOURS * 3600
MI = 2**20
# (namespace, pod) -> owner (kind, name), last hour, {container: (cpu cores, memory bytes) requested}
PODS = {
    ("shop", "web-7d9f-a"): (("ReplicaSet", "web-7d9f"), HOURS, {"app": (0.4, 768 * MI), "sidecar": (0.1, 256 * MI)}),
    ("shop", "web-7d9f-b"): (("ReplicaSet", "web-7d9f"), HOURS, {"app": (0.4, 768 * MI), "sidecar": (0.1, 256 * MI)}),
    ("shop", "web-5c4b-c"): (("ReplicaSet", "web-5c4b"), 12, {"app": (4.0, 8192 * MI), "sidecar": (1.0, 256 * MI)}),
    ("shop", "db-0"): (("StatefulSet", "db"), HOURS, {"app": (1.8, 8192 * MI), "sidecar": (0.2, 0.0)}),
    ("monitoring", "agent-x1"): (
        ("DaemonSet", "agent"),
        HOURS,
        {"collector": (0.0, 100 * MI), "shipper": (0.0, 300 * MI)},
    ),
    ("batch", "etl-0"): (None, HOURS, {"main": (1.5, 3072 * MI)}),
}
REPLICASETS = {("shop", "web-7d9f"): ("Deployment", "web"), ("shop", "web-5c4b"): ("Deployment", "web")}


def _openmetrics() -> str:
    rng = np.random.default_rng(3)
    fam: dict[str, list[str]] = {
        "container_cpu_usage_seconds": [],
        "container_memory_working_set_bytes": [],
        "kube_pod_container_resource_requests": [],
        "kube_pod_owner": [],
        "kube_replicaset_owner": [],
    }
    for (ns, pod), (owner, last_hour, containers) in PODS.items():
        stamps = START + 300 * np.arange(last_hour * 12 + 1)
        for container, (cores, memory) in containers.items():
            labels = f'namespace="{ns}",pod="{pod}",container="{container}"'
            busy = rng.uniform(0.2, 0.9, len(stamps)) * max(cores, 0.05)
            counter = np.r_[0.0, np.cumsum(busy[1:] * 300)]
            fam["container_cpu_usage_seconds"] += [
                f"container_cpu_usage_seconds_total{{{labels}}} {c:.6f} {t}"
                for c, t in zip(counter, stamps, strict=True)
            ]
            used = rng.uniform(0.3, 0.8, len(stamps)) * max(memory, 64 * MI)
            fam["container_memory_working_set_bytes"] += [
                f"container_memory_working_set_bytes{{{labels}}} {m:.0f} {t}" for m, t in zip(used, stamps, strict=True)
            ]
            for resource, unit, amount in (("cpu", "core", cores), ("memory", "byte", memory)):
                if amount:
                    series = f'kube_pod_container_resource_requests{{{labels},resource="{resource}",unit="{unit}"}}'
                    fam["kube_pod_container_resource_requests"] += [f"{series} {amount} {t}" for t in stamps]
        kind, name = owner or ("<none>", "<none>")
        controller = "true" if owner else "<none>"
        tags = (
            f'namespace="{ns}",pod="{pod}",owner_kind="{kind}",owner_name="{name}",owner_is_controller="{controller}"'
        )
        fam["kube_pod_owner"] += [f"kube_pod_owner{{{tags}}} 1 {t}" for t in stamps]
    for (ns, rs), (kind, name) in REPLICASETS.items():
        tags = f'namespace="{ns}",replicaset="{rs}",owner_kind="{kind}",owner_name="{name}",owner_is_controller="true"'
        fam["kube_replicaset_owner"] += [
            f"kube_replicaset_owner{{{tags}}} 1 {t}" for t in START + 300 * np.arange(HOURS * 12 + 1)
        ]
    lines = []
    for family, samples in fam.items():
        lines += [f"# TYPE {family} {'counter' if family.endswith('seconds') else 'gauge'}", *samples]
    return "\n".join([*lines, "# EOF", ""])


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory):
    with running_prometheus(tmp_path_factory.mktemp("prometheus"), openmetrics=_openmetrics()) as hostport:
        yield hostport


def _source(hostport: str, **params: str) -> str:
    query = "&".join(f"{k}={quote(v)}" for k, v in {"start": str(START), "end": str(END), **params}.items())
    return f"prometheus://{hostport}?{query}"


def test_replicas_and_container_shares_at_the_range_end(prometheus):
    wanted = [
        "shop/Deployment/web",
        "shop/StatefulSet/db",
        "monitoring/DaemonSet/agent",
        "batch/Pod/etl-0",
        "x/Deployment/y",
    ]
    shapes = workload_shapes(_source(prometheus), wanted)
    assert set(shapes) == set(wanted) - {"x/Deployment/y"}  # unknown to Prometheus: no entry, the caller falls back
    # Two pods of the current ReplicaSet; the old one (gone 12 h before the end) does not count.
    web = shapes["shop/Deployment/web"]
    assert web.replicas == 2
    assert [c.name for c in web.containers] == ["app", "sidecar"]
    assert [c.cpu_share for c in web.containers] == pytest.approx([0.8, 0.2])
    assert [c.mem_share for c in web.containers] == pytest.approx([0.75, 0.25])
    # A sidecar that requests no memory holds none of it.
    db = shapes["shop/StatefulSet/db"]
    assert db.replicas == 1 and db.containers == (
        ContainerShape("app", pytest.approx(0.9), 1.0),
        ContainerShape("sidecar", pytest.approx(0.1), 0.0),
    )
    # No CPU requested at all: memory's shares place a recommended CPU total.
    agent = shapes["monitoring/DaemonSet/agent"]
    assert (
        [c.cpu_share for c in agent.containers]
        == [c.mem_share for c in agent.containers]
        == pytest.approx([0.25, 0.75])
    )
    assert shapes["batch/Pod/etl-0"] == WorkloadShape(1, (ContainerShape("main", 1.0, 1.0),))


def test_the_source_filters_and_level_apply(prometheus):
    shapes = workload_shapes(
        _source(prometheus, namespace="monitoring"), ["shop/Deployment/web", "monitoring/DaemonSet/agent"]
    )
    assert list(shapes) == ["monitoring/DaemonSet/agent"]
    selected = workload_shapes(_source(prometheus, selector='container!="sidecar"'), ["shop/Deployment/web"])
    assert [c.name for c in selected["shop/Deployment/web"].containers] == ["app"]
    assert workload_shapes(_source(prometheus, level="pod"), ["shop/web-7d9f-a"]) == {}  # pods are no workloads
    assert workload_shapes(_source(prometheus), []) == {}


def test_an_unreachable_prometheus_is_one_line():
    with pytest.raises(UserInputError, match="cannot reach Prometheus"):
        workload_shapes(f"prometheus://127.0.0.1:{free_port()}?start={START}&end={END}", ["a/Deployment/b"], retries=0)


def _persistence_champions(source: str, directory) -> None:
    """``champion`` and ``champion-mem`` (persistence) in ``directory``, fitted on what ``source`` reads."""
    from ml_cloud_optimizer.data import read_fleet
    from ml_cloud_optimizer.models.baselines import PersistenceForecaster
    from ml_cloud_optimizer.models.bundle import ModelBundle
    from ml_cloud_optimizer.resources import as_target

    fleet = read_fleet(source)
    ModelBundle(PersistenceForecaster().fit(fleet.metrics)).save(directory / "champion")
    mem = PersistenceForecaster().fit(as_target(fleet.metrics, "mem"))
    ModelBundle(mem, metadata={"target": "mem"}).save(directory / "champion-mem")


def test_recommend_emits_per_container_objects_from_prometheus(prometheus, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MLCO_HOME", str(tmp_path / "home"))
    source = _source(prometheus)
    _persistence_champions(source, tmp_path)
    out = tmp_path / "out"
    argv = ["recommend", "--source", source, "--model", str(tmp_path / "champion"), "--target", "cpu,mem"]
    assert main([*argv, "--no-store", "--hours", "2", "--out", str(out), "--emit", "vpa,keda,patch"]) == 0
    printed = capsys.readouterr().out
    # The agent requests no CPU, so the reader leaves it out; the other three are shaped by Prometheus.
    assert "container shapes: from Prometheus for 3 of 3 workloads\n" in printed
    assert (
        "skipped 1 workload(s): a Pod has no controller a VPA or patch can act on (first: batch/Pod/etl-0)" in printed
    )
    web_patch = yaml.safe_load((out / "patches" / "shop.deployment.web.yaml").read_text())
    app, sidecar = web_patch["spec"]["template"]["spec"]["containers"]
    assert (app["name"], sidecar["name"]) == ("app", "sidecar")
    # Per pod of two, split 80/20 (CPU) and 75/25 (memory), each rounded up on its own.
    for resource, parse, share, step in (("cpu", parse_cores, 0.25, 1e-3), ("memory", parse_bytes, 1 / 3, 2**20)):
        ratio = parse(sidecar["resources"]["requests"][resource]) / parse(app["resources"]["requests"][resource])
        assert ratio == pytest.approx(share, abs=2 * step / parse(app["resources"]["requests"][resource]))
    for folder in ("vpa", "keda"):
        for path in (out / folder).glob("*.yaml"):
            obj = yaml.safe_load(path.read_text())
            assert crd_errors(obj) == []
            if obj["kind"] == "ScaledObject":
                assert obj["spec"]["triggers"][0]["metadata"]["serverAddress"] == f"http://{prometheus}"
    vpa = yaml.safe_load((out / "vpa" / "shop.deployment.web.yaml").read_text())
    names = [p["containerName"] for p in vpa["spec"]["resourcePolicy"]["containerPolicies"]]
    assert names == ["app", "sidecar", "*"]
    assert not (out / "keda" / "monitoring.daemonset.agent.yaml").exists()


def test_recommender_dry_run_from_prometheus_prints_per_container_status(prometheus, tmp_path, monkeypatch, capsys):
    """The issue's check: `mlco recommender --once --dry-run` over a backfilled Prometheus prints the VPA status."""
    from fakes.vpa_api import FakeVpaApi, vpa

    monkeypatch.setenv("MLCO_HOME", str(tmp_path / "home"))
    source = _source(prometheus)
    _persistence_champions(source, tmp_path)
    with FakeVpaApi() as api:
        api.put(vpa("shop", "web", target_kind="Deployment", target_name="web"))
        argv = ["recommender", "--once", "--dry-run", "--source", source, "--model", str(tmp_path / "champion")]
        assert main([*argv, "--kubeconfig", str(api.kubeconfig(tmp_path))]) == 0
        assert not api.status_writes()
    (printed,) = [d for d in yaml.safe_load_all(capsys.readouterr().out) if d]
    assert (printed["vpa"], printed["workload"], printed["action"]) == (
        "shop/web",
        "shop/Deployment/web",
        "would-write",
    )
    app, sidecar = printed["status"]["recommendation"]["containerRecommendations"]
    assert (app["containerName"], sidecar["containerName"]) == ("app", "sidecar")
    # Two replicas, CPU requested 80/20 between the containers: the recommendation keeps the split.
    ratio = parse_cores(sidecar["target"]["cpu"]) / parse_cores(app["target"]["cpu"])
    assert ratio == pytest.approx(0.25, abs=0.01)
    assert crd_errors({**vpa("shop", "web"), "status": printed["status"]}) == []
