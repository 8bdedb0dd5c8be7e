"""Bitbrains GWA-T-12: the shipped long CSV, or the original per-VM files.

Both layouts live here because they are one trace: the shared copy in
``shared/data/traces/bitbrains_rnd_2013_08/`` is the original per-VM files already joined
into one long CSV (``entities.csv`` beside it), and a user holding the download from the Grid
Workloads Archive has the per-VM ``<n>.csv`` files (``;\\t``-separated; the entity id is
the file's stem, after ``id_prefix``).

Utilisation is percent in both layouts (the dataset says so). Timestamps are epoch numbers
whose unit is told apart by magnitude (the per-VM header says ``[ms]`` but the published
files hold seconds); a trace mixing units is refused unless ``time_unit`` says which.

Options: ``service`` (default "bitbrains-rnd" for the shipped trace, "bitbrains" for per-VM
files), ``region``, ``id_prefix``, ``time_unit`` (``s``, ``ms``, ``us`` or ``ns``).
"""

from __future__ import annotations

import io
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv

from ml_cloud_optimizer.data.schema import DataValidationError, Fleet
from ml_cloud_optimizer.data.traces._stream import (
    Clock,
    batches,
    csv_fields,
    data_csvs,
    entity_frame,
    first_line,
    snap,
    to_fleet,
    with_percent,
)

__all__ = ["read", "sniff"]

# Original GWA-T-12 per-VM header -> our name.
_GWA_COLUMNS = {
    "Timestamp [ms]": "t",
    "CPU cores": "vcpus",
    "CPU usage [%]": "cpu_util",
    "Memory capacity provisioned [KB]": "mem_capacity_kb",
    "Memory usage [KB]": "mem_usage_kb",
    "Disk read throughput [KB/s]": "disk_read_kbps",
    "Disk write throughput [KB/s]": "disk_write_kbps",
    "Network received throughput [KB/s]": "net_in_kbps",
    "Network transmitted throughput [KB/s]": "net_out_kbps",
}
# The shipped long CSV's header -> our name.
_SHIPPED_COLUMNS = {
    "timestamp": "t",
    "entity_id": "entity_id",
    "cpu_util": "cpu_util",
    "mem_util": "mem_util",
    "mem_capacity_kb": "mem_capacity_kb",
    "disk_read_kbps": "disk_read_kbps",
    "disk_write_kbps": "disk_write_kbps",
    "net_rx_kbps": "net_in_kbps",
    "net_tx_kbps": "net_out_kbps",
}
_SHIPPED_TYPES = {c: pa.string() if c == "entity_id" else pa.float64() for c in _SHIPPED_COLUMNS}

# The per-VM files are named only by number: no file name says "Bitbrains".
FILE_PREFIX = None
# A directory of arbitrary ``*.csv`` files is a Bitbrains trace when its first one is: the
# per-VM files are named only by number, so nothing but their content says what they are.
READS_CSV_DIRECTORY = True


def sniff(_path: Path, line: str) -> bool:
    """A per-VM file's header names ``Timestamp [ms]``; the shipped CSV has all its columns."""
    return "Timestamp [ms]" in line or _is_shipped(line)


def read(
    path: Path, *, service: str | None = None, region: str = "nl", id_prefix: str = "", time_unit: str | None = None
) -> Fleet:
    """Read the shipped long CSV (preferred when present) or the original per-VM files."""
    if time_unit == "iso":
        raise DataValidationError("time unit 'iso': Bitbrains timestamps are epoch numbers; pass s, ms, us or ns")
    clock = Clock(path, time_unit)
    files = [path] if path.is_file() else data_csvs(path)
    shipped = [p for p in files if _is_shipped(first_line(p))]
    if shipped:
        parts = (
            with_percent(batch.rename(columns=_SHIPPED_COLUMNS), "cpu_util", "mem_util").assign(
                t=lambda b: clock.seconds(b["t"])
            )
            for file in shipped
            for batch in batches(file, "a Bitbrains trace", types=_SHIPPED_TYPES, include=list(_SHIPPED_TYPES))
        )
        slots = snap(parts, path)
        catalogue = shipped[0].parent / "entities.csv"
        if catalogue.is_file():
            try:
                attrs = pd.read_csv(catalogue, usecols=["entity_id", "cpu_cores", "mem_capacity_kb_median"])
            except (ValueError, OSError) as exc:
                reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                raise DataValidationError(f"{catalogue}: cannot read the entity catalogue: {reason}") from None
            attrs = attrs.set_index("entity_id").reindex(slots["entity_id"].unique())
            vcpus, mem_kb = attrs["cpu_cores"].fillna(1), attrs["mem_capacity_kb_median"]
        else:
            vcpus, mem_kb = None, slots.groupby("entity_id", sort=False)["mem_capacity_kb"].median()
        service = service or "bitbrains-rnd"
    else:
        slots = snap((_gwa_frame(f, id_prefix, clock) for f in files), path)
        per_entity = slots.groupby("entity_id", sort=False)
        vcpus, mem_kb = per_entity["vcpus"].median(), per_entity["mem_capacity_kb"].median()
        service = service or "bitbrains"
    ids = slots["entity_id"].unique()
    vcpus = np.ones(ids.size) if vcpus is None else np.asarray(vcpus, dtype=float)
    mem_gib = np.asarray(mem_kb, dtype=float) / 1024**2
    mem_gib = np.where(mem_gib > 0, mem_gib, 1.0)  # a VM booked with no memory yet
    vcpus = np.maximum(1, np.round(vcpus))
    entities = entity_frame(ids, "bb", service=service, region=region, vcpus=vcpus, mem_gib=mem_gib)
    return to_fleet(slots, entities, f"bitbrains:{path}")


def _is_shipped(line: str) -> bool:
    return set(_SHIPPED_COLUMNS) <= set(csv_fields(line))


def _gwa_frame(file: Path, id_prefix: str, clock: Clock) -> pd.DataFrame:
    """One original GWA-T-12 per-VM file; its ``;\\t`` separator is two characters, which pyarrow cannot split on.

    A per-VM file is small (a month of one VM), so it is read whole rather than streamed.
    """
    try:
        text = re.sub(rb";[ \t]*", b";", file.read_bytes())
        table = pacsv.read_csv(io.BytesIO(text), parse_options=pacsv.ParseOptions(delimiter=";"))
    except (pa.ArrowInvalid, OSError) as exc:
        reason = str(exc).strip().splitlines()[0]
        raise DataValidationError(f"{file}: cannot read as a GWA-T-12 per-VM file: {reason}") from None
    frame = table.to_pandas().rename(columns=lambda c: c.strip())
    missing = [c for c in _GWA_COLUMNS if c not in frame.columns]
    if missing:
        raise DataValidationError(f"{file}: not a GWA-T-12 per-VM file; missing columns {', '.join(missing)}")
    try:
        frame = frame[list(_GWA_COLUMNS)].rename(columns=_GWA_COLUMNS).astype("float64")
    except (ValueError, TypeError) as exc:
        raise DataValidationError(f"{file}: a GWA-T-12 column holds a value that is not a number: {exc}") from None
    frame["t"] = clock.seconds(frame["t"])
    usage, capacity = frame.pop("mem_usage_kb"), frame["mem_capacity_kb"]
    # Zero capacity (not yet booked) or usage above it (reboots, resizes) gives no utilisation.
    frame["mem_util"] = (usage / capacity).where((capacity > 0) & (usage <= capacity))
    frame["cpu_util"] = frame["cpu_util"] / 100.0
    frame.insert(0, "entity_id", f"{id_prefix}{file.stem}")
    return frame
