"""VPAs, KEDA ScaledObjects and Kustomize patches: valid for their CRDs, applied by the real kustomize, from the CLI.

The CRD checks are strict (``crd_schemas``: unknown fields rejected), and a broken object is
shown to be reported. Patches go through ``kubectl kustomize`` onto ``sample_base/`` (a
Deployment ``shop/web`` and a StatefulSet ``shop/db``, two containers each) and what renders is
validated by kubernetes-validate. ``mlco recommend --emit`` runs end to end on a small fleet
with persistence models, trained here in a second.
"""

from __future__ import annotations

import copy
import math
import re
import shutil
import subprocess
from pathlib import Path

import kubernetes_validate
import pandas as pd
import pytest
import yaml

from crd_schemas import crd_errors
from ml_cloud_optimizer.cli import main
from ml_cloud_optimizer.kube import emit
from ml_cloud_optimizer.kube.names import RECOMMENDER_NAME
from ml_cloud_optimizer.kube.quantities import bytes_quantity, cores_quantity, parse_bytes, parse_cores
from ml_cloud_optimizer.kube.sizing import ContainerShape, Workload, WorkloadShape, size_workloads

SAMPLE_BASE = Path(__file__).with_name("sample_base")
KUBERNETES_VERSIONS = ("1.30.0", kubernetes_validate.latest_version())
HOURS = pd.date_range("2026-01-05T10:00Z", periods=3, freq="h")
# entity -> (request cores per hour, GiB per hour, p90 cores of the latest hour, current cores)
FIGURES = {
    "shop/Deployment/web": ((1.0, 1.75, 1.5), (2.0, 3.0, 2.5), 1.0, 2.2),
    "shop/StatefulSet/db": ((2.0, 2.5, 2.25), (8.0, 8.0, 9.0), 1.5, 2.05),
    "monitoring/DaemonSet/agent": ((0.25, 0.25, 0.5), (0.5, 0.5, 0.5), 0.3, 0.1),
    "batch/Pod/etl-0": ((1.0, 1.0, 1.0), (3.0, 3.0, 3.0), 0.6, 1.5),
    "vm_0007": ((0.5, 0.75, 0.75), (1.0, 1.0, 1.25), 0.5, 1.0),
}
SHAPES = {
    "shop/Deployment/web": WorkloadShape(2, (ContainerShape("app", 0.8, 0.75), ContainerShape("sidecar", 0.2, 0.25))),
    "shop/StatefulSet/db": WorkloadShape(1, (ContainerShape("app", 0.9, 1.0), ContainerShape("sidecar", 0.1, 0.0))),
}


def _recs() -> pd.DataFrame:
    rows = [
        {
            "entity_id": entity,
            "hour": hour,
            "request_cores": cores[i],
            "request_mem_gib": gib[i],
            "p90_cores": p90,
            "current_cores": current,
        }
        for entity, (cores, gib, p90, current) in FIGURES.items()
        for i, hour in enumerate(HOURS)
    ]
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def sizings():
    return size_workloads(_recs(), SHAPES)


def _sized(sizings, entity="shop/Deployment/web"):
    (found,) = [s for s in sizings if s.workload.entity_id == entity]
    return found


def _of(objects, kind):
    return {(o["metadata"]["namespace"], o["metadata"]["name"]): o for o in objects if o["kind"] == kind}


@pytest.mark.parametrize("mode", emit.UPDATE_MODES)
@pytest.mark.parametrize("kinds", [("vpa",), ("keda",), ("vpa", "keda"), emit.EMIT_KINDS])
def test_every_vpa_and_scaled_object_validates_strictly(sizings, kinds, mode):
    built = emit.build(sizings, kinds, update_mode=mode, server_address="http://prom:9090")
    custom = [o for o in built.objects if o["kind"] in ("VerticalPodAutoscaler", "ScaledObject")]
    assert custom
    for obj in custom:
        assert crd_errors(obj) == []


@pytest.mark.parametrize(
    ("kind", "breakage", "reported"),
    [
        ("VerticalPodAutoscaler", lambda o: o["spec"]["updatePolicy"].update(updateMod="Off"), "updateMod"),
        ("VerticalPodAutoscaler", lambda o: o["spec"]["updatePolicy"].update(updateMode="Sometimes"), "Sometimes"),
        (
            "VerticalPodAutoscaler",
            lambda o: o["spec"]["resourcePolicy"]["containerPolicies"][0]["minAllowed"].update(memory="1 GB"),
            "1 GB",
        ),
        ("ScaledObject", lambda o: o["spec"].update(minReplicas=1), "minReplicas"),
        ("ScaledObject", lambda o: o["spec"]["triggers"][0]["metadata"].update(threshold=0.5), "0.5"),
    ],
)
def test_the_validator_reports_a_broken_object(sizings, kind, breakage, reported):
    (obj,) = [o for o in emit.build([_sized(sizings)]).objects if o["kind"] == kind]
    broken = copy.deepcopy(obj)
    breakage(broken)
    errors = crd_errors(broken)
    assert errors and any(reported in e for e in errors), errors


