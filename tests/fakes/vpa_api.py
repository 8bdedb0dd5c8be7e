"""A Kubernetes API server on loopback for VerticalPodAutoscalers (``autoscaling.k8s.io/v1``) and their ``/status``.

It answers as the API server answers for a custom resource whose CRD enables the status subresource,
as far as a recommender can tell; each rule cites the upstream code it follows (kubernetes/kubernetes
``staging/src/k8s.io/``: apiextensions-apiserver ``pkg/registry/customresource/strategy.go`` and
``status_strategy.go``, apiserver ``pkg/registry/generic/registry/store.go``, ``pkg/registry/rest/update.go``
and ``pkg/endpoints/handlers/patch.go``, apimachinery ``pkg/api/errors/errors.go``). Bodies are pruned
and validated against the CRD's schema (``../shared/schemas/``, via ``tests/crd_schemas.py``); CEL rules
(``x-kubernetes-validations``) are not evaluated. Not served: watches, label and field selectors,
server-side apply. Requests need the kubeconfig's token.

The upstream recommender writes status as the JSON patch ``[{"op": "add", "path": "/status", ...}]`` on
``/status`` (kubernetes/autoscaler ``vertical-pod-autoscaler/pkg/utils/vpa/api.go``, ``UpdateVpaStatusIfNeeded``);
the Python client's ``patch_namespaced_custom_object_status`` sends a merge patch. The server lists every
VPA; a recommender keeps those whose ``spec.recommenders`` name it (``pkg/recommender/input/cluster_feeder.go``,
``filterVPAs``: only ``default`` also takes VPAs naming none).
"""

from __future__ import annotations

import copy
import itertools
import json
import threading
import uuid
from collections import namedtuple
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import jsonschema
import yaml

from crd_schemas import crd_schema
from fakes.kube_api import merge_patch
from fakes.loopback import LoopbackServer
from ml_cloud_optimizer.kube.names import RECOMMENDER_NAME

__all__ = ["API_VERSION", "FakeVpaApi", "Request", "json_patch", "prune", "vpa"]

GROUP, VERSION, PLURAL, KIND = "autoscaling.k8s.io", "v1", "verticalpodautoscalers", "VerticalPodAutoscaler"
API_VERSION = f"{GROUP}/{VERSION}"
TOKEN = "fake-vpa-token"
_PREFIX = f"/apis/{API_VERSION}/"
_RESOURCE = f"{PLURAL}.{GROUP}"
# ObjectMeta's fields (apimachinery pkg/apis/meta/v1/types.go); decoding drops any other key of metadata.
# fmt: off
_META = {"name", "generateName", "namespace", "selfLink", "uid", "resourceVersion", "generation", "creationTimestamp",
         "deletionTimestamp", "deletionGracePeriodSeconds", "labels", "annotations", "ownerReferences", "finalizers"}
# fmt: on
_JSON_TYPES = {bool: "boolean", int: "integer", float: "number", str: "string", list: "array", dict: "object"}
_PATCH_TYPES = ("application/json-patch+json", "application/merge-patch+json")
_UNAPPLIED = "the server rejected our request due to an error in our request"  # the Status keeps no detail
_CONFLICT = "the object has been modified; please apply your changes to the latest version and try again"
_REASONS = {400: "BadRequest", 401: "Unauthorized", 404: "NotFound", 405: "MethodNotAllowed", 409: "Conflict"}
_REASONS |= {415: "UnsupportedMediaType", 422: "Invalid", 429: "TooManyRequests", 503: "ServiceUnavailable"}

Request = namedtuple("Request", "method path content_type body")  # body: the parsed JSON, or None


class ApiError(Exception):
    """An answer other than success: its code and the ``Status`` object the API server sends with it."""

    def __init__(self, code: int, message: str, reason: str | None = None, details: dict | None = None) -> None:
        super().__init__(message)
        self.code = code
        reason = reason or _REASONS.get(code, "InternalError" if code >= 500 else "")
        self.status = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure"}
        self.status |= {"message": message, "reason": reason, "code": code}
        if details is not None:
            self.status["details"] = details


def _details(name: str, **more) -> dict:
    return {"name": name, "group": GROUP, "kind": PLURAL, **more}  # Kind holds the resource (errors.go)


