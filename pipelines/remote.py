"""Send the compiled pipeline to a Kubeflow Pipelines server: one run, a schedule, the run list.

Thin over ``kfp.Client``. What the client would only find out from the server is checked here
first: parameter names and types against the compiled pipeline, and the cron expression (KFP
wants six fields, seconds first). Runs use the ``mlco-pipeline-runner`` service account, the
identity the manifests allow to roll out the InferenceService.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import kfp
import yaml

from pipelines import settings
from pipelines.cron import validate_cron

__all__ = [
    "DEFAULT_EXPERIMENT",
    "DEFAULT_SCHEDULE_NAME",
    "ParameterError",
    "ScheduleResult",
    "SubmitResult",
    "connect",
    "list_runs",
    "parse_params",
    "pipeline_parameters",
    "schedule_pipeline",
    "submit_pipeline",
]

DEFAULT_EXPERIMENT = "mlco"
DEFAULT_SCHEDULE_NAME = "mlco-nightly"

# Compiled parameter type -> Python types accepted for it.
_PARAMETER_TYPES = {
    "STRING": (str,),
    "NUMBER_INTEGER": (int,),
    "NUMBER_DOUBLE": (int, float),
    "BOOLEAN": (bool,),
    "LIST": (list,),
    "STRUCT": (dict,),
}


class ParameterError(ValueError):
    """A ``k=v`` pipeline parameter the pipeline does not declare, or of the wrong type."""


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


def connect(host: str, *, namespace: str | None = None, token: str | None = None) -> kfp.Client:
    """A ``kfp.Client`` for the KFP API at ``host`` (e.g. ``http://localhost:8080`` after a port-forward)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # "only works with KFP v2.0.0-beta.2 and later"
        return kfp.Client(host=host, namespace=namespace or "kubeflow", existing_token=token)


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
    return params


def submit_pipeline(
    client: kfp.Client,
    package: str | Path,
    *,
    params: dict | None = None,
    experiment: str = DEFAULT_EXPERIMENT,
    run_name: str | None = None,
    service_account: str = settings.PIPELINE_RUNNER_SERVICE_ACCOUNT,
) -> SubmitResult:
    """Start one run of the compiled pipeline in ``experiment`` (created when missing)."""
    run_name = run_name or f"{settings.PIPELINE_NAME} {_stamp()}"
    result = client.create_run_from_pipeline_package(
        str(package),
        arguments=params or {},
        run_name=run_name,
        experiment_name=experiment,
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
) -> ScheduleResult:
    """Upload the package as a new pipeline version and (re)create the recurring run ``name``.

    A recurring run cannot be edited, so an existing one of the same name in the experiment is
    deleted and created again, pointing at the new version. The cron expression is checked
    before anything is sent.
    """
    cron = validate_cron(cron)
    pipeline_id, version_id = _upload_version(client, package, version_name or f"{settings.PIPELINE_NAME}-{_stamp()}")
    experiment_id = client.create_experiment(name=experiment).experiment_id
    replaced = []
    for job in _recurring_runs_named(client, experiment_id, name):
        client.delete_recurring_run(job.recurring_run_id)
        replaced.append(job.recurring_run_id)
    job = client.create_recurring_run(
        experiment_id=experiment_id,
        job_name=name,
        description=f"{settings.PIPELINE_NAME} on cron '{cron}'",
        cron_expression=cron,
        max_concurrency=1,
        no_catchup=True,
        params=params or {},
        pipeline_id=pipeline_id,
        version_id=version_id,
        service_account=service_account,
    )
    return ScheduleResult(job.recurring_run_id, pipeline_id, version_id, experiment_id, tuple(replaced))


def list_runs(client: kfp.Client, *, experiment: str | None = None, limit: int = 20) -> list[dict]:
    """The newest runs (all experiments, or one) as plain dicts: id, name, state, created, finished."""
    experiment_id = None
    if experiment:
        experiment_id = client.get_experiment(experiment_name=experiment).experiment_id
    response = client.list_runs(page_size=limit, sort_by="created_at desc", experiment_id=experiment_id)
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


def _upload_version(client: kfp.Client, package: str | Path, version_name: str) -> tuple[str, str]:
    pipeline_id = client.get_pipeline_id(settings.PIPELINE_NAME)
    if pipeline_id is None:
        pipeline_id = client.upload_pipeline(str(package), pipeline_name=settings.PIPELINE_NAME).pipeline_id
        versions = client.list_pipeline_versions(pipeline_id, page_size=1, sort_by="created_at desc")
        return pipeline_id, versions.pipeline_versions[0].pipeline_version_id
    version = client.upload_pipeline_version(str(package), version_name, pipeline_id=pipeline_id)
    return pipeline_id, version.pipeline_version_id


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