def test_vpa_names_our_recommender_and_is_bounded_by_the_window(sizings):
    vpas = _of(emit.build(sizings, ("vpa",), update_mode="Initial").objects, "VerticalPodAutoscaler")
    web = vpas[("shop", "web")]
    assert web["spec"]["targetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"}
    assert web["spec"]["recommenders"] == [{"name": RECOMMENDER_NAME}]
    assert web["spec"]["updatePolicy"] == {"updateMode": "Initial"}
    app, sidecar, rest = web["spec"]["resourcePolicy"]["containerPolicies"]
    # Without KEDA the VPA keeps CPU: app holds 0.8 of 1.0..1.75 cores over 2 pods, 0.75 of 2..3 GiB.
    assert app["controlledResources"] == ["cpu", "memory"] and app["controlledValues"] == "RequestsOnly"
    assert app["minAllowed"] == {"cpu": "400m", "memory": "768Mi"}
    assert app["maxAllowed"] == {"cpu": "700m", "memory": "1152Mi"}
    assert sidecar["containerName"] == "sidecar" and sidecar["maxAllowed"]["cpu"] == "175m"
    assert rest == {"containerName": "*", "mode": "Off"}  # containers we did not size are left alone
    assert web["metadata"]["labels"] == {"app.kubernetes.io/managed-by": "mlco"}
    assert web["metadata"]["annotations"]["mlco.io/p90-cores"] == "1"
    assert web["metadata"]["annotations"]["mlco.io/current-cores"] == "2.2"
    # Other kinds carry their kind in the name; the StatefulSet's sidecar requests no memory.
    db = vpas[("shop", "db-statefulset")]
    assert db["spec"]["targetRef"]["kind"] == "StatefulSet"
    assert db["spec"]["resourcePolicy"]["containerPolicies"][1]["controlledResources"] == ["cpu"]
    assert vpas[("default", "vm-0007-" + Workload.from_entity("vm_0007").name.rsplit("-", 1)[1])]


def test_with_keda_the_vpa_of_a_scaled_workload_controls_memory_only(sizings):
    built = emit.build(sizings, ("vpa", "keda"))
    vpas = _of(built.objects, "VerticalPodAutoscaler")
    for key in (("shop", "web"), ("shop", "db-statefulset")):
        policies = vpas[key]["spec"]["resourcePolicy"]["containerPolicies"]
        assert all(p["controlledResources"] == ["memory"] for p in policies[:-1] if "controlledResources" in p)
        assert all("cpu" not in p.get("minAllowed", {}) for p in policies)
    # A DaemonSet is not scaled by KEDA, so its VPA keeps CPU.
    agent = vpas[("monitoring", "agent-daemonset")]["spec"]["resourcePolicy"]["containerPolicies"][0]
    assert agent["controlledResources"] == ["cpu", "memory"]
    assert set(_of(built.objects, "ScaledObject")) == {("shop", "web"), ("shop", "db-statefulset"), *_vm_key()}


def _vm_key():
    return [("default", Workload.from_entity("vm_0007").name)]


def test_with_cpu_the_only_target_a_scaled_workload_gets_no_vpa_and_says_why():
    built = emit.build(size_workloads(_recs(), SHAPES, targets=("cpu",)), ("vpa", "keda"))
    vpas = _of(built.objects, "VerticalPodAutoscaler")
    assert ("shop", "web") not in vpas and ("monitoring", "agent-daemonset") in vpas
    why = dict(built.skipped)
    assert "memory is not a target" in why["shop/Deployment/web"]
    assert "no controller" in why["batch/Pod/etl-0"]  # a bare Pod: nothing can act on it


