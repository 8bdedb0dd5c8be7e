"""Real-trace readers: public VM traces turned into the canonical fleet.

Supported formats (``fmt``), with the options each reader takes:

* ``"bitbrains"``: the GWA-T-12 Bitbrains trace, either as shipped in
  ``shared/data/traces/bitbrains_rnd_2013_08/`` (one long CSV, ``entities.csv`` beside it)
  or as the original per-VM ``<n>.csv`` files (``;\\t``-separated; the entity id is the
  file's stem, after ``id_prefix``). Options: ``service`` (default "bitbrains-rnd" for the
  shipped trace, "bitbrains" for per-VM files), ``region``, ``id_prefix``.
* ``"azure"``: Azure Public Dataset V1 ``vm_cpu_readings-file-*-of-*.csv(.gz)``, no header:
  timestamp (seconds from the trace start), VM id, min, max and average CPU percent. The
  average is used, anchored at ``epoch`` (default 2017-01-01 UTC). The readings say nothing
  about the VM, so each is taken as 1 vCPU and 4 GiB unless ``vmtable`` (the dataset's
  ``vmtable.csv``) gives core count, memory and category. Options: ``epoch``, ``vmtable``,
  ``service``, ``region``.
* ``"alibaba"``: Alibaba cluster-trace-v2018 ``machine_usage.csv``, no header, samples about
  every 10 s. CPU and memory percent are kept; network and disk are normalised to [0, 100]
  there, not rates, so they are left empty. Machine sizes are not in the readings (memory is
  normalised throughout that trace): ``vcpus`` (default 96, the usual ``cpu_num`` in its
  ``machine_meta.csv``) and ``mem_gib`` (default 512, an assumption) say what to take.
  Options: ``epoch`` (default 2018-01-01 UTC), ``vcpus``, ``mem_gib``, ``service``, ``region``.
* ``"long"``: any long CSV with a header, one row per (entity, sample). ``columns`` maps
  canonical names to the file's (``{"ts": "time", "entity_id": "host", "cpu_util": "cpu"}``);
  unmapped canonical names are looked up as they are. Timestamps may be epoch seconds or
  milliseconds (``ts_unit``; milliseconds when above 1e11 if not said) or ISO strings.
  Utilisation is taken as percent when its maximum exceeds 1.5 unless ``util_percent``
  says. Options: ``columns``, ``ts_unit``, ``util_percent``, ``delimiter``, ``service``,
  ``region``, ``vcpus``, ``mem_gib``.

Every reader streams its files in blocks through pyarrow, snaps each sample to the nearest
300 s slot, averages the samples that share a slot and reports the gaps. Traces carry no
peak labels, so ``is_peak`` is left missing (NA).
"""

from __future__ import annotations

import gzip
import inspect
import io
import re
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv

from ml_cloud_optimizer.data.schema import (
    STEP,
    STEP_SECONDS,
    VALUE_COLUMNS,
    DataValidationError,
    Fleet,
    estimate_hourly_price,
    validate_fleet,
)

__all__ = ["FORMATS", "detect_format", "read_trace", "report_gaps"]

FORMATS = ("bitbrains", "azure", "alibaba", "long")

_BLOCK_BYTES = 16 << 20
_MS_THRESHOLD = 1e11  # epoch seconds stay below this until the year 5138
_EPOCH = pd.Timestamp(0, tz="UTC")

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
_AZURE_COLUMNS = ["t", "entity_id", "min_cpu", "max_cpu", "cpu_util"]
_AZURE_VMTABLE_COLUMNS = [
    "vmid", "subscriptionid", "deploymentid", "vmcreated", "vmdeleted",
    "maxcpu", "avgcpu", "p95maxcpu", "vmcategory", "vmcorecount", "vmmemory",
]
_ALIBABA_COLUMNS = [
    "entity_id", "t", "cpu_util", "mem_util", "mem_gps", "mkpi", "net_in", "net_out", "disk_io_percent",
]


def detect_format(path: str | Path) -> str:
    """Tell a trace's format from its file names or first line; one of ``FORMATS``."""
    path = _existing(path)
    if path.is_dir():
        names = [p.name.lower() for p in path.iterdir() if p.is_file()]
        if any(n.startswith("vm_cpu_readings") for n in names):
            return "azure"
        if any(n.startswith("machine_usage") for n in names):
            return "alibaba"
        csvs = _data_csvs(path)
        if csvs and _detect_file(csvs[0]) == "bitbrains":
            return "bitbrains"
        raise DataValidationError(f"{path}: no trace files of a known format in this directory; pass a format")
    return _detect_file(path)


