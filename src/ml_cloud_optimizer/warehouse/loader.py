"""Bulk loading a Fleet into the warehouse: validated, binary COPY, one transaction, idempotent.

The metrics travel as PostgreSQL's binary COPY format, built with numpy record arrays rather
than by formatting text: the server then parses no numbers, and Python loops over groups of
rows that share a layout (entity-id length and which values are NULL), never over rows.

A load into a time range where none of its entities has rows yet COPYs straight into the
partitioned fact table. Otherwise it COPYs into a temporary staging table and upserts from
there, so loading the same file twice leaves the same rows and overlapping loads keep the
newest values. Either way everything, dimensions included, commits or rolls back together.
"""

from __future__ import annotations

import io
import struct
import sys
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd
import psycopg2

from ml_cloud_optimizer.data.schema import (
    ENTITY_COLUMNS,
    METRIC_COLUMNS,
    STEP,
    DataValidationError,
    Fleet,
    validate_fleet,
)
from ml_cloud_optimizer.warehouse.server import transaction

__all__ = [
    "MAX_LOAD_SPAN",
    "LoadReport",
    "encode_metrics_copy",
    "iter_metrics_copy",
    "load_fleet",
    "refresh_aggregates",
]

# One load may span at most this long: a stray timestamp (1970, 2099) would otherwise create
# thousands of weekly partitions before anyone noticed.
MAX_LOAD_SPAN = pd.Timedelta(days=3660)

_COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + struct.pack("!ii", 0, 0)
_COPY_TRAILER = struct.pack("!h", -1)
_PG_EPOCH_US = 946_684_800_000_000  # 2000-01-01T00:00:00Z in Unix microseconds
_FLOAT_COLUMNS = [c for c, dtype in METRIC_COLUMNS.items() if dtype == "float64"]
_NULLABLE_COLUMNS = [*_FLOAT_COLUMNS, "is_peak"]
_COPY_BUFFER_BYTES = 1 << 20
# Rows encoded per step of the lazy COPY stream: big enough for numpy to run at full speed,
# small enough (about 7 MB) to overlap with the server's work.
_CHUNK_ROWS = 1 << 16


@dataclass(frozen=True)
class LoadReport:
    """What one load did.

    Attributes:
        rows: metric rows in the input.
        inserted: rows new to the warehouse.
        updated: existing rows whose values changed.
        unchanged: existing rows already holding the same values.
        entities: entity rows written (inserted or updated).
        partitions_created: weekly partitions the load had to create.
        fast_path: True when the rows went straight into the fact table (no staging).
        first_ts, last_ts: the time range loaded.
        seconds: wall time of the whole load, refresh included.
        refresh_seconds: the part spent refreshing metrics_hourly and planner statistics.
    """

    rows: int
    inserted: int
    updated: int
    unchanged: int
    entities: int
    partitions_created: int
    fast_path: bool
    first_ts: pd.Timestamp | None
    last_ts: pd.Timestamp | None
    seconds: float
    refresh_seconds: float = 0.0


