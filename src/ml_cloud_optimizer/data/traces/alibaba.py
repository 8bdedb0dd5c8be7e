"""Alibaba cluster-trace-v2018: ``machine_usage.csv``.

No header; samples about every 10 s, averaged onto the 5-minute grid. CPU and memory percent
are kept; network and disk are normalised to [0, 100] in that trace, not rates, so they are
left empty rather than passed off as throughput. Machine sizes are not in the readings
(memory is normalised throughout that trace): ``vcpus`` (default 96, the usual ``cpu_num``
in its ``machine_meta.csv``) and ``mem_gib`` (default 512, an assumption) say what to take.

Options: ``epoch`` (default 2018-01-01 UTC), ``vcpus``, ``mem_gib``, ``service``, ``region``.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from ml_cloud_optimizer.data.schema import Fleet
from ml_cloud_optimizer.data.traces._stream import (
    batches,
    csv_fields,
    entity_frame,
    epoch_seconds,
    is_number,
    numbered,
    snap,
    to_fleet,
    with_percent,
)

__all__ = ["read", "sniff"]

_COLUMNS = [
    "entity_id",
    "t",
    "cpu_util",
    "mem_util",
    "mem_gps",
    "mkpi",
    "net_in",
    "net_out",
    "disk_io_percent",
]

# The trace's own file name; a directory holding it is an Alibaba trace.
FILE_PREFIX = "machine_usage"
READS_CSV_DIRECTORY = False


def sniff(_path: Path, line: str) -> bool:
    """A headerless row of nine fields: machine id (``m_1932``), then a timestamp."""
    numeric = [is_number(f) for f in csv_fields(line)]
    return len(numeric) == 9 and not numeric[0] and numeric[1]


def read(
    path: Path,
    *,
    epoch: str = "2018-01-01T00:00:00Z",
    vcpus: float = 96,
    mem_gib: float = 512.0,
    service: str = "alibaba",
    region: str = "cn",
) -> Fleet:
    """Read ``machine_usage.csv`` (or its parts in a directory), anchored at ``epoch``."""
    offset = epoch_seconds(epoch)
    files = [path] if path.is_file() else numbered(path.glob(f"{FILE_PREFIX}*"))
    types = {"entity_id": pa.string(), "t": pa.float64(), "cpu_util": pa.float64(), "mem_util": pa.float64()}
    parts = (
        with_percent(batch.assign(t=batch["t"] + offset), "cpu_util", "mem_util")
        for file in files
        for batch in batches(file, "Alibaba machine_usage", names=_COLUMNS, types=types, include=list(types))
    )
    slots = snap(parts, path)
    ids = slots["entity_id"].unique()
    entities = entity_frame(ids, "ali", service=service, region=region, vcpus=vcpus, mem_gib=mem_gib)
    return to_fleet(slots, entities, f"alibaba:{path}")
