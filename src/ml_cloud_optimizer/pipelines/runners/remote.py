"""Send the compiled pipeline to a Kubeflow Pipelines server: one run, a schedule, the run list.

Thin over ``kfp.Client``. What the client would only find out from the server is checked here
first: parameter names and types against the compiled pipeline, and the cron expression (KFP
wants six fields, seconds first). Runs use the ``mlco-pipeline-runner`` service account, the
identity the manifests allow to roll out the InferenceService.

A multi-user Kubeflow wants to know who asks and for which namespace. ``connect`` gives the
client a bearer token (``token``, else ``$MLCO_KFP_TOKEN``, else ``$KF_PIPELINES_TOKEN``) or, in a
pod, kfp's own ``ServiceAccountTokenVolumeCredentials``, which re-read the projected
service-account token (``$KF_PIPELINES_SA_TOKEN_PATH``, else kfp's default path) on every
request; the ``namespace`` argument of each function here (the user's profile namespace) goes
on every ``kfp.Client`` call that takes one. A single-user server needs neither.
"""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import kfp
import yaml
from kfp import client as kfp_client
from kfp.client.set_volume_credentials import ServiceAccountTokenVolumeCredentials

from ml_cloud_optimizer.errors import UserInputError
from ml_cloud_optimizer.horizons import check_horizons
from ml_cloud_optimizer.pipelines import settings
from ml_cloud_optimizer.pipelines.runners.cron import validate_cron

__all__ = [
    "DEFAULT_EXPERIMENT",
    "DEFAULT_SCHEDULE_NAME",
    "TOKEN_ENV_VARS",
    "AuthError",
    "ParameterError",
    "ScheduleResult",
    "SubmitResult",
    "connect",
    "list_runs",
    "package_pipeline_name",
    "parse_params",
    "pipeline_parameters",
    "schedule_pipeline",
    "service_account_token_path",
    "submit_pipeline",
]

DEFAULT_EXPERIMENT = "mlco"
DEFAULT_SCHEDULE_NAME = "mlco-nightly"
# Where a bearer token is read from when none is given, first match wins.
TOKEN_ENV_VARS = ("MLCO_KFP_TOKEN", "KF_PIPELINES_TOKEN")

# Compiled parameter type -> Python types accepted for it.
_PARAMETER_TYPES = {
    "STRING": (str,),
    "NUMBER_INTEGER": (int,),
    "NUMBER_DOUBLE": (int, float),
    "BOOLEAN": (bool,),
    "LIST": (list,),
    "STRUCT": (dict,),
}


class ParameterError(UserInputError):
    """A ``k=v`` pipeline parameter the pipeline does not declare, or of the wrong type."""


class AuthError(UserInputError):
    """Credentials that cannot be used: two kinds at once, or a service-account token file that is not there."""


@dataclass(frozen=True)
class SubmitResult:
    run_id: str
    experiment_id: str
    run_name: str


@dataclass(frozen=True)
class ScheduleResult:
    recurring_run_id: str
    pipeline_id: str
    pipeline_version_id: str
    experiment_id: str
    replaced: tuple[str, ...]


def connect(
    host: str,
    *,
    namespace: str | None = None,
    token: str | None = None,
    service_account_token: bool | str | None = None,
) -> kfp.Client:
    """A ``kfp.Client`` for the KFP API at ``host`` (e.g. ``http://localhost:8080`` after a port-forward).

    Args:
        host: the KFP API URL.
        namespace: the user's profile namespace, the client's default (the functions here also
            pass it on each call); spares the client its guess from the pod's own namespace.
        token: a bearer token (e.g. ``kubectl create token``, or an OIDC token that the Kubeflow
            gateway accepts); default ``$MLCO_KFP_TOKEN``, then ``$KF_PIPELINES_TOKEN``.
        service_account_token: use a projected service-account token file, re-read on every
            request (kfp's ``ServiceAccountTokenVolumeCredentials``): True for
            ``$KF_PIPELINES_SA_TOKEN_PATH`` or kfp's default path, a string for that path. None
            (the default) uses it when there is no bearer token and that file exists (a pod that
            Kubeflow gave a pipelines token); False never does.

    Raises:
        AuthError: a token and a service-account token both asked for, or the token file is missing.
    """
    token = token or next((os.environ[v] for v in TOKEN_ENV_VARS if os.environ.get(v)), None)
    credentials = None
    if service_account_token not in (None, False):
        if token:
            raise AuthError("give a bearer token or a service-account token, not both")
        path = service_account_token_path(service_account_token if isinstance(service_account_token, str) else None)
        if not os.path.isfile(path):
            raise AuthError(f"no service-account token at {path} (set KF_PIPELINES_SA_TOKEN_PATH or give the path)")
        credentials = ServiceAccountTokenVolumeCredentials(path)
    elif service_account_token is None and not token and os.path.isfile(service_account_token_path()):
        credentials = ServiceAccountTokenVolumeCredentials(service_account_token_path())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # "only works with KFP v2.0.0-beta.2 and later"
        return kfp.Client(
            host=host, namespace=namespace or "kubeflow", existing_token=token or None, credentials=credentials
        )


