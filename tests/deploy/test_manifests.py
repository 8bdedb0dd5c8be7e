"""The Kubernetes manifests, checked on what `kubectl kustomize` renders, with the real tools.

Each overlay is rendered once per session. Core kinds are validated strictly against the
Kubernetes schemas of kubernetes-validate; the InferenceService against KServe's own CRD
schema with unknown fields rejected; the ServingRuntime, which has no schema here, by hand.
Then the properties no single schema can see: references between objects resolve (also
under a namePrefix), the PodDisruptionBudget and NetworkPolicies select the predictor's pods,
every container is sized and unprivileged, no Secret carries a value, and checkov passes.
Last, the cluster around them: with our NetworkPolicies beside SeaweedFS's own, the predictor
and the pipeline's pods reach Kubeflow Pipelines' object store, in a profile namespace and in
standalone KFP's `kubeflow`, and Prometheus reaches a port that serves the metrics.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import tomllib
import yaml

from crd_schemas import strict_schema

REPO = Path(__file__).resolve().parents[2]
SHARED = Path(__file__).resolve().parents[3] / "shared"
ISVC_CRD = SHARED / "schemas" / "serving.kserve.io_inferenceservices.yaml"
CHECKOV = REPO / ".venv-checkov" / "bin" / "checkov"
OVERLAYS = {"dev": REPO / "manifests" / "overlays" / "dev", "prod": REPO / "manifests" / "overlays" / "prod"}
STANDALONE = REPO / "manifests" / "components" / "kfp-standalone"
KUBERNETES_VERSIONS = ("1.30.0", kubernetes_validate.latest_version())

IMAGE_REPOSITORY = "ghcr.io/mlco/ml-cloud-optimizer"
ISVC_NAME = "workload-forecaster"
PREDICTOR_LABEL = ("app.kubernetes.io/component", "forecaster-predictor")
KSERVE_GROUP = "serving.kserve.io"
# Custom resources (validated against their CRDs: here the InferenceService, the
# prometheus-operator's in test_monitoring.py) and the kinds that live in no namespace.
CUSTOM_GROUPS = (KSERVE_GROUP, "monitoring.coreos.com")
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding"}
WORKLOAD_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"}
REFERENCED_SECRETS = {"mlco-db", "mlco-model-storage"}


# ---------------------------------------------------------------------------- rendering


def _kubectl() -> str:
    path = shutil.which("kubectl")
    if path is None:
        pytest.fail("kubectl not found on PATH: it renders the manifests (`apt-get install kubectl`)")
    return path


def kustomize(directory: Path) -> list[dict]:
    """The objects `kubectl kustomize directory` renders; a failed render fails the test."""
    completed = subprocess.run([_kubectl(), "kustomize", str(directory)], capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0, f"kubectl kustomize {directory} failed:\n{completed.stderr}"
    return [doc for doc in yaml.safe_load_all(completed.stdout) if doc]


@pytest.fixture(scope="session")
def rendered() -> dict[str, list[dict]]:
    return {name: kustomize(path) for name, path in OVERLAYS.items()}


@pytest.fixture(params=sorted(OVERLAYS))
def overlay(request, rendered) -> tuple[str, list[dict]]:
    return request.param, rendered[request.param]


def kustomize_wrapped(root: Path, overlay: Path, **fields) -> list[dict]:
    """Render a kustomization in ``root`` that takes ``overlay`` as its resource, plus ``fields``."""
    (root / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "kustomize.config.k8s.io/v1beta1",
                "kind": "Kustomization",
                "resources": [os.path.relpath(overlay, root)],
                **fields,
            }
        )
    )
    return kustomize(root)


@pytest.fixture(scope="session")
def prefixed_prod(tmp_path_factory) -> list[dict]:
    """Prod under an extra namePrefix, as a canary or a second tenant would deploy it."""
    return kustomize_wrapped(tmp_path_factory.mktemp("prefixed"), OVERLAYS["prod"], namePrefix="canary-")


def kustomize_standalone(root: Path, overlay: str) -> list[dict]:
    """An overlay for standalone KFP, the way DEPLOYMENT.md writes it: the overlay plus the component."""
    return kustomize_wrapped(root, OVERLAYS[overlay], components=[os.path.relpath(STANDALONE, root)])


@pytest.fixture(scope="session")
def standalone(tmp_path_factory) -> dict[str, list[dict]]:
    return {name: kustomize_standalone(tmp_path_factory.mktemp(f"standalone-{name}"), name) for name in OVERLAYS}


# ---------------------------------------------------------------------------- helpers


def of_kind(docs: list[dict], kind: str) -> list[dict]:
    return [d for d in docs if d["kind"] == kind]


def one(docs: list[dict], kind: str, name: str | None = None) -> dict:
    found = [d for d in of_kind(docs, kind) if name is None or d["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def names(docs: list[dict], kind: str) -> set[str]:
    return {d["metadata"]["name"] for d in of_kind(docs, kind)}


def selector_matches(selector: dict, labels: dict[str, str]) -> bool:
    """Kubernetes label-selector semantics (matchLabels and matchExpressions); {} selects all."""
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for expression in selector.get("matchExpressions") or []:
        key, operator, values = expression["key"], expression["operator"], expression.get("values") or []
        present = key in labels
        if not {
            "In": present and labels[key] in values,
            "NotIn": not present or labels[key] not in values,
            "Exists": present,
            "DoesNotExist": not present,
        }[operator]:
            return False
    return True


def predictor_pod_labels(isvc: dict) -> dict[str, str]:
    """The labels KServe puts on predictor pods: its own, keyed on the name, plus spec.predictor.labels."""
    name = isvc["metadata"]["name"]
    return {
        "serving.kserve.io/inferenceservice": name,
        "component": "predictor",
        "app": f"isvc.{name}-predictor",
        **isvc["spec"]["predictor"].get("labels", {}),
    }


def pod_templates(docs: list[dict]) -> list[tuple[str, dict, dict]]:
    """(object, pod labels, pod spec) for every workload, the predictor included."""
    pods = []
    for doc in docs:
        if doc["kind"] in WORKLOAD_KINDS:
            template = doc["spec"]["template"]
            pods.append(
                (f"{doc['kind']}/{doc['metadata']['name']}", template["metadata"].get("labels", {}), template["spec"])
            )
        elif doc["kind"] == "InferenceService":
            predictor = doc["spec"]["predictor"]
            pods.append((f"InferenceService/{doc['metadata']['name']}", predictor_pod_labels(doc), predictor))
    return pods


def containers(docs: list[dict]) -> list[tuple[str, dict, dict]]:
    """(where, container, pod securityContext) for every container the manifests define."""
    found = []
    for where, _, pod in pod_templates(docs):
        for container in pod.get("containers", []) + pod.get("initContainers", []):
            found.append((f"{where}/{container['name']}", container, pod.get("securityContext", {})))
        if "model" in pod:
            found.append((f"{where}/model", pod["model"], pod.get("securityContext", {})))
    for runtime in of_kind(docs, "ServingRuntime"):
        for container in runtime["spec"]["containers"]:
            found.append((f"ServingRuntime/{runtime['metadata']['name']}/{container['name']}", container, {}))
    return found


def is_core(doc: dict) -> bool:
    """A kind kubernetes-validate has schemas for: not a custom resource."""
    return doc["apiVersion"].split("/")[0] not in CUSTOM_GROUPS


def images(docs: list[dict]) -> list[str]:
    return [container["image"] for _, container, _ in containers(docs) if "image" in container]


@pytest.fixture(scope="session")
def isvc_validator() -> jsonschema.Draft7Validator:
    if not ISVC_CRD.exists():
        pytest.skip(f"KServe InferenceService CRD schema not found at {ISVC_CRD}")
    crd = yaml.load(ISVC_CRD.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1beta1"]
    return jsonschema.Draft7Validator(strict_schema(version["schema"]["openAPIV3Schema"]))


# ---------------------------------------------------------------------------- rendering and schemas


def test_root_kustomization_applies_the_dev_overlay(rendered):
    assert kustomize(REPO) == rendered["dev"]


def test_overlays_render_the_whole_application(overlay):
    name, docs = overlay
    one(docs, "InferenceService", ISVC_NAME)
    one(docs, "ServingRuntime", "mlco-runtime")
    assert {"mlco-pipeline-runner", "mlco-predictor"} <= names(docs, "ServiceAccount")
    assert of_kind(docs, "Role") and of_kind(docs, "RoleBinding") and of_kind(docs, "NetworkPolicy")
    one(docs, "Namespace", "mlco")
    unplaced = [
        f"{d['kind']}/{d['metadata']['name']}"
        for d in docs
        if d["kind"] not in CLUSTER_SCOPED and d["metadata"].get("namespace") != "mlco"
    ]
    assert not unplaced, f"{name}: objects outside the mlco namespace: {unplaced}"


def test_core_kinds_validate_strictly(overlay):
    name, docs = overlay
    core = [d for d in docs if is_core(d)]
    assert len(core) >= 8
    for version in KUBERNETES_VERSIONS:
        for doc in core:
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as error:
                pytest.fail(
                    f"{name}: {doc['kind']}/{doc['metadata']['name']} invalid for Kubernetes {version}: "
                    f"{error.message} at {'.'.join(map(str, error.path))}"
                )


def test_inferenceservice_validates_against_the_kserve_crd(overlay, isvc_validator):
    name, docs = overlay
    isvc = one(docs, "InferenceService", ISVC_NAME)
    errors = [f"{e.message} at {'.'.join(map(str, e.path))}" for e in isvc_validator.iter_errors(isvc)]
    assert not errors, f"{name}: {errors}"
    typo = copy.deepcopy(isvc)
    typo["spec"]["predictor"]["minReplica"] = typo["spec"]["predictor"].pop("minReplicas")
    assert not isvc_validator.is_valid(typo), "the strict schema must reject unknown fields"


def test_servingruntime_has_the_structure_kserve_needs(overlay):
    _name, docs = overlay
    runtime = one(docs, "ServingRuntime", "mlco-runtime")
    assert runtime["apiVersion"] == f"{KSERVE_GROUP}/v1alpha1"
    spec = runtime["spec"]
    assert {"name": "mlco-forecaster", "version": "1", "autoSelect": True}.items() <= spec["supportedModelFormats"][
        0
    ].items()
    assert {"v1", "v2", "grpc-v2"} <= set(spec["protocolVersions"])
    assert spec.get("multiModel", False) is False
    (container,) = spec["containers"]
    assert container["name"] == "kserve-container"
    assert container["image"].startswith(IMAGE_REPOSITORY + ":")
    argv = container["command"] + container["args"]
    assert argv[:3] == ["python", "-m", "ml_cloud_optimizer.serving"]
    assert {"--model_dir=/mnt/models", "--model_name={{.Name}}", "--http_port=8080", "--grpc_port=8081"} <= set(argv)
    assert {p["containerPort"] for p in container["ports"]} == {8080, 8081}
    assert container["ports"][0]["containerPort"] == 8080, "KServe routes the first port as HTTP"
    assert spec["annotations"] == {"prometheus.kserve.io/port": "8080", "prometheus.kserve.io/path": "/metrics"}
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"]["port"] == 8080


# ---------------------------------------------------------------------------- the InferenceService


def test_inferenceservice_is_standard_mode_hpa_and_locked_down(overlay):
    _name, docs = overlay
    isvc = one(docs, "InferenceService", ISVC_NAME)
    annotations = isvc["metadata"]["annotations"]
    assert annotations["serving.kserve.io/deploymentMode"] == "Standard"
    assert annotations["serving.kserve.io/autoscalerClass"] == "hpa"
    predictor = isvc["spec"]["predictor"]
    assert predictor["labels"][PREDICTOR_LABEL[0]] == PREDICTOR_LABEL[1]
    model = predictor["model"]
    assert model["modelFormat"] == {"name": "mlco-forecaster", "version": "1"}
    assert "storageUri" not in model, "the deploy step owns storageUri: a re-apply must not revert a rollout"
    resources = model["resources"]
    assert set(resources["requests"]) == {"cpu", "memory"} and resources["requests"] == resources["limits"]
    assert predictor["securityContext"]["runAsNonRoot"] is True
    assert predictor["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    context = model["securityContext"]
    assert context["readOnlyRootFilesystem"] is True and context["allowPrivilegeEscalation"] is False
    assert context["capabilities"]["drop"] == ["ALL"]
    assert predictor["automountServiceAccountToken"] is False


def test_inferenceservice_references_resolve(overlay):
    """The runtime, service account and settings it names are rendered beside it."""
    _name, docs = overlay
    isvc = one(docs, "InferenceService", ISVC_NAME)
    assert_isvc_references_resolve(isvc, docs)


def assert_isvc_references_resolve(isvc: dict, docs: list[dict]) -> None:
    predictor = isvc["spec"]["predictor"]
    assert predictor["model"]["runtime"] in names(docs, "ServingRuntime")
    runtime = one(docs, "ServingRuntime", predictor["model"]["runtime"])
    assert predictor["model"]["modelFormat"]["name"] in {f["name"] for f in runtime["spec"]["supportedModelFormats"]}
    assert predictor["serviceAccountName"] in names(docs, "ServiceAccount")
    for source in predictor["model"]["envFrom"]:
        assert source["configMapRef"]["name"] in names(docs, "ConfigMap"), source


def test_argument_variables_are_defined(overlay):
    """A $(VAR) that Kubernetes cannot expand reaches the program verbatim and breaks it."""
    name, docs = overlay
    config_maps = {d["metadata"]["name"]: d.get("data", {}) for d in of_kind(docs, "ConfigMap")}
    for where, container, _ in containers(docs):
        defined = {e["name"] for e in container.get("env", [])}
        for source in container.get("envFrom", []):
            defined |= set(config_maps.get(source.get("configMapRef", {}).get("name"), {}))
        used = set(
            re.findall(
                r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", " ".join(container.get("command", []) + container.get("args", []))
            )
        )
        assert used <= defined, f"{name}: {where} uses undefined {sorted(used - defined)}"
    model = one(docs, "InferenceService", ISVC_NAME)["spec"]["predictor"]["model"]
    assert "--target_utilization=$(MLCO_TARGET_UTILIZATION)" in model["args"]


def test_settings_point_at_a_tracking_server(overlay):
    name, docs = overlay
    isvc = one(docs, "InferenceService", ISVC_NAME)
    (source,) = isvc["spec"]["predictor"]["model"]["envFrom"]
    settings = one(docs, "ConfigMap", source["configMapRef"]["name"])["data"]
    assert {"MLFLOW_TRACKING_URI", "MLCO_TARGET_UTILIZATION", "MLCO_HORIZONS"} <= set(settings)
    assert 0 < float(settings["MLCO_TARGET_UTILIZATION"]) <= 1
    if name == "dev":
        host = re.match(r"http://([^.:/]+)\.mlco\.svc\.cluster\.local:(\d+)$", settings["MLFLOW_TRACKING_URI"])
        assert host, settings["MLFLOW_TRACKING_URI"]
        service = one(docs, "Service", host[1])
        assert int(host[2]) in {p["port"] for p in service["spec"]["ports"]}


def test_dev_is_one_small_replica_with_in_cluster_backends(rendered):
    dev, prod = rendered["dev"], rendered["prod"]
    predictor = one(dev, "InferenceService", ISVC_NAME)["spec"]["predictor"]
    assert predictor["minReplicas"] == predictor["maxReplicas"] == 1
    dev_cpu = predictor["model"]["resources"]["requests"]["cpu"]
    prod_cpu = one(prod, "InferenceService", ISVC_NAME)["spec"]["predictor"]["model"]["resources"]["requests"]["cpu"]
    assert _cpu(dev_cpu) < _cpu(prod_cpu)
    postgres = one(dev, "StatefulSet", "mlco-postgres")
    assert postgres["spec"]["serviceName"] in names(dev, "Service")
    mlflow = one(dev, "Deployment", "mlco-mlflow")
    assert mlflow["spec"]["template"]["spec"]["containers"][0]["command"][:2] == ["mlflow", "server"]
    assert not of_kind(prod, "StatefulSet") and names(prod, "Deployment") == {"mlco-recommender"}, (
        "prod uses managed backends"
    )


def _cpu(quantity: str) -> float:
    return float(quantity[:-1]) / 1000 if quantity.endswith("m") else float(quantity)


def test_prod_autoscales_through_kserve_fields(rendered):
    isvc = one(rendered["prod"], "InferenceService", ISVC_NAME)
    predictor = isvc["spec"]["predictor"]
    assert isvc["metadata"]["annotations"]["serving.kserve.io/autoscalerClass"] == "hpa"
    assert 2 <= predictor["minReplicas"] < predictor["maxReplicas"] <= 10
    assert predictor["scaleMetric"] == "cpu"
    assert 0 < predictor["scaleTarget"] <= 100
    spread = predictor["topologySpreadConstraints"]
    assert {c["topologyKey"] for c in spread} >= {"topology.kubernetes.io/zone", "kubernetes.io/hostname"}
    for constraint in spread:
        assert selector_matches(constraint["labelSelector"], predictor_pod_labels(isvc))


# ---------------------------------------------------------------------------- across objects


@pytest.mark.parametrize("variant", ["prod", "prod with namePrefix"])
def test_pdb_keeps_one_predictor_pod(variant, rendered, prefixed_prod):
    docs = rendered["prod"] if variant == "prod" else prefixed_prod
    (isvc,) = of_kind(docs, "InferenceService")
    (pdb,) = of_kind(docs, "PodDisruptionBudget")
    assert pdb["spec"]["minAvailable"] == 1
    assert selector_matches(pdb["spec"]["selector"], predictor_pod_labels(isvc)), (
        f"{variant}: the PodDisruptionBudget does not select the pods of {isvc['metadata']['name']}"
    )
    assert_isvc_references_resolve(isvc, docs)


def test_prefix_changes_kserve_labels_but_not_the_stable_one(rendered, prefixed_prod):
    """The reason the PDB selects on our label: KServe's own label follows the name."""
    plain = predictor_pod_labels(one(rendered["prod"], "InferenceService", ISVC_NAME))
    prefixed = predictor_pod_labels(of_kind(prefixed_prod, "InferenceService")[0])
    assert plain["serving.kserve.io/inferenceservice"] != prefixed["serving.kserve.io/inferenceservice"]
    assert plain[PREDICTOR_LABEL[0]] == prefixed[PREDICTOR_LABEL[0]] == PREDICTOR_LABEL[1]