def read_trace(path: str | Path, fmt: str | None = None, **options) -> Fleet:
    """Read a trace file or directory into a validated canonical ``Fleet``.

    Args:
        path: a trace file, or a directory of them.
        fmt: one of ``FORMATS``; detected from the files when None.
        **options: format options, listed in this module's docstring.

    Raises:
        DataValidationError: unknown format or option, unreadable file, missing columns,
            or values outside the canonical contract; the message names the file.
    """
    path = _existing(path)
    fmt = detect_format(path) if fmt is None else fmt
    reader = _READERS.get(fmt)
    if reader is None:
        raise DataValidationError(f"unknown trace format {fmt!r}; known: {', '.join(FORMATS)}")
    accepted = [p for p in inspect.signature(reader).parameters if p != "path"]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise DataValidationError(
            f"format {fmt!r} takes no option {', '.join(unknown)}; it takes {', '.join(accepted)}"
        )
    return reader(path, **options)


def report_gaps(metrics: pd.DataFrame) -> pd.DataFrame:
    """Missing 5-minute slots per entity, between its first and last sample.

    Returns one row per entity with ``entity_id``, ``expected_slots``, ``present_slots``,
    ``missing_slots`` and ``longest_gap_slots`` (the longest run of missing slots).
    """
    columns = ["entity_id", "expected_slots", "present_slots", "missing_slots", "longest_gap_slots"]
    if metrics.empty:
        return pd.DataFrame({c: pd.Series(dtype="string" if c == "entity_id" else "int64") for c in columns})
    codes, names = pd.factorize(metrics["entity_id"])
    slot = ((pd.to_datetime(metrics["ts"], utc=True) - _EPOCH) // STEP).to_numpy(dtype="int64")
    order = np.lexsort((slot, codes))
    codes, slot = codes[order], slot[order]
    distinct = np.r_[True, (codes[1:] != codes[:-1]) | (slot[1:] != slot[:-1])]
    codes, slot = codes[distinct], slot[distinct]
    first = np.flatnonzero(np.r_[True, codes[1:] != codes[:-1]])
    last = np.r_[first[1:] - 1, codes.size - 1]
    hole = np.r_[0, np.diff(slot) - 1]
    hole[first] = 0
    expected = slot[last] - slot[first] + 1
    present = last - first + 1
    report = pd.DataFrame(
        {
            "entity_id": pd.array(np.asarray(names, dtype=object)[codes[first]], dtype="string"),
            "expected_slots": expected,
            "present_slots": present,
            "missing_slots": expected - present,
            "longest_gap_slots": np.maximum.reduceat(hole, first),
        }
    )
    return report.sort_values("entity_id", ignore_index=True)


# --- readers -------------------------------------------------------------------------------


def _read_bitbrains(path: Path, *, service: str | None = None, region: str = "nl", id_prefix: str = "") -> Fleet:
    shipped = [p for p in ([path] if path.is_file() else _data_csvs(path)) if _is_shipped_bitbrains(p)]
    if shipped:
        parts = (
            _with_percent(batch.rename(columns=_SHIPPED_COLUMNS), "cpu_util", "mem_util")
            for file in shipped
            for batch in _batches(file, "a Bitbrains trace", types=_SHIPPED_TYPES, include=list(_SHIPPED_TYPES))
        )
        slots = _snap(parts, path)
        catalogue = shipped[0].parent / "entities.csv"
        if catalogue.is_file():
            attrs = pd.read_csv(catalogue, usecols=["entity_id", "cpu_cores", "mem_capacity_kb_median"])
            attrs = attrs.set_index("entity_id").reindex(slots["entity_id"].unique())
            vcpus, mem_kb = attrs["cpu_cores"].fillna(1), attrs["mem_capacity_kb_median"]
        else:
            vcpus, mem_kb = None, slots.groupby("entity_id", sort=False)["mem_capacity_kb"].median()
        service = service or "bitbrains-rnd"
    else:
        files = [path] if path.is_file() else _data_csvs(path)
        slots = _snap((_gwa_frame(f, id_prefix) for f in files), path)
        per_entity = slots.groupby("entity_id", sort=False)
        vcpus, mem_kb = per_entity["vcpus"].median(), per_entity["mem_capacity_kb"].median()
        service = service or "bitbrains"
    ids = slots["entity_id"].unique()
    vcpus = np.ones(ids.size) if vcpus is None else np.asarray(vcpus, dtype=float)
    mem_gib = np.asarray(mem_kb, dtype=float) / 1024**2
    mem_gib = np.where(mem_gib > 0, mem_gib, 1.0)  # a VM booked with no memory yet
    vcpus = np.maximum(1, np.round(vcpus))
    entities = _entities(ids, "bb", service=service, region=region, vcpus=vcpus, mem_gib=mem_gib)
    return _fleet(slots, entities, f"bitbrains:{path}")


def _read_azure(
    path: Path,
    *,
    epoch: str = "2017-01-01T00:00:00Z",
    vmtable: str | Path | None = None,
    service: str = "azure",
    region: str = "azure",
) -> Fleet:
    offset = _epoch_seconds(epoch)
    files = [path] if path.is_file() else _numbered(path.glob("vm_cpu_readings*"))
    types = {"t": pa.float64(), "entity_id": pa.string(), "cpu_util": pa.float64()}

    def readings():
        for file in files:
            for batch in _batches(file, "Azure CPU readings", names=_AZURE_COLUMNS, types=types, include=list(types)):
                yield _with_percent(batch.assign(t=batch["t"] + offset), "cpu_util")

    slots = _snap(readings(), path)
    ids = slots["entity_id"].unique()
    vcpus, mem_gib, services = np.ones(ids.size), np.full(ids.size, 4.0), service
    if vmtable is not None:
        table = _existing(vmtable)
        include = ["vmid", "vmcategory", "vmcorecount", "vmmemory"]
        types = dict.fromkeys(include, pa.string())
        batches = _batches(table, "an Azure vmtable", names=_AZURE_VMTABLE_COLUMNS, include=include, types=types)
        rows = pd.concat(b[b["vmid"].isin(ids)] for b in batches)
        rows = rows.drop_duplicates("vmid").set_index("vmid").reindex(ids)
        cores, memory = _bucket_bound(rows["vmcorecount"]), _bucket_bound(rows["vmmemory"])
        vcpus = np.where(np.isnan(cores), 1.0, cores)
        mem_gib = np.where(np.isnan(memory), 4.0 * vcpus, memory)
        services = rows["vmcategory"].fillna(service).to_numpy()
    entities = _entities(ids, "azure", service=services, region=region, vcpus=vcpus, mem_gib=mem_gib)
    return _fleet(slots, entities, f"azure:{path}")


def _read_alibaba(
    path: Path,
    *,
    epoch: str = "2018-01-01T00:00:00Z",
    vcpus: int = 96,
    mem_gib: float = 512.0,
    service: str = "alibaba",
    region: str = "cn",
) -> Fleet:
    offset = _epoch_seconds(epoch)
    files = [path] if path.is_file() else _numbered(path.glob("machine_usage*"))
    types = {"entity_id": pa.string(), "t": pa.float64(), "cpu_util": pa.float64(), "mem_util": pa.float64()}
    parts = (
        _with_percent(batch.assign(t=batch["t"] + offset), "cpu_util", "mem_util")
        for file in files
        for batch in _batches(file, "Alibaba machine_usage", names=_ALIBABA_COLUMNS, types=types, include=list(types))
    )
    slots = _snap(parts, path)
    ids = slots["entity_id"].unique()
    entities = _entities(ids, "ali", service=service, region=region, vcpus=vcpus, mem_gib=mem_gib)
    return _fleet(slots, entities, f"alibaba:{path}")


def _read_long(
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
    if ts_unit not in (None, "s", "ms"):
        raise DataValidationError(f"ts_unit must be 's' or 'ms', got {ts_unit!r}")
    canonical = ["ts", "entity_id", *VALUE_COLUMNS]
    mapping = dict(columns or {})
    unknown = sorted(set(mapping) - set(canonical))
    if unknown:
        raise DataValidationError(
            f"columns: unknown canonical name {', '.join(unknown)}; known: {', '.join(canonical)}"
        )
    header = [c.strip() for c in _first_line(path).split(delimiter)]
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
        .assign(t=lambda b: _epoch_of(b["ts"], ts_unit, path))
        .drop(columns="ts")
        for batch in _batches(path, "a long CSV", delimiter=delimiter, types=types, include=list(types))
    )
    slots = _snap(parts, path)
    for col in ("cpu_util", "mem_util"):
        if col in slots and (util_percent or (util_percent is None and slots[col].max() > 1.5)):
            slots[col] = slots[col] / 100.0
    ids = slots["entity_id"].unique()
    entities = _entities(ids, "vm", service=service, region=region, vcpus=vcpus, mem_gib=mem_gib)
    return _fleet(slots, entities, f"long:{path}")


_READERS = {"bitbrains": _read_bitbrains, "azure": _read_azure, "alibaba": _read_alibaba, "long": _read_long}


# --- shared steps --------------------------------------------------------------------------


def _existing(path: str | Path) -> Path:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file or directory")
    return path


def _first_line(path: Path) -> str:
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rt", encoding="utf-8", errors="replace") as handle:
            return handle.readline().rstrip("\r\n")
    except OSError as exc:
        raise DataValidationError(f"{path}: cannot read: {exc}") from None


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _detect_file(path: Path) -> str:
    name = path.name.lower()
    if name.startswith("vm_cpu_readings"):
        return "azure"
    if name.startswith("machine_usage"):
        return "alibaba"
    line = _first_line(path)
    if "Timestamp [ms]" in line or _is_shipped_bitbrains(path):
        return "bitbrains"
    fields = [f.strip() for f in line.split(",")]
    numeric = [_is_number(f) for f in fields]
    if len(fields) == 5 and numeric == [True, False, True, True, True]:
        return "azure"
    if len(fields) == 9 and not numeric[0] and numeric[1]:
        return "alibaba"
    if len(fields) >= 2 and not any(numeric):
        return "long"
    raise DataValidationError(
        f"{path}: cannot tell the trace format from its name or first line; pass one of {', '.join(FORMATS)}"
    )


def _is_shipped_bitbrains(path: Path) -> bool:
    return set(_SHIPPED_COLUMNS) <= {f.strip() for f in _first_line(path).split(",")}


def _data_csvs(directory: Path) -> list[Path]:
    return _numbered(p for p in directory.glob("*.csv") if p.name != "entities.csv")


def _numbered(paths: Iterable[Path]) -> list[Path]:
    """Files in natural order (2.csv before 10.csv), as traces number them."""
    return sorted(paths, key=lambda p: [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", p.name)])


def _bucket_bound(values: pd.Series) -> np.ndarray:
    """Azure's size buckets ("2", ">24") as numbers; "more than 24" is taken as 24."""
    return pd.to_numeric(values.str.lstrip("<>"), errors="coerce").to_numpy(dtype="float64")


def _epoch_seconds(epoch: str) -> float:
    try:
        stamp = pd.Timestamp(epoch)
    except ValueError:
        raise DataValidationError(f"epoch: cannot read {epoch!r} as a timestamp") from None
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp
    return (stamp - _EPOCH) / pd.Timedelta(seconds=1)


def _epoch_of(ts: pd.Series, unit: str | None, path: Path) -> np.ndarray:
    """Epoch seconds from epoch numbers (s or ms) or date strings."""
    numbers = pd.to_numeric(ts, errors="coerce")
    if numbers.notna().all():
        if unit == "ms" or (unit is None and numbers.max() > _MS_THRESHOLD):
            numbers = numbers / 1000.0
        return numbers.to_numpy(dtype="float64")
    try:
        stamps = pd.to_datetime(ts, utc=True, format="ISO8601")
    except (ValueError, TypeError):
        raise DataValidationError(
            f"{path}: timestamps are neither epoch numbers nor ISO dates (e.g. {ts.iloc[0]!r})"
        ) from None
    return ((stamps - _EPOCH) / pd.Timedelta(seconds=1)).to_numpy(dtype="float64")


def _batches(path: Path, what: str, *, names=None, delimiter=",", types=None, include=None) -> Iterator[pd.DataFrame]:
    """Stream a CSV (plain or compressed) as pandas blocks; read errors become one-line messages."""
    try:
        reader = pacsv.open_csv(
            path,
            read_options=pacsv.ReadOptions(column_names=names, block_size=_BLOCK_BYTES),
            parse_options=pacsv.ParseOptions(delimiter=delimiter),
            convert_options=pacsv.ConvertOptions(column_types=types, include_columns=include),
        )
        for batch in reader:
            yield batch.to_pandas()
    except (pa.ArrowInvalid, pa.ArrowKeyError, OSError) as exc:
        reason = str(exc).strip().splitlines()[0]
        raise DataValidationError(f"{path}: cannot read as {what}: {reason}") from None


def _gwa_frame(file: Path, id_prefix: str) -> pd.DataFrame:
    """One original GWA-T-12 per-VM file; its ``;\\t`` separator is two characters, which pyarrow cannot split on."""
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
    frame = frame[list(_GWA_COLUMNS)].rename(columns=_GWA_COLUMNS).astype("float64")
    if frame["t"].max() > _MS_THRESHOLD:
        frame["t"] = frame["t"] / 1000.0
    usage, capacity = frame.pop("mem_usage_kb"), frame["mem_capacity_kb"]
    # Zero capacity (not yet booked) or usage above it (reboots, resizes) gives no utilisation.
    frame["mem_util"] = (usage / capacity).where((capacity > 0) & (usage <= capacity))
    frame["cpu_util"] = frame["cpu_util"] / 100.0
    frame.insert(0, "entity_id", f"{id_prefix}{file.stem}")
    return frame


def _with_percent(frame: pd.DataFrame, *columns: str) -> pd.DataFrame:
    return frame.assign(**{c: frame[c] / 100.0 for c in columns})


def _snap(parts: Iterable[pd.DataFrame], path: Path) -> pd.DataFrame:
    """Average samples per (entity, nearest 300 s slot), block by block, then across blocks.

    Each part has ``entity_id``, ``t`` (epoch seconds) and value columns. Returns one row
    per (entity_id, slot) with ``slot`` in epoch seconds; a value is NaN where no sample
    in the slot had it.
    """
    sums, counts = [], []
    for part in parts:
        if part.empty:
            continue
        unplaced = part["t"].isna() | part["entity_id"].isna()
        if unplaced.any():
            raise DataValidationError(f"{path}: {int(unplaced.sum())} samples have no timestamp or no entity id")
        slot = np.floor(part["t"].to_numpy(dtype="float64") / STEP_SECONDS + 0.5).astype("int64") * STEP_SECONDS
        grouped = part.drop(columns="t").assign(slot=slot).groupby(["entity_id", "slot"], sort=False)
        sums.append(grouped.sum())
        counts.append(grouped.count())
    if not sums:
        raise DataValidationError(f"{path}: the trace holds no samples")
    total, seen = pd.concat(sums), pd.concat(counts)
    if len(sums) > 1:
        total, seen = total.groupby(level=[0, 1]).sum(), seen.groupby(level=[0, 1]).sum()
    return (total / seen.where(seen > 0)).reset_index()


def _entities(ids, prefix: str, *, service, region, vcpus, mem_gib) -> pd.DataFrame:
    """Entity rows for a trace: sizes as given, prices estimated from them."""
    vcpus = np.broadcast_to(np.asarray(vcpus, dtype="int64"), ids.shape)
    mem_gib = np.broadcast_to(np.asarray(mem_gib, dtype="float64"), ids.shape)
    sizes = pd.Series(vcpus).astype(str) + "c-" + pd.Series(np.round(mem_gib).astype("int64")).astype(str) + "g"
    return pd.DataFrame(
        {
            "entity_id": pd.array(ids, dtype="string"),
            "service": service,
            "instance_type": (f"{prefix}-" + sizes).to_numpy(),
            "region": region,
            "vcpus": vcpus,
            "mem_gib": mem_gib,
            "hourly_price": estimate_hourly_price(vcpus, mem_gib),
        }
    )


def _fleet(slots: pd.DataFrame, entities: pd.DataFrame, source: str) -> Fleet:
    """Canonical metrics from snapped slots; a slot without CPU is a gap, not a row."""
    slots = slots[slots["cpu_util"].notna()]
    n = len(slots)
    metrics = pd.DataFrame(
        {
            "entity_id": slots["entity_id"].to_numpy(dtype=object),
            "ts": pd.to_datetime(slots["slot"].to_numpy(), unit="s", utc=True),
            **{c: slots[c].to_numpy() if c in slots else np.full(n, np.nan) for c in VALUE_COLUMNS},
            "is_peak": pd.arrays.BooleanArray(np.zeros(n, dtype=bool), np.ones(n, dtype=bool)),
        }
    )
    entities = entities[entities["entity_id"].isin(metrics["entity_id"])].reset_index(drop=True)
    try:
        fleet = validate_fleet(Fleet(metrics=metrics, entities=entities, source=source))
    except DataValidationError as exc:
        raise DataValidationError(f"{source}: {exc}") from None
    fleet.gaps = report_gaps(fleet.metrics)
    return fleet
