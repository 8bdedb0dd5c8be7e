"""What each level asks Prometheus, and how the answers become one canonical fleet.

Every level reduces to the same four series per (entity, 5-minute slot): ``cores`` used,
``cpu_request`` (cores provisioned), ``mem_bytes`` used and ``mem_request`` (bytes provisioned);
``cpu_util`` and ``mem_util`` are the ratios, clipped to ``[0, UTIL_MAX]``.

* ``pod`` (entity ``namespace/pod``): cAdvisor's ``container_cpu_usage_seconds_total`` (as a
  ``rate``) and ``container_memory_working_set_bytes`` summed over the pod's containers (not the
  ``POD`` sandbox); kube-state-metrics' ``kube_pod_container_resource_requests``, its limits
  standing in for a pod with no request. Each container's request is first deduplicated
  (``max by container``), so two kube-state-metrics replicas do not double it.
* ``workload`` (entity ``namespace/Kind/name``): the pod series above plus ``kube_pod_owner`` and
  ``kube_replicaset_owner``, joined here in pandas rather than in PromQL: a PromQL
  ``group_left`` join fails outright on duplicate owner series (two kube-state-metrics replicas,
  a pod listing two owners), and an absent kube-state-metrics would empty the whole answer, while
  here a pod without an owner simply stays ``namespace/Pod/name``. A ReplicaSet owned by a
  Deployment (or another controller) rolls up to it. Per slot, usage and requests are summed over
  the pods that have both, so replicas coming and going are counted exactly while they run.
  Owner series are read at a 1-hour step through ``max_over_time(...[1h])``: owners never
  change, and a pod living only minutes is still seen.
* ``node`` (entity: the ``node`` label when the series carry one (kube-prometheus relabels it),
  else ``nodename`` from ``node_uname_info`` of the same ``instance``, else ``instance``):
  node_exporter's ``node_cpu_seconds_total{mode!="idle"}`` as a rate, summed per node, over the
  count of CPUs (``mode="idle"`` series); memory used is ``MemTotal - MemAvailable`` over
  ``MemTotal``. ``namespace`` does not apply; ``selector`` does.

``selector`` matchers go into every usage and request series (not the owner series, which
carry no container labels), so they must name labels both cAdvisor and kube-state-metrics
series carry (``namespace``, ``pod``, ``container``, ``node``, or labels a relabelling adds).

An entity's ``vcpus`` and ``mem_gib`` are the medians over its slots of what was provisioned,
fractions kept (a 250m request is 0.25): a median, so a rollout's surge of extra replicas does
not inflate a Deployment's size. No memory request: 4 GiB per core is assumed and ``mem_util``
stays missing. An entity never given a CPU request or limit is left out (logged).
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from ml_cloud_optimizer.data.schema import STEP_SECONDS, UTIL_MAX, DataValidationError, Fleet, estimate_hourly_price
from ml_cloud_optimizer.data.traces._stream import to_fleet as stream_to_fleet
from ml_cloud_optimizer.data.traces.prometheus.api import Query
from ml_cloud_optimizer.data.traces.prometheus.source import Source

__all__ = ["USAGE", "VALUES", "combine", "queries", "to_fleet"]

log = logging.getLogger(__name__)

VALUES = ("cores", "cpu_request", "mem_bytes", "mem_request")
USAGE = {"pod": "container_cpu_usage_seconds_total", "node": "node_cpu_seconds_total"}
USAGE["workload"] = USAGE["pod"]
_POD = ("namespace", "pod")
_NODE = ("instance", "node")
_OWNER = ("owner_kind", "owner_name", "owner_is_controller")
_HOUR = 3600


def queries(src: Source) -> dict[str, Query]:
    """The PromQL range queries a level needs, by name."""
    if src.level == "node":
        return _node_queries(src)
    plan = _pod_queries(src)
    if src.level == "workload":
        ns = _matchers(f'namespace="{_escape(src.namespace)}"' if src.namespace else "")
        plan["pod_owner"] = Query(
            f"max by (namespace, pod, {', '.join(_OWNER)}) (max_over_time(kube_pod_owner{ns}[1h]))",
            (*_POD, *_OWNER),
            _HOUR,
        )
        plan["replicaset_owner"] = Query(
            f"max by (namespace, replicaset, {', '.join(_OWNER)}) (max_over_time(kube_replicaset_owner{ns}[1h]))",
            ("namespace", "replicaset", *_OWNER),
            _HOUR,
        )
    return plan


def _pod_queries(src: Source) -> dict[str, Query]:
    filters = [f'namespace="{_escape(src.namespace)}"' if src.namespace else "", src.selector]
    containers = _matchers('container!=""', 'container!="POD"', *filters)
    by = "sum by (namespace, pod)"

    def provisioned(resource: str) -> str:
        sel = _matchers(f'resource="{resource}"', *filters)
        dedup = "max by (namespace, pod, container)"
        return (
            f"{by} ({dedup} (kube_pod_container_resource_requests{sel}))"
            f" or {by} ({dedup} (kube_pod_container_resource_limits{sel}))"
        )

    return {
        "cores": Query(f"{by} (rate(container_cpu_usage_seconds_total{containers}[{src.window}]))", _POD, src.step),
        "mem_bytes": Query(f"{by} (container_memory_working_set_bytes{containers})", _POD, src.step),
        "cpu_request": Query(provisioned("cpu"), _POD, src.step),
        "mem_request": Query(provisioned("memory"), _POD, src.step),
    }


def _node_queries(src: Source) -> dict[str, Query]:
    by = "by (instance, node)"
    busy, idle, plain = (
        _matchers('mode!="idle"', src.selector),
        _matchers('mode="idle"', src.selector),
        _matchers(src.selector),
    )
    total, available = f"node_memory_MemTotal_bytes{plain}", f"node_memory_MemAvailable_bytes{plain}"
    rate = f"rate(node_cpu_seconds_total{busy}[{src.window}])"
    return {
        "cores": Query(f"sum {by} (max by (instance, node, cpu, mode) ({rate}))", _NODE, src.step),
        "cpu_request": Query(
            f"count {by} (max by (instance, node, cpu) (node_cpu_seconds_total{idle}))", _NODE, src.step
        ),
        "mem_bytes": Query(f"max {by} ({total} - {available})", _NODE, src.step),
        "mem_request": Query(f"max {by} ({total})", _NODE, src.step),
        "uname": Query(
            "max by (instance, nodename) (max_over_time(node_uname_info[1h]))", ("instance", "nodename"), _HOUR
        ),
    }


def combine(src: Source, results: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """The four ``VALUES`` columns indexed by (entity_id, slot), from the level's query results."""
    if src.step < STEP_SECONDS:
        results = {name: _into_slots(frame) if name in VALUES else frame for name, frame in results.items()}
    wide = _wide(results, _node_names(results) if src.level == "node" else _pod_names(results))
    if src.level == "workload":
        wide = _roll_up(wide, _owners(results))
    return wide