def test_network_policies_select_running_pods(overlay):
    name, docs = overlay
    pods = pod_templates(docs)
    for policy in of_kind(docs, "NetworkPolicy"):
        selected = [where for where, labels, _ in pods if selector_matches(policy["spec"]["podSelector"], labels)]
        assert len(selected) == 1, f"{name}: NetworkPolicy {policy['metadata']['name']} selects {selected}"
    predictor = next(
        p
        for p in of_kind(docs, "NetworkPolicy")
        if selector_matches(p["spec"]["podSelector"], predictor_pod_labels(one(docs, "InferenceService", ISVC_NAME)))
    )
    ports = {port["port"] for rule in predictor["spec"]["ingress"] for port in rule["ports"]}
    assert ports == {8080, 8081}


def test_every_container_is_sized_and_unprivileged(overlay):
    name, docs = overlay
    found = containers(docs)
    assert {where.split("/")[0] for where, _, _ in found} >= {"InferenceService", "ServingRuntime"}
    for where, container, pod_context in found:
        resources = container.get("resources", {})
        for side in ("requests", "limits"):
            assert {"cpu", "memory"} <= set(resources.get(side, {})), f"{name}: {where} has no {side}"
        assert resources["requests"] == resources["limits"], f"{name}: {where} requests differ from limits"
        context = {**pod_context, **container.get("securityContext", {})}
        assert context.get("runAsNonRoot") is True, f"{name}: {where} may run as root"
        assert int(context.get("runAsUser", 0)) >= 10000, f"{name}: {where} runs as a low uid"
        assert context.get("allowPrivilegeEscalation") is False, f"{name}: {where} may escalate"
        assert context.get("readOnlyRootFilesystem") is True, f"{name}: {where} writes its root filesystem"
        assert "ALL" in context.get("capabilities", {}).get("drop", []), f"{name}: {where} keeps capabilities"


