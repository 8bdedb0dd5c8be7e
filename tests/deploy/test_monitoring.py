"""The prod overlay's VPA recommender and monitoring components, checked on what `kubectl kustomize` renders.

The prometheus-operator's custom resources are validated against their CRDs with unknown fields
rejected (``crd_schemas``); the recommender's core objects go through test_manifests.py's strict
kubernetes-validate test like every other rendered object. Then what no schema sees: the
PodMonitor and the ServiceMonitor reach the pods that serve the metrics, the recommender gets its
model and its Prometheus the way the manifests say, its ClusterRole grants exactly what a VPA
recommender needs, its NetworkPolicy opens exactly its paths, and the alerting rules pass
`promtool check rules` and the unit tests of monitoring_rules_test.yaml (`promtool test rules`).
"""

from __future__ import annotations

import copy
import importlib.metadata
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from test_manifests import (
    KFP_NAMESPACE_LABELS,
    OVERLAYS,
    PROFILE_NAMESPACE_LABELS,
    REPO,
    SEAWEEDFS_POLICY,
    SEAWEEDFS_SERVICE_S3_PORTS,
    Pod,
    _admits,
    _seaweedfs_pod,
    applied_namespace_labels,
    connects,
    kustomize,
    kustomize_standalone,
    kustomize_wrapped,
    of_kind,
    one,
    pod_templates,
    predictor_pod_labels,
    selector_matches,
)
from test_rbac import Call, allowed, granted_rules

from crd_schemas import crd_errors
from ml_cloud_optimizer.horizons import DEFAULT_HORIZONS, PEAK_HORIZON
from ml_cloud_optimizer.kube import names as series
from ml_cloud_optimizer.serving.metrics import ERRORS, REQUESTS

MONITORING = "monitoring.coreos.com"
RULES_TEST = Path(__file__).with_name("monitoring_rules_test.yaml")
RUNBOOK = "https://github.com/mlco/ml-cloud-optimizer/blob/main/DEPLOYMENT.md#"
RECOMMENDER = "mlco-recommender"
METRICS_PORT = 9100
PROMETHEUS = Pod("monitoring", {"app.kubernetes.io/name": "prometheus"}, {"kubernetes.io/metadata.name": "monitoring"})
# The alerts, with the `for` each waits (MlcoRecommenderStale's is per reason).
ALERTS = {
    "MlcoPredictedCPUSaturation": "10m",
    "MlcoPredictedMemorySaturation": "10m",
    "MlcoPeakLikely": "5m",
    "MlcoForecastCoverageLow": "1h",
    "MlcoPredictorErrorRate": "10m",
    "MlcoRecommenderStale": None,
}
STALE_REASONS = {"stale": None, "failing": "15m", "absent": "20m"}
# A VPA recommender's API calls (kubernetes/autoscaler vertical-pod-autoscaler: the recommender
# lists and watches VPAs, and patches their status); nothing else.
VPA = "autoscaling.k8s.io"
GRANTS = {(VPA, "verticalpodautoscalers", v) for v in ("get", "list", "watch")} | {
    (VPA, "verticalpodautoscalers/status", v) for v in ("get", "patch", "update")
}
NOT_NEEDED = [
    Call("recommender", "patch", VPA, "verticalpodautoscalers", "web", "the spec belongs to the VPA's owner"),
    Call("recommender", "delete", VPA, "verticalpodautoscalers", "web", "never deleted"),
    Call("recommender", "create", VPA, "verticalpodautoscalers", None, "never created"),
    Call("recommender", "get", "", "pods", "web-1", "usage comes from Prometheus"),
    Call("recommender", "list", "", "secrets", None, "no secrets through the API"),
    Call("recommender", "patch", "apps", "deployments", "web", "the VPA updater applies recommendations"),
    Call("recommender", "create", "rbac.authorization.k8s.io", "rolebindings", None, "no escalation"),
]


@pytest.fixture(scope="module")
def variants(tmp_path_factory) -> dict[str, list[dict]]:
    """Prod as applied in a profile, under a namePrefix, and with standalone KFP."""
    return {
        "prod": kustomize(OVERLAYS["prod"]),
        "prod with namePrefix": kustomize_wrapped(
            tmp_path_factory.mktemp("monitoring-prefixed"), OVERLAYS["prod"], namePrefix="canary-"
        ),
        "standalone prod": kustomize_standalone(tmp_path_factory.mktemp("monitoring-standalone"), "prod"),
    }