def _into_slots(frame: pd.DataFrame) -> pd.DataFrame:
    """Samples of a finer step averaged per series into the 5-minute slot they end in: (T - 5m, T] -> T."""
    keys = [c for c in frame.columns if c != "value"]
    slotted = frame.assign(slot=-(-frame["slot"] // STEP_SECONDS) * STEP_SECONDS)
    return slotted.groupby(keys, sort=False, as_index=False)["value"].mean()


def _wide(results: dict[str, pd.DataFrame], key) -> pd.DataFrame:
    """Align the four series on (entity, slot), sorted; numpy keys, as pandas' index unions cost seconds."""
    names = [key(results[name]) for name in VALUES]
    slots = [results[name]["slot"].to_numpy(dtype="int64") for name in VALUES]
    codes, entities = pd.factorize(np.concatenate([np.empty(0, dtype=object), *names]), sort=True)
    slot = np.concatenate(slots)
    low = int(slot.min()) if len(slot) else 0
    span = int(slot.max()) - low + 1 if len(slot) else 1
    joined = codes.astype("int64") * span + (slot - low)
    unique, inverse = np.unique(joined, return_inverse=True)
    values = np.full((len(unique), len(VALUES)), np.nan)
    offsets = np.cumsum([0, *(len(s) for s in slots)])
    for i, name in enumerate(VALUES):  # two node_exporter instances named alike: the later one wins
        values[inverse.reshape(-1)[offsets[i] : offsets[i + 1]], i] = results[name]["value"].to_numpy()
    index = pd.MultiIndex.from_arrays(
        [np.asarray(entities, dtype=object)[unique // span], unique % span + low], names=["entity_id", "slot"]
    )
    return pd.DataFrame(values, index=index, columns=list(VALUES))


def _pod_names(_results):
    return lambda frame: (frame["namespace"] + "/" + frame["pod"]).to_numpy()


def _node_names(results: dict[str, pd.DataFrame]):
    uname = results["uname"]
    uname = uname[uname["nodename"] != ""].drop_duplicates("instance", keep="last")
    nodename = dict(zip(uname["instance"], uname["nodename"], strict=True))

    def name(frame: pd.DataFrame) -> np.ndarray:
        by_uname = frame["instance"].map(nodename).fillna(frame["instance"])
        return frame["node"].where(frame["node"] != "", by_uname).to_numpy()

    return name


def _owners(results: dict[str, pd.DataFrame]) -> dict[str, str]:
    """``namespace/pod`` -> ``namespace/Kind/name``, through the ReplicaSet's owner where there is one."""

    def controllers(frame: pd.DataFrame, key: list[str]) -> pd.DataFrame:
        frame = frame[~frame["owner_kind"].isin(["", "<none>"]) & ~frame["owner_name"].isin(["", "<none>"])]
        frame = frame.assign(first=frame["owner_is_controller"] != "true").sort_values([*key, "first", "slot"])
        return frame.drop_duplicates(key, keep="first").set_index(key)[["owner_kind", "owner_name"]]

    pods = controllers(results["pod_owner"], ["namespace", "pod"])
    sets = controllers(results["replicaset_owner"], ["namespace", "replicaset"])
    set_owner = dict(zip(sets.index, zip(sets["owner_kind"], sets["owner_name"], strict=True), strict=True))
    owners = {}
    for (ns, pod), kind, name in zip(pods.index, pods["owner_kind"], pods["owner_name"], strict=True):
        if kind == "ReplicaSet":
            kind, name = set_owner.get((ns, name), (kind, name))
        owners[f"{ns}/{pod}"] = f"{ns}/{kind}/{name}"
    return owners


def _roll_up(pods: pd.DataFrame, owners: dict[str, str]) -> pd.DataFrame:
    """Per (workload, slot): usage and requests summed over the pods that report both."""
    pod_ids = pods.index.get_level_values(0)
    unowned = pd.Index(pod_ids.unique()).difference(pd.Index(list(owners)))
    if len(unowned):
        log.info(
            "prometheus: %d pods have no owner in kube_pod_owner and stay pods (first: %s)", len(unowned), unowned[0]
        )
    named = {p: owners.get(p) or "/Pod/".join(p.split("/", 1)) for p in pod_ids.unique()}
    workload = pod_ids.map(named)
    cpu = pods["cores"].notna() & (pods["cpu_request"] > 0)
    mem = pods["mem_bytes"].notna() & (pods["mem_request"] > 0)
    masked = pd.DataFrame(
        {
            "cores": pods["cores"].where(cpu),
            "cpu_request": pods["cpu_request"].where(cpu),
            "mem_bytes": pods["mem_bytes"].where(mem),
            "mem_request": pods["mem_request"].where(mem),
        }
    )
    keys = [np.asarray(workload, dtype=object), pods.index.get_level_values(1)]
    summed = masked.groupby(keys).sum(min_count=1)
    summed.index.names = ["entity_id", "slot"]
    return summed


def to_fleet(frame: pd.DataFrame, source: str, region: str, level: str) -> Fleet:
    """Utilisation per (entity, slot) and one entity row per entity, as a validated fleet."""
    noun = f"{level}s"
    if frame.empty or frame["cores"].notna().sum() == 0:
        raise DataValidationError(f"{source}: no {USAGE[level]} samples in this range")
    frame = frame[frame["cores"].notna()]
    cpu_req = frame["cpu_request"].where(frame["cpu_request"] > 0)
    mem_req = frame["mem_request"].where(frame["mem_request"] > 0)
    provisioned = cpu_req.notna().groupby(level=0).any()
    dropped = provisioned.index[~provisioned.to_numpy()]
    if len(dropped):
        log.warning(
            "prometheus: %d %s have no CPU request or limit, left out (first: %s)", len(dropped), noun, dropped[0]
        )
    util = pd.DataFrame({"cpu_util": frame["cores"] / cpu_req, "mem_util": frame["mem_bytes"] / mem_req})
    util = util[util["cpu_util"].notna()]
    values = util.to_numpy()
    finite = np.isfinite(values)
    clipped = int((finite & ((values < 0) | (values > UTIL_MAX))).sum())
    if clipped:
        log.warning("prometheus: %d utilisation values clipped to [0, %s]", clipped, UTIL_MAX)
    util[:] = np.where(finite, np.clip(values, 0.0, UTIL_MAX), np.nan)
    ids = util.index.get_level_values(0).unique()
    cores = cpu_req.groupby(level=0).median().reindex(ids).to_numpy()
    gib = (mem_req.groupby(level=0).median().reindex(ids) / 2**30).to_numpy()
    gib = np.where(gib > 0, gib, cores * 4.0)  # no memory request: assume 4 GiB per core, mem_util stays NaN
    kinds = [_kind(level, entity) for entity in ids]
    entities = pd.DataFrame(
        {
            "entity_id": pd.array(ids, dtype="string"),
            "service": ["node" if level == "node" else e.split("/", 1)[0] for e in ids],
            "instance_type": [f"k8s-{k}-{c:.4g}c-{g:.3g}g" for k, c, g in zip(kinds, cores, gib, strict=True)],
            "region": region,
            "vcpus": cores,
            "mem_gib": gib,
            "hourly_price": estimate_hourly_price(cores, gib),
        }
    )
    slots = util.reset_index()
    slots.columns = ["entity_id", "slot", "cpu_util", "mem_util"]
    return stream_to_fleet(slots, entities, f"prometheus:{source}")


def _kind(level: str, entity: str) -> str:
    if level != "workload":
        return level
    return entity.split("/")[1].lower() if entity.count("/") >= 2 else "pod"


def _matchers(*items: str) -> str:
    inside = ",".join(i for i in items if i)
    return f"{{{inside}}}" if inside else ""


def _escape(value: str | None) -> str:
    return (value or "").replace("\\", "\\\\").replace('"', '\\"')