def test_rolebindings_point_at_existing_accounts_and_roles(overlay):
    name, docs = overlay
    bindings = of_kind(docs, "RoleBinding")
    assert bindings
    accounts = {(d["metadata"]["namespace"], d["metadata"]["name"]) for d in of_kind(docs, "ServiceAccount")}
    roles = {(d["metadata"]["namespace"], d["metadata"]["name"]) for d in of_kind(docs, "Role")}
    for binding in bindings:
        namespace = binding["metadata"]["namespace"]
        assert binding["roleRef"]["kind"] == "Role", f"{name}: {binding['metadata']['name']} grants a ClusterRole"
        assert (namespace, binding["roleRef"]["name"]) in roles, f"{name}: missing role {binding['roleRef']}"
        for subject in binding["subjects"]:
            assert subject["kind"] == "ServiceAccount"
            assert (subject["namespace"], subject["name"]) in accounts, f"{name}: missing account {subject}"


def test_secrets_are_referenced_never_valued(overlay):
    name, docs = overlay
    assert not of_kind(docs, "Secret"), f"{name}: Secrets are created out of band (DEPLOYMENT.md)"
    referenced = {ref["name"] for ref in _secret_key_refs(docs)}
    referenced |= {s["name"] for account in of_kind(docs, "ServiceAccount") for s in account.get("secrets", [])}
    expected = {"mlco-model-storage", "mlco-db"} if name == "dev" else {"mlco-model-storage"}
    assert referenced == expected, f"{name}: Secrets referenced {sorted(referenced)}"
    for config_map in of_kind(docs, "ConfigMap"):
        for key, value in config_map.get("data", {}).items():
            assert not re.search(r"://[^/\s:@]+:[^/\s@]+@", value), f"{name}: credentials in ConfigMap key {key}"


