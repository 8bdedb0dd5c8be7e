"""A canonical fleet written as the Kubernetes series a Prometheus reader expects, in OpenMetrics text.

Why it exists: to try ``mlco`` against a real Prometheus without a cluster, backfill one from
any trace: ``promtool tsdb create-blocks-from openmetrics --max-block-duration=744h FILE DATA_DIR``
turns this file into TSDB blocks (the flag, hidden in promtool 2.x's help, makes it one pass
over the file rather than one per 2-hour block), and ``prometheus://HOST:PORT?level=pod`` then
reads the trace back the way it would read a cluster. Our Prometheus tests and benchmarks
are built the same way.

Each entity becomes one pod (its id sanitized to a DNS label) with one container, ``main``:

* ``container_cpu_usage_seconds_total``: a counter of core-seconds. A slot's value at ``ts``
  describes the 5 minutes ending at ``ts`` (what ``rate()`` at ``ts`` measures), so the counter
  at ``ts`` is the previous value plus ``cpu_util * vcpus * 300``. A sample of 0 one step before
  the entity's first slot starts it, so the first slot's rate can be taken.
* ``container_memory_working_set_bytes``: a gauge, ``mem_util * mem_gib * 2**30``.
* ``kube_pod_container_resource_requests``: constant ``resource="cpu"`` (``vcpus`` cores, which
  may be fractional) and ``resource="memory"`` (``mem_gib`` in bytes), one sample per slot so an
  instant query finds them at every step.

Gaps stay gaps: a slot missing from the fleet (or one without ``cpu_util``) has no sample in any
series and the counter does not advance over it, since nothing says what was used there; a
slot without ``mem_util`` has no memory sample. Prometheus then behaves as it would after
missed scrapes: a ``rate()`` window needs two counter samples, so the slot right after a gap
comes back only when the window spans the gap (and then the held counter lowers that rate); a
window longer than a step extrapolates into the first missing slot, and an instant query's
5-minute look-back can carry a gauge into one absent slot.

Lines are built column-wise with pyarrow (numbers formatted in C++, one buffer written per
block of entities): the Bitbrains trace, 1.7 million samples and 210 MB of text, takes about 2 s.
"""

from __future__ import annotations

import hashlib
import io
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from ml_cloud_optimizer.data.schema import STEP_SECONDS, DataValidationError, Fleet, epoch_seconds

__all__ = ["CONTAINER", "pod_name", "pod_names", "write_openmetrics"]

CONTAINER = "main"
_DNS_LABEL_MAX = 63
# Rows per block of entities: bounds memory to about 100 MB of text per block whatever the trace.
_BLOCK_ROWS = 500_000


def pod_name(entity_id: str) -> str:
    """``entity_id`` as a Kubernetes pod name (an RFC 1123 DNS label): ``rnd_41`` -> ``rnd-41``.

    Lower case, runs of anything but ``a-z0-9`` become ``-``, no ``-`` at either end, at most
    63 characters; an id with nothing left is ``pod``. Different ids may map to one name:
    ``pod_names`` tells them apart.
    """
    name = re.sub(r"[^a-z0-9]+", "-", str(entity_id).lower()).strip("-")[:_DNS_LABEL_MAX].rstrip("-")
    return name or "pod"


def pod_names(entity_ids) -> dict[str, str]:
    """Distinct pod names for distinct entity ids; ids whose names collide get a hash suffix.

    The suffix is the first 8 hex digits of the id's SHA-1, so a name does not depend on
    which other ids are in the fleet.
    """
    ids = [str(e) for e in pd.unique(pd.Series(list(entity_ids), dtype=object))]
    base = {e: pod_name(e) for e in ids}
    counts = pd.Series(list(base.values()), dtype=object).value_counts()
    names = {}
    for entity, name in base.items():
        if counts[name] > 1:
            digest = hashlib.sha1(entity.encode()).hexdigest()[:8]
            name = f"{name[: _DNS_LABEL_MAX - 9].rstrip('-')}-{digest}"
        names[entity] = name
    if len(set(names.values())) != len(names):
        raise DataValidationError("entity ids: two of them map to the same pod name even with a hash suffix")
    return names


