"""Reading the warehouse: the named OLAP queries of ``sql/02_olap_queries.sql`` and the frames
the model code reads (``read_metrics``, ``read_hourly``).

A named query is a block of that file introduced by ``-- name:`` and ``-- doc:`` lines and one
``-- param: NAME = DEFAULT -- what`` line per ``%(NAME)s`` placeholder. Keeping them as plain
SQL in one file lets them be read, reviewed and run with psql; this module only parses the
blocks, fills in defaults and runs them read-only.

The frames travel as binary COPY laid out so every row has the same size (ids as codes, NULL
as NaN), which numpy views in place: no text to format on the server or parse in Python.
"""

from __future__ import annotations

import io
import itertools
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ml_cloud_optimizer.data.schema import ENTITY_COLUMNS, METRIC_COLUMNS, Fleet, validate_fleet
from ml_cloud_optimizer.errors import UserInputError
from ml_cloud_optimizer.warehouse.schema import sql_dir
from ml_cloud_optimizer.warehouse.server import transaction

__all__ = [
    "HOURLY_COLUMNS",
    "NamedQuery",
    "QueryError",
    "load_queries",
    "queries_file",
    "read_hourly",
    "read_metrics",
    "run_query",
]

QUERIES_FILE = "02_olap_queries.sql"

# Columns of metrics_hourly (sql/03_metrics_hourly.sql), in order.
HOURLY_COLUMNS = [
    "entity_id",
    "hour",
    "n_samples",
    "cpu_mean",
    "cpu_max",
    "cpu_p95",
    "mem_mean",
    "mem_max",
    "net_in_kbps",
    "net_out_kbps",
    "disk_read_kbps",
    "disk_write_kbps",
    "request_rate",
    "peak_samples",
]

_NAME = re.compile(r"^--\s*name:\s*(\S+)\s*$", re.MULTILINE)
_DOC = re.compile(r"^--\s*doc:\s*(.+?)\s*$", re.MULTILINE)
_PARAM = re.compile(r"^--\s*param:\s*(\w+)\s*=\s*(.*?)\s*--\s*(.*?)\s*$", re.MULTILINE)
_PLACEHOLDER = re.compile(r"%\((\w+)\)s")

# Entity ids travel as an array parameter and come back as their 1-based position in it.
_ENTITY_CODES = "unnest(%s::text[]) WITH ORDINALITY AS ids (entity_id, code)"
_COPY_SIGNATURE_BYTES = 11  # b"PGCOPY\n\xff\r\n\x00", then int32 flags and int32 extension length
_PG_EPOCH_US = pd.Timestamp("2000-01-01", tz="UTC").value // 1000


class QueryError(UserInputError):
    """An unknown query or parameter name, or a query block that breaks the file's format."""


@dataclass(frozen=True)
class NamedQuery:
    """One query of the catalogue: its SQL and the parameters it takes.

    Attributes:
        name: what ``mlco db query NAME`` calls it.
        doc: one line saying what it answers.
        sql: the statement, with ``%(param)s`` placeholders.
        defaults: parameter name -> default value (text), in declaration order.
        param_docs: parameter name -> what it means.
    """

    name: str
    doc: str
    sql: str
    defaults: dict[str, str] = field(default_factory=dict)
    param_docs: dict[str, str] = field(default_factory=dict)

    def bind(self, params: dict[str, str] | None = None) -> dict[str, str]:
        """Defaults overlaid with ``params``; refuses a name the query does not take."""
        params = dict(params or {})
        unknown = sorted(set(params) - set(self.defaults))
        if unknown:
            known = ", ".join(self.defaults) or "none"
            raise QueryError(f"query {self.name!r} has no parameter {unknown[0]!r} (it takes: {known})")
        return {**self.defaults, **params}


def queries_file() -> Path:
    """Path of the named-query file."""
    return sql_dir() / QUERIES_FILE


def load_queries(path: Path | None = None) -> dict[str, NamedQuery]:
    """Parse the named-query file into ``{name: NamedQuery}``, in file order."""
    text = Path(path or queries_file()).read_text()
    starts = [m.start() for m in _NAME.finditer(text)] + [len(text)]
    catalogue: dict[str, NamedQuery] = {}
    for begin, stop in itertools.pairwise(starts):
        query = _parse_block(text[begin:stop])
        if query.name in catalogue:
            raise QueryError(f"{path or QUERIES_FILE}: query {query.name!r} is defined twice")
        catalogue[query.name] = query
    return catalogue