def test_deployment_doc_examples_are_valid(rendered):
    """The example Secrets (and every other object in DEPLOYMENT.md) validate strictly."""
    examples = deployment_doc_examples()
    for example in examples:
        kubernetes_validate.validate(example, KUBERNETES_VERSIONS[0], strict=True)
    secrets = of_kind(examples, "Secret")
    assert {s["metadata"]["name"] for s in secrets} == REFERENCED_SECRETS
    database = next(s for s in secrets if s["metadata"]["name"] == "mlco-db")
    assert "DATABASE_URL" in database["stringData"]
    dev_keys = {ref["key"] for d in rendered["dev"] for ref in _secret_key_refs(d) if ref["name"] == "mlco-db"}
    assert dev_keys <= set(database["stringData"]), f"dev reads keys the example lacks: {dev_keys}"


def deployment_doc_examples() -> list[dict]:
    text = (REPO / "DEPLOYMENT.md").read_text()
    return [d for block in re.findall(r"```yaml\n(.*?)```", text, flags=re.S) for d in yaml.safe_load_all(block) if d]


def _secret_key_refs(node):
    if isinstance(node, dict):
        if "secretKeyRef" in node:
            yield node["secretKeyRef"]
        if "secret" in node and "secretName" in node["secret"]:
            for item in node["secret"].get("items", []):
                yield {"name": node["secret"]["secretName"], "key": item["key"]}
        for value in node.values():
            yield from _secret_key_refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _secret_key_refs(value)


