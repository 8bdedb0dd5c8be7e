"""A small Kubernetes API server on loopback for the kserve SDK: InferenceServices and their predictor Deployments.

It plays three parts, each only as far as the deploy step can tell them apart:

* the API server: ``ml_cloud_optimizer.serving.kserve.io/v1beta1`` InferenceServices (get, list, create, JSON merge
  patch, delete) and ``apps/v1`` Deployments (get, list with an equality label selector).
  Any change outside ``metadata`` bumps an InferenceService's ``metadata.generation``
  (apiextensions-apiserver ``pkg/registry/customresource/strategy.go``, ``PrepareForUpdate``);
* KServe's controller in Standard (raw) mode: one Deployment ``<name>-predictor`` per
  InferenceService, labelled ``ml_cloud_optimizer.serving.kserve.io/inferenceservice=<name>`` and
  ``component=predictor``, whose pod template carries the predictor's ``storageUri`` in the
  annotation ``internal.serving.kserve.io/storage-initializer-sourceuri`` (kserve
  ``pkg/controller/v1beta1/inferenceservice/components/predictor.go``, ``buildObjectMeta``,
  ``addStorageInitializerAnnotations``; the ``app`` label and selector from
  ``pkg/controller/v1beta1/inferenceservice/reconcilers/deployment/deployment_reconciler.go``).
  The InferenceService's ``status.observedGeneration`` is copied from the Deployment and its
  Ready condition follows the Deployment's Available/Progressing conditions (kserve
  ``pkg/apis/serving/v1beta1/inference_service_status.go``, ``PropagateRawStatus``), so it stays
  True while old pods serve during a rolling update;
* the Deployment controller: a changed template bumps the Deployment's generation, and the
  rollout then takes several polls: the spec is observed, a surge pod runs the new template,
  all replicas are updated while the old one terminates, and finally all are available.
  A predictor without a model (no ``storageUri``: our server exits) or, with
  ``become_ready=False``, any new pod never becomes available; after ``progress_deadline_polls``
  stuck polls the Deployment reports ``ProgressDeadlineExceeded`` as the controller does.

The world moves one step after each read (a GET is a client's poll), and KServe's controller
reacts to a write only at the next step, so the first read after a patch still shows the old
Deployment, fully rolled out, as a real cluster may. ``apply`` does what ``kubectl apply`` does
for a custom resource (see its docstring). Requests are recorded so tests can tell writes apart.
"""

from __future__ import annotations

import copy
import itertools
import json
import threading
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import yaml

from fakes.loopback import LoopbackServer

__all__ = ["LAST_APPLIED", "FakeKubeApi", "base_inference_service", "merge_patch", "serving", "three_way_merge_patch"]

ROOT = Path(__file__).resolve().parents[2]
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
SOURCE_URI = "internal.serving.kserve.io/storage-initializer-sourceuri"
ISVC_LABEL = "serving.kserve.io/inferenceservice"

_ISVC_PREFIX = "/apis/serving.kserve.io/v1beta1/namespaces/"
_DEPLOY_PREFIX = "/apis/apps/v1/namespaces/"


# ---------------------------------------------------------------------------- JSON merge patches


