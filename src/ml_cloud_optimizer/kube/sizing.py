"""From ``mlco recommend``'s table (totals per entity and hour) to requests per pod and container.

Why a step of its own: ``optimizer.capacity.recommend`` sizes an entity as a whole: at the
workload level of a Prometheus source, the cores and GiB of all its replicas together. A VPA
policy, a patched Deployment and a KEDA threshold speak of one container of one pod. So each
total is divided by the replicas and split among the pod's containers by the share of the pod's
request each holds today (``WorkloadShape``, read from the cluster by
``data.traces.prometheus.containers``, else ``DEFAULT_SHAPE``: one pod, one container ``app``).

Over the hours of the table, per resource: ``target`` is the latest hour's request (what to
set now), ``lower`` and ``upper`` the smallest and largest hourly request of the window (what
our quantile forecasts asked for at their lowest and highest; a VPA keeps its recommender
within them). A request that is not finite or not positive is refused with a ValueError that
names the entity and hour, never written into an object a cluster would apply.

Entity ids that are not ``namespace/Kind/name`` (a VM of a trace, a pod ``ns/pod``) become a
workload of a chosen kind and namespace whose name is a DNS-1123 label derived from the id:
kept when it already is one, else cleaned and given a short hash of the id, so two ids never
collide and the same id always gives the same name.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import pandas as pd

__all__ = [
    "DEFAULT_SHAPE",
    "ContainerShape",
    "ContainerSizing",
    "ResourceBounds",
    "Workload",
    "WorkloadShape",
    "WorkloadSizing",
    "dns_label",
    "is_dns_label",
    "size_workloads",
]

GIB = 2**30
TARGETS = ("cpu", "mem")  # as resources.parse_targets names them
_SHARE_TOLERANCE = 1e-6
_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_KIND = re.compile(r"^[A-Z][A-Za-z0-9]*$")


def is_dns_label(text: str) -> bool:
    """Whether ``text`` is an RFC 1123 label (a namespace, a Service): ``[a-z0-9-]``, at most 63 characters."""
    return len(text) <= 63 and _LABEL.match(text) is not None


def dns_label(text: str) -> str:
    """``text`` as an RFC 1123 label: itself when it is one, else cleaned plus 6 hex of its SHA-1 (stable, distinct)."""
    text = str(text)
    if is_dns_label(text):
        return text
    clean = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    digest = hashlib.sha1(text.encode()).hexdigest()[:6]
    return f"{clean[:56].rstrip('-')}-{digest}" if clean else f"w-{digest}"


@dataclass(frozen=True)
class Workload:
    """A workload as Kubernetes names it: namespace, kind (Deployment, StatefulSet, ...) and name."""

    namespace: str
    kind: str
    name: str

    @property
    def entity_id(self) -> str:
        """``namespace/Kind/name``, as the workload level of a Prometheus source names entities."""
        return f"{self.namespace}/{self.kind}/{self.name}"

    @classmethod
    def from_entity(cls, entity_id: str, namespace: str = "default", kind: str = "Deployment") -> Workload:
        """``ns/Kind/name`` as is; any other id a ``kind`` in ``namespace`` named by ``dns_label`` of the id."""
        parts = str(entity_id).split("/")
        if len(parts) == 3 and is_dns_label(parts[0]) and _KIND.match(parts[1]) and _is_subdomain(parts[2]):
            return cls(parts[0], parts[1], parts[2])
        if not is_dns_label(namespace):
            raise ValueError(f"namespace {namespace!r}: not a Kubernetes namespace name ([a-z0-9-], 63 at most)")
        if not _KIND.match(kind):
            raise ValueError(f"kind {kind!r}: expected a Kubernetes kind such as Deployment")
        return cls(namespace, kind, dns_label(str(entity_id)))


@dataclass(frozen=True)
class ContainerShape:
    """One container of a pod and the share of the pod's CPU and memory request it holds (0 to 1)."""

    name: str
    cpu_share: float
    mem_share: float


@dataclass(frozen=True)
class WorkloadShape:
    """A workload's replicas and containers; per resource the containers' shares sum to 1."""

    replicas: int
    containers: tuple[ContainerShape, ...]

    def __post_init__(self) -> None:
        if int(self.replicas) != self.replicas or self.replicas < 1:
            raise ValueError(f"replicas {self.replicas}: a workload has at least one whole replica")
        names = [c.name for c in self.containers]
        if not names or len(set(names)) != len(names) or not all(is_dns_label(n) for n in names):
            raise ValueError(f"containers {names}: expected one or more distinct container names")
        for what in ("cpu_share", "mem_share"):
            shares = [getattr(c, what) for c in self.containers]
            if not all(math.isfinite(s) and s >= 0 for s in shares) or abs(sum(shares) - 1) > _SHARE_TOLERANCE:
                raise ValueError(f"{what} {shares}: shares must be non-negative and sum to 1")


DEFAULT_SHAPE = WorkloadShape(1, (ContainerShape("app", 1.0, 1.0),))