def load_fleet(conn, fleet: Fleet, *, refresh: bool = True) -> LoadReport:
    """Validate ``fleet`` and write it to the warehouse in one transaction.

    Args:
        conn: psycopg2 connection to a database holding the schema (``apply_schema``).
        fleet: metrics and entities; checked with ``validate_fleet`` before anything is sent.
        refresh: also refresh ``metrics_hourly`` and planner statistics, inside the same
            transaction. Turn off only to batch several loads, then call ``refresh_aggregates``.

    Returns:
        A ``LoadReport`` with inserted, updated and unchanged row counts and timings.

    Raises:
        DataValidationError: the input breaks the contract, or the database refused a row;
            nothing is written in either case.
    """
    started = time.perf_counter()
    fleet = validate_fleet(fleet)
    metrics = fleet.metrics
    instance_types = _instance_types(fleet.entities)
    first_ts, last_ts = _time_range(metrics)
    try:
        with transaction(conn), conn.cursor() as cur:
            _abort_when_client_dies(cur)
            # Self-conflicting, so concurrent loads take turns; plain reads are not blocked by it
            # (only a new partition or the view refresh shuts them out, until commit).
            cur.execute("LOCK TABLE metrics IN SHARE ROW EXCLUSIVE MODE")
            partitions = 0
            if first_ts is not None:
                cur.execute("SELECT ensure_metric_partitions(%s, %s)", (first_ts, last_ts + STEP))
                (partitions,) = cur.fetchone()
            _upsert_dimensions(cur, instance_types, fleet.entities)
            entity_ids = metrics["entity_id"].unique().tolist()
            fast_path = first_ts is None or not _any_rows(cur, entity_ids, first_ts, last_ts)
            if fast_path:
                _copy(cur, "metrics", iter_metrics_copy(metrics))
                inserted, updated = len(metrics), 0
            else:
                inserted, updated = _upsert_metrics(cur, iter_metrics_copy(metrics))
            refresh_seconds = _refresh(cur) if refresh else 0.0
            seconds = time.perf_counter() - started
            cur.execute(
                "INSERT INTO load_log (source, rows_in, inserted, updated, first_ts, last_ts, seconds)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s)",
                (str(fleet.source), len(metrics), inserted, updated, first_ts, last_ts, seconds),
            )
    except (psycopg2.IntegrityError, psycopg2.DataError) as exc:
        raise DataValidationError(f"the warehouse refused the load: {_first_line(exc)}") from None
    return LoadReport(
        rows=len(metrics),
        inserted=inserted,
        updated=updated,
        unchanged=len(metrics) - inserted - updated,
        entities=len(fleet.entities),
        partitions_created=int(partitions),
        fast_path=fast_path,
        first_ts=first_ts,
        last_ts=last_ts,
        seconds=time.perf_counter() - started,
        refresh_seconds=refresh_seconds,
    )


def _abort_when_client_dies(cur) -> None:
    """Have the server roll the load back within a second of its client dying mid-statement.

    Otherwise a backend notices a killed client only when it next talks to it: a refresh waiting
    behind a dashboard's open transaction would hold the metrics lock, and every later load would
    queue behind it, for as long as the reader stays. Servers off Linux refuse it; loads go on without.
    """
    cur.execute("SAVEPOINT mlco_client_check")
    try:
        cur.execute("SET LOCAL client_connection_check_interval = '1s'")
    except (psycopg2.errors.InvalidParameterValue, psycopg2.errors.UndefinedObject):
        cur.execute("ROLLBACK TO SAVEPOINT mlco_client_check")
    cur.execute("RELEASE SAVEPOINT mlco_client_check")


def refresh_aggregates(conn) -> float:
    """Refresh ``metrics_hourly`` and planner statistics in a transaction; return its seconds.

    ``load_fleet`` does this itself unless told ``refresh=False``.
    """
    with transaction(conn), conn.cursor() as cur:
        _abort_when_client_dies(cur)
        return _refresh(cur)


def _refresh(cur) -> float:
    started = time.perf_counter()
    cur.execute("ANALYZE metrics")
    cur.execute("REFRESH MATERIALIZED VIEW metrics_hourly")
    cur.execute("ANALYZE metrics_hourly")
    return time.perf_counter() - started


def encode_metrics_copy(metrics: pd.DataFrame) -> list[memoryview]:
    """The metrics rows, in ``METRIC_COLUMNS`` order, as a binary COPY stream in pieces.

    ``metrics`` must already be validated (canonical dtypes, no missing key or cpu_util);
    NaN and NA values become NULL. See ``iter_metrics_copy`` for the lazy form.
    """
    return list(iter_metrics_copy(metrics))


def iter_metrics_copy(metrics: pd.DataFrame, chunk_rows: int = _CHUNK_ROWS):
    """Yield the binary COPY stream of ``metrics`` piece by piece, ``chunk_rows`` rows at a time.

    Lazily: fed to COPY, the next chunk is encoded while the server is still writing the
    last, so encoding costs little wall time. Within a chunk rows are grouped by layout
    and keep their order inside each group. Pieces are memoryviews over numpy records,
    never joined, since joining would copy a hundred bytes per row again.
    """
    codes, id_table, id_lengths = _entity_codes(metrics["entity_id"])
    ts_us = metrics["ts"].dt.tz_convert("UTC").dt.tz_localize(None).to_numpy("datetime64[us]").view("int64")
    values = {c: metrics[c].to_numpy("float64", na_value=np.nan) for c in _NULLABLE_COLUMNS}
    null_bits = np.zeros(len(metrics), dtype=np.int64)
    for bit, column in enumerate(_NULLABLE_COLUMNS):
        null_bits |= np.isnan(values[column]).astype(np.int64) << bit
    layout = id_lengths[codes] << len(_NULLABLE_COLUMNS) | null_bits

    yield memoryview(_COPY_HEADER)
    for first in range(0, len(metrics), chunk_rows):
        for key, rows in _layout_groups(layout, first, min(first + chunk_rows, len(metrics))):
            id_length = key >> len(_NULLABLE_COLUMNS)
            nulls = {c for bit, c in enumerate(_NULLABLE_COLUMNS) if key >> bit & 1}
            records = _encode_group(id_length, nulls, id_table[codes[rows]], ts_us[rows], values, rows)
            yield records.data.cast("B")
    yield memoryview(_COPY_TRAILER)