def service_account_token_path(path: str | None = None) -> str:
    """``path``, else ``$KF_PIPELINES_SA_TOKEN_PATH``, else kfp's default projected-token path."""
    return path or os.environ.get(kfp_client.KF_PIPELINES_SA_TOKEN_ENV) or kfp_client.KF_PIPELINES_SA_TOKEN_PATH


def package_pipeline_name(package: str | Path) -> str:
    """The pipeline's own name in a compiled package (``pipelineInfo.name``)."""
    spec = next(yaml.safe_load_all(Path(package).read_text()))
    return str(spec["pipelineInfo"]["name"])


def pipeline_parameters(package: str | Path) -> dict[str, dict]:
    """Parameter name -> ``{"parameterType": ..., "defaultValue": ...}`` of a compiled pipeline."""
    spec = next(yaml.safe_load_all(Path(package).read_text()))
    return dict(spec["root"]["inputDefinitions"].get("parameters", {}))


def parse_params(pairs: list[str] | None, package: str | Path) -> dict:
    """Turn ``["records=5000", "deploy=true"]`` into typed arguments, checked against ``package``.

    A value is read as JSON when it parses (numbers, booleans, lists, objects) and as a string
    otherwise, then checked against the parameter's declared type.
    """
    declared = pipeline_parameters(package)
    params: dict = {}
    for pair in pairs or []:
        key, sep, raw = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ParameterError(f"parameter {pair!r} is not of the form name=value")
        if key not in declared:
            raise ParameterError(f"unknown pipeline parameter {key!r}; known: {', '.join(sorted(declared))}")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        kind = declared[key]["parameterType"]
        if kind == "STRING" and not isinstance(value, str):
            value = raw
        allowed = _PARAMETER_TYPES.get(kind, (object,))
        if not isinstance(value, allowed) or (kind != "BOOLEAN" and isinstance(value, bool)):
            raise ParameterError(f"parameter {key!r} wants {kind.lower().replace('_', ' ')}, got {raw!r}")
        params[key] = value
    if "horizons" in params:  # refused here rather than after every model of the run has trained
        try:
            check_horizons(params["horizons"])
        except ValueError as exc:
            raise ParameterError(f"parameter 'horizons': {exc}") from None
    return params


def submit_pipeline(
    client: kfp.Client,
    package: str | Path,
    *,
    params: dict | None = None,
    experiment: str = DEFAULT_EXPERIMENT,
    run_name: str | None = None,
    service_account: str = settings.PIPELINE_RUNNER_SERVICE_ACCOUNT,
    namespace: str | None = None,
) -> SubmitResult:
    """Start one run of the compiled pipeline in ``experiment`` (created when missing, in ``namespace``)."""
    run_name = run_name or f"{package_pipeline_name(package)} {_stamp()}"
    result = client.create_run_from_pipeline_package(
        str(package),
        arguments=params or {},
        run_name=run_name,
        experiment_name=experiment,
        namespace=namespace,
        service_account=service_account,
    )
    return SubmitResult(run_id=result.run_id, experiment_id=result.run_info.experiment_id, run_name=run_name)


