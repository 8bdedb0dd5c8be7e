"""Recommendations as objects a cluster applies: VerticalPodAutoscalers, KEDA ScaledObjects, Kustomize patches.

Three ways to act on the same numbers (``sizing.WorkloadSizing``), for three ways to run a cluster:

* ``vpa``: a ``VerticalPodAutoscaler`` (autoscaling.k8s.io/v1) that names our recommender
  (``names.RECOMMENDER_NAME``), so the cluster's VPA updater acts on what ``mlco recommender``
  serves. ``minAllowed``/``maxAllowed`` are the smallest and largest hourly request of the
  forecast window: a recommender gone wrong cannot take a pod outside what the forecasts asked
  for. ``updateMode`` is ``Off`` unless asked: recommend only, until a person turns it on.
  ``controlledValues: RequestsOnly`` leaves limits as they are; a ``"*"`` policy with mode
  ``Off`` leaves containers we did not size (an injected sidecar) alone.
* ``keda``: a ``ScaledObject`` (keda.sh/v1alpha1) for scalable kinds (``SCALABLE_KINDS``) with two
  ``prometheus`` triggers. One is our p90 forecast ``horizon`` ahead (``forecast_query``), so a
  scale-out lands before the load: a new pod must be scheduled, maybe wait for a node, pull,
  start and warm up. The default horizon is one hour, our headline horizon, long enough to cover
  a node being provisioned and short enough to stay accurate; the exporter must publish it. The
  other is the current CPU usage (``usage_query``): a load the forecast missed still scales, and
  since the HPA takes the largest of its metrics' replica counts, live load is never scaled in
  under. Both are ``AverageValue`` with ``threshold`` = the per-pod CPU request we recommend
  times the target utilization, so desired replicas = ceil(cores / threshold): as many pods as
  keep each at the utilization its request was sized for. At the latest hour this is about the
  current replica count (the request was sized as p90 / utilization). ``maxReplicaCount``
  defaults to twice the replicas the window's largest p90 needs, never below today's replicas:
  a cap against a runaway metric with room above p90. A forecast series that is missing reads
  as 0 (KEDA's ``ignoreNullValues``), leaving the usage trigger in charge.
* ``patch``: a strategic-merge patch per workload setting ``resources.requests`` of each sized
  container, and a ``kustomization.yaml`` that is a Kustomize ``Component`` listing them: a
  Component, because only a Component's patches apply to the resources of the kustomization
  that includes it (``components: [path/to/patches]``). Each patch selects its workload by a
  ``target`` (group, version, kind, name, namespace), so a workload the including kustomization
  does not hold is skipped rather than failing the build: one folder serves every app's
  kustomization. The base must name its namespaces (components run before a kustomization's
  own ``namespace:``). Limits are left alone: a limit below the new request is refused by the
  API server, which is the right moment to notice it. The figures go on the workload's
  annotations, not the pod template's, so a new figure alone does not roll the pods.

VPA and HPA on one resource: an HPA (KEDA makes one) adds pods when CPU is high; a VPA acting on
CPU sizes each pod from its own usage, which falls as pods are added, so it shrinks the request,
and the two chase each other (the VPA project warns against both on CPU or memory). Our HPA
metric is absolute cores, not a share of the request, but the VPA would still size pods from a
per-pod usage the HPA keeps moving, and the threshold counts in units of the patched request.
So where a workload gets a ScaledObject its VPA controls memory only (a pod's memory is mostly
its own footprint and the HPA never scales on it), and its CPU per pod is the patch's fixed
request. A workload without a ScaledObject keeps CPU in its VPA. With memory not a target, such
a VPA would control nothing and is not written (``Emitted.skipped`` says so).

Objects are deterministic (no timestamps, a fixed order), labelled
``app.kubernetes.io/managed-by: mlco`` (not the patches: that label would be merged onto the
user's own workload), and annotated with the figures under ``mlco.io/``. An object is named
after its workload; workloads of other kinds than Deployment get ``-<kind>`` appended, so a
Deployment and a StatefulSet of one name never share a VPA.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ml_cloud_optimizer.kube.names import FORECAST_CPU, RECOMMENDER_NAME
from ml_cloud_optimizer.kube.quantities import bytes_quantity, cores_quantity
from ml_cloud_optimizer.kube.sizing import Workload, WorkloadSizing, dns_label

__all__ = [
    "DEFAULT_HORIZON",
    "DEFAULT_PROMETHEUS",
    "EMIT_KINDS",
    "SCALABLE_KINDS",
    "UPDATE_MODES",
    "Emitted",
    "build",
    "forecast_query",
    "patch",
    "scaled_object",
    "usage_query",
    "vpa",
    "write",
]

EMIT_KINDS = ("vpa", "keda", "patch")
UPDATE_MODES = ("Off", "Initial", "Recreate", "InPlaceOrRecreate", "Auto")
SCALABLE_KINDS = ("Deployment", "StatefulSet")
DEFAULT_HORIZON = "1h"
DEFAULT_PROMETHEUS = "http://prometheus-k8s.monitoring.svc:9090"
MAX_REPLICA_FACTOR = 2.0
MANAGED_BY = {"app.kubernetes.io/managed-by": "mlco"}
# Where a kind's pod template lives, and its API group; kinds not here (a bare Pod) get no object.
API_VERSIONS = {
    "Deployment": "apps/v1",
    "StatefulSet": "apps/v1",
    "DaemonSet": "apps/v1",
    "ReplicaSet": "apps/v1",
    "Job": "batch/v1",
    "CronJob": "batch/v1",
}
FOLDERS = {"VerticalPodAutoscaler": "vpa", "ScaledObject": "keda"}  # anything else is a patch
PATCH_FOLDER = "patches"
KUSTOMIZATION = "kustomization.yaml"


@dataclass(frozen=True)
class Emitted:
    """The objects built, and the workloads left without one: (entity id, why) pairs."""

    objects: list[dict]
    skipped: list[tuple[str, str]] = field(default_factory=list)


def build(
    sizings: Iterable[WorkloadSizing],
    kinds: Iterable[str] = EMIT_KINDS,
    *,
    update_mode: str = "Off",
    horizon: str = DEFAULT_HORIZON,
    server_address: str = DEFAULT_PROMETHEUS,
    target_utilization: float = 0.7,
    min_replicas: int = 1,
    max_replicas: int | None = None,
) -> Emitted:
    """Per workload, in order, the objects of ``kinds`` (``EMIT_KINDS``) that can act on it."""
    kinds = tuple(kinds)
    unknown = [k for k in kinds if k not in EMIT_KINDS]
    if unknown:
        raise ValueError(f"unknown kind(s) {', '.join(unknown)}; expected {', '.join(EMIT_KINDS)}")
    objects: list[dict] = []
    skipped: list[tuple[str, str]] = []
    for sizing in sizings:
        kind = sizing.workload.kind
        if kind not in API_VERSIONS:
            skipped.append((sizing.workload.entity_id, f"a {kind} has no controller a VPA or patch can act on"))
            continue
        scaled = "keda" in kinds and kind in SCALABLE_KINDS
        if "vpa" in kinds:
            found = vpa(sizing, update_mode=update_mode, memory_only=scaled)
            if found is None:
                skipped.append((sizing.workload.entity_id, "no VPA: KEDA scales its CPU and memory is not a target"))
            else:
                objects.append(found)
        if scaled:
            objects.append(
                scaled_object(
                    sizing,
                    server_address=server_address,
                    horizon=horizon,
                    target_utilization=target_utilization,
                    min_replicas=min_replicas,
                    max_replicas=max_replicas,
                )
            )
        if "patch" in kinds:
            objects.append(patch(sizing))
    return Emitted(objects, skipped)


def vpa(sizing: WorkloadSizing, *, update_mode: str = "Off", memory_only: bool = False) -> dict | None:
    """The workload's VPA, bounded per container by the window; None when it would control nothing."""
    if update_mode not in UPDATE_MODES:
        raise ValueError(f"update mode {update_mode!r}: expected one of {', '.join(UPDATE_MODES)}")
    policies = []
    for container in sizing.containers:
        bounds = {"memory": container.memory} if memory_only else {"cpu": container.cpu, "memory": container.memory}
        controlled = {resource: b for resource, b in bounds.items() if b is not None}
        if controlled:
            policies.append(
                {
                    "containerName": container.name,
                    "controlledResources": list(controlled),
                    "controlledValues": "RequestsOnly",
                    "minAllowed": {r: _quantity(r, b.lower) for r, b in controlled.items()},
                    "maxAllowed": {r: _quantity(r, b.upper) for r, b in controlled.items()},
                }
            )
    if not policies:
        return None
    workload = sizing.workload
    return {
        "apiVersion": "autoscaling.k8s.io/v1",
        "kind": "VerticalPodAutoscaler",
        "metadata": _metadata(sizing),
        "spec": {
            "targetRef": {"apiVersion": API_VERSIONS[workload.kind], "kind": workload.kind, "name": workload.name},
            "recommenders": [{"name": RECOMMENDER_NAME}],
            "updatePolicy": {"updateMode": update_mode},
            "resourcePolicy": {"containerPolicies": [*policies, {"containerName": "*", "mode": "Off"}]},
        },
    }