def test_images_are_pinned(overlay):
    name, docs = overlay
    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    for image in images(docs):
        repository, _, tag = image.partition("@")[0].rpartition(":")
        assert "@sha256:" in image or (tag and tag != "latest"), f"{name}: image {image} is not pinned"
        if repository == IMAGE_REPOSITORY:
            assert tag == version, f"{name}: {image} is not the project's version {version}"
    pinned = yaml.safe_load((OVERLAYS["prod"] / "kustomization.yaml").read_text())["images"]
    assert any(i["name"] == IMAGE_REPOSITORY and ("newTag" in i or "digest" in i) for i in pinned)


# ---------------------------------------------------------------------------- the cluster around them
#
# What Kubeflow installs beside us, as data from the upstream files named. Kubeflow Pipelines 2.17
# (tag 2.17.0) runs SeaweedFS as its object store; the launcher's default endpoint is
# seaweedfs.kubeflow:9000 (backend/src/v2/objectstore/config.go).

KFP_NAMESPACE = "kubeflow"
# manifests/kustomize/third-party/seaweedfs/base/seaweedfs/seaweedfs-deployment.yaml: the pod's labels.
SEAWEEDFS_POD_LABELS = {"app": "seaweedfs", "application-crd-id": "kubeflow-pipelines"}
# .../seaweedfs/seaweedfs-service.yaml: Service port -> pod port, for the S3 ports.
SEAWEEDFS_SERVICE_S3_PORTS = {8333: 8333, 9000: 8333}
# .../seaweedfs/seaweedfs-networkpolicy.yaml, the rules that concern S3: namespaces labelled
# part-of=kubeflow-profile and pods of its own namespace reach 8333; istio-system reaches all ports.
SEAWEEDFS_POLICY = {
    "metadata": {"name": "seaweedfs", "namespace": KFP_NAMESPACE},
    "spec": {
        "podSelector": {"matchExpressions": [{"key": "app", "operator": "In", "values": ["seaweedfs"]}]},
        "policyTypes": ["Ingress"],
        "ingress": [
            {
                "from": [
                    {
                        "namespaceSelector": {
                            "matchExpressions": [
                                {"key": "app.kubernetes.io/part-of", "operator": "In", "values": ["kubeflow-profile"]}
                            ]
                        }
                    }
                ],
                "ports": [{"port": 8333}],
            },
            {
                "from": [
                    {
                        "namespaceSelector": {
                            "matchExpressions": [
                                {"key": "kubernetes.io/metadata.name", "operator": "In", "values": ["istio-system"]}
                            ]
                        }
                    }
                ]
            },
            {"from": [{"podSelector": {}}], "ports": [{"port": 8333}]},
        ],
    },
}
# Labels of the namespace a pipeline runs in, before we apply anything. A Kubeflow profile's:
# kubeflow/manifests applications/profiles/upstream/base/namespace-labels.yaml (the controller
# adds a key only when it is missing: kubeflow/dashboard
# components/profile-controller/controllers/profile_controller.go, setNamespaceLabels). Standalone
# KFP's kubeflow: kubeflow/pipelines manifests/kustomize/cluster-scoped-resources/namespace.yaml.
PROFILE_NAMESPACE_LABELS = {
    "katib.kubeflow.org/metrics-collector-injection": "enabled",
    "serving.kubeflow.org/inferenceservice": "enabled",
    "pipelines.kubeflow.org/enabled": "true",
    "app.kubernetes.io/part-of": "kubeflow-profile",
}
KFP_NAMESPACE_LABELS = {
    "pod-security.kubernetes.io/enforce": "baseline",
    "pod-security.kubernetes.io/warn": "restricted",
}
# Labels Argo and KFP give a run's pods; none of our NetworkPolicies select them.
RUN_POD_LABELS = {"workflows.argoproj.io/workflow": "mlco-run", "pipelines.kubeflow.org/v2_component": "true"}


