"""How each workload's pods divide their requests among containers, read from the same Prometheus.

Why: a recommendation is a total over a workload's replicas (``levels``), while a VPA policy or
a patched request is per container of one pod. kube-state-metrics already says how the cluster
splits a workload today: ``kube_pod_container_resource_requests`` per namespace, pod, container
and resource. At the end of the source's range, the workload's pods (owned through
``kube_pod_owner`` and ``kube_replicaset_owner``, resolved as ``levels`` resolves them) are
counted as its replicas, and each container's share of a resource is its request summed over
those pods over the pods' total, so pods that differ (a rollout half done) average out.

A container without a request of a resource has share 0 of it (nothing is set for it). A
workload whose pods request none of a resource takes the other resource's shares (a container
that needs more CPU tends to need more memory), so a recommended total can still be placed.
Entities with no such series (another level, no kube-state-metrics, a pod gone) get no entry;
callers fall back to ``sizing.DEFAULT_SHAPE``. The source's credentials, certificate checks and
retries are ``api``'s; ``selector`` and ``namespace`` apply as they did to the fleet read.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

import pandas as pd

from ml_cloud_optimizer.data.traces.prometheus import api, levels, source
from ml_cloud_optimizer.data.traces.prometheus.api import Query
from ml_cloud_optimizer.kube.sizing import ContainerShape, WorkloadShape

__all__ = ["requests_query", "workload_shapes"]

log = logging.getLogger(__name__)

_BY = ("namespace", "pod", "container", "resource")


def requests_query(src: source.Source) -> Query:
    """Each container's CPU and memory request, deduplicated over kube-state-metrics replicas."""
    namespace = f'namespace="{_escape(src.namespace)}"' if src.namespace else ""
    matchers = ",".join(m for m in ('resource=~"cpu|memory"', 'container!=""', namespace, src.selector) if m)
    return Query(f"max by ({', '.join(_BY)}) (kube_pod_container_resource_requests{{{matchers}}})", _BY)


def workload_shapes(
    source_string: str, entity_ids: Iterable[str], *, timeout: float = 30.0, retries: int = 2, backoff: float = 0.5
) -> dict[str, WorkloadShape]:
    """Replicas and container shares at the range end of ``source_string``, for those of ``entity_ids`` it knows.

    Raises:
        UserInputError: a bad source string, an unreachable or refusing server, bad credentials.
    """
    src = source.parse(source_string)
    wanted = {str(e) for e in entity_ids}
    if src.level != "workload" or not wanted:
        return {}
    owners_plan = levels.queries(src)
    plan = {
        "requests": requests_query(src),
        "pod_owner": owners_plan["pod_owner"],
        "replicaset_owner": owners_plan["replicaset_owner"],
    }
    with api.client(src, timeout) as http:
        fetcher = api.Api(http, src.label, max_points=2, retries=retries, backoff=backoff, concurrency=len(plan))
        results = fetcher.fetch(plan, src.end, src.end)
    shapes = shapes_from(results["requests"], levels._owners(results), wanted)
    log.info("prometheus: container requests of %d of %d workloads", len(shapes), len(wanted))
    return shapes


def shapes_from(requests: pd.DataFrame, owners: dict[str, str], wanted: set[str]) -> dict[str, WorkloadShape]:
    """Shapes of the ``wanted`` workloads from request rows (``_BY`` labels and ``value``) and pod owners."""
    frame = requests[requests["value"] > 0]
    if frame.empty:
        return {}
    pods = frame["namespace"] + "/" + frame["pod"]
    # As levels names them: a pod without an owner stays namespace/Pod/name.
    workload = pods.map(lambda p: owners.get(p) or "/Pod/".join(p.split("/", 1)))
    frame = frame.assign(workload=workload, pod_id=pods)
    frame = frame[frame["workload"].isin(wanted)]
    shapes = {}
    for entity, rows in frame.groupby("workload", sort=True):
        totals = rows.groupby(["resource", "container"])["value"].sum().unstack("resource", fill_value=0.0)
        cpu, mem = _shares(totals, "cpu"), _shares(totals, "memory")
        cpu, mem = (cpu if cpu is not None else mem), (mem if mem is not None else cpu)
        if cpu is None or mem is None:
            continue
        containers = tuple(
            ContainerShape(str(name), float(cpu.get(name, 0.0)), float(mem.get(name, 0.0))) for name in totals.index
        )
        shapes[str(entity)] = WorkloadShape(int(rows["pod_id"].nunique()), containers)
    return shapes


def _shares(totals: pd.DataFrame, resource: str) -> pd.Series | None:
    """Each container's share of the pods' total request of ``resource``; None when they request none."""
    if resource not in totals or totals[resource].sum() <= 0:
        return None
    return totals[resource] / totals[resource].sum()


def _escape(value: str | None) -> str:
    return (value or "").replace("\\", "\\\\").replace('"', '\\"')
