"""Any long CSV with a header, one row per (entity, sample): the format of last resort.

Traces we have no reader for (PlanetLab, Google, a team's own monitoring export) are usually
a flat table away from this, so mapping columns is cheaper than a new module. ``columns``
maps canonical names to the file's (``{"ts": "time", "entity_id": "host", "cpu_util":
"cpu"}``); unmapped canonical names are looked up as they are. Timestamps may be epoch
seconds or milliseconds (``ts_unit``; milliseconds when above 1e11 if not said) or ISO
strings. Utilisation is taken as percent when its maximum exceeds 1.5 unless
``util_percent`` says.

Options: ``columns``, ``ts_unit``, ``util_percent``, ``delimiter``, ``service``, ``region``,
``vcpus``, ``mem_gib``.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from ml_cloud_optimizer.data.schema import VALUE_COLUMNS, DataValidationError, Fleet
from ml_cloud_optimizer.data.traces._stream import (
    batches,
    csv_fields,
    entity_frame,
    epoch_of,
    first_line,
    is_number,
    snap,
    to_fleet,
)

__all__ = ["read", "sniff"]

FILE_PREFIX = None
READS_CSV_DIRECTORY = False  # one file: its header is the schema


def sniff(_path: Path, line: str) -> bool:
    """A header: at least two fields, none of them a number. Asked last, after every other format."""
    fields = csv_fields(line)
    return len(fields) >= 2 and not any(is_number(f) for f in fields)


def read(
    path: Path,
    *,
    columns: dict[str, str] | None = None,
    ts_unit: str | None = None,
    util_percent: bool | None = None,
    delimiter: str = ",",
    service: str = "unknown",
    region: str = "unknown",
    vcpus: int = 1,
    mem_gib: float = 4.0,
) -> Fleet:
    """Read one long CSV; the mapping is checked against its header before any row is read."""
    if ts_unit not in (None, "s", "ms"):
        raise DataValidationError(f"ts_unit must be 's' or 'ms', got {ts_unit!r}")
    canonical = ["ts", "entity_id", *VALUE_COLUMNS]
    mapping = dict(columns or {})
    unknown = sorted(set(mapping) - set(canonical))
    if unknown:
        raise DataValidationError(
            f"columns: unknown canonical name {', '.join(unknown)}; known: {', '.join(canonical)}"
        )
    header = [c.strip() for c in first_line(path).split(delimiter)]
    for name, source in mapping.items():
        if source not in header:
            raise DataValidationError(
                f"{path}: column {source!r} (mapped to {name}) is not in the header; columns are: {', '.join(header)}"
            )
    sources = {name: mapping.get(name, name) for name in canonical if mapping.get(name, name) in header}
    for required in ("ts", "entity_id", "cpu_util"):
        if required not in sources:
            raise DataValidationError(
                f"{path}: no column for {required}; name the one that holds it in the column mapping"
                f" ({required}=<column>); columns are: {', '.join(header)}"
            )
    types = {src: pa.string() if name in ("ts", "entity_id") else pa.float64() for name, src in sources.items()}
    parts = (
        batch.rename(columns={src: name for name, src in sources.items()})
        .assign(t=lambda b: epoch_of(b["ts"], ts_unit, path))
        .drop(columns="ts")
        for batch in batches(path, "a long CSV", delimiter=delimiter, types=types, include=list(types))
    )
    slots = snap(parts, path)
    for col in ("cpu_util", "mem_util"):
        if col in slots and (util_percent or (util_percent is None and slots[col].max() > 1.5)):
            slots[col] = slots[col] / 100.0
    ids = slots["entity_id"].unique()
    entities = entity_frame(ids, "vm", service=service, region=region, vcpus=vcpus, mem_gib=mem_gib)
    return to_fleet(slots, entities, f"long:{path}")