@dataclass(frozen=True)
class Pod:
    namespace: str
    labels: dict
    namespace_labels: dict


def applied_namespace_labels(docs: list[dict], namespace: str, live: dict[str, str]) -> dict[str, str]:
    """The namespace's labels after `kubectl apply`: ours replace the keys we set, the rest stay."""
    ours = next(
        (d["metadata"].get("labels", {}) for d in of_kind(docs, "Namespace") if d["metadata"]["name"] == namespace), {}
    )
    return {**live, **ours, "kubernetes.io/metadata.name": namespace}


def _peer_matches(peer: dict, policy_namespace: str, other: Pod) -> bool:
    assert "ipBlock" not in peer, "ipBlock peers are not modelled here"
    if "namespaceSelector" in peer:
        in_namespace = selector_matches(peer["namespaceSelector"], other.namespace_labels)
    else:
        in_namespace = other.namespace == policy_namespace
    return in_namespace and selector_matches(peer.get("podSelector", {}), other.labels)


def _port_matches(ports: list[dict], port: int, protocol: str) -> bool:
    """NetworkPolicy ports are the destination pod's ports (kubernetes/api networking/v1/types.go,
    NetworkPolicyPort: "a numerical or named port on a pod"); no list means every port."""
    for rule_port in ports:
        assert not isinstance(rule_port.get("port"), str), "named ports are not modelled here"
        if rule_port.get("protocol", "TCP") == protocol and (
            "port" not in rule_port or rule_port["port"] <= port <= rule_port.get("endPort", rule_port["port"])
        ):
            return True
    return not ports


def _admits(policies: list[dict], pod: Pod, direction: str, peer: Pod, port: int, protocol: str) -> bool:
    """Whether the policies that select ``pod`` let this connection in (Ingress) or out (Egress) of it."""
    isolating = [
        p
        for p in policies
        if p["metadata"]["namespace"] == pod.namespace
        and direction in p["spec"].get("policyTypes", ["Ingress"] + (["Egress"] if "egress" in p["spec"] else []))
        and selector_matches(p["spec"]["podSelector"], pod.labels)
    ]
    peers_key = "from" if direction == "Ingress" else "to"
    return not isolating or any(
        (not rule.get(peers_key) or any(_peer_matches(x, p["metadata"]["namespace"], peer) for x in rule[peers_key]))
        and _port_matches(rule.get("ports", []), port, protocol)
        for p in isolating
        for rule in p["spec"].get(direction.lower(), [])
    )


def connects(policies: list[dict], source: Pod, destination: Pod, pod_port: int, protocol: str = "TCP") -> bool:
    """A connection is open when the source's policies let it out and the destination's let it in."""
    return _admits(policies, source, "Egress", destination, pod_port, protocol) and _admits(
        policies, destination, "Ingress", source, pod_port, protocol
    )


@pytest.fixture(params=["profile dev", "profile prod", "standalone dev", "standalone prod"])
def install(request, rendered, standalone) -> tuple[str, list[dict], dict[str, str]]:
    """One install: its rendered objects, and the labels its namespace had before we applied them."""
    mode, overlay_name = request.param.split()
    if mode == "profile":
        return request.param, rendered[overlay_name], PROFILE_NAMESPACE_LABELS
    return request.param, standalone[overlay_name], KFP_NAMESPACE_LABELS


