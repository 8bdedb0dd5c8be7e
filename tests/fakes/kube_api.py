"""A small Kubernetes API server for InferenceService objects, on loopback, for the kserve SDK.

It stores ``serving.kserve.io/v1beta1`` InferenceServices in memory and behaves like the API
server plus a very quick KServe controller: create gives ``generation`` 1, a patch that changes
the spec bumps it (JSON merge patch, RFC 7386), and the controller then reports ``Ready`` with
a URL for the new generation (or stays not-ready when told, to test timeouts). Requests are
recorded so tests can tell a create from a patch from no write at all.
"""

from __future__ import annotations

import copy
import itertools
import json
import threading
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from urllib.parse import urlsplit

import yaml

from fakes.loopback import LoopbackServer

__all__ = ["FakeKubeApi", "merge_patch"]

_ISVC_PREFIX = "/apis/serving.kserve.io/v1beta1/namespaces/"


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


class FakeKubeApi(LoopbackServer):
    """Start with ``with FakeKubeApi() as kube: KServeClient(config_file=kube.kubeconfig(tmp))``."""

    def __init__(self, *, become_ready: bool = True) -> None:
        self.become_ready = become_ready
        self.objects: dict[tuple[str, str], dict] = {}
        self.requests: list[tuple[str, str, str]] = []  # (method, path, content type)
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

    def put(self, obj: dict) -> dict:
        """Store an object as if it had been applied earlier (and reconciled)."""
        with self._lock:
            stored = self._store_new(copy.deepcopy(obj))
        return stored

    def writes(self) -> list[str]:
        """Methods of the write requests received, in order (e.g. ``["POST"]``)."""
        return [m for m, _, _ in self.requests if m in ("POST", "PATCH", "PUT", "DELETE")]

    # -- API behaviour --------------------------------------------------------------------

    def _store_new(self, obj: dict) -> dict:
        meta = obj.setdefault("metadata", {})
        meta["generation"] = 1
        meta["resourceVersion"] = str(next(self._versions))
        meta.setdefault("uid", f"uid-{meta['resourceVersion']}")
        self._reconcile(obj)
        self.objects[(meta["namespace"], meta["name"])] = obj
        return obj

    def _reconcile(self, obj: dict) -> None:
        meta = obj["metadata"]
        if not self.become_ready:
            obj["status"] = {"observedGeneration": meta["generation"],
                             "conditions": [{"type": "Ready", "status": "False", "reason": "Pending"}]}
            return
        obj["status"] = {
            "observedGeneration": meta["generation"],
            "url": f"http://{meta['name']}.{meta['namespace']}.example.com",
            "conditions": [{"type": "Ready", "status": "True"}],
        }

    def _route(self, method: str, path: str, body) -> tuple[int, dict]:
        if not path.startswith(_ISVC_PREFIX):
            return 404, _status(404, f"no route for {path}")
        parts = path[len(_ISVC_PREFIX):].split("/")
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
                return 409, _status(409, f'inferenceservices.serving.kserve.io "{obj["metadata"]["name"]}" already exists')
            if obj.get("kind") != "InferenceService" or "predictor" not in obj.get("spec", {}):
                return 422, _status(422, "InferenceService needs kind and spec.predictor")
            return 201, self._store_new(obj)
        if method == "PATCH":
            if key not in self.objects:
                return 404, _status(404, f'inferenceservices.serving.kserve.io "{name}" not found')
            current = self.objects[key]
            patched = merge_patch(current, body)
            meta = patched["metadata"]
            meta["resourceVersion"] = str(next(self._versions))
            if patched.get("spec") != current.get("spec"):
                meta["generation"] = current["metadata"]["generation"] + 1
            self._reconcile(patched)
            self.objects[key] = patched
            return 200, patched
        if method == "DELETE":
            if self.objects.pop(key, None) is None:
                return 404, _status(404, f'inferenceservices.serving.kserve.io "{name}" not found')
            return 200, _status(200, "deleted")
        return 405, _status(405, f"{method} not supported")

    def _handler_class(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def _serve(self) -> None:
                path = urlsplit(self.path).path
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                ctype = self.headers.get("Content-Type", "")
                with fake._lock:
                    fake.requests.append((self.command, path, ctype))
                    if self.command == "PATCH" and ctype != "application/merge-patch+json":
                        status, payload = 415, _status(415, f"this fake only takes merge patches, not {ctype}")
                    else:
                        status, payload = fake._route(self.command, path, json.loads(raw) if raw else None)
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _serve

        return Handler


def _status(code: int, message: str) -> dict:
    reason = {404: "NotFound", 409: "AlreadyExists", 415: "UnsupportedMediaType", 422: "Invalid"}.get(code, "")
    return {"kind": "Status", "apiVersion": "v1", "status": "Failure" if code >= 400 else "Success",
            "message": message, "reason": reason, "code": code}