def run_query(conn, name: str, params: dict[str, str] | None = None, *, catalogue=None) -> pd.DataFrame:
    """Run named query ``name`` with ``params`` over defaults, in a read-only transaction.

    Raises:
        QueryError: no such query, or a parameter it does not take.
        psycopg2.DataError: a parameter value PostgreSQL cannot read (e.g. a bad timestamp).
    """
    catalogue = catalogue if catalogue is not None else load_queries()
    if name not in catalogue:
        raise QueryError(f"no query named {name!r}; `mlco db query --list` shows the {len(catalogue)} there are")
    query = catalogue[name]
    with transaction(conn), conn.cursor() as cur:
        cur.execute("SET TRANSACTION READ ONLY")
        cur.execute(query.sql, query.bind(params))
        columns = [d.name for d in cur.description]
        rows = cur.fetchall()
    return pd.DataFrame.from_records(rows, columns=columns)


def read_metrics(conn, start=None, end=None, entity_ids=None) -> Fleet:
    """Metrics in [start, end) for ``entity_ids`` (default all), as a validated Fleet."""
    entities = _entities(conn, entity_ids)
    where, args = _filters("m.ts", start, end)
    values = [c for c, dtype in METRIC_COLUMNS.items() if dtype == "float64"]
    select = (
        "SELECT ids.code, m.ts, "
        + ", ".join(f"coalesce(m.{c}, 'NaN')" for c in values)
        + ", (CASE WHEN m.is_peak THEN 1 WHEN NOT m.is_peak THEN 0 ELSE -1 END)::int2"
        + f" FROM metrics m JOIN {_ENTITY_CODES} USING (entity_id) WHERE {where}"
    )
    layout = {"code": ">i8", "ts": ">i8", **dict.fromkeys(values, ">f8"), "is_peak": ">i2"}
    columns = _copy_binary(conn, select, [entities["entity_id"].tolist(), *args], layout)
    ids = entities["entity_id"].to_numpy(dtype=object)
    # The partitions come back in scan order; putting the rows in (entity_id, ts) order here, on
    # integer keys, spares validate_fleet its sort and duplicate search on strings.
    by_name = np.empty(len(ids), dtype=np.int64)
    by_name[np.argsort(ids, kind="stable")] = np.arange(len(ids))
    order = np.lexsort((columns["ts"], by_name[columns["code"] - 1]))
    columns = {name: column[order] for name, column in columns.items()}
    peak = columns["is_peak"]
    metrics = pd.DataFrame(
        {
            "entity_id": pd.array(ids[columns["code"] - 1], dtype="string"),
            "ts": _timestamps(columns["ts"]),
            **{c: columns[c] for c in values},
            "is_peak": pd.arrays.BooleanArray(peak == 1, peak < 0),
        }
    )
    return validate_fleet(Fleet(metrics=metrics, entities=entities, source="warehouse"))


def read_hourly(conn, start=None, end=None, entity_ids=None) -> pd.DataFrame:
    """Rows of ``metrics_hourly`` with hour in [start, end) for ``entity_ids`` (default all).

    Columns are ``HOURLY_COLUMNS``, sorted by entity then hour; ``hour`` is UTC and marks the
    start of the hour; a mean over no readings is NaN.
    """
    entity_list = _entities(conn, entity_ids)["entity_id"]
    where, args = _filters("h.hour", start, end)
    counts = ("n_samples", "peak_samples")
    expressions = [f"h.{c}" if c in counts else f"coalesce(h.{c}, 'NaN')" for c in HOURLY_COLUMNS[2:]]
    select = (
        f"SELECT ids.code, h.hour, {', '.join(expressions)}"
        f" FROM metrics_hourly h JOIN {_ENTITY_CODES} USING (entity_id) WHERE {where} ORDER BY h.entity_id, h.hour"
    )
    layout = {"code": ">i8", "hour": ">i8", **{c: ">i8" if c in counts else ">f8" for c in HOURLY_COLUMNS[2:]}}
    columns = _copy_binary(conn, select, [entity_list.tolist(), *args], layout)
    frame = pd.DataFrame({c: columns[c] for c in HOURLY_COLUMNS[2:]})
    frame.insert(0, "hour", _timestamps(columns["hour"]))
    frame.insert(0, "entity_id", pd.array(entity_list.to_numpy(dtype=object)[columns["code"] - 1], dtype="string"))
    return frame