def _layout_groups(layout: np.ndarray, first: int, stop: int) -> list[tuple[int, slice | np.ndarray]]:
    """Rows ``first:stop`` split by layout key, as (key, rows) with rows in their original order."""
    keys, group_of_row = np.unique(layout[first:stop], return_inverse=True)
    if len(keys) == 1:
        return [(int(keys[0]), slice(first, stop))]
    order = np.argsort(group_of_row, kind="stable")
    bounds = np.searchsorted(group_of_row[order], np.arange(len(keys) + 1))
    return [(int(k), first + order[bounds[i] : bounds[i + 1]]) for i, k in enumerate(keys)]


def _entity_codes(entity_ids: pd.Series):
    """Integer codes for runs of equal ids, their UTF-8 bytes and byte lengths.

    Validated metrics are sorted by entity, so comparing neighbours finds each entity once,
    far cheaper than hashing every string; unsorted input only yields more runs.
    """
    ids = entity_ids.to_numpy(dtype=object)
    if len(ids) == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype="S1"), np.zeros(0, dtype=np.int64)
    run_starts = np.concatenate(([True], ids[1:] != ids[:-1]))
    starts = np.flatnonzero(run_starts)
    codes = np.cumsum(run_starts) - 1
    id_bytes = [str(i).encode("utf-8") for i in ids[starts]]
    id_lengths = np.array([len(b) for b in id_bytes], dtype=np.int64)
    return codes, np.array(id_bytes, dtype=f"S{max(1, id_lengths.max())}"), id_lengths


def _encode_group(id_length, nulls, ids, ts_us, values, rows) -> np.ndarray:
    """Binary COPY tuples for rows sharing one layout, as a single numpy record array."""
    fields = [("nfields", ">i2"), ("id_len", ">i4")]
    if id_length:
        fields.append(("entity_id", f"S{id_length}"))
    fields += [("ts_len", ">i4"), ("ts", ">i8")]
    for column in _NULLABLE_COLUMNS:
        fields.append((f"{column}_len", ">i4"))
        if column not in nulls:
            fields.append((column, "u1" if column == "is_peak" else ">f8"))
    records = np.empty(len(ts_us), dtype=np.dtype(fields))
    records["nfields"] = len(METRIC_COLUMNS)
    records["id_len"] = id_length
    if id_length:
        records["entity_id"] = ids
    records["ts_len"] = 8
    records["ts"] = ts_us - _PG_EPOCH_US
    for column in _NULLABLE_COLUMNS:
        if column in nulls:
            records[f"{column}_len"] = -1
        elif column == "is_peak":
            records[f"{column}_len"] = 1
            records[column] = values[column][rows] != 0
        else:
            records[f"{column}_len"] = 8
            records[column] = values[column][rows]
    return records


def _instance_types(entities: pd.DataFrame) -> pd.DataFrame:
    """The catalogue rows: one per (instance type, region), the median over its entities.

    Synthetic fleets describe a type identically on every entity; real traces name types by
    rounded sizes, so two VMs of one name may differ slightly (each keeps its own values).
    """
    catalogue = entities.groupby(["instance_type", "region"], as_index=False, sort=True)[
        ["vcpus", "mem_gib", "hourly_price"]
    ].median()
    return catalogue  # vcpus stay fractional (a 250m Kubernetes request is 0.25 of a core)


def _time_range(metrics: pd.DataFrame):
    if metrics.empty:
        return None, None
    first, last = metrics["ts"].min(), metrics["ts"].max()
    if last - first > MAX_LOAD_SPAN:
        raise DataValidationError(
            f"metrics.ts: spans {first} to {last}, more than {MAX_LOAD_SPAN.days} days in one load;"
            " check for stray timestamps"
        )
    return first, last