@pytest.fixture(params=["prod", "prod with namePrefix", "standalone prod"])
def variant(request, variants) -> tuple[str, list[dict]]:
    return request.param, variants[request.param]


@pytest.fixture(scope="module")
def rule(variants) -> dict:
    return one(variants["prod"], "PrometheusRule")


def named(docs: list[dict], kind: str, suffix: str) -> dict:
    """The one object of ``kind`` whose name is ``suffix``, after any namePrefix."""
    found = [d for d in of_kind(docs, kind) if d["metadata"]["name"].endswith(suffix)]
    assert len(found) == 1, f"expected one {kind} *{suffix}, found {[d['metadata']['name'] for d in found]}"
    return found[0]


def recommender_pod(docs: list[dict]) -> tuple[dict, dict]:
    """The recommender Deployment's pod labels and pod spec."""
    template = named(docs, "Deployment", RECOMMENDER)["spec"]["template"]
    return template["metadata"]["labels"], template["spec"]


# ---------------------------------------------------------------------------- rendering and schemas


def test_prod_renders_the_recommender_and_the_monitoring(variants):
    rendered = {(d["kind"], d["metadata"]["name"]) for d in variants["prod"]}
    expected = {(kind, RECOMMENDER) for kind in ("ServiceAccount", "ClusterRole", "ClusterRoleBinding")}
    expected |= {(kind, RECOMMENDER) for kind in ("Deployment", "Service", "NetworkPolicy", "ServiceMonitor")}
    expected |= {("PodMonitor", "workload-forecaster-predictor"), ("PrometheusRule", "mlco")}
    assert expected <= rendered, f"missing {sorted(expected - rendered)}"
    dev = kustomize(OVERLAYS["dev"])
    assert not [d for d in dev if d["apiVersion"].startswith(MONITORING) or RECOMMENDER in d["metadata"]["name"]], (
        "dev is a demo that needs neither the VPA nor the prometheus-operator CRDs"
    )


def test_monitoring_resources_validate_against_their_crds(variant):
    name, docs = variant
    custom = [d for d in docs if d["apiVersion"].startswith(MONITORING + "/")]
    assert {d["kind"] for d in custom} == {"PodMonitor", "ServiceMonitor", "PrometheusRule"}, name
    for doc in custom:
        assert crd_errors(doc) == [], name
    typo = copy.deepcopy(one(docs, "PodMonitor"))
    typo["spec"]["podMetricsEndpoints"][0]["portName"] = typo["spec"]["podMetricsEndpoints"][0].pop("port")
    assert crd_errors(typo), "the strict schema must reject unknown fields"


# ---------------------------------------------------------------------------- who is scraped