def write_openmetrics(fleet: Fleet, path_or_file: str | Path | IO, namespace: str = "default") -> dict[str, str]:
    """Write ``fleet`` as one OpenMetrics text (ending in ``# EOF``) for ``promtool`` to backfill.

    Backfill with ``promtool tsdb create-blocks-from openmetrics --max-block-duration=744h FILE
    DATA_DIR``: without that flag promtool parses the whole file once per 2-hour block it makes,
    so a month takes minutes (5.5 for the Bitbrains trace) instead of seconds (10).

    Args:
        fleet: a canonical fleet; ``entities`` must hold ``vcpus`` (whole or fractional cores)
            and ``mem_gib`` for every entity in ``metrics``.
        path_or_file: a path, or an open file (text or binary).
        namespace: the pods' namespace.

    Returns:
        entity id -> ``namespace/pod``, the entity id the Prometheus reader gives it back as.

    Example:
        >>> pods = write_openmetrics(generate_fleet(5_000), "fleet.om")  # doctest: +SKIP
        >>> # then: promtool tsdb create-blocks-from openmetrics --max-block-duration=744h fleet.om data/
    """
    if isinstance(path_or_file, str | Path):
        with open(path_or_file, "wb") as handle:
            return _write(fleet, namespace, handle)
    if isinstance(path_or_file, io.TextIOBase):
        return _write(fleet, namespace, _TextSink(path_or_file))
    return _write(fleet, namespace, path_or_file)


class _TextSink:
    """Bytes written to a text file, decoded: the writer works in bytes throughout."""

    def __init__(self, handle: io.TextIOBase) -> None:
        self.handle = handle

    def write(self, data: bytes) -> None:
        self.handle.write(data.decode())


@dataclass
class _Samples:
    """Samples of one metric name: per row the entity, value and epoch second, in series order."""

    name: str
    labels: dict[str, str]
    entity: np.ndarray
    values: np.ndarray
    stamps: np.ndarray


def _write(fleet: Fleet, namespace: str, sink) -> dict[str, str]:
    """The three metric families, one after another (OpenMetrics forbids interleaving them)."""
    metrics, sizes = _prepared(fleet)
    names = pod_names(sizes.index)
    ns = _escape(namespace)
    labels = {e: f'namespace="{ns}",pod="{n}",container="{CONTAINER}"' for e, n in names.items()}
    families = [
        ("container_cpu_usage_seconds", "counter", "Cumulative CPU time consumed, in core-seconds.", _counter),
        ("container_memory_working_set_bytes", "gauge", "Current working set, in bytes.", _memory),
        ("kube_pod_container_resource_requests", "gauge", "Resources requested by a container.", _requests),
    ]
    for family, kind, help_text, build in families:
        sink.write(f"# HELP {family} {help_text}\n# TYPE {family} {kind}\n".encode())
        for block in _blocks(metrics):
            for samples in build(block, sizes, labels):
                sink.write(_lines(samples))
    sink.write(b"# EOF\n")
    return {entity: f"{namespace}/{name}" for entity, name in names.items()}


def _prepared(fleet: Fleet) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Rows with a CPU value, in (entity, ts) order, and each written entity's sizes."""
    metrics = fleet.metrics
    for column in ("entity_id", "ts", "cpu_util"):
        if column not in metrics.columns:
            raise DataValidationError(f"metrics: missing column {column}")
    mem = metrics["mem_util"] if "mem_util" in metrics.columns else pd.Series(np.nan, index=metrics.index)
    frame = pd.DataFrame(
        {
            "entity_id": metrics["entity_id"].astype(str).to_numpy(dtype=object),
            "t": epoch_seconds(metrics["ts"]),
            "cpu": pd.to_numeric(metrics["cpu_util"]).to_numpy(dtype="float64", na_value=np.nan),
            "mem": pd.to_numeric(mem).to_numpy(dtype="float64", na_value=np.nan),
        }
    )
    frame = frame[~np.isnan(frame["cpu"].to_numpy())]  # no CPU: a gap, like a missing row
    frame = frame.sort_values(["entity_id", "t"], kind="stable", ignore_index=True)
    if frame.duplicated(["entity_id", "t"]).any():
        raise DataValidationError("metrics: duplicate (entity_id, ts) keys; a counter cannot take two values at once")
    sizes = fleet.entities.assign(entity_id=fleet.entities["entity_id"].astype(str)).set_index("entity_id")
    unknown = pd.Index(frame["entity_id"].unique()).difference(sizes.index)
    if len(unknown):
        raise DataValidationError(f"metrics: {len(unknown)} entities have no row in entities (first: {unknown[0]})")
    sizes = sizes.loc[frame["entity_id"].unique(), ["vcpus", "mem_gib"]].astype("float64")
    if not ((sizes["vcpus"] > 0) & (sizes["mem_gib"] > 0)).all():
        raise DataValidationError("entities: vcpus and mem_gib must be positive to be written as requests")
    return frame, sizes


