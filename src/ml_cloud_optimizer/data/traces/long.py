"""Any long CSV with a header, one row per (entity, sample): the format of last resort.

Traces we have no reader for (PlanetLab, Google, a team's own monitoring export) are usually
a flat table away from this, so mapping columns is cheaper than a new module. ``columns``
maps canonical names to the file's (``{"ts": "time", "entity_id": "host", "cpu_util":
"cpu"}``); unmapped canonical names are looked up as they are. Without a mapping, a column the
file names the common way stands in for a canonical name it lacks (``ALIASES``: ``timestamp``
or ``time`` for ``ts``, ``vm_id``, ``host`` or ``machine_id`` for ``entity_id``, ``cpu`` for
``cpu_util``...), when exactly one such column is there: that is how the shared PlanetLab trace
(``timestamp,entity_id,cpu_util``, unix seconds, integer percent) reads without flags. A
mapping, once given, is followed to the letter.

Nothing in such a file says its units, so none is guessed where two readings fit:

* ``time_unit`` (``s``, ``ms``, ``us``, ``ns`` or ``iso``): when not given, epoch numbers are
  told apart by magnitude and text is read as ISO dates; a file mixing units (seconds and
  milliseconds) is refused, naming ``--time-unit``.
* ``cpu_unit`` (``fraction`` or ``percent``), for ``cpu_util`` and ``mem_util`` alike: when not
  given, a value above 1.5 means percent; a file whose values all stay at or below 1.5 (a busy
  trace in fractions, or an idle one in percent) is refused, naming ``--cpu-unit``.

Options: ``columns``, ``time_unit``, ``cpu_unit``, ``delimiter``, ``service``, ``region``,
``vcpus``, ``mem_gib``.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow as pa

from ml_cloud_optimizer.data.schema import UTIL_MAX, VALUE_COLUMNS, DataValidationError, Fleet
from ml_cloud_optimizer.data.traces._stream import (
    CPU_UNITS,
    Clock,
    batches,
    csv_fields,
    entity_frame,
    first_line,
    is_number,
    snap,
    to_fleet,
    with_percent,
)

__all__ = ["ALIASES", "read", "sniff", "util_unit"]

# Other names a header gives the canonical columns, asked only when no mapping is given.
ALIASES: dict[str, tuple[str, ...]] = {
    "ts": ("timestamp", "time", "datetime"),
    "entity_id": ("vm_id", "vm", "host", "machine_id", "instance"),
    "cpu_util": ("cpu", "cpu_usage", "cpu_percent"),
    "mem_util": ("mem", "memory", "mem_usage", "mem_percent"),
}

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
    time_unit: str | None = None,
    cpu_unit: str | None = None,
    delimiter: str = ",",
    service: str = "unknown",
    region: str = "unknown",
    vcpus: float = 1,
    mem_gib: float = 4.0,
) -> Fleet:
    """Read one long CSV; the mapping and units are checked before any row is read."""
    clock = Clock(path, time_unit)
    if cpu_unit is not None:
        util_unit(pd.DataFrame(), cpu_unit, path)  # refuses an unknown unit before reading
    canonical = ["ts", "entity_id", *VALUE_COLUMNS]
    mapping = dict(columns or {})
    unknown = sorted(set(mapping) - set(canonical))
    if unknown:
        raise DataValidationError(
            f"columns: unknown canonical name {', '.join(unknown)}; known: {', '.join(canonical)}"
        )
    header = [c.strip() for c in first_line(path).split(delimiter)]
    if columns is None:
        mapping = _aliased(header)
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
        .assign(t=lambda b: clock.seconds(b["ts"]))
        .drop(columns="ts")
        for batch in batches(path, "a long CSV", delimiter=delimiter, types=types, include=list(types))
    )
    slots = snap(parts, path)
    if util_unit(slots, cpu_unit, path) == "percent":
        slots = with_percent(slots, *(c for c in ("cpu_util", "mem_util") if c in slots))
    ids = slots["entity_id"].unique()
    entities = entity_frame(ids, "vm", service=service, region=region, vcpus=vcpus, mem_gib=mem_gib)
    return to_fleet(slots, entities, f"long:{path}")


def _aliased(header: list[str]) -> dict[str, str]:
    """Canonical names the header lacks but names one way of ``ALIASES`` (exactly one of them)."""
    found = {}
    for name, aliases in ALIASES.items():
        present = [a for a in aliases if a in header]
        if name not in header and len(present) == 1:
            found[name] = present[0]
    return found


def util_unit(slots: pd.DataFrame, cpu_unit: str | None, path: Path) -> str:
    """ "fraction" or "percent": the unit of ``cpu_util`` and ``mem_util`` where no format fixes it.

    One unit for both, as exports write them. ``cpu_unit`` is obeyed when given (a "fraction"
    that goes above ``UTIL_MAX`` is refused, as it must be percent). Otherwise a value above
    ``UTIL_MAX`` means percent; when none is, the values fit a busy trace in fractions as well as
    an idle one in percent, and the caller must say which.
    """
    columns = [c for c in ("cpu_util", "mem_util") if c in slots and slots[c].notna().any()]
    peak = max((float(slots[c].max()) for c in columns), default=0.0)
    if cpu_unit is not None:
        if cpu_unit not in CPU_UNITS:
            raise DataValidationError(f"cpu unit {cpu_unit!r}: expected one of {', '.join(CPU_UNITS)}")
        if cpu_unit == "fraction" and peak > UTIL_MAX:
            raise DataValidationError(
                f"{path}: utilisation reaches {peak:g}, above {UTIL_MAX:g}, so it is not a fraction;"
                " pass --cpu-unit percent"
            )
        return cpu_unit
    if peak > UTIL_MAX:
        return "percent"
    raise DataValidationError(
        f"{path}: cannot tell whether utilisation is a fraction or percent: no value exceeds {UTIL_MAX:g}"
        f" (highest {peak:g}), which fits a busy trace in fractions and an idle one in percent;"
        " say which with --cpu-unit {fraction,percent} (cpu_unit= in read_trace)"
    )