def test_podmonitor_scrapes_the_predictors_metrics_port(variant):
    name, docs = variant
    isvc, monitor = one(docs, "InferenceService"), one(docs, "PodMonitor")
    assert (
        monitor["metadata"]["namespace"] == isvc["metadata"]["namespace"] and "namespaceSelector" not in monitor["spec"]
    )
    assert selector_matches(monitor["spec"]["selector"], predictor_pod_labels(isvc)), f"{name}: misses the predictor"
    assert not selector_matches(monitor["spec"]["selector"], recommender_pod(docs)[0])
    runtime = one(docs, "ServingRuntime", isvc["spec"]["predictor"]["model"]["runtime"])
    (container,) = runtime["spec"]["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    assert endpoint["port"] in ports, f"{name}: the predictor has no port named {endpoint['port']}"
    served = runtime["spec"]["annotations"]
    assert (str(ports[endpoint["port"]]), endpoint["path"]) == (
        served["prometheus.kserve.io/port"],
        served["prometheus.kserve.io/path"],
    )
    namespace = isvc["metadata"]["namespace"]
    labels = applied_namespace_labels(docs, namespace, PROFILE_NAMESPACE_LABELS)
    predictor = Pod(namespace, predictor_pod_labels(isvc), labels)
    assert connects(of_kind(docs, "NetworkPolicy"), PROMETHEUS, predictor, ports[endpoint["port"]])


def test_servicemonitor_reaches_the_recommender_pods(variant):
    name, docs = variant
    monitor = one(docs, "ServiceMonitor")
    namespace = monitor["metadata"]["namespace"]
    services = [
        s
        for s in of_kind(docs, "Service")
        if s["metadata"]["namespace"] == namespace
        and selector_matches(monitor["spec"]["selector"], s["metadata"]["labels"])
    ]
    assert [s["metadata"]["name"] for s in services] == [named(docs, "Service", RECOMMENDER)["metadata"]["name"]]
    (service,) = services
    selected = [
        where
        for where, labels, _ in pod_templates(docs)
        if selector_matches({"matchLabels": service["spec"]["selector"]}, labels)
    ]
    assert selected == [f"Deployment/{named(docs, 'Deployment', RECOMMENDER)['metadata']['name']}"], name
    (endpoint,) = monitor["spec"]["endpoints"]
    (port,) = [p for p in service["spec"]["ports"] if p["name"] == endpoint["port"] == "metrics"]
    (container,) = recommender_pod(docs)[1]["containers"]
    (target,) = [p for p in container["ports"] if p["name"] == port["targetPort"]]
    assert target["containerPort"] == port["port"] == METRICS_PORT
    assert f"--metrics-port={METRICS_PORT}" in container["args"]
    # The gauges' own namespace label must win over the target's (servicemonitor.yaml).
    assert endpoint["honorLabels"] is True and endpoint["path"] == "/metrics"


# ---------------------------------------------------------------------------- the recommender


def test_recommender_gets_its_model_and_prometheus(variant):
    name, docs = variant
    deployment = named(docs, "Deployment", RECOMMENDER)
    assert deployment["spec"]["replicas"] == 1 and deployment["spec"]["strategy"]["type"] == "Recreate"
    _, pod = recommender_pod(docs)
    assert pod["automountServiceAccountToken"] is True
    assert pod["serviceAccountName"] == named(docs, "ServiceAccount", RECOMMENDER)["metadata"]["name"]
    config_maps = {d["metadata"]["name"]: d.get("data", {}) for d in of_kind(docs, "ConfigMap")}
    (container,) = pod["containers"]
    assert container["command"] == ["mlco", "recommender"]
    assert {"--source=$(MLCO_PROMETHEUS_URL)", "--model=/mnt/models", "--interval=5m"} <= set(container["args"])
    (source,) = [e["valueFrom"]["configMapKeyRef"] for e in container["env"] if e["name"] == "MLCO_PROMETHEUS_URL"]
    assert source["name"].endswith("mlco-pipeline-settings"), "the setting the pipeline reads"
    assert config_maps[source["name"]][source["key"]].startswith("prometheus://"), name
    # The model: KServe's storage initializer, at the release the project's kserve is, copies the
    # URI into the emptyDir the recommender reads, with the predictor's storage credentials.
    (init,) = pod["initContainers"]
    assert init["image"] == f"kserve/storage-initializer:v{importlib.metadata.version('kserve')}"
    assert init["args"] == ["$(MLCO_MODEL_URI)", "/mnt/models"]
    settings = config_maps[init["envFrom"][0]["configMapRef"]["name"]]
    assert {"MLCO_MODEL_URI", "AWS_ENDPOINT_URL", "S3_ENDPOINT", "S3_USE_HTTPS"} <= set(settings)
    storage_secrets = {s["name"] for s in named(docs, "ServiceAccount", "mlco-predictor").get("secrets", [])}
    refs = {e["valueFrom"]["secretKeyRef"]["name"] for e in init["env"]}
    assert refs == storage_secrets == {"mlco-model-storage"}, name
    (volume,) = [v for v in pod["volumes"] if "emptyDir" in v and v["name"] == "models"]
    for each in (init, container):
        assert {"name": volume["name"], "mountPath": "/mnt/models"}.items() <= next(
            m for m in each["volumeMounts"] if m["name"] == volume["name"]
        ).items()


def test_recommender_may_do_exactly_what_a_vpa_recommender_does(variant):
    name, docs = variant
    account = named(docs, "ServiceAccount", RECOMMENDER)["metadata"]
    role, binding = named(docs, "ClusterRole", RECOMMENDER), named(docs, "ClusterRoleBinding", RECOMMENDER)
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": role["metadata"]["name"],
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": account["name"], "namespace": account["namespace"]}
    ]
    # test_rbac evaluates requests in the account's own namespace, where a RoleBinding could add
    # more; the ClusterRoleBinding applies in every namespace alike.
    rules = granted_rules(docs, account["namespace"], account["name"])
    assert rules == role["rules"], f"{name}: the account is granted more than its ClusterRole"
    triples = set()
    for rule in rules:
        assert set(rule) == {"apiGroups", "resources", "verbs"}, f"{name}: {rule}"
        triples |= {(g, r, v) for g in rule["apiGroups"] for r in rule["resources"] for v in rule["verbs"]}
    assert triples == GRANTS, f"{name}: extra {sorted(triples - GRANTS)}, missing {sorted(GRANTS - triples)}"
    may = Call("recommender", "patch", VPA, "verticalpodautoscalers/status", "web", "writes its recommendation")
    assert allowed(docs, account["namespace"], account["name"], may), name
    for call in NOT_NEEDED:
        assert not allowed(docs, account["namespace"], account["name"], call), f"{name}: may {call.verb} {call.name}"