def schedule_pipeline(
    client: kfp.Client,
    package: str | Path,
    *,
    cron: str,
    params: dict | None = None,
    experiment: str = DEFAULT_EXPERIMENT,
    name: str = DEFAULT_SCHEDULE_NAME,
    version_name: str | None = None,
    service_account: str = settings.PIPELINE_RUNNER_SERVICE_ACCOUNT,
    namespace: str | None = None,
) -> ScheduleResult:
    """Upload the package as a new pipeline version and (re)create the recurring run ``name``.

    The pipeline is the one named like the package's own ``pipelineInfo.name`` (in ``namespace``
    when given: a private pipeline of that profile), so the training and batch pipelines keep
    their versions apart. A recurring run cannot be edited, so an existing one of the same name
    in the experiment is deleted and created again, pointing at the new version. The cron
    expression is checked before anything is sent.
    """
    cron = validate_cron(cron)
    pipeline_name = package_pipeline_name(package)
    pipeline_id, version_id = _upload_version(
        client, package, pipeline_name, version_name or f"{pipeline_name}-{_stamp()}", namespace
    )
    experiment_id = client.create_experiment(name=experiment, namespace=namespace).experiment_id
    replaced = []
    for job in _recurring_runs_named(client, experiment_id, name):
        client.delete_recurring_run(job.recurring_run_id)
        replaced.append(job.recurring_run_id)
    job = client.create_recurring_run(
        experiment_id=experiment_id,
        job_name=name,
        description=f"{pipeline_name} on cron '{cron}'",
        cron_expression=cron,
        max_concurrency=1,
        no_catchup=True,
        params=params or {},
        pipeline_id=pipeline_id,
        version_id=version_id,
        service_account=service_account,
    )
    return ScheduleResult(job.recurring_run_id, pipeline_id, version_id, experiment_id, tuple(replaced))


def list_runs(
    client: kfp.Client, *, experiment: str | None = None, limit: int = 20, namespace: str | None = None
) -> list[dict]:
    """The newest runs (all experiments of ``namespace``, or one) as plain dicts: id, name, state, created, finished."""
    experiment_id = None
    if experiment:
        experiment_id = client.get_experiment(experiment_name=experiment, namespace=namespace).experiment_id
    response = client.list_runs(
        page_size=limit, sort_by="created_at desc", experiment_id=experiment_id, namespace=namespace
    )
    return [
        {
            "run_id": run.run_id,
            "name": run.display_name,
            "state": run.state or "",
            "created_at": _iso(run.created_at),
            "finished_at": _iso(run.finished_at),
            "recurring_run_id": run.recurring_run_id or "",
        }
        for run in response.runs or []
    ]


def _upload_version(
    client: kfp.Client, package: str | Path, pipeline_name: str, version_name: str, namespace: str | None
) -> tuple[str, str]:
    pipeline_id = _pipeline_id(client, pipeline_name, namespace)
    if pipeline_id is None:
        pipeline_id = client.upload_pipeline(str(package), pipeline_name=pipeline_name, namespace=namespace).pipeline_id
        versions = client.list_pipeline_versions(pipeline_id, page_size=1, sort_by="created_at desc")
        return pipeline_id, versions.pipeline_versions[0].pipeline_version_id
    version = client.upload_pipeline_version(str(package), version_name, pipeline_id=pipeline_id)
    return pipeline_id, version.pipeline_version_id


def _pipeline_id(client: kfp.Client, name: str, namespace: str | None) -> str | None:
    # Not client.get_pipeline_id: it lists without a namespace, which on a multi-user server
    # means the shared pipelines only.
    flt = json.dumps({"predicates": [{"operation": "EQUALS", "key": "display_name", "stringValue": name}]})
    pipelines = [
        p
        for p in client.list_pipelines(filter=flt, namespace=namespace, page_size=100).pipelines or []
        if p.display_name == name
    ]
    if len(pipelines) > 1:
        raise ValueError(f"{len(pipelines)} pipelines are named {name!r}; the name should be unique")
    return pipelines[0].pipeline_id if pipelines else None


def _recurring_runs_named(client: kfp.Client, experiment_id: str, name: str) -> list:
    flt = json.dumps({"predicates": [{"operation": "EQUALS", "key": "display_name", "stringValue": name}]})
    response = client.list_recurring_runs(experiment_id=experiment_id, page_size=100, filter=flt)
    return [job for job in response.recurring_runs or [] if job.display_name == name]


def _stamp() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")


def _iso(value) -> str:
    if value is None:
        return ""
    return value.isoformat(timespec="seconds") if hasattr(value, "isoformat") else str(value)