def _conflict(name: str) -> ApiError:
    return ApiError(409, f'Operation cannot be fulfilled on {_RESOURCE} "{name}": {_CONFLICT}', details=_details(name))


def _invalid(name: str, errors: list[tuple[str, str, str]], kind: str = f"{KIND}.{GROUP}") -> ApiError:
    """``NewInvalid``: ``errors`` are (cause type, field, error body) as a ``field.Error`` holds them."""
    texts = list(dict.fromkeys(f"{path}: {body}" for _, path, body in errors))
    summary = texts[0] if len(texts) == 1 else "[" + ", ".join(texts) + "]"
    causes = [{"reason": t, "message": body, "field": path} for t, path, body in errors]
    details = {"name": name, "group": GROUP, "kind": kind.split(".")[0], "causes": causes}
    return ApiError(422, f'{kind} "{name}" is invalid: {summary}', details=details)


def _show(value) -> str:
    """A value as ``field.Error`` prints it: strings quoted, numbers and booleans bare."""
    return str(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else json.dumps(value)


def prune(value, schema: dict):
    """Drop what ``schema`` does not specify, as the API server's structural pruning does on decode."""
    if isinstance(value, list):
        return [prune(v, schema.get("items", {})) for v in value]
    if not isinstance(value, dict):
        return value
    props, extra = schema.get("properties") or {}, schema.get("additionalProperties")
    keep = isinstance(extra, dict) or schema.get("x-kubernetes-preserve-unknown-fields")
    return {
        k: prune(v, props[k]) if k in props else prune(v, extra) if isinstance(extra, dict) else v
        for k, v in value.items()
        if k in props or keep
    }


def _walk(doc, tokens: list[str]):
    for token in tokens:
        try:
            doc = doc[int(token)] if isinstance(doc, list) else doc[token]
        except (KeyError, IndexError, ValueError, TypeError):
            raise ApiError(422, _UNAPPLIED, details={}) from None
    return doc


def _slot(doc, tokens: list[str], adding: bool):
    """The container ``tokens`` ends in and the key or index there; an add may also name ``-``, the end of a list."""
    parent, last = _walk(doc, tokens[:-1]), tokens[-1] if tokens else ""
    if isinstance(parent, dict) and tokens and (adding or last in parent):
        return parent, last
    if isinstance(parent, list) and adding and last == "-":
        return parent, len(parent)
    if isinstance(parent, list) and last.isdigit() and int(last) < len(parent) + adding:
        return parent, int(last)
    raise ApiError(422, _UNAPPLIED, details={})


def json_patch(doc, operations: list[dict]):
    """A copy of ``doc`` with a JSON patch (RFC 6902) applied; an operation that does not apply is a 422 (patch.go)."""
    doc = copy.deepcopy(doc)
    for op in operations:
        kind, pointers = op.get("op"), [op.get("path", ""), op.get("from", "")]
        if any(p and p[0] != "/" for p in pointers) or (kind in ("add", "replace", "test") and "value" not in op):
            raise ApiError(422, _UNAPPLIED, details={})
        path, source = ([t.replace("~1", "/").replace("~0", "~") for t in p.split("/")[1:]] for p in pointers)
        value = copy.deepcopy(_walk(doc, source) if kind in ("move", "copy") else op.get("value"))
        if kind in ("remove", "replace", "move"):
            parent, key = _slot(doc, source if kind == "move" else path, adding=False)
            del parent[key]
        if kind in ("add", "replace", "move", "copy") and not path:
            doc = value
        elif kind in ("add", "replace", "move", "copy"):
            parent, key = _slot(doc, path, adding=True)
            if isinstance(parent, list):
                parent.insert(key, value)
            else:
                parent[key] = value
        elif kind not in ("remove", "test") or (kind == "test" and _walk(doc, path) != value):
            raise ApiError(422, _UNAPPLIED, details={})
    return doc


def vpa(namespace: str, name: str, target_kind: str = "Deployment", target_name: str | None = None,
        recommenders=(RECOMMENDER_NAME,), update_mode: str = "Off") -> dict:  # fmt: skip
    """A valid VPA of ``target_kind``/``target_name`` (default: ``name``) naming ``recommenders`` (none: left out)."""
    target = {"apiVersion": "apps/v1", "kind": target_kind, "name": target_name or name}
    spec: dict = {"targetRef": target, "updatePolicy": {"updateMode": update_mode}}
    if recommenders:
        spec["recommenders"] = [{"name": r} for r in recommenders]
    return {"apiVersion": API_VERSION, "kind": KIND, "metadata": {"name": name, "namespace": namespace}, "spec": spec}


class FakeVpaApi(LoopbackServer):
    """``with FakeVpaApi() as api: client = kubernetes.config.new_client_from_config(str(api.kubeconfig(tmp)))``."""

    def __init__(self) -> None:
        self.schema = crd_schema(KIND)  # fails the test, naming the path, when the CRD file is missing
        self._validator = jsonschema.Draft7Validator(self.schema)
        self.objects: dict[tuple[str, str], dict] = {}
        self.requests: list[Request] = []  # every request, as it came
        self._failures: list[int] = []
        self._versions = itertools.count(1)
        self._version = 0
        self._lock = threading.Lock()
        self._bind()  # and a shorter poll than serve_forever's 0.5 s, so that leaving the ``with`` is quick
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.02,), daemon=True)

    def kubeconfig(self, directory: Path, namespace: str = "default") -> Path:
        """Write a kubeconfig (a token user) that points at this server and return its path."""
        context = {"name": "fake", "context": {"cluster": "fake", "user": "fake", "namespace": namespace}}
        config = {"apiVersion": "v1", "kind": "Config", "contexts": [context], "current-context": "fake"}
        config |= {"clusters": [{"name": "fake", "cluster": {"server": self.url}}]}
        config |= {"users": [{"name": "fake", "user": {"token": TOKEN}}]}
        path = Path(directory) / "kubeconfig-vpa.yaml"
        path.write_text(yaml.safe_dump(config))
        return path

    def put(self, obj: dict) -> dict:
        """Store a new ``obj`` as if created (its ``status`` as if written since); returns the stored copy."""
        with self._lock:
            try:
                namespace = (obj.get("metadata") or {}).get("namespace") or "default"
                return copy.deepcopy(self._create(namespace, copy.deepcopy(obj), keep_status=True)[1])
            except ApiError as err:
                raise ValueError(err.status["message"]) from None

    def get(self, namespace: str, name: str) -> dict:
        """The stored object (a copy); KeyError when there is none."""
        with self._lock:
            return copy.deepcopy(self.objects[(namespace, name)])

    def fail_status_writes(self, code: int = 500, times: int = 1) -> None:
        """Answer the next ``times`` PUTs/PATCHes of ``/status`` with ``code`` and its Status, storing nothing."""
        with self._lock:
            self._failures.extend([code] * times)

    def status_writes(self) -> list[Request]:
        """The PUT and PATCH requests on ``.../status``, in order."""
        return [r for r in self.requests if r.method in ("PUT", "PATCH") and r.path.endswith("/status")]

    def _next(self) -> str:
        self._version = next(self._versions)
        return str(self._version)

    def _decode(self, obj) -> dict:
        """What decoding does to a body: unknown fields pruned, metadata down to ObjectMeta's fields."""
        if not isinstance(obj, dict) or not isinstance(obj.get("metadata", {}), dict):
            raise ApiError(400, f"the body of the request is not a {KIND}: {str(obj)[:80]}")
        meta = {k: v for k, v in obj.get("metadata", {}).items() if k in _META}
        return {**prune({k: v for k, v in obj.items() if k != "metadata"}, self.schema), "metadata": meta}

    def _field_errors(self, obj: dict) -> list[tuple[str, str, str]]:
        """Schema violations as (cause type, field, error body), as ``kubeOpenAPIResultToFieldErrors`` has them."""
        out = []
        for e in sorted(self._validator.iter_errors(obj), key=lambda e: [str(p) for p in e.absolute_path]):
            path = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in e.absolute_path).lstrip(".")
            rule, where = e.validator_value, f"Invalid value: {_show(e.instance)}: {path} in body"
            if e.validator == "required":
                missing = [k for k in rule if k not in e.instance]
                out += [("FieldValueRequired", f"{path}.{k}".lstrip("."), "Required value") for k in missing]
            elif e.validator == "enum":
                allowed = ", ".join(json.dumps(v) for v in rule)
                body = f"Unsupported value: {_show(e.instance)}: supported values: {allowed}"
                out.append(("FieldValueNotSupported", path, body))
            elif e.validator in ("type", "anyOf"):  # anyOf: the int-or-string quantities
                got = _JSON_TYPES.get(type(e.instance), "null")
                want = rule if e.validator == "type" else "integer,string"
                out.append(("FieldValueTypeInvalid", path, f'{where} must be of type {want}: "{got}"'))
            else:
                text = {"pattern": f"should match '{rule}'", "minimum": f"should be greater than or equal to {rule}"}
                out.append(("FieldValueInvalid", path, f"{where} {text.get(e.validator, e.message)}"))
        return out

    def _check_body(self, obj: dict, namespace: str, name: str | None) -> None:
        """A body against its URL: namespace as rest ``update.go`` ``BeforeUpdate``, name as handlers ``update.go``."""
        if (obj.get("apiVersion"), obj.get("kind")) != (API_VERSION, KIND):
            got = f"{obj.get('apiVersion')}, Kind={obj.get('kind')}"
            raise ApiError(400, f"the API version in the data ({got}) does not match the expected API version")
        meta = obj["metadata"]
        if meta.setdefault("namespace", namespace) != namespace:
            raise ApiError(400, "the namespace of the provided object does not match the namespace sent on the request")
        if name is not None and (got := meta.get("name")) != name:
            raise ApiError(400, f"the name of the object ({got}) does not match the name on the URL ({name})")

    def _create(self, namespace: str, body, keep_status: bool = False) -> tuple[int, dict]:
        obj = self._decode(body)
        self._check_body(obj, namespace, None)
        meta, name = obj["metadata"], obj["metadata"].get("name", "")
        if meta.get("resourceVersion"):
            raise ApiError(500, "resourceVersion should not be set on objects to be created")
        if not name:
            raise _invalid("", [("FieldValueRequired", "metadata.name", "Required value: name is required")])
        status = obj.pop("status", None)  # strategy.go PrepareForCreate: create cannot set status
        obj |= {"status": status} if keep_status and status is not None else {}
        now = datetime.now(timezone.utc)
        meta.update(generation=1, uid=str(uuid.uuid4()), creationTimestamp=f"{now:%Y-%m-%dT%H:%M:%SZ}")
        if errors := self._field_errors(obj):
            raise _invalid(name, errors)
        if (namespace, name) in self.objects:
            raise ApiError(409, f'{_RESOURCE} "{name}" already exists', "AlreadyExists", _details(name))
        meta["resourceVersion"] = self._next()
        self.objects[(namespace, name)] = obj
        return 201, obj

    def _update(self, old: dict, new: dict, status: bool) -> dict:
        """store.go ``Update``: the resourceVersion check, update.go ``BeforeUpdate`` with a strategy, the write."""
        name, meta, old_meta = old["metadata"]["name"], new["metadata"], old["metadata"]
        if meta.get("resourceVersion") != old_meta["resourceVersion"]:
            raise _conflict(name)
        if status:  # statusStrategy.PrepareForUpdate: the stored object, with the new status or none
            had, value = "status" in new, new.get("status")
            new = {k: copy.deepcopy(v) for k, v in old.items() if k != "status"}
            if had:
                new["status"] = value
        else:  # customResourceStrategy.PrepareForUpdate, then BeforeUpdate's metadata rules
            new = {k: v for k, v in new.items() if k != "status"}
            if "status" in old:
                new["status"] = copy.deepcopy(old["status"])
            changed = any(new.get(k) != old.get(k) for k in set(new) | set(old) if k != "metadata")
            meta["generation"] = old_meta["generation"] + changed
            if meta.setdefault("uid", old_meta["uid"]) != old_meta["uid"]:
                body = f"Invalid value: {_show(meta['uid'])}: field is immutable"
                raise _invalid(name, [("FieldValueInvalid", "metadata.uid", body)])
            meta["creationTimestamp"] = old_meta["creationTimestamp"]
        if errors := self._field_errors(new):
            raise _invalid(name, errors)
        if new == old:  # nothing changed, nothing is written: the resourceVersion stays (etcd3 GuaranteedUpdate)
            return old
        new["metadata"]["resourceVersion"] = self._next()
        self.objects[(old_meta["namespace"], name)] = new
        return new

    def _route(self, method: str, path: str, query: dict, ctype: str, body) -> tuple[int, dict]:
        parts = path[len(_PREFIX) :].split("/") if path.startswith(_PREFIX) else []
        if parts == [PLURAL] and method == "GET":
            return 200, self._list(None, query)
        if len(parts) < 3 or parts[0] != "namespaces" or parts[2] != PLURAL or parts[4:] not in ([], ["status"]):
            raise ApiError(404, "the server could not find the requested resource")
        namespace, name, sub = parts[1], (parts[3:4] or [None])[0], (parts[4:5] or [None])[0]
        allowed = ("GET", "POST") if name is None else ("GET", "PUT", "PATCH") + (() if sub else ("DELETE",))
        if method not in allowed:
            raise ApiError(405, f'{method.lower()} is not supported on resources of kind "{_RESOURCE}"')
        if name is None:
            return (200, self._list(namespace, query)) if method == "GET" else self._create(namespace, body)
        media = ctype.split(";")[0].strip()
        if method == "PATCH" and media not in _PATCH_TYPES:  # apply-patch+yaml is served upstream, not here
            accepted = ", ".join((*_PATCH_TYPES, "application/apply-patch+yaml"))
            message = f"the body of the request was in an unknown format - accepted media types include: {accepted}"
            raise ApiError(415, message)
        if sub and method != "GET" and self._failures:
            code = self._failures.pop(0)
            raise _conflict(name) if code == 409 else ApiError(code, f"Internal error occurred: injected ({code})")
        old = self.objects.get((namespace, name))
        if old is None:
            raise ApiError(404, f'{_RESOURCE} "{name}" not found', details=_details(name))
        if method == "GET":
            return 200, old
        if method == "DELETE":  # no ReturnDeletedObject: a Success Status (store.go, finalizeDelete)
            del self.objects[(namespace, name)]
            details = _details(name, uid=old["metadata"]["uid"])
            return 200, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": details}
        new = self._decode(body if method == "PUT" else self._patch(old, media, body))
        self._check_body(new, namespace, name)
        if method == "PATCH":  # the patched object carries the stored resourceVersion unless the patch set one
            new["metadata"].setdefault("resourceVersion", old["metadata"]["resourceVersion"])
        elif not new["metadata"].get("resourceVersion"):  # a custom resource allows no unconditional update
            body = "Invalid value: 0x0: must be specified for an update"
            raise _invalid(name, [("FieldValueInvalid", "metadata.resourceVersion", body)], kind=_RESOURCE)
        return 200, self._update(old, new, status=sub == "status")

    @staticmethod
    def _patch(old: dict, media: str, body):
        """patch.go ``applyJSPatch``: a malformed patch is 400, one that does not apply 422."""
        if media == "application/merge-patch+json":
            if not isinstance(body, dict):
                raise ApiError(400, "Invalid JSON Patch")
            return merge_patch(old, body)
        if not isinstance(body, list) or not all(isinstance(op, dict) for op in body):
            raise ApiError(400, "json: cannot unmarshal object into Go value of type jsonpatch.Patch")
        return json_patch(old, body)

    def _list(self, namespace: str | None, query: dict) -> dict:
        if any(query.get(k, [""])[0] not in ("", "false", "0") for k in ("watch", "labelSelector", "fieldSelector")):
            raise ApiError(400, "this fake serves no watches and no label or field selectors")
        items = [o for (ns, _), o in sorted(self.objects.items()) if namespace in (None, ns)]
        metadata = {"resourceVersion": str(self._version)}
        return {"apiVersion": API_VERSION, "kind": f"{KIND}List", "metadata": metadata, "items": items}

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
                    try:
                        body = json.loads(raw) if raw else None
                    except ValueError:
                        body = raw.decode(errors="replace")
                    fake.requests.append(Request(self.command, url.path, ctype, copy.deepcopy(body)))
                    try:
                        if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                            raise ApiError(401, "Unauthorized")
                        if isinstance(body, str):
                            raise ApiError(400, f"the request body is not JSON: {body[:80]}")
                        status, payload = fake._route(self.command, url.path, parse_qs(url.query), ctype, body)
                    except ApiError as err:
                        status, payload = err.code, err.status
                    data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _serve

        return Handler