def _blocks(metrics: pd.DataFrame) -> Iterator[pd.DataFrame]:
    """Whole entities at a time, about ``_BLOCK_ROWS`` rows each."""
    entity = metrics["entity_id"].to_numpy()
    starts = np.flatnonzero(np.r_[True, entity[1:] != entity[:-1]])
    lo = 0
    while lo < len(metrics):
        cut = starts[starts >= lo + _BLOCK_ROWS]
        hi = int(cut[0]) if cut.size else len(metrics)
        yield metrics.iloc[lo:hi]
        lo = hi


def _counter(block: pd.DataFrame, sizes: pd.DataFrame, labels: dict[str, str]) -> list[_Samples]:
    """Per entity: 0 one step before its first slot, then the running total of core-seconds."""
    entity, stamps = block["entity_id"].to_numpy(), block["t"].to_numpy()
    first = np.r_[True, entity[1:] != entity[:-1]]
    used = pd.Series(block["cpu"].to_numpy() * sizes["vcpus"].reindex(entity).to_numpy() * STEP_SECONDS)
    total = used.groupby(np.cumsum(first)).cumsum().to_numpy()
    # Room for each entity's starting zero: row i moves down by the number of entities begun so far.
    index = np.arange(len(entity)) + np.cumsum(first)
    start = index[first] - 1
    values = np.zeros(len(entity) + int(first.sum()))
    times = np.zeros(len(values), dtype="int64")
    owners = np.empty(len(values), dtype=object)
    values[index], times[index], owners[index] = total, stamps, entity
    times[start], owners[start] = stamps[first] - STEP_SECONDS, entity[first]
    return [_Samples("container_cpu_usage_seconds_total", labels, owners, values, times)]


def _memory(block: pd.DataFrame, sizes: pd.DataFrame, labels: dict[str, str]) -> list[_Samples]:
    """The working set where ``mem_util`` is known; absent elsewhere."""
    known = block[~np.isnan(block["mem"].to_numpy())]
    entity = known["entity_id"].to_numpy()
    values = known["mem"].to_numpy() * sizes["mem_gib"].reindex(entity).to_numpy() * 2**30
    return [_Samples("container_memory_working_set_bytes", labels, entity, values, known["t"].to_numpy())]


def _requests(block: pd.DataFrame, sizes: pd.DataFrame, labels: dict[str, str]) -> list[_Samples]:
    """CPU then memory requests, constant, at every slot the entity has."""
    entity, stamps = block["entity_id"].to_numpy(), block["t"].to_numpy()
    out = []
    for resource, unit, amount in (("cpu", "core", sizes["vcpus"]), ("memory", "byte", sizes["mem_gib"] * 2**30)):
        tagged = {e: f'{text},resource="{resource}",unit="{unit}"' for e, text in labels.items()}
        out.append(
            _Samples("kube_pod_container_resource_requests", tagged, entity, amount.reindex(entity).to_numpy(), stamps)
        )
    return out


def _lines(samples: _Samples) -> bytes:
    """``name{labels} value timestamp\\n`` per row, built in pyarrow and returned as one buffer."""
    if len(samples.entity) == 0:
        return b""
    codes, uniques = pd.factorize(samples.entity)
    prefixes = pa.array([f"{samples.name}{{{samples.labels[e]}}}" for e in uniques], type=pa.string())
    prefix = pc.take(prefixes, pa.array(codes))
    value = pc.cast(pa.array(np.asarray(samples.values, dtype="float64")), pa.string())
    stamp = pc.cast(pa.array(np.asarray(samples.stamps, dtype="int64")), pa.string())
    line = pc.binary_join_element_wise(prefix, value, pc.binary_join_element_wise(stamp, "\n", ""), " ")
    offsets = np.frombuffer(line.buffers()[1], dtype="int32", count=len(line) + 1, offset=line.offset * 4)
    return line.buffers()[2].to_pybytes()[offsets[0] : offsets[-1]]


def _escape(value: str) -> str:
    """A label value as OpenMetrics quotes it."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