def _upsert_dimensions(cur, instance_types: pd.DataFrame, entities: pd.DataFrame) -> None:
    """Write instance types, then entities; the newest load's attributes win."""
    from psycopg2.extras import execute_values

    execute_values(
        cur,
        "INSERT INTO instance_types (instance_type, region, vcpus, mem_gib, hourly_price) VALUES %s"
        " ON CONFLICT (instance_type, region) DO UPDATE SET vcpus = EXCLUDED.vcpus, mem_gib = EXCLUDED.mem_gib,"
        " hourly_price = EXCLUDED.hourly_price",
        _python_rows(instance_types),
        page_size=1000,
    )
    columns = list(ENTITY_COLUMNS)
    execute_values(
        cur,
        f"INSERT INTO entities ({', '.join(columns)}) VALUES %s ON CONFLICT (entity_id) DO UPDATE SET "
        + ", ".join(f"{c} = EXCLUDED.{c}" for c in columns[1:]),
        _python_rows(entities[columns]),
        page_size=1000,
    )


def _any_rows(cur, entity_ids: list[str], first_ts, last_ts) -> bool:
    """Whether any of these entities already has a row in [first_ts, last_ts]."""
    cur.execute(
        "SELECT EXISTS (SELECT 1 FROM metrics WHERE entity_id = ANY(%s::text[]) AND ts BETWEEN %s AND %s)",
        (entity_ids, first_ts, last_ts),
    )
    return bool(cur.fetchone()[0])


_VALUE_COLUMNS = [c for c in METRIC_COLUMNS if c not in ("entity_id", "ts")]

# Changed rows first, then new keys: two set-based statements whose row counts are exactly
# "updated" and "inserted" (RETURNING xmax, the usual upsert tell, is refused on partitions).
_UPDATE_CHANGED = """
UPDATE metrics AS m SET {assignments}
FROM mlco_staging AS s
WHERE m.entity_id = s.entity_id AND m.ts = s.ts AND ({current}) IS DISTINCT FROM ({incoming})
""".format(
    assignments=", ".join(f"{c} = s.{c}" for c in _VALUE_COLUMNS),
    current=", ".join(f"m.{c}" for c in _VALUE_COLUMNS),
    incoming=", ".join(f"s.{c}" for c in _VALUE_COLUMNS),
)
_INSERT_NEW = "INSERT INTO metrics SELECT * FROM mlco_staging ON CONFLICT (entity_id, ts) DO NOTHING"


def _upsert_metrics(cur, payload) -> tuple[int, int]:
    """COPY into a staging table, update the rows whose values changed, insert the new ones."""
    cur.execute("CREATE TEMPORARY TABLE mlco_staging (LIKE metrics) ON COMMIT DROP")
    _copy(cur, "mlco_staging", payload)
    cur.execute("ANALYZE mlco_staging")
    cur.execute(_UPDATE_CHANGED)
    updated = cur.rowcount
    cur.execute(_INSERT_NEW)
    inserted = cur.rowcount
    cur.execute("DROP TABLE mlco_staging")
    return inserted, updated


def _copy(cur, table: str, pieces) -> None:
    columns = ", ".join(METRIC_COLUMNS)
    statement = f"COPY {table} ({columns}) FROM STDIN WITH (FORMAT binary)"
    cur.copy_expert(statement, _PiecesReader(pieces), _COPY_BUFFER_BYTES)


class _PiecesReader(io.RawIOBase):
    """A read-only file over an iterable of buffers, pulled only as COPY asks for more."""

    def __init__(self, pieces):
        self._pieces = iter(pieces)
        self._current = memoryview(b"")

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            size = sys.maxsize
        out = []
        while size > 0:
            if not self._current:
                self._current = next(self._pieces, None)
                if self._current is None:
                    self._current = memoryview(b"")
                    break
            chunk = self._current[:size]
            out.append(chunk)
            size -= len(chunk)
            self._current = self._current[len(chunk) :]
        return b"".join(out)


def _python_rows(frame: pd.DataFrame) -> list[tuple]:
    # psycopg2 adapts Python scalars and None, not numpy scalars or pd.NA.
    return list(frame.astype(object).where(frame.notna(), None).itertuples(index=False, name=None))


def _first_line(exc: psycopg2.Error) -> str:
    message = (getattr(exc, "pgerror", None) or str(exc)).strip()
    return message.splitlines()[0] if message else type(exc).__name__
