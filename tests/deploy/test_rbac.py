"""The pipeline run's permissions, evaluated on the rendered manifests as Kubernetes' RBAC authorizer would.

Every pod of a Kubeflow Pipelines v2 run (drivers, the launcher with our code, Argo's wait
container beside each) runs as the run's service account. NEEDS lists each call those pods make
to the Kubernetes API, with the upstream source that makes it; each must be allowed, in a
Kubeflow profile's namespace and in standalone KFP's ``kubeflow``. NOT_NEEDED lists what a
profile's default-editor or KFP's own pipeline-runner Role would grant besides; each must be
refused, and no rule may grant anything NEEDS does not list.

The evaluation follows kubernetes/kubernetes: a request is allowed when a binding in its
namespace (or a cluster binding) names the account (pkg/registry/rbac/validation/rule.go,
appliesToUser) and a rule of the referenced role matches verb, API group, resource and, when
the rule lists any, the object's name; a request without a name (create, list) never matches a
rule with resourceNames (pkg/apis/rbac/v1/evaluation_helpers.go).
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from test_manifests import ISVC_NAME, OVERLAYS, kustomize, kustomize_standalone, of_kind, one

from ml_cloud_optimizer.pipelines import settings

RUNNER = settings.PIPELINE_RUNNER_SERVICE_ACCOUNT
RECOMMENDER = "mlco-recommender"
KSERVE = "serving.kserve.io"
# Names the pods ask for. A WorkflowTaskResult is named after the Argo node: unknown in advance.
ANY_NAME = "<any>"


@dataclass(frozen=True)
class Call:
    pod: str
    verb: str
    group: str
    resource: str
    name: str | None  # None: a request without a name (create, list)
    source: str


NEEDS = [
    Call(
        "driver (root DAG)",
        "get",
        "",
        "configmaps",
        "kfp-launcher",
        "kubeflow/pipelines@2.17.0 backend/src/v2/driver/root_dag.go -> backend/src/v2/config/env.go FromConfigMap",
    ),
    Call(
        "launcher (importer)",
        "get",
        "",
        "configmaps",
        "kfp-launcher",
        "kubeflow/pipelines@2.17.0 backend/src/v2/component/importer_launcher.go -> config.FromConfigMap",
    ),
    Call(
        "launcher (executor)",
        "get",
        "",
        "secrets",
        "mlpipeline-minio-artifact",
        "kubeflow/pipelines@2.17.0 backend/src/v2/objectstore/object_store.go (credentials of the pipeline root;"
        " the name: backend/src/v2/config/env.go minioArtifactSecretName)",
    ),
    Call(
        "Argo wait container",
        "create",
        "argoproj.io",
        "workflowtaskresults",
        None,
        "argoproj/argo-workflows workflow/executor/taskresult.go createTaskResult; docs/workflow-rbac.md",
    ),
    Call(
        "Argo wait container",
        "patch",
        "argoproj.io",
        "workflowtaskresults",
        ANY_NAME,
        "argoproj/argo-workflows workflow/executor/taskresult.go patchTaskResult",
    ),
    Call(
        "deploy step",
        "get",
        KSERVE,
        "inferenceservices",
        ISVC_NAME,
        "components/_deploy.py _get; kserve/kserve python/kserve/kserve/api/kserve_client.py is_isvc_ready -> get",
    ),
    Call(
        "deploy step",
        "patch",
        KSERVE,
        "inferenceservices",
        ISVC_NAME,
        "components/_deploy.py _patch -> kserve_client.py patch",
    ),
    Call("deploy step", "list", "apps", "deployments", None, "components/_deploy.py _rollout_of"),
]

NOT_NEEDED = [
    # Environment from Secrets and ConfigMaps is resolved by the kubelet, not by the pod's account.
    Call("any", "get", "", "secrets", "mlco-db", "kfp-kubernetes use_secret_as_env: a pod-spec reference"),
    Call("any", "get", "", "secrets", "mysql-secret", "standalone KFP's own credentials in kubeflow"),
    Call("any", "list", "", "secrets", None, "the launcher gets one Secret by name"),
    Call("any", "update", "", "configmaps", "kfp-launcher", "the driver only reads it"),
    # Argo >= 3.4 with the emissary executor needs only workflowtaskresults (argoproj/argo-workflows
    # docs/workflow-rbac.md, manifests/quick-start/base/executor/emissary/executor-role.yaml);
    # KFP 2.17's launcher reads its pod only when KFP_RETRY_INDEX is missing, an older API server,
    # and then carries on without (backend/src/v2/component/launcher_v2.go retryIndexFromPodAnnotation).
    Call("any", "get", "", "pods", ANY_NAME, "not called"),
    Call("any", "patch", "", "pods", ANY_NAME, "not called"),
    Call("any", "get", "", "pods/log", ANY_NAME, "not called"),
    Call("any", "create", "", "pods/exec", ANY_NAME, "not called"),
    Call("any", "patch", "argoproj.io", "workflows", ANY_NAME, "the workflow controller's job"),
    Call("deploy step", "create", KSERVE, "inferenceservices", None, "the manifests create it"),
    Call("deploy step", "delete", KSERVE, "inferenceservices", ISVC_NAME, "never deleted"),
    Call("deploy step", "patch", KSERVE, "inferenceservices", "someone-elses-model", "one service only"),
    Call("deploy step", "patch", "apps", "deployments", ANY_NAME, "KServe owns the Deployment"),
    Call("any", "create", "rbac.authorization.k8s.io", "rolebindings", None, "no escalation"),
]


@pytest.fixture(scope="module")
def installs(tmp_path_factory) -> dict[str, tuple[list[dict], str]]:
    """Rendered objects and the namespace runs use: a profile's (mlco) and standalone KFP's."""
    found = {}
    for name, path in OVERLAYS.items():
        found[f"profile {name}"] = (kustomize(path), "mlco")
        found[f"standalone {name}"] = (kustomize_standalone(tmp_path_factory.mktemp(f"rbac-{name}"), name), "kubeflow")
    return found


def _applies_to(subject: dict, binding_namespace: str | None, namespace: str, account: str) -> bool:
    if subject["kind"] == "ServiceAccount":
        return (subject.get("namespace") or binding_namespace, subject["name"]) == (namespace, account)
    groups = {"system:serviceaccounts", f"system:serviceaccounts:{namespace}", "system:authenticated"}
    return subject["kind"] == "Group" and subject["name"] in groups


def _rule_allows(rule: dict, call: Call) -> bool:
    name = None if call.name in (None, ANY_NAME) else call.name
    names = rule.get("resourceNames") or []
    return (
        (call.verb in rule.get("verbs", []) or "*" in rule.get("verbs", []))
        and (call.group in rule.get("apiGroups", []) or "*" in rule.get("apiGroups", []))
        and (
            call.resource in rule.get("resources", [])
            or "*" in rule.get("resources", [])
            or ("/" in call.resource and f"*/{call.resource.split('/', 1)[1]}" in rule.get("resources", []))
        )
        and (not names or (name is not None and name in names))
    )


def granted_rules(docs: list[dict], namespace: str, account: str) -> list[dict]:
    """Every rule bound to the account for requests in ``namespace``."""
    roles = {(d["metadata"]["namespace"], d["metadata"]["name"]): d for d in of_kind(docs, "Role")}
    cluster_roles = {d["metadata"]["name"]: d for d in of_kind(docs, "ClusterRole")}
    rules = []
    bindings = [b for b in of_kind(docs, "RoleBinding") if b["metadata"]["namespace"] == namespace]
    for binding in bindings + of_kind(docs, "ClusterRoleBinding"):
        binding_namespace = binding["metadata"].get("namespace")
        if not any(_applies_to(s, binding_namespace, namespace, account) for s in binding.get("subjects", [])):
            continue
        ref = binding["roleRef"]
        role = roles.get((binding_namespace, ref["name"])) if ref["kind"] == "Role" else cluster_roles.get(ref["name"])
        rules += (role or {}).get("rules", [])
    return rules


def allowed(docs: list[dict], namespace: str, account: str, call: Call) -> bool:
    return any(_rule_allows(rule, call) for rule in granted_rules(docs, namespace, account))


@pytest.mark.parametrize("call", NEEDS, ids=lambda c: f"{c.pod}: {c.verb} {c.resource}")
def test_a_run_may_do_what_its_pods_need(installs, call):
    for install, (docs, namespace) in installs.items():
        assert allowed(docs, namespace, RUNNER, call), (
            f"{install}: {namespace}/{RUNNER} may not {call.verb} {call.resource} {call.name or ''}, which the"
            f" {call.pod} does ({call.source})"
        )


@pytest.mark.parametrize("call", NOT_NEEDED, ids=lambda c: f"{c.verb} {c.resource} {c.name or ''}")
def test_a_run_may_not_do_more(installs, call):
    for install, (docs, namespace) in installs.items():
        assert not allowed(docs, namespace, RUNNER, call), (
            f"{install}: {namespace}/{RUNNER} may {call.verb} {call.resource} {call.name or ''} ({call.source})"
        )


def test_every_granted_permission_is_needed(installs):
    """Least privilege: each verb x resource a rule grants is a row of NEEDS, and a rule without
    resourceNames is there because some row names no object, or one unknown in advance."""
    for install, (docs, namespace) in installs.items():
        for rule in granted_rules(docs, namespace, RUNNER):
            for field in ("verbs", "apiGroups", "resources", "resourceNames"):
                assert "*" not in rule.get(field, []), f"{install}: wildcard in {rule}"
            for verb in rule["verbs"]:
                for group in rule["apiGroups"]:
                    for resource in rule["resources"]:
                        rows = [c for c in NEEDS if (c.verb, c.group, c.resource) == (verb, group, resource)]
                        assert rows, f"{install}: {verb} {group}/{resource} is granted but no pod needs it"
                        if not rule.get("resourceNames"):
                            assert any(c.name in (None, ANY_NAME) for c in rows), (
                                f"{install}: {verb} {resource} is granted on every object, the pods name theirs"
                            )


def test_run_namespace_has_the_account_and_nothing_cluster_wide(installs):
    for install, (docs, namespace) in installs.items():
        account = one(docs, "ServiceAccount", RUNNER)
        assert account["metadata"]["namespace"] == namespace, install
        assert one(docs, "InferenceService", ISVC_NAME)["metadata"]["namespace"] == namespace, install
        # The one cluster-wide grant is the VPA recommender's (test_monitoring.py), to its own account.
        assert {d["metadata"]["name"] for d in of_kind(docs, "ClusterRole")} <= {RECOMMENDER}, install
        subjects = [s for b in of_kind(docs, "ClusterRoleBinding") for s in b["subjects"]]
        assert all((s["kind"], s["name"]) == ("ServiceAccount", RECOMMENDER) for s in subjects), install
        assert one(docs, "ServiceAccount", "mlco-predictor")["automountServiceAccountToken"] is False, install
        assert ISVC_NAME == settings.ISVC_NAME