def scaled_object(
    sizing: WorkloadSizing,
    *,
    server_address: str = DEFAULT_PROMETHEUS,
    horizon: str = DEFAULT_HORIZON,
    target_utilization: float = 0.7,
    min_replicas: int = 1,
    max_replicas: int | None = None,
) -> dict:
    """The workload's KEDA ScaledObject: the forecast ``horizon`` ahead and current usage, per-pod threshold."""
    workload = sizing.workload
    if workload.kind not in SCALABLE_KINDS:
        raise ValueError(f"{workload.entity_id}: KEDA scales {', '.join(SCALABLE_KINDS)}, not a {workload.kind}")
    if not 0 < target_utilization <= 1:
        raise ValueError(f"target utilization {target_utilization}: expected a share in (0, 1]")
    threshold = sizing.request_cores / sizing.replicas * target_utilization
    if not math.isfinite(threshold) or threshold <= 0:
        raise ValueError(f"{workload.entity_id}: request {sizing.request_cores} cores gives no positive threshold")
    if max_replicas is None:
        ceiling = max(_max_replicas(sizing, threshold, target_utilization), min_replicas)
    else:
        ceiling = max_replicas
    if min_replicas < 1 or ceiling < min_replicas:
        raise ValueError(f"replicas min {min_replicas}, max {ceiling}: expected 1 <= min <= max")
    common = {"serverAddress": server_address, "threshold": _cores_text(max(threshold, 1e-3))}
    return {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": _metadata(sizing),
        "spec": {
            "scaleTargetRef": {"apiVersion": API_VERSIONS[workload.kind], "kind": workload.kind, "name": workload.name},
            "minReplicaCount": int(min_replicas),
            "maxReplicaCount": int(ceiling),
            "triggers": [
                {
                    "type": "prometheus",
                    "name": "mlco-forecast",
                    "metricType": "AverageValue",
                    "metadata": {**common, "query": forecast_query(workload, horizon)},
                },
                {
                    "type": "prometheus",
                    "name": "cpu-usage",
                    "metricType": "AverageValue",
                    "metadata": {**common, "query": usage_query(workload)},
                },
            ],
        },
    }