def test_scaled_object_thresholds_are_the_per_pod_request_at_the_target_utilization(sizings):
    built = emit.build(sizings, ("keda",), horizon="30m", server_address="http://prom:9090", target_utilization=0.5)
    web = _of(built.objects, "ScaledObject")[("shop", "web")]
    spec = web["spec"]
    assert spec["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"}
    forecast, usage = spec["triggers"]
    # 1.5 cores over 2 pods, at 50%: 0.375 cores per pod.
    for trigger in (forecast, usage):
        assert trigger["type"] == "prometheus" and trigger["metricType"] == "AverageValue"
        assert trigger["metadata"]["threshold"] == "0.375"
        assert trigger["metadata"]["serverAddress"] == "http://prom:9090"
    assert forecast["metadata"]["query"] == (
        'sum(mlco_forecast_cpu_cores{namespace="shop",kind="Deployment",workload="web",horizon="30m",quantile="0.9"})'
    )
    assert forecast["metadata"]["query"] == emit.forecast_query(Workload("shop", "Deployment", "web"), "30m")
    # Replicas from 1 to twice what the window's largest p90 needs (1.75 x 0.5 / 0.375 -> 3 pods).
    assert (spec["minReplicaCount"], spec["maxReplicaCount"]) == (1, 6)
    assert "DaemonSet" not in {o["spec"]["scaleTargetRef"]["kind"] for o in built.objects}


def test_at_the_latest_hour_the_forecast_asks_for_no_more_pods_than_today(sizings):
    for sizing in sizings:
        if sizing.workload.kind not in emit.SCALABLE_KINDS:
            continue
        obj = emit.scaled_object(sizing, target_utilization=0.7)
        threshold = float(obj["spec"]["triggers"][0]["metadata"]["threshold"])
        # recommend sized the request as at least p90 / utilization, so ceil(p90 / threshold) <= replicas
        assert math.ceil(sizing.p90_cores / threshold) <= sizing.replicas
        assert obj["spec"]["maxReplicaCount"] >= sizing.replicas


def test_replica_bounds_can_be_given_and_must_be_ordered(sizings):
    web = _sized(sizings)
    spec = emit.scaled_object(web, min_replicas=2, max_replicas=9)["spec"]
    assert (spec["minReplicaCount"], spec["maxReplicaCount"]) == (2, 9)
    with pytest.raises(ValueError, match="1 <= min <= max"):
        emit.scaled_object(web, min_replicas=3, max_replicas=2)
    with pytest.raises(ValueError, match="KEDA scales"):
        emit.scaled_object(next(s for s in sizings if s.workload.kind == "DaemonSet"))
    with pytest.raises(ValueError, match="update mode 'auto'"):
        emit.vpa(web, update_mode="auto")
    with pytest.raises(ValueError, match="unknown kind"):
        emit.build([web], ("hpa",))


def _pod_regex(query: str) -> str:
    (text,) = re.findall(r'pod=~"((?:[^"\\]|\\.)*)"', query)
    return text.replace("\\\\", "\\")  # the PromQL string's escapes, undone


@pytest.mark.parametrize(
    ("workload", "ours", "not_ours"),
    [
        (
            Workload("shop", "Deployment", "web"),
            ["web-7d9f8b6c5d-x2v4q"],
            ["web-api-7d9f8b6c5d-x2v4q", "web-0", "webx-1-2"],
        ),
        (Workload("shop", "StatefulSet", "db"), ["db-0", "db-12"], ["db-backup-0", "db-7d9f-x2v4q"]),
        (Workload("shop", "Deployment", "api.v2"), ["api.v2-5c4b-q8z7w"], ["apixv2-5c4b-q8z7w"]),
    ],
)
def test_usage_query_counts_the_workloads_pods_and_no_others(workload, ours, not_ours):
    query = emit.usage_query(workload)
    assert query.startswith("sum(rate(container_cpu_usage_seconds_total{") and query.endswith("[5m]))")
    assert 'container!="",container!="POD"' in query and f'namespace="{workload.namespace}"' in query
    pattern = re.compile(_pod_regex(query))
    assert all(pattern.fullmatch(pod) for pod in ours)
    assert not any(pattern.fullmatch(pod) for pod in not_ours)


def test_objects_are_deterministic_and_written_one_file_each(sizings, tmp_path):
    first = emit.build(sizings)
    assert yaml.safe_dump_all(first.objects) == yaml.safe_dump_all(emit.build(sizings).objects)
    stale = tmp_path / "vpa" / "gone.deployment.old.yaml"
    stale.parent.mkdir(parents=True)
    stale.write_text("stale")
    paths = emit.write(first.objects, tmp_path)
    assert not stale.exists()
    names = {p.relative_to(tmp_path).as_posix() for p in paths}
    assert {
        "vpa/shop.deployment.web.yaml",
        "keda/shop.statefulset.db.yaml",
        "patches/shop.deployment.web.yaml",
    } <= names
    assert "patches/kustomization.yaml" in names and paths[-1].name == "kustomization.yaml"
    assert len(paths) == len(first.objects) + 1
    for path in paths[:-1]:
        assert yaml.safe_load(path.read_text()) in first.objects
    patch = yaml.safe_load((tmp_path / "patches" / "shop.deployment.web.yaml").read_text())
    assert "labels" not in patch["metadata"]  # managed-by would be merged onto the user's own Deployment
    assert patch["metadata"]["annotations"]["mlco.io/replicas"] == "2"