def _predictor_pod(docs: list[dict], live: dict[str, str]) -> Pod:
    isvc = one(docs, "InferenceService", ISVC_NAME)
    namespace = isvc["metadata"]["namespace"]
    return Pod(namespace, predictor_pod_labels(isvc), applied_namespace_labels(docs, namespace, live))


def _seaweedfs_pod() -> Pod:
    labels = applied_namespace_labels([], KFP_NAMESPACE, KFP_NAMESPACE_LABELS)
    return Pod(KFP_NAMESPACE, SEAWEEDFS_POD_LABELS, labels)


def test_predictor_and_pipeline_reach_the_object_store(install):
    """KServe's storage initializer (in the predictor pod) and the KFP launcher (in a run's pod)
    both call seaweedfs.kubeflow:9000, which lands on the SeaweedFS pod's port 8333."""
    name, docs, live = install
    policies = [*of_kind(docs, "NetworkPolicy"), SEAWEEDFS_POLICY]
    store, pod_port = _seaweedfs_pod(), SEAWEEDFS_SERVICE_S3_PORTS[9000]
    predictor = _predictor_pod(docs, live)
    run = Pod(predictor.namespace, RUN_POD_LABELS, predictor.namespace_labels)
    assert _admits(policies, predictor, "Egress", store, pod_port, "TCP"), (
        f"{name}: the predictor's NetworkPolicy does not let it out to SeaweedFS's pod port {pod_port}"
    )
    assert connects(policies, predictor, store, pod_port), (
        f"{name}: SeaweedFS's NetworkPolicy refuses namespace {predictor.namespace} "
        f"labelled {predictor.namespace_labels}"
    )
    assert connects(policies, run, store, pod_port), f"{name}: a pipeline pod cannot reach SeaweedFS"
    stranger = Pod("default", {"app": "seaweedfs"}, {"kubernetes.io/metadata.name": "default"})
    assert not _admits(policies, predictor, "Egress", stranger, pod_port, "TCP"), (
        f"{name}: the predictor may reach any pod on {pod_port}, not only KFP's SeaweedFS"
    )


def test_only_named_callers_reach_the_predictor(install):
    """The model server has no authentication of its own: the NetworkPolicy decides who may call it."""
    name, docs, live = install
    policies = of_kind(docs, "NetworkPolicy")
    predictor = _predictor_pod(docs, live)
    neighbour = Pod(predictor.namespace, RUN_POD_LABELS, predictor.namespace_labels)
    client = Pod("shop", {"app": "web"}, {"kubernetes.io/metadata.name": "shop", "mlco.io/forecast-client": "true"})
    gateway = Pod("istio-system", {"app": "istio-ingressgateway"}, {"kubernetes.io/metadata.name": "istio-system"})
    stranger = Pod("default", {"app": "istio-ingressgateway"}, {"kubernetes.io/metadata.name": "default"})
    prometheus = Pod(
        "monitoring", {"app.kubernetes.io/name": "prometheus"}, {"kubernetes.io/metadata.name": "monitoring"}
    )
    for port in (8080, 8081):
        for caller in (neighbour, client, gateway):
            assert _admits(policies, predictor, "Ingress", caller, port, "TCP"), f"{name}: {caller} refused on {port}"
        assert not _admits(policies, predictor, "Ingress", stranger, port, "TCP"), (
            f"{name}: any pod in the cluster may call the predictor on {port}"
        )
    assert not _admits(policies, predictor, "Ingress", prometheus, 8081, "TCP"), (
        f"{name}: Prometheus may call gRPC inference; it needs /metrics on 8080 only"
    )


def test_deployment_doc_points_model_storage_at_seaweedfs(rendered):
    """KServe's storage initializer uses the Secret's endpoint: KFP's object store, reachable."""
    blocks = re.findall(r"```.*?```", (REPO / "DEPLOYMENT.md").read_text(), flags=re.S)
    assert not [b for b in blocks if "minio-service" in b], "KFP 2.15+ installs no MinIO"
    annotations = one(deployment_doc_examples(), "Secret", "mlco-model-storage")["metadata"]["annotations"]
    endpoint = re.fullmatch(
        r"([a-z0-9-]+)\.([a-z0-9-]+)\.svc\.cluster\.local:(\d+)", annotations["serving.kserve.io/s3-endpoint"]
    )
    assert endpoint and endpoint.group(1, 2) == ("seaweedfs", KFP_NAMESPACE), annotations
    assert annotations["serving.kserve.io/s3-usehttps"] == "0", "SeaweedFS in KFP serves plain HTTP"
    docs = rendered["dev"]
    assert connects(
        [*of_kind(docs, "NetworkPolicy"), SEAWEEDFS_POLICY],
        _predictor_pod(docs, PROFILE_NAMESPACE_LABELS),
        _seaweedfs_pod(),
        SEAWEEDFS_SERVICE_S3_PORTS[int(endpoint[3])],
    )