def merge_patch(target, patch):
    """Apply a JSON merge patch (RFC 7386) to ``target`` and return the result."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def _create_merge_patch(a: dict, b: dict) -> dict:
    """The merge patch that turns ``a`` into ``b`` (evanphx/json-patch ``merge.go``, ``getDiff``)."""
    into = {}
    for key, bv in b.items():
        if key not in a or type(a[key]) is not type(bv):
            into[key] = bv
        elif isinstance(bv, dict):
            sub = _create_merge_patch(a[key], bv)
            if sub:
                into[key] = sub
        elif a[key] != bv:
            into[key] = bv  # scalars and lists: lists are replaced whole
    for key in a:
        if key not in b:
            into[key] = None
    return into


def _keep_or_delete_null(patch: dict, keep_null: bool) -> dict:
    """apimachinery ``pkg/util/jsonmergepatch/patch.go``, ``keepOrDeleteNullInObj``."""
    out = {}
    for key, value in patch.items():
        if value is None:
            if keep_null:
                out[key] = None
        elif isinstance(value, dict):
            if not value:  # an explicitly empty map is a value, not an empty patch
                if not keep_null:
                    out[key] = value
                continue
            sub = _keep_or_delete_null(value, keep_null)
            if sub:
                out[key] = sub
        elif not keep_null:
            out[key] = value
    return out


def three_way_merge_patch(original: dict, modified: dict, current: dict) -> dict:
    """kubectl apply's patch for a custom resource (apimachinery ``CreateThreeWayJSONMergePatch``).

    Additions and changes come from ``current`` -> ``modified`` (what the file sets is
    overwritten), deletions only from ``original`` -> ``modified`` (a field leaves the object
    only when the last applied file had it and this one has not); a field neither file sets
    is not in the patch, so whoever else set it keeps it.
    """
    add_and_change = _keep_or_delete_null(_create_merge_patch(current, modified), keep_null=False)
    deletions = _keep_or_delete_null(_create_merge_patch(original, modified), keep_null=True)
    return merge_patch(deletions, add_and_change)


# ---------------------------------------------------------------------------- test data


def base_inference_service() -> dict:
    """manifests/base/inferenceservice.yaml as a dict (namespace unset)."""
    return yaml.safe_load((ROOT / "manifests" / "base" / "inferenceservice.yaml").read_text())


def serving(isvc: dict, candidate) -> dict:
    """A copy of ``isvc`` that serves ``candidate`` as a finished rollout of the deploy step leaves it."""
    from ml_cloud_optimizer.components._deploy import champion_annotations

    result = copy.deepcopy(isvc)
    result["spec"]["predictor"]["model"]["storageUri"] = candidate.storage_uri
    result.setdefault("metadata", {}).setdefault("annotations", {}).update(champion_annotations(candidate))
    return result


# ---------------------------------------------------------------------------- the server


class FakeKubeApi(LoopbackServer):
    """Start with ``with FakeKubeApi() as kube: KServeClient(config_file=kube.kubeconfig(tmp))``."""

    def __init__(self, *, become_ready: bool = True, progress_deadline_polls: int | None = None) -> None:
        self.become_ready = become_ready
        self.progress_deadline_polls = progress_deadline_polls
        self.objects: dict[tuple[str, str], dict] = {}  # InferenceServices
        self.deployments: dict[tuple[str, str], dict] = {}
        self.requests: list[tuple[str, str, str]] = []  # (method, path, content type)
        self.history: list[tuple[str, dict, dict | None]] = []  # (method, InferenceService, its Deployment) per write
        self._stale: set[tuple[str, str]] = set()  # InferenceServices KServe has not reconciled yet
        self._rollouts: dict[tuple[str, str], dict] = {}
        self._versions = itertools.count(1)
        self._lock = threading.Lock()
        self._bind()

    def kubeconfig(self, directory: Path, namespace: str = "default") -> Path:
        """Write a kubeconfig that points at this server and return its path."""
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "fake", "cluster": {"server": self.url}}],
            "users": [{"name": "fake", "user": {"token": "fake-token"}}],
            "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake", "namespace": namespace}}],
            "current-context": "fake",
        }
        path = Path(directory) / "kubeconfig.yaml"
        path.write_text(yaml.safe_dump(config))
        return path

    # -- helpers for tests (not requests; not recorded) ---------------------------------------

    def put(self, obj: dict, namespace: str | None = None) -> dict:
        """Store an InferenceService as if it had been created long ago: its predictor fully rolled out."""
        obj = copy.deepcopy(obj)
        meta = obj.setdefault("metadata", {})
        meta["namespace"] = namespace or meta.get("namespace") or "default"
        with self._lock:
            self._store_new(obj)
            become_ready, self.become_ready = self.become_ready, True  # its pods came up, back then
            try:
                for _ in range(8):
                    self._step()
            finally:
                self.become_ready = become_ready
            return self.objects[(meta["namespace"], meta["name"])]

    def apply(self, manifest: dict, namespace: str) -> dict:
        """``kubectl apply`` of ``manifest``: create it, or patch it by kubectl's three-way merge.

        As kubectl ``pkg/cmd/apply/patcher.go`` does for a type it has no Go struct for (a CRD):
        the previous file is read from the ``kubectl.kubernetes.io/last-applied-configuration``
        annotation, the patch is ``three_way_merge_patch(previous, this file, live)`` sent as a
        JSON merge patch, and this file (kubectl ``pkg/util/apply.go``,
        ``GetModifiedConfiguration``) becomes the new annotation.
        """
        modified = copy.deepcopy(manifest)
        meta = modified.setdefault("metadata", {})
        meta["namespace"] = namespace
        annotations = meta.setdefault("annotations", {})
        annotations.pop(LAST_APPLIED, None)
        annotations[LAST_APPLIED] = json.dumps(
            {
                **modified,
                "metadata": {**meta, "annotations": {k: v for k, v in annotations.items() if k != LAST_APPLIED}},
            },
            sort_keys=True,
        )
        key = (namespace, meta["name"])
        with self._lock:
            if key not in self.objects:
                status, body = self._route("POST", f"{_ISVC_PREFIX}{namespace}/inferenceservices", modified)
            else:
                current = self.objects[key]
                original = json.loads((current["metadata"].get("annotations") or {}).get(LAST_APPLIED) or "{}")
                patch = three_way_merge_patch(original, modified, current)
                status, body = self._route(
                    "PATCH", f"{_ISVC_PREFIX}{namespace}/inferenceservices/{meta['name']}", patch
                )
        assert status < 300, body
        return body

    def writes(self) -> list[str]:
        """Methods of the write requests received, in order (e.g. ``["PATCH", "PATCH"]``)."""
        return [m for m, _, _ in self.requests if m in ("POST", "PATCH", "PUT", "DELETE")]

    def predictor(self, namespace: str, name: str) -> dict:
        """The predictor Deployment KServe runs for InferenceService ``name``."""
        return self.deployments[(namespace, f"{name}-predictor")]

    def autoscale(self, namespace: str, name: str, replicas: int) -> None:
        """The HPA resizes the predictor: a spec change, so the Deployment's generation moves on (not the
        InferenceService's)."""
        with self._lock:
            deployment = self.predictor(namespace, name)
            deployment["spec"]["replicas"] = replicas
            deployment["metadata"]["generation"] += 1
            deployment["status"].update(
                observedGeneration=deployment["metadata"]["generation"],
                replicas=replicas,
                updatedReplicas=replicas,
                availableReplicas=replicas,
                readyReplicas=replicas,
            )
            self._propagate_status((namespace, name))

    # -- the API server -------------------------------------------------------------------------

    def _store_new(self, obj: dict) -> dict:
        meta = obj.setdefault("metadata", {})
        meta["generation"] = 1
        meta["resourceVersion"] = str(next(self._versions))
        meta.setdefault("uid", f"uid-{meta['resourceVersion']}")
        obj.pop("status", None)
        key = (meta["namespace"], meta["name"])
        self.objects[key] = obj
        self._stale.add(key)
        return obj

    def _route(self, method: str, path: str, body, query: dict | None = None) -> tuple[int, dict]:
        if path.startswith(_DEPLOY_PREFIX):
            return self._route_deployments(method, path, query or {})
        if not path.startswith(_ISVC_PREFIX):
            return 404, _status(404, f"no route for {path}")
        parts = path[len(_ISVC_PREFIX) :].split("/")
        if len(parts) < 2 or parts[1] != "inferenceservices":
            return 404, _status(404, f"no route for {path}")
        namespace, name = parts[0], (parts[2] if len(parts) > 2 else None)
        key = (namespace, name)
        if method == "GET" and name is None:
            items = [o for (ns, _), o in self.objects.items() if ns == namespace]
            return 200, {"apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceServiceList", "items": items}
        if method == "GET":
            if key not in self.objects:
                return 404, _status(404, f'inferenceservices.serving.kserve.io "{name}" not found')
            return 200, self.objects[key]
        if method == "POST":
            obj = copy.deepcopy(body)
            obj.setdefault("metadata", {})["namespace"] = namespace
            if (namespace, obj["metadata"].get("name")) in self.objects:
                return 409, _status(
                    409, f'inferenceservices.serving.kserve.io "{obj["metadata"]["name"]}" already exists'
                )
            if obj.get("kind") != "InferenceService" or "predictor" not in obj.get("spec", {}):
                return 422, _status(422, "InferenceService needs kind and spec.predictor")
            stored = self._store_new(obj)
            self.history.append(("POST", copy.deepcopy(stored), None))
            return 201, stored
        if method == "PATCH":
            if key not in self.objects:
                return 404, _status(404, f'inferenceservices.serving.kserve.io "{name}" not found')
            current = self.objects[key]
            patched = merge_patch(current, {k: v for k, v in body.items() if k != "status"})
            meta = patched["metadata"]
            meta["resourceVersion"] = str(next(self._versions))
            if {k: v for k, v in patched.items() if k != "metadata"} != {
                k: v for k, v in current.items() if k != "metadata"
            }:
                meta["generation"] = current["metadata"]["generation"] + 1
                self._stale.add(key)
            self.objects[key] = patched
            deployment = self.deployments.get((namespace, f"{name}-predictor"))
            self.history.append(("PATCH", copy.deepcopy(patched), copy.deepcopy(deployment)))
            return 200, patched
        if method == "DELETE":
            if self.objects.pop(key, None) is None:
                return 404, _status(404, f'inferenceservices.serving.kserve.io "{name}" not found')
            return 200, _status(200, "deleted")
        return 405, _status(405, f"{method} not supported")

    def _route_deployments(self, method: str, path: str, query: dict) -> tuple[int, dict]:
        parts = path[len(_DEPLOY_PREFIX) :].split("/")
        if len(parts) < 2 or parts[1] != "deployments":
            return 404, _status(404, f"no route for {path}")
        if method != "GET":
            return 405, _status(405, f"{method} on deployments: the deploy step only reads them")
        namespace, name = parts[0], (parts[2] if len(parts) > 2 else None)
        if name is not None:
            found = self.deployments.get((namespace, name))
            if found is None:
                return 404, _status(404, f'deployments.apps "{name}" not found')
            return 200, found
        try:
            wanted = _parse_selector((query.get("labelSelector") or [""])[0])
        except ValueError as exc:
            return 400, _status(400, str(exc))
        items = [
            d
            for (ns, _), d in sorted(self.deployments.items())
            if ns == namespace and all(d["metadata"].get("labels", {}).get(k) == v for k, v in wanted.items())
        ]
        return 200, {
            "apiVersion": "apps/v1",
            "kind": "DeploymentList",
            "metadata": {"resourceVersion": str(next(self._versions))},
            "items": items,
        }

    # -- KServe's controller and the Deployment controller -----------------------------------

    def _step(self) -> None:
        """One step of the world: KServe reconciles what changed since, or a rollout moves on."""
        for key in sorted(self._stale):
            self._reconcile(key)
        self._stale.clear()
        for key in list(self.deployments):
            self._progress(key)
        for key in self.objects:
            self._propagate_status(key)

    def _reconcile(self, key: tuple[str, str]) -> None:
        """KServe: make the predictor Deployment match the InferenceService."""
        isvc = self.objects.get(key)
        if isvc is None:
            return
        namespace, name = key
        predictor = isvc["spec"]["predictor"]
        model = predictor.get("model") or {}
        deployment_name = f"{name}-predictor"
        labels = {
            **(isvc["metadata"].get("labels") or {}),
            **(predictor.get("labels") or {}),
            ISVC_LABEL: name,
            "component": "predictor",
        }
        template_annotations = dict(predictor.get("annotations") or {})
        if model.get("storageUri"):
            template_annotations[SOURCE_URI] = model["storageUri"]
        container = {"name": "kserve-container", "image": f"runtime/{model.get('runtime', '')}"}
        for field in ("args", "envFrom", "resources", "volumeMounts", "securityContext"):
            if field in model:
                container[field] = copy.deepcopy(model[field])
        template = {
            "metadata": {"labels": {**labels, "app": f"isvc.{deployment_name}"}, "annotations": template_annotations},
            "spec": {"containers": [container], "volumes": copy.deepcopy(predictor.get("volumes", []))},
        }
        replicas = predictor.get("minReplicas", 1)
        dkey = (namespace, deployment_name)
        existing = self.deployments.get(dkey)
        if existing is None:
            self.deployments[dkey] = {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {
                    "name": deployment_name,
                    "namespace": namespace,
                    "labels": labels,
                    "generation": 1,
                    "resourceVersion": str(next(self._versions)),
                    "uid": f"uid-{deployment_name}",
                },
                "spec": {
                    "replicas": replicas,
                    "selector": {"matchLabels": {"app": f"isvc.{deployment_name}"}},
                    "template": template,
                },
                "status": {"observedGeneration": 0},
            }
            self._rollouts[dkey] = {"old": 0, "old_available": 0, "stage": 0, "stuck": 0}
        elif existing["spec"]["template"] != template:  # replicas are the HPA's once the Deployment exists
            status = existing["status"]
            existing["spec"]["template"] = template
            existing["metadata"]["generation"] += 1
            existing["metadata"]["resourceVersion"] = str(next(self._versions))
            self._rollouts[dkey] = {
                "old": status.get("replicas", 0),
                "old_available": status.get("availableReplicas", 0),
                "stage": 0,
                "stuck": 0,
            }

    def _progress(self, key: tuple[str, str]) -> None:
        """The Deployment controller moves a rollout one step on."""
        deployment, rollout = self.deployments[key], self._rollouts[key]
        status, n = deployment["status"], deployment["spec"]["replicas"]
        healthy = self.become_ready and SOURCE_URI in deployment["spec"]["template"]["metadata"]["annotations"]
        progressing = ("True", "ReplicaSetUpdated")
        if status.get("observedGeneration", 0) < deployment["metadata"]["generation"]:
            status["observedGeneration"] = deployment["metadata"]["generation"]
            surge = 1 if rollout["old"] else n
            status.update(
                replicas=rollout["old"] + surge, updatedReplicas=surge, availableReplicas=rollout["old_available"]
            )
            rollout["stage"] = 1
        elif rollout["stage"] == 1 and rollout["old"]:
            status.update(replicas=rollout["old"] + 1, updatedReplicas=n)  # the last old pod is terminating
            rollout["stage"] = 2
        elif rollout["stage"] in (1, 2) and not healthy:
            rollout["stuck"] += 1
            if self.progress_deadline_polls is not None and rollout["stuck"] >= self.progress_deadline_polls:
                progressing = ("False", "ProgressDeadlineExceeded")
        elif rollout["stage"] in (1, 2):
            status.update(replicas=n, updatedReplicas=n, availableReplicas=n)
            rollout["stage"] = 3
        if rollout["stage"] == 3:
            progressing = ("True", "NewReplicaSetAvailable")
        available = status.get("availableReplicas", 0) >= n
        status["readyReplicas"] = status.get("availableReplicas", 0)
        status["conditions"] = [
            {
                "type": "Available",
                "status": "True" if available else "False",
                "reason": "MinimumReplicasAvailable" if available else "MinimumReplicasUnavailable",
            },
            {
                "type": "Progressing",
                "status": progressing[0],
                "reason": progressing[1],
                "message": f'ReplicaSet "{key[1]}" {"has timed out " if progressing[0] == "False" else ""}progressing',
            },
        ]

    def _propagate_status(self, key: tuple[str, str]) -> None:
        """KServe ``PropagateRawStatus``: Ready and observedGeneration come from the predictor Deployment."""
        isvc = self.objects[key]
        deployment = self.deployments.get((key[0], f"{key[1]}-predictor"))
        if deployment is None:
            return
        conditions = {c["type"]: c for c in deployment["status"].get("conditions", [])}
        ready = (
            conditions.get("Available", {}).get("status") == "True"
            and conditions.get("Progressing", {}).get("status") != "False"
        )
        status = {
            "observedGeneration": deployment["status"].get("observedGeneration", 0),
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True" if ready else "False",
                    "reason": conditions.get("Progressing", {}).get("reason", ""),
                }
            ],
        }
        if ready:
            status["url"] = f"http://{key[1]}.{key[0]}.example.com"
        isvc["status"] = status

    def _handler_class(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def _serve(self) -> None:
                url = urlsplit(self.path)
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                ctype = self.headers.get("Content-Type", "")
                with fake._lock:
                    fake.requests.append((self.command, url.path, ctype))
                    if self.command == "PATCH" and ctype != "application/merge-patch+json":
                        status, payload = 415, _status(415, f"this fake only takes merge patches, not {ctype}")
                    else:
                        status, payload = fake._route(
                            self.command, url.path, json.loads(raw) if raw else None, parse_qs(url.query)
                        )
                    data = json.dumps(payload).encode()
                    if self.command == "GET":
                        fake._step()  # after the answer: what a client polls for moves on between polls
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _serve

        return Handler


def _parse_selector(text: str) -> dict[str, str]:
    """Equality-based label selectors, ``k=v`` or ``k==v`` joined by commas (apimachinery's labels/selector.go)."""
    wanted = {}
    for term in filter(None, (t.strip() for t in text.split(","))):
        key, sep, value = term.partition("==") if "==" in term else term.partition("=")
        if not sep or "!" in key or not key:
            raise ValueError(f"this fake takes only equality selectors, not {term!r}")
        wanted[key.strip()] = value.strip()
    return wanted


def _status(code: int, message: str) -> dict:
    reason = {
        400: "BadRequest",
        404: "NotFound",
        405: "MethodNotAllowed",
        409: "AlreadyExists",
        415: "UnsupportedMediaType",
        422: "Invalid",
    }.get(code, "")
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure" if code >= 400 else "Success",
        "message": message,
        "reason": reason,
        "code": code,
    }