def _parse_block(block: str) -> NamedQuery:
    named = _NAME.search(block)
    if named is None:
        raise QueryError(f"a query block has no '-- name:' line: {block.strip()[:60]!r}")
    name = named.group(1)
    doc = _DOC.search(block)
    if doc is None:
        raise QueryError(f"query {name!r}: missing its `-- doc:` line")
    params = {m.group(1): (m.group(2), m.group(3)) for m in _PARAM.finditer(block)}
    body = "\n".join(line for line in block.splitlines() if not line.lstrip().startswith("--")).strip()
    used = set(_PLACEHOLDER.findall(body))
    if used != set(params):
        missing, unused = sorted(used - set(params)), sorted(set(params) - used)
        raise QueryError(f"query {name!r}: parameters used but not declared {missing}, declared but unused {unused}")
    return NamedQuery(
        name=name,
        doc=doc.group(1),
        sql=body.rstrip(";").strip(),
        defaults={k: v[0] for k, v in params.items()},
        param_docs={k: v[1] for k, v in params.items()},
    )


def _filters(time_column: str, start, end) -> tuple[str, list]:
    clauses, args = ["TRUE"], []
    if start is not None:
        clauses.append(f"{time_column} >= %s")
        args.append(_utc(start))
    if end is not None:
        clauses.append(f"{time_column} < %s")
        args.append(_utc(end))
    return " AND ".join(clauses), args


def _entities(conn, entity_ids) -> pd.DataFrame:
    """Entity rows (``ENTITY_COLUMNS``) for ``entity_ids``, or all, sorted by id."""
    where, args = "TRUE", []
    if entity_ids is not None:
        where, args = "entity_id = ANY(%s::text[])", [[str(e) for e in entity_ids]]
    with transaction(conn), conn.cursor() as cur:
        cur.execute(f"SELECT {', '.join(ENTITY_COLUMNS)} FROM entities WHERE {where} ORDER BY entity_id", args)
        rows = cur.fetchall()
    return pd.DataFrame.from_records(rows, columns=list(ENTITY_COLUMNS))


def _utc(value) -> pd.Timestamp:
    stamp = pd.Timestamp(value)
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def _timestamps(pg_us: np.ndarray) -> pd.DatetimeIndex:
    """PostgreSQL's binary timestamps (microseconds since 2000-01-01 UTC) as UTC nanosecond times."""
    return pd.DatetimeIndex(((pg_us + _PG_EPOCH_US) * 1000).view("datetime64[ns]")).tz_localize("UTC")


def _copy_binary(conn, select: str, args: list, layout: dict[str, str]) -> dict[str, np.ndarray]:
    """Run ``select`` through binary COPY and view the rows as one numpy record array.

    Every selected column must be NOT NULL and fixed-width (``layout`` gives its big-endian
    numpy type in order), so all rows share one record size and need no per-row parsing:
    NULL floats are selected as NaN, ids as integer codes.
    """
    buffer = io.BytesIO()
    with transaction(conn), conn.cursor() as cur:
        statement = cur.mogrify(select, args).decode()
        cur.copy_expert(f"COPY ({statement}) TO STDOUT WITH (FORMAT binary)", buffer)
    raw = buffer.getbuffer()
    extension = raw[_COPY_SIGNATURE_BYTES + 4 : _COPY_SIGNATURE_BYTES + 8]
    header = _COPY_SIGNATURE_BYTES + 8 + int.from_bytes(extension, "big")
    fields = [("nfields", ">i2")]
    for name, dtype in layout.items():
        fields += [(f"{name}_len", ">i4"), (name, dtype)]
    record = np.dtype(fields)
    body = len(raw) - header - 2  # the trailer is one int16
    if body % record.itemsize:
        raise RuntimeError(f"binary COPY rows are not {record.itemsize} bytes each: a NULL or variable-width column")
    records = np.frombuffer(raw, dtype=record, count=body // record.itemsize, offset=header)
    return {name: records[name].astype(dtype.replace(">", "=")) for name, dtype in layout.items()}
