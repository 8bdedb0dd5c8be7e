"""Azure Public Dataset V1: ``vm_cpu_readings-file-*-of-*.csv(.gz)``.

The readings have no header: timestamp (seconds from the trace start), VM id, min, max and
average CPU percent. The average is used, anchored at ``epoch`` (default 2017-01-01 UTC),
because the dataset publishes no calendar date. The readings say nothing about the VM, so
each is taken as 1 vCPU and 4 GiB unless ``vmtable`` (the dataset's ``vmtable.csv``) gives
core count, memory and category.

Options: ``epoch``, ``vmtable``, ``service``, ``region``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from ml_cloud_optimizer.data.schema import Fleet
from ml_cloud_optimizer.data.traces._stream import (
    batches,
    csv_fields,
    entity_frame,
    epoch_seconds,
    existing,
    is_number,
    numbered,
    snap,
    to_fleet,
    with_percent,
)

__all__ = ["read", "sniff"]

_COLUMNS = ["t", "entity_id", "min_cpu", "max_cpu", "cpu_util"]
_VMTABLE_COLUMNS = [
    "vmid",
    "subscriptionid",
    "deploymentid",
    "vmcreated",
    "vmdeleted",
    "maxcpu",
    "avgcpu",
    "p95maxcpu",
    "vmcategory",
    "vmcorecount",
    "vmmemory",
]

# The dataset's own file names; a directory holding any of them is an Azure trace.
FILE_PREFIX = "vm_cpu_readings"
READS_CSV_DIRECTORY = False


def sniff(_path: Path, line: str) -> bool:
    """A headerless row: number, VM id (a hash, not a number), then three numbers."""
    numeric = [is_number(f) for f in csv_fields(line)]
    return numeric == [True, False, True, True, True]


def read(
    path: Path,
    *,
    epoch: str = "2017-01-01T00:00:00Z",
    vmtable: str | Path | None = None,
    service: str = "azure",
    region: str = "azure",
) -> Fleet:
    """Read one readings file or a directory of them, in the dataset's numbered order."""
    offset = epoch_seconds(epoch)
    files = [path] if path.is_file() else numbered(path.glob(f"{FILE_PREFIX}*"))
    types = {"t": pa.float64(), "entity_id": pa.string(), "cpu_util": pa.float64()}

    def readings():
        for file in files:
            for batch in batches(file, "Azure CPU readings", names=_COLUMNS, types=types, include=list(types)):
                yield with_percent(batch.assign(t=batch["t"] + offset), "cpu_util")

    slots = snap(readings(), path)
    ids = slots["entity_id"].unique()
    services: str | np.ndarray = service  # one service for all, unless the VM table says
    vcpus, mem_gib = np.ones(ids.size), np.full(ids.size, 4.0)
    if vmtable is not None:
        vcpus, mem_gib, services = _sizes(existing(vmtable), ids, service)
    entities = entity_frame(ids, "azure", service=services, region=region, vcpus=vcpus, mem_gib=mem_gib)
    return to_fleet(slots, entities, f"azure:{path}")


def _sizes(table: Path, ids: np.ndarray, service: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """vCPUs, GiB and category per VM from ``vmtable.csv``; streamed, as it lists millions of VMs."""
    include = ["vmid", "vmcategory", "vmcorecount", "vmmemory"]
    types = dict.fromkeys(include, pa.string())
    chunks = batches(table, "an Azure vmtable", names=_VMTABLE_COLUMNS, include=include, types=types)
    rows = pd.concat(b[b["vmid"].isin(ids)] for b in chunks)
    rows = rows.drop_duplicates("vmid").set_index("vmid").reindex(ids)
    cores, memory = _bucket_bound(rows["vmcorecount"]), _bucket_bound(rows["vmmemory"])
    vcpus = np.where(np.isnan(cores), 1.0, cores)
    mem_gib = np.where(np.isnan(memory), 4.0 * vcpus, memory)
    return vcpus, mem_gib, rows["vmcategory"].fillna(service).to_numpy()


def _bucket_bound(values: pd.Series) -> np.ndarray:
    """Azure's size buckets ("2", ">24") as numbers; "more than 24" is taken as 24."""
    return pd.to_numeric(values.str.lstrip("<>"), errors="coerce").to_numpy(dtype="float64")
