"""A small Kubeflow Pipelines API server (v2beta1 REST) on loopback, for kfp.Client to talk to.

It keeps pipelines, versions, experiments, runs and recurring runs in memory and answers the
handful of endpoints ``mlco submit``, ``mlco schedule`` and ``mlco runs`` use, in the JSON the
real server sends. Every request is recorded so that tests can check what was sent, and what
was not. Like the real server it refuses a cron expression that is not six fields.

Given a ``MultiUser``, it behaves as the API server of a multi-user Kubeflow (upstream
kubeflow/pipelines, backend/src/apiserver):

* who asks comes from ``Authorization: Bearer <token>``, which the server checks with a
  TokenReview (auth/authenticator_token_review.go, the header and prefix in common/const.go);
  no or an unknown token is 401 Unauthenticated, "User identity is empty in the request header"
  (resource/resource_manager.go, ``IsAuthorized``);
* what they may do is a SubjectAccessReview of that user on the resource's namespace: a
  namespace the user has no access to is 403 PermissionDenied (``IsAuthorized`` again);
* experiments, runs and recurring runs must have a namespace, taken from the request or from
  the parent experiment, and an empty one is 400 before anyone is asked who they are
  (server/experiment_server.go ``canAccessExperiment``, run_server.go ``canAccessRun``,
  job_server.go); lists are filtered to that namespace;
* pipelines are either shared (empty namespace: read without authorization,
  pipeline_server.go ``canAccessPipeline``) or private to a namespace; with
  ``namespace_required_for_pipelines`` an empty one is refused (validation/namespace.go), and
  the upload endpoint answers an authorization failure 400 "Failed to create a pipeline"
  (pipeline_upload_server.go);
* in single-user mode every namespace is replaced by "" (resource_manager.go ``ReplaceNamespace``).
"""

from __future__ import annotations

import email.parser
import email.policy
import itertools
import json
import threading
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qs, urlsplit

import yaml

from fakes.loopback import LoopbackServer

__all__ = ["FakeKfpApi", "MultiUser", "RecordedRequest"]

PREFIX = "/apis/v2beta1"


@dataclass
class RecordedRequest:
    method: str
    path: str
    query: dict[str, str]
    body: object = None
    authorization: str | None = None  # the Authorization header as received


@dataclass(frozen=True)
class MultiUser:
    """Multi-user mode: the user each bearer token is (TokenReview), the namespaces each user may use (SAR)."""

    tokens: dict[str, str]
    namespaces: dict[str, frozenset[str] | set[str]]
    namespace_required_for_pipelines: bool = True