def test_deployment_doc_vpa_names_the_recommender():
    """DEPLOYMENT.md's VerticalPodAutoscaler (a heredoc: test_manifests validates only yaml blocks
    as core kinds) is valid for the VPA CRD and names the recommender the code answers to."""
    text = (REPO / "DEPLOYMENT.md").read_text()
    (vpa,) = [
        yaml.safe_load(body)
        for body in re.findall(r"<<'EOF'\n(.*?)^EOF$", text, flags=re.S | re.M)
        if "kind: VerticalPodAutoscaler" in body
    ]
    assert crd_errors(vpa) == []
    assert [r["name"] for r in vpa["spec"]["recommenders"]] == [series.RECOMMENDER_NAME]


@pytest.mark.parametrize("install", ["prod", "standalone prod"])
def test_recommender_network_paths(install, variants):
    docs = variants[install]
    live = PROFILE_NAMESPACE_LABELS if install == "prod" else KFP_NAMESPACE_LABELS
    policies = [*of_kind(docs, "NetworkPolicy"), SEAWEEDFS_POLICY]
    namespace = named(docs, "Deployment", RECOMMENDER)["metadata"]["namespace"]
    recommender = Pod(namespace, recommender_pod(docs)[0], applied_namespace_labels(docs, namespace, live))
    stranger = Pod("default", {"app.kubernetes.io/name": "prometheus"}, {"kubernetes.io/metadata.name": "default"})
    assert connects(policies, PROMETHEUS, recommender, METRICS_PORT), f"{install}: Prometheus cannot scrape it"
    assert not _admits(policies, recommender, "Ingress", stranger, METRICS_PORT, "TCP"), install
    assert _admits(policies, recommender, "Egress", PROMETHEUS, 9090, "TCP"), f"{install}: cannot query Prometheus"
    store = _seaweedfs_pod()
    assert connects(policies, recommender, store, SEAWEEDFS_SERVICE_S3_PORTS[9000]), f"{install}: no model store"
    api_server = Pod("default", {"component": "apiserver"}, {"kubernetes.io/metadata.name": "default"})
    for port in (443, 6443):
        assert _admits(policies, recommender, "Egress", api_server, port, "TCP"), f"{install}: no API on {port}"
    dns = Pod("kube-system", {"k8s-app": "kube-dns"}, {"kubernetes.io/metadata.name": "kube-system"})
    assert _admits(policies, recommender, "Egress", dns, 53, "UDP")
    database = Pod(namespace, {"app.kubernetes.io/name": "postgresql"}, recommender.namespace_labels)
    assert not _admits(policies, recommender, "Egress", database, 5432, "TCP"), f"{install}: egress is open"


# ---------------------------------------------------------------------------- the alerts


def _rules(rule: dict) -> list[dict]:
    return [r for group in rule["spec"]["groups"] for r in group["rules"]]