def patch(sizing: WorkloadSizing) -> dict:
    """A strategic-merge patch setting ``resources.requests`` of each sized container of the workload."""
    workload = sizing.workload
    containers = []
    for container in sizing.containers:
        requests = {
            resource: _quantity(resource, bounds.target)
            for resource, bounds in (("cpu", container.cpu), ("memory", container.memory))
            if bounds is not None
        }
        if requests:
            containers.append({"name": container.name, "resources": {"requests": requests}})
    pod_spec: dict = {"template": {"spec": {"containers": containers}}}
    if workload.kind == "CronJob":
        pod_spec = {"jobTemplate": {"spec": pod_spec}}
    metadata = {"name": workload.name, "namespace": workload.namespace, "annotations": _annotations(sizing)}
    return {"apiVersion": API_VERSIONS[workload.kind], "kind": workload.kind, "metadata": metadata, "spec": pod_spec}


def forecast_query(workload: Workload, horizon: str, quantile: str = "0.9") -> str:
    """PromQL of our exporter's CPU forecast for ``workload``, ``horizon`` ahead, total over its replicas."""
    labels = {
        "namespace": workload.namespace,
        "kind": workload.kind,
        "workload": workload.name,
        "horizon": horizon,
        "quantile": quantile,
    }
    matchers = ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items())
    return f"sum({FORECAST_CPU}{{{matchers}}})"


def usage_query(workload: Workload, window: str = "5m") -> str:
    """PromQL of the workload's CPU in use now (cAdvisor), its pods told by the names their controller gives.

    A Deployment's pods are ``name-<template hash>-<suffix>``, a StatefulSet's ``name-<ordinal>``;
    the tighter patterns keep ``web`` from counting the pods of a Deployment ``web-api``.
    """
    name = _escape(re.sub(r"[^A-Za-z0-9_-]", lambda m: "\\" + m.group(), workload.name))  # "." -> "\\."
    pods = f"{name}-[0-9]+" if workload.kind == "StatefulSet" else f"{name}-[a-z0-9]+-[a-z0-9]+"
    matchers = f'namespace="{_escape(workload.namespace)}",pod=~"{pods}",container!="",container!="POD"'
    return f"sum(rate(container_cpu_usage_seconds_total{{{matchers}}}[{window}]))"