def _kustomize(directory: Path) -> list[dict]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.fail("kubectl not found on PATH: it renders the patches (`apt-get install kubectl`)")
    done = subprocess.run([kubectl, "kustomize", str(directory)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"kubectl kustomize {directory} failed:\n{done.stderr}"
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


def _render(tmp_path: Path, objects: list[dict]) -> dict[tuple[str, str], dict]:
    """``objects`` written, their patch folder included as a component of an overlay of the sample base."""
    emit.write(objects, tmp_path / "mlco")
    shutil.copytree(SAMPLE_BASE, tmp_path / "base")
    (tmp_path / "overlay").mkdir()
    (tmp_path / "overlay" / "kustomization.yaml").write_text(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
        "resources:\n  - ../base\ncomponents:\n  - ../mlco/patches\n"
    )
    return {(d["kind"], d["metadata"]["name"]): d for d in _kustomize(tmp_path / "overlay")}


@pytest.mark.parametrize("targets", [("cpu", "mem"), ("cpu",)])
def test_patches_render_exactly_the_recommended_requests_and_validate(tmp_path, targets):
    sizings = size_workloads(_recs(), SHAPES, targets=targets)
    base = {(d["kind"], d["metadata"]["name"]): d for d in _kustomize(SAMPLE_BASE)}
    rendered = _render(tmp_path, emit.build(sizings, ("patch",)).objects)  # vm_0007 is not in the base: skipped
    for sizing in (_sized(sizings), _sized(sizings, "shop/StatefulSet/db")):
        key = (sizing.workload.kind, sizing.workload.name)
        containers = {c["name"]: c for c in rendered[key]["spec"]["template"]["spec"]["containers"]}
        before = {c["name"]: c for c in base[key]["spec"]["template"]["spec"]["containers"]}
        assert list(containers) == ["app", "sidecar"]  # sized, never added
        for sized in sizing.containers:
            requests = containers[sized.name]["resources"]["requests"]
            for resource, bounds, text, parse, step in (
                ("cpu", sized.cpu, cores_quantity, parse_cores, 1e-3),
                ("memory", sized.memory, bytes_quantity, parse_bytes, 2**20),
            ):
                if bounds is None:  # not ours: as the base had it
                    assert requests[resource] == before[sized.name]["resources"]["requests"][resource]
                else:
                    assert requests[resource] == text(bounds.target)
                    # never below the target (but for float noise), at most one millicore or MiB above
                    assert bounds.target * (1 - 1e-9) <= parse(requests[resource]) <= bounds.target + step
            assert containers[sized.name]["resources"].get("limits") == before[sized.name]["resources"].get("limits")
        assert rendered[key]["metadata"]["annotations"]["mlco.io/entity"] == sizing.workload.entity_id
        for version in KUBERNETES_VERSIONS:
            kubernetes_validate.validate(rendered[key], version, strict=True)


# ------------------------------------------------------------------------------------ the CLI


@pytest.fixture(scope="module")
def cli_inputs(tmp_path_factory) -> tuple[Path, Path]:
    """A fleet of web, db and a VM, and persistence champions for CPU and memory beside each other."""
    from ml_cloud_optimizer.data import read_fleet, write_fleet
    from ml_cloud_optimizer.data.synthetic import generate_fleet
    from ml_cloud_optimizer.models.baselines import PersistenceForecaster
    from ml_cloud_optimizer.models.bundle import ModelBundle
    from ml_cloud_optimizer.resources import as_target

    fleet = generate_fleet(288 * 3 * 3, entities=3, seed=5)
    ids = sorted(fleet.entities["entity_id"].astype(str))
    names = dict(zip(ids, ["shop/Deployment/web", "shop/StatefulSet/db", ids[2]], strict=True))
    fleet.entities["entity_id"] = fleet.entities["entity_id"].astype(str).map(names)
    fleet.metrics["entity_id"] = fleet.metrics["entity_id"].astype(str).map(names)
    root = tmp_path_factory.mktemp("emit-cli")
    write_fleet(fleet, root / "fleet.parquet")
    fleet = read_fleet(root / "fleet.parquet")
    ModelBundle(PersistenceForecaster().fit(fleet.metrics)).save(root / "champion")
    mem = PersistenceForecaster().fit(as_target(fleet.metrics, "mem"))
    ModelBundle(mem, metadata={"target": "mem"}).save(root / "champion-mem")
    return root / "fleet.parquet", root / "champion"


def _recommend(cli_inputs, out: Path, *extra: str) -> int:
    fleet, model = cli_inputs
    argv = ["recommend", "--model", str(model), "--source", str(fleet), "--no-store", "--hours", "2"]
    return main([*argv, "--out", str(out), *extra])


def test_recommend_emits_objects_that_validate(cli_inputs, tmp_path, capsys):
    out = tmp_path / "out"
    extra = ("--target", "cpu,mem", "--emit", "vpa,keda,patch", "--emit-namespace", "fleet", "--vpa-mode", "Auto")
    assert _recommend(cli_inputs, out, *extra) == 0
    printed = capsys.readouterr().out
    assert f"vpa: 3 VerticalPodAutoscalers (updateMode Auto, memory only where KEDA scales) in {out / 'vpa'}" in printed
    assert f"keda: 3 ScaledObjects (forecast 1h ahead, and CPU usage) in {out / 'keda'}" in printed
    assert f"patch: 3 patches and their kustomization.yaml (a Kustomize Component) in {out / 'patches'}" in printed
    assert "one pod, one container 'app'" in printed  # a file has no container shapes, and says so
    assert (out / "recommendations.csv").is_file()
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.yaml"))
    assert len(written) == 10 and "keda/shop.statefulset.db.yaml" in written
    assert any(name.startswith("vpa/fleet.deployment.") for name in written)  # the VM, in --emit-namespace
    for path in [*(out / "vpa").glob("*.yaml"), *(out / "keda").glob("*.yaml")]:
        obj = yaml.safe_load(path.read_text())
        assert crd_errors(obj) == []
        if obj["kind"] == "ScaledObject":
            address = obj["spec"]["triggers"][0]["metadata"]["serverAddress"]
            assert address == emit.DEFAULT_PROMETHEUS  # not a prometheus:// source: the in-cluster default
    recs = pd.read_csv(out / "recommendations.csv")
    latest = recs[recs["entity_id"] == "shop/Deployment/web"].sort_values("hour").iloc[-1]
    web = yaml.safe_load((out / "patches" / "shop.deployment.web.yaml").read_text())
    (app,) = web["spec"]["template"]["spec"]["containers"]
    assert app["resources"]["requests"] == {
        "cpu": cores_quantity(latest["request_cores"]),
        "memory": bytes_quantity(latest["request_mem_gib"] * 2**30),
    }


def test_recommend_with_cpu_only_says_which_workloads_get_no_vpa(cli_inputs, tmp_path, capsys):
    assert _recommend(cli_inputs, tmp_path / "out", "--emit", "vpa,keda", "--max-replicas", "7") == 0
    printed = capsys.readouterr().out
    assert "vpa: 0 VerticalPodAutoscalers" in printed
    assert "skipped 3 workload(s): no VPA: KEDA scales its CPU and memory is not a target" in printed
    scaled = yaml.safe_load((tmp_path / "out" / "keda" / "shop.deployment.web.yaml").read_text())
    assert scaled["spec"]["maxReplicaCount"] == 7
    assert not (tmp_path / "out" / "patches").exists()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--emit", "foo"], "--emit foo: expected any of vpa,keda,patch"),
        (["--emit", "vpa,hpa"], "--emit vpa,hpa: expected any of vpa,keda,patch"),
        (["--emit", "vpa", "--vpa-mode", "auto"], "--vpa-mode auto: expected one of Off, Initial"),
        (["--emit", "keda", "--keda-horizon", "60m"], "--keda-horizon 60m: expected a horizon"),
        (["--emit", "keda", "--keda-horizon", "7m"], "--keda-horizon 7m"),
        (["--emit", "patch", "--emit-namespace", "Shop_NS"], "--emit-namespace Shop_NS"),
        (["--emit", "keda", "--max-replicas", "0"], "--max-replicas 0: expected at least 1"),
        (["--emit", "keda", "--prometheus-address", "prom:9090"], "--prometheus-address prom:9090"),
    ],
)
def test_bad_emit_flags_are_one_line_and_exit_2(cli_inputs, tmp_path, capsys, extra, message):
    assert _recommend(cli_inputs, tmp_path / "out", *extra) == 2
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert not (tmp_path / "out").exists()  # refused before any work