def _slugs(markdown: str) -> set[str]:
    """GitHub's anchors for the headings of a Markdown file."""
    headings = re.findall(r"^#+ (.+)$", markdown, flags=re.M)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}


def test_alerts_are_the_documented_ones(rule):
    rules = _rules(rule)
    assert {r["alert"] for r in rules} == set(ALERTS) and all("record" not in r for r in rules)
    anchors = _slugs((REPO / "DEPLOYMENT.md").read_text())
    for r in rules:
        wait = ALERTS[r["alert"]] or STALE_REASONS[r["labels"]["reason"]]
        assert r.get("for") == wait, f"{r['alert']} waits {r.get('for')}, not {wait}"
        assert r["labels"]["severity"] in {"info", "warning", "critical"}
        annotations = r["annotations"]
        assert set(annotations) == {"summary", "description", "runbook_url"}, r["alert"]
        if r["labels"].get("reason") != "absent":
            assert "$labels." in annotations["summary"] and "$labels." in annotations["description"], r["alert"]
        assert annotations["runbook_url"] == RUNBOOK + r["alert"].lower()
        assert r["alert"].lower() in anchors, f"DEPLOYMENT.md has no heading for {r['alert']}'s runbook"
    stale = [r["labels"]["reason"] for r in rules if r["alert"] == "MlcoRecommenderStale"]
    assert sorted(stale) == sorted(STALE_REASONS)


def test_rules_query_the_series_the_code_writes(rule):
    written = {getattr(series, n) for n in series.__all__ if n.isupper() and isinstance(getattr(series, n), str)}
    written |= {f"{counter.describe()[0].name}_total" for counter in (REQUESTS, ERRORS)}
    for r in _rules(rule):
        used = set(re.findall(r"\bmlco_[a-z_]+\b", r["expr"]))
        assert used and used <= written, f"{r['alert']} queries unknown series {sorted(used - written)}"
    # horizon="1h": a horizon the forecasts are made for by default, and the peak classifiers' own.
    hours = {series.horizon_label(h) for h in DEFAULT_HORIZONS} & {series.horizon_label(PEAK_HORIZON)}
    assert {h for r in _rules(rule) for h in re.findall(r'horizon="([^"]+)"', r["expr"])} == hours == {"1h"}
    (coverage,) = [r for r in _rules(rule) if r["alert"] == "MlcoForecastCoverageLow"]
    assert float(re.search(r"<\s*([0-9.]+)\s*$", coverage["expr"])[1]) == series.COVERAGE_TARGET


def _promtool() -> str:
    path = shutil.which("promtool") or next((p for p in ("/usr/bin/promtool",) if Path(p).exists()), None)
    if path is None:
        pytest.fail("promtool not found: it checks the alerting rules (`apt-get install prometheus`)")
    return path


def _write_rules(rule: dict, directory: Path) -> Path:
    path = directory / "rules.yaml"
    path.write_text(yaml.safe_dump(rule["spec"], sort_keys=False))
    return path


def test_promtool_checks_the_rules(rule, tmp_path):
    path = _write_rules(rule, tmp_path)
    done = subprocess.run([_promtool(), "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(_rules(rule))} rules found" in done.stdout


def test_promtool_unit_tests_fire_each_alert_and_spare_the_healthy(rule, tmp_path):
    """monitoring_rules_test.yaml fires every alert (each reason of the stale one) and, at another
    time or beside it, expects none; promtool fails on any alert not listed."""
    _write_rules(rule, tmp_path)
    shutil.copy(RULES_TEST, tmp_path / RULES_TEST.name)
    cases = [c for test in yaml.safe_load(RULES_TEST.read_text())["tests"] for c in test.get("alert_rule_test", [])]
    for alert in ALERTS:
        mine = [c for c in cases if c["alertname"] == alert]
        assert any(c["exp_alerts"] for c in mine) and any(not c["exp_alerts"] for c in mine), alert
    fired = {a["exp_labels"].get("reason") for c in cases for a in c["exp_alerts"]}
    assert set(STALE_REASONS) <= fired
    done = subprocess.run(
        [_promtool(), "test", "rules", RULES_TEST.name], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stdout + done.stderr