def write(objects: Sequence[dict], out_dir: Path) -> list[Path]:
    """Each object as ``out_dir/{vpa,keda,patches}/<namespace>.<kind>.<name>.yaml``; the paths, in order.

    A folder written is emptied of its YAML first, so it holds exactly this recommendation (a
    workload gone since the last run leaves no stale object to apply). The patch folder gets
    its ``kustomization.yaml`` (a Component listing the patches), last in the paths.
    """
    out_dir = Path(out_dir)
    planned = [(out_dir / _folder(obj) / _file_name(obj), obj) for obj in objects]
    names = [path for path, _ in planned]
    if len(set(names)) != len(names):
        raise ValueError("two objects of one kind name the same workload")
    for folder in sorted({path.parent for path in names}):
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.glob("*.yaml"):
            old.unlink()
    for path, obj in planned:
        path.write_text(_yaml(obj))
    patches = [{"path": path.name, "target": _target(obj)} for path, obj in planned if path.parent.name == PATCH_FOLDER]
    if patches:
        kustomization = out_dir / PATCH_FOLDER / KUSTOMIZATION
        component = {"apiVersion": "kustomize.config.k8s.io/v1alpha1", "kind": "Component", "patches": patches}
        kustomization.write_text(_yaml(component))
        names.append(kustomization)
    return names


def _target(obj: dict) -> dict[str, str]:
    """The one workload a patch is for, as a Kustomize patch target selects it."""
    group, version = obj["apiVersion"].split("/")
    meta = obj["metadata"]
    return {
        "group": group,
        "version": version,
        "kind": obj["kind"],
        "name": meta["name"],
        "namespace": meta["namespace"],
    }


def _folder(obj: dict) -> str:
    return FOLDERS.get(obj["kind"], PATCH_FOLDER)


def _file_name(obj: dict) -> str:
    """``<namespace>.<kind>.<name>.yaml`` of the workload the object is about."""
    spec = obj.get("spec", {})
    own = {"kind": obj["kind"], "name": obj["metadata"]["name"]}
    target = spec.get("targetRef") or spec.get("scaleTargetRef") or own
    return f"{obj['metadata']['namespace']}.{target['kind'].lower()}.{target['name']}.yaml"


def _metadata(sizing: WorkloadSizing) -> dict:
    workload = sizing.workload
    name = workload.name if workload.kind == "Deployment" else f"{workload.name}-{workload.kind.lower()}"
    return {
        "name": dns_label(name) if len(name) > 63 else name,
        "namespace": workload.namespace,
        "labels": dict(MANAGED_BY),
        "annotations": _annotations(sizing),
    }


def _annotations(sizing: WorkloadSizing) -> dict[str, str]:
    """The recommendation's figures (totals over replicas, latest hour), as strings under ``mlco.io/``."""
    figures = {
        "mlco.io/p90-cores": sizing.p90_cores,
        "mlco.io/request-cores": sizing.request_cores,
        "mlco.io/current-cores": sizing.current_cores,
    }
    shown = {key: _cores_text(value) for key, value in figures.items() if math.isfinite(value)}
    return {**shown, "mlco.io/replicas": str(sizing.replicas), "mlco.io/entity": sizing.workload.entity_id}


def _max_replicas(sizing: WorkloadSizing, threshold: float, target_utilization: float) -> int:
    """``MAX_REPLICA_FACTOR`` times the replicas the window's largest p90 needs, never below today's."""
    upper = sum(c.cpu.upper for c in sizing.containers if c.cpu is not None) * sizing.replicas
    peaks = [upper * target_utilization, sizing.p90_cores if math.isfinite(sizing.p90_cores) else 0.0]
    needed = math.ceil(round(max(peaks) / threshold, 6))
    return max(math.ceil(needed * MAX_REPLICA_FACTOR), sizing.replicas)


def _quantity(resource: str, amount: float) -> str:
    return cores_quantity(amount) if resource == "cpu" else bytes_quantity(amount)


def _cores_text(value: float) -> str:
    """Cores to the millicore, without trailing zeros: 0.35, 2, 0.125."""
    return f"{value:.3f}".rstrip("0").rstrip(".")


def _escape(value: str) -> str:
    """A PromQL double-quoted string's content."""
    return value.replace("\\", "\\\\").replace('"', '\\"')


def _yaml(obj: dict) -> str:
    return yaml.safe_dump(obj, sort_keys=False, default_flow_style=False)