def test_namespace_keeps_the_kubeflow_profile_labels(rendered):
    """Applying our Namespace over a profile's must leave every label the profile controller set:
    it never restores one whose key exists, and SeaweedFS admits by part-of."""
    for name, docs in rendered.items():
        applied = applied_namespace_labels(docs, "mlco", PROFILE_NAMESPACE_LABELS)
        changed = {k: applied[k] for k, v in PROFILE_NAMESPACE_LABELS.items() if applied[k] != v}
        assert not changed, f"{name}: applying the Namespace rewrites the profile's labels {changed}"


def test_standalone_component_deploys_into_kfp_namespace(standalone):
    for name, docs in standalone.items():
        assert not of_kind(docs, "Namespace"), f"{name}: the kubeflow Namespace belongs to the KFP install"
        misplaced = [
            f"{d['kind']}/{d['metadata']['name']}"
            for d in docs
            if d["kind"] not in CLUSTER_SCOPED and d["metadata"].get("namespace") != KFP_NAMESPACE
        ]
        assert not misplaced, f"{name}: outside {KFP_NAMESPACE}: {misplaced}"
        subjects = [
            s for b in of_kind(docs, "RoleBinding") + of_kind(docs, "ClusterRoleBinding") for s in b["subjects"]
        ]
        assert subjects and all(s["namespace"] == KFP_NAMESPACE for s in subjects), subjects
        for doc in docs:
            if is_core(doc):
                kubernetes_validate.validate(doc, KUBERNETES_VERSIONS[0], strict=True)


# KServe's pod mutator, for a Standard-mode predictor: with enable-prometheus-scraping "true"
# (on the pod, or as the cluster default when the pod lacks the key) it sets prometheus.io/port
# to 9091, or to 9088 under metric aggregation, and prometheus.io/path to /metrics
# (kserve/kserve pkg/webhook/admission/pod/metrics_aggregate_injector.go, ports in
# pkg/constants/constants.go). Both are queue-proxy ports; a Standard-mode pod has no queue-proxy.
def kserve_predictor_pod_annotations(
    runtime: dict, isvc: dict, *, cluster_scraping: str, cluster_aggregation: str
) -> dict:
    """The annotations of a predictor pod: runtime, then InferenceService, then predictor
    (pkg/controller/v1beta1/inferenceservice/components/predictor.go, buildObjectMeta), mutated."""
    annotations = {
        **runtime["spec"].get("annotations", {}),
        **isvc["metadata"].get("annotations", {}),
        **isvc["spec"]["predictor"].get("annotations", {}),
    }
    aggregation = annotations.setdefault("serving.kserve.io/enable-metric-aggregation", cluster_aggregation)
    if annotations.setdefault("serving.kserve.io/enable-prometheus-scraping", cluster_scraping) == "true":
        annotations["prometheus.io/port"] = "9088" if aggregation == "true" else "9091"
        annotations["prometheus.io/path"] = "/metrics"
    return annotations


@pytest.mark.parametrize("cluster_default", ["false", "true"])
def test_prometheus_scrapes_a_port_that_serves_the_metrics(overlay, cluster_default):
    name, docs = overlay
    isvc = one(docs, "InferenceService", ISVC_NAME)
    runtime = one(docs, "ServingRuntime", isvc["spec"]["predictor"]["model"]["runtime"])
    pod = kserve_predictor_pod_annotations(
        runtime, isvc, cluster_scraping=cluster_default, cluster_aggregation=cluster_default
    )
    assert pod.get("prometheus.io/scrape") == "true", f"{name}: Prometheus is not asked to scrape the predictor"
    port = int(pod["prometheus.io/port"])
    served = {p["containerPort"] for c in runtime["spec"]["containers"] for p in c.get("ports", [])}
    assert port in served, f"{name}: Prometheus would scrape port {port}; the predictor serves {sorted(served)}"
    metrics = runtime["spec"]["annotations"]
    assert (str(port), pod["prometheus.io/path"]) == (
        metrics["prometheus.kserve.io/port"],
        metrics["prometheus.kserve.io/path"],
    )
    prometheus = Pod(
        "monitoring", {"app.kubernetes.io/name": "prometheus"}, {"kubernetes.io/metadata.name": "monitoring"}
    )
    assert connects(of_kind(docs, "NetworkPolicy"), prometheus, _predictor_pod(docs, PROFILE_NAMESPACE_LABELS), port), (
        f"{name}: the predictor's NetworkPolicy refuses Prometheus on {port}"
    )


def test_checkov_passes_the_rendered_overlays(rendered, tmp_path):
    if not CHECKOV.exists():
        pytest.fail(f"checkov not found at {CHECKOV}: run tools/install_checkov.sh")
    command = [str(CHECKOV), "--framework", "kubernetes", "--output", "json", "--skip-download"]
    for name, docs in rendered.items():
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump_all(docs))
        command += ["--file", str(path)]
    completed = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    report = json.loads(completed.stdout)
    failed = [f"{c['check_id']} {c['resource']} {c['check_name']}" for c in report["results"]["failed_checks"]]
    assert not failed, f"checkov failed: {failed}"
    assert report["summary"]["passed"] > 100, "checkov checked almost nothing"
    unjustified = [
        c["check_id"]
        for c in report["results"]["skipped_checks"]
        if len(str(c["check_result"].get("suppress_comment") or "").split()) < 4
    ]
    assert not unjustified, f"suppressions without a justification beside them: {unjustified}"