class _Refused(Exception):
    """An error answer: HTTP status, the gRPC code the gateway sends with it, the message."""

    def __init__(self, status: int, code: int, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


# gRPC codes as the REST gateway reports them.
_INVALID_ARGUMENT, _PERMISSION_DENIED, _UNAUTHENTICATED = 3, 7, 16


@dataclass
class _State:
    pipelines: dict[str, dict] = field(default_factory=dict)
    versions: dict[str, dict] = field(default_factory=dict)
    experiments: dict[str, dict] = field(default_factory=dict)
    runs: dict[str, dict] = field(default_factory=dict)
    recurring_runs: dict[str, dict] = field(default_factory=dict)


class FakeKfpApi(LoopbackServer):
    """Start with ``with FakeKfpApi() as api: kfp.Client(host=api.url)``."""

    def __init__(self, multi_user: MultiUser | None = None) -> None:
        self.multi_user = multi_user
        self.state = _State()
        self.requests: list[RecordedRequest] = []
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._bind()

    def calls(self, method: str, path_suffix: str) -> list[RecordedRequest]:
        """Recorded requests with this method whose path ends with ``path_suffix``."""
        return [r for r in self.requests if r.method == method and r.path.endswith(path_suffix)]

    # -- handlers, by route ------------------------------------------------------------------

    def _new_id(self, kind: str) -> str:
        return f"{kind}-{next(self._ids):04d}"

    # -- multi-user: namespaces, authentication, authorization ---------------------------------

    def _namespace(self, namespace: str | None) -> str:
        """``ReplaceNamespace``: kept in multi-user mode, "" in single-user mode."""
        return (namespace or "") if self.multi_user else ""

    def _require_namespace(self, namespace: str, what: str) -> None:
        if self.multi_user and not namespace:
            raise _Refused(400, _INVALID_ARGUMENT, f"{what} cannot have an empty namespace in multi-user mode")

    def _authorize(self, authorization: str | None, namespace: str, verb: str, resource: str) -> None:
        """``IsAuthorized``: who the bearer token is (TokenReview), then whether they may ``verb`` there (SAR)."""
        if not self.multi_user:
            return
        header = authorization or ""
        token = header[len("Bearer ") :] if header.startswith("Bearer ") else None
        user = self.multi_user.tokens.get(token) if token else None
        if user is None:
            raise _Refused(
                401, _UNAUTHENTICATED, "Failed to check authorization. User identity is empty in the request header"
            )
        if namespace not in self.multi_user.namespaces.get(user, ()):
            raise _Refused(
                403,
                _PERMISSION_DENIED,
                f"User '{user}' is not authorized with reason:  (request:"
                f" namespace {namespace!r}, verb {verb}, resource {resource})",
            )

    def _pipeline_namespace(self, namespace: str) -> None:
        if self.multi_user and self.multi_user.namespace_required_for_pipelines and not namespace:
            raise _Refused(400, _INVALID_ARGUMENT, "Namespace is required for pipeline operations")

    def _experiment_namespace(self, experiment_id: str | None) -> str:
        experiment = self.state.experiments.get(experiment_id or "")
        return experiment.get("namespace", "") if experiment else ""

    # -- routes ----------------------------------------------------------------------------------

    def _route(
        self, method: str, path: str, query: dict[str, str], body, files, authorization: str | None = None
    ) -> tuple[int, object]:
        try:
            return self._dispatch(method, path, query, body, files, authorization)
        except _Refused as refused:
            return refused.status, {"error_message": refused.message, "code": refused.code}

    def _dispatch(
        self, method: str, path: str, query: dict[str, str], body, files, authorization: str | None
    ) -> tuple[int, object]:
        s = self.state
        auth = authorization
        parts = path[len(PREFIX) :].strip("/").split("/")
        if method == "GET" and parts == ["healthz"]:  # answered to anyone
            return 200, {"multi_user": bool(self.multi_user), "pipeline_store": "database"}

        if parts[0] == "experiments":
            if method == "GET" and len(parts) == 1:
                namespace = self._namespace(query.get("namespace"))
                self._require_namespace(namespace, "An experiment")
                self._authorize(auth, namespace, "list", "experiments")
                experiments = [e for e in s.experiments.values() if e["namespace"] == namespace]
                return 200, _page("experiments", _filtered(experiments, query))
            if method == "POST" and len(parts) == 1:
                namespace = self._namespace(body.get("namespace"))
                self._require_namespace(namespace, "An experiment")
                self._authorize(auth, namespace, "create", "experiments")
                exp = {
                    **body,
                    "namespace": namespace,
                    "experiment_id": self._new_id("exp"),
                    "created_at": _now(),
                    "storage_state": "AVAILABLE",
                }
                s.experiments[exp["experiment_id"]] = exp
                return 200, exp

        if parts[0] == "pipelines":
            if method == "POST" and parts[1:] == ["upload"]:
                spec = _read_package(files)
                namespace = self._namespace(query.get("namespace"))
                self._pipeline_namespace(namespace)
                if namespace:
                    try:
                        self._authorize(auth, namespace, "create", "pipelines")
                    except _Refused:  # the upload handler says no more than this, and says it 400
                        raise _Refused(400, _INVALID_ARGUMENT, "Failed to create a pipeline") from None
                name = query.get("name") or query.get("display_name") or spec["pipelineInfo"]["name"]
                if any(p["display_name"] == name and p["namespace"] == namespace for p in s.pipelines.values()):
                    return 409, {"error_message": f"pipeline {name!r} already exists", "code": 6}
                pipe = {
                    "pipeline_id": self._new_id("pipe"),
                    "display_name": name,
                    "namespace": namespace,
                    "created_at": _now(),
                }
                s.pipelines[pipe["pipeline_id"]] = pipe
                self._add_version(pipe["pipeline_id"], name, spec)
                return 200, pipe
            if method == "POST" and parts[1:] == ["upload_version"]:
                pipeline_id = query.get("pipelineid")
                if pipeline_id not in s.pipelines:
                    return 404, {"error_message": f"pipeline {pipeline_id!r} not found", "code": 5}
                namespace = s.pipelines[pipeline_id]["namespace"]
                self._pipeline_namespace(namespace)
                if namespace:
                    try:
                        self._authorize(auth, namespace, "create", "pipelines")
                    except _Refused:
                        raise _Refused(400, _INVALID_ARGUMENT, "Failed to create a pipeline version") from None
                return 200, self._add_version(pipeline_id, query.get("name", ""), _read_package(files))
            if method == "GET" and len(parts) == 1:
                namespace = self._namespace(query.get("namespace"))
                self._pipeline_namespace(namespace)
                if namespace:  # shared pipelines are read without authorization
                    self._authorize(auth, namespace, "list", "pipelines")
                pipelines = [p for p in s.pipelines.values() if p["namespace"] == namespace]
                return 200, _page("pipelines", _filtered(pipelines, query))
            if method == "GET" and len(parts) == 3 and parts[2] == "versions":
                if parts[1] in s.pipelines and s.pipelines[parts[1]]["namespace"]:
                    self._authorize(auth, s.pipelines[parts[1]]["namespace"], "list", "pipelines")
                versions = [v for v in s.versions.values() if v["pipeline_id"] == parts[1]]
                if "desc" in query.get("sort_by", ""):
                    versions = versions[::-1]
                return 200, _page("pipeline_versions", versions)

        if parts[0] == "runs":
            if method == "POST" and len(parts) == 1:
                error = _check_run_body(body, s)
                if error:
                    return 400, {"error_message": error, "code": 3}
                namespace = self._experiment_namespace(body.get("experiment_id"))
                self._require_namespace(namespace, "A run")
                self._authorize(auth, namespace, "create", "runs")
                run = {
                    **body,
                    "namespace": namespace,
                    "run_id": self._new_id("run"),
                    "state": "PENDING",
                    "created_at": _now(),
                    "storage_state": "AVAILABLE",
                }
                s.runs[run["run_id"]] = run
                return 200, run
            if method == "GET" and len(parts) == 1:
                namespace = (
                    self._experiment_namespace(query["experiment_id"])
                    if query.get("experiment_id")
                    else self._namespace(query.get("namespace"))
                )
                self._require_namespace(namespace, "A run")
                self._authorize(auth, namespace, "list", "runs")
                runs = [
                    r
                    for r in s.runs.values()
                    if r["namespace"] == namespace
                    and (not query.get("experiment_id") or r.get("experiment_id") == query["experiment_id"])
                ]
                return 200, _page("runs", _filtered(runs, query))

        if parts[0] == "recurringruns":
            if method == "POST" and len(parts) == 1:
                cron = ((body.get("trigger") or {}).get("cron_schedule") or {}).get("cron", "")
                if cron and not cron.startswith("@") and len(cron.split()) != 6:
                    return 400, {"error_message": f"invalid cron {cron!r}: expected 6 fields", "code": 3}
                error = _check_run_body(body, s)
                if error:
                    return 400, {"error_message": error, "code": 3}
                namespace = self._experiment_namespace(body.get("experiment_id"))
                self._require_namespace(namespace, "Recurring run")
                self._authorize(auth, namespace, "create", "jobs")
                job = {
                    **body,
                    "namespace": namespace,
                    "recurring_run_id": self._new_id("job"),
                    "created_at": _now(),
                    "updated_at": _now(),
                    "status": "ENABLED",
                }
                s.recurring_runs[job["recurring_run_id"]] = job
                return 200, job
            if method == "GET" and len(parts) == 1:
                namespace = (
                    self._experiment_namespace(query["experiment_id"])
                    if query.get("experiment_id")
                    else self._namespace(query.get("namespace"))
                )
                self._require_namespace(namespace, "a recurring run")
                self._authorize(auth, namespace, "list", "jobs")
                jobs = [
                    j
                    for j in s.recurring_runs.values()
                    if j["namespace"] == namespace
                    and (not query.get("experiment_id") or j.get("experiment_id") == query["experiment_id"])
                ]
                return 200, _page("recurringRuns", _filtered(jobs, query))
            if len(parts) == 2 and parts[1] in s.recurring_runs:
                verb = {"DELETE": "delete", "GET": "get"}.get(method, method.lower())
                self._authorize(auth, s.recurring_runs[parts[1]]["namespace"], verb, "jobs")
                if method == "DELETE":
                    del s.recurring_runs[parts[1]]
                    return 200, {}
                if method == "GET":
                    return 200, s.recurring_runs[parts[1]]
            if len(parts) == 2:
                return 404, {"error_message": f"recurring run {parts[1]!r} not found", "code": 5}

        return 404, {"error_message": f"no route for {method} {path}", "code": 12}

    def _add_version(self, pipeline_id: str, name: str, spec: dict) -> dict:
        version = {
            "pipeline_id": pipeline_id,
            "pipeline_version_id": self._new_id("ver"),
            "display_name": name,
            "created_at": _now(),
            "pipeline_spec": spec,
        }
        self.state.versions[version["pipeline_version_id"]] = version
        return version

    def _handler_class(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # keep pytest output clean
                pass

            def _serve(self) -> None:
                split = urlsplit(self.path)
                query = {k: v[-1] for k, v in parse_qs(split.query).items()}
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                ctype = self.headers.get("Content-Type", "")
                body, files = None, {}
                if ctype.startswith("multipart/form-data"):
                    files = _parse_multipart(ctype, raw)
                elif raw:
                    body = json.loads(raw)
                authorization = self.headers.get("Authorization")
                with fake._lock:
                    fake.requests.append(
                        RecordedRequest(self.command, split.path, query, body if body else files, authorization)
                    )
                    try:
                        status, payload = fake._route(self.command, split.path, query, body, files, authorization)
                    except (KeyError, ValueError, TypeError, yaml.YAMLError) as exc:
                        status, payload = 400, {"error_message": f"bad request: {exc}", "code": 3}
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_DELETE = _serve

        return Handler


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _page(key: str, items) -> dict:
    items = list(items)
    return {key: items, "total_size": len(items)} if items else {"total_size": 0}


def _filtered(items, query: dict[str, str]) -> list[dict]:
    items = list(items)
    if not query.get("filter"):
        return items
    for pred in json.loads(query["filter"]).get("predicates", []):
        if pred.get("operation") in ("EQUALS", 1):
            items = [i for i in items if str(i.get(pred["key"])) == str(pred.get("stringValue"))]
    return items


def _parse_multipart(ctype: str, raw: bytes) -> dict[str, bytes]:
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        f"Content-Type: {ctype}\r\n\r\n".encode() + raw
    )
    return {
        part.get_param("name", header="content-disposition"): part.get_payload(decode=True)
        for part in message.iter_parts()
    }


def _read_package(files: dict[str, bytes]) -> dict:
    if "uploadfile" not in files:
        raise ValueError("multipart field 'uploadfile' missing")
    docs = [d for d in yaml.safe_load_all(files["uploadfile"]) if d]
    spec = docs[0]
    if "pipelineInfo" not in spec or "root" not in spec:
        raise ValueError("uploaded file is not a compiled pipeline")
    return spec


def _check_run_body(body: dict, state: _State) -> str | None:
    ref = body.get("pipeline_version_reference")
    # With Kubernetes platform settings the client wraps the spec: {pipeline_spec, platform_spec}.
    spec = body.get("pipeline_spec") or {}
    spec = spec.get("pipeline_spec", spec)
    if ref:
        if ref.get("pipeline_version_id") not in state.versions:
            return f"pipeline version {ref.get('pipeline_version_id')!r} not found"
        spec = state.versions[ref["pipeline_version_id"]]["pipeline_spec"]
    elif not spec.get("pipelineInfo"):
        return "a run needs a pipeline_spec or a pipeline_version_reference"
    if body.get("experiment_id") and body["experiment_id"] not in state.experiments:
        return f"experiment {body['experiment_id']!r} not found"
    # The server checks that every parameter it is given is one the pipeline declares.
    declared = spec.get("root", {}).get("inputDefinitions", {}).get("parameters", {})
    unknown = set((body.get("runtime_config") or {}).get("parameters") or {}) - set(declared)
    if unknown:
        return f"unknown pipeline parameters: {sorted(unknown)}"
    return None