@dataclass(frozen=True)
class ResourceBounds:
    """One resource of one container of one pod (cores or bytes): what to request now, and the window's range."""

    target: float
    lower: float
    upper: float

    def __post_init__(self) -> None:
        values = (self.lower, self.target, self.upper)
        if not all(math.isfinite(v) and v > 0 for v in values) or not self.lower <= self.target <= self.upper:
            raise ValueError(
                f"bounds lower={self.lower} target={self.target} upper={self.upper}: expected 0 < l <= t <= u"
            )


@dataclass(frozen=True)
class ContainerSizing:
    """A container's CPU (cores) and memory (bytes) per pod; None where the resource is not ours to set."""

    name: str
    cpu: ResourceBounds | None
    memory: ResourceBounds | None


@dataclass(frozen=True)
class WorkloadSizing:
    """A workload's per-container sizing, and its totals over all replicas at the latest hour."""

    workload: Workload
    replicas: int
    containers: tuple[ContainerSizing, ...]
    p90_cores: float  # NaN when CPU was not forecast
    request_cores: float
    current_cores: float


def size_workloads(
    recs: pd.DataFrame,
    shapes: Mapping[str, WorkloadShape] | None = None,
    *,
    targets: Iterable[str] = TARGETS,
    namespace: str = "default",
    kind: str = "Deployment",
) -> list[WorkloadSizing]:
    """Per entity of ``recs`` (``mlco recommend``'s table), its requests per pod and container, by entity id.

    Args:
        recs: one row per (entity_id, hour) with request_cores, request_mem_gib, p90_cores, current_cores.
        shapes: replicas and container shares by entity id; an entity without one takes ``DEFAULT_SHAPE``.
        targets: the resources recommended (``cpu``, ``mem``); the other is None in every container.
        namespace, kind: where an entity id that is not ``ns/Kind/name`` is placed (``Workload.from_entity``).

    Raises:
        ValueError: an unknown target, a missing column, a request that is not a positive finite
            number, or two entities that name the same workload.
    """
    targets = tuple(targets)
    unknown = sorted(set(targets) - set(TARGETS))
    if unknown:
        raise ValueError(f"targets {unknown}: expected cpu and/or mem")
    needed = ["entity_id", "hour", "request_cores", "request_mem_gib", "p90_cores", "current_cores"]
    missing = [c for c in needed if c not in recs.columns]
    if missing:
        raise ValueError(f"recommendations lack column(s) {', '.join(missing)}")
    shapes = shapes or {}
    sized: dict[Workload, WorkloadSizing] = {}
    for entity, rows in recs.groupby(recs["entity_id"].astype(str), sort=True):
        rows = rows.sort_values("hour", kind="stable")
        shape = shapes.get(entity, DEFAULT_SHAPE)
        cpu = _window(rows, "request_cores", 1.0) if "cpu" in targets else None
        mem = _window(rows, "request_mem_gib", GIB) if "mem" in targets else None
        containers = tuple(
            ContainerSizing(c.name, _per_container(cpu, c.cpu_share, shape), _per_container(mem, c.mem_share, shape))
            for c in shape.containers
        )
        workload = Workload.from_entity(entity, namespace, kind)
        if workload in sized:
            raise ValueError(f"{entity} and {sized[workload].workload.entity_id} both name {workload.entity_id}")
        latest = rows.iloc[-1]
        sized[workload] = WorkloadSizing(
            workload,
            shape.replicas,
            containers,
            p90_cores=float(latest["p90_cores"]),
            request_cores=_positive(latest["request_cores"], entity, latest["hour"], "request_cores"),
            current_cores=float(latest["current_cores"]),
        )
    return list(sized.values())


def _window(rows: pd.DataFrame, column: str, unit: float) -> ResourceBounds:
    """The latest, smallest and largest hourly request of ``column`` in ``unit``s, each checked."""
    entity = str(rows["entity_id"].iloc[0])
    values = [_positive(v, entity, h, column) * unit for v, h in zip(rows[column], rows["hour"], strict=True)]
    return ResourceBounds(target=values[-1], lower=min(values), upper=max(values))


def _per_container(total: ResourceBounds | None, share: float, shape: WorkloadShape) -> ResourceBounds | None:
    """A container's part of one pod of ``total``; None when there is no total or the container requests none."""
    if total is None or share == 0:
        return None
    per = share / shape.replicas
    return ResourceBounds(total.target * per, total.lower * per, total.upper * per)


def _positive(value: object, entity: str, hour: object, column: str) -> float:
    number = float(value)  # type: ignore[arg-type]
    if not math.isfinite(number) or number <= 0:
        raise ValueError(
            f"{entity}: {column} is {number} at {hour}; a request must be a positive finite number,"
            " so no Kubernetes object is written for it"
        )
    return number


def _is_subdomain(text: str) -> bool:
    return len(text) <= 253 and _SUBDOMAIN.match(text) is not None
