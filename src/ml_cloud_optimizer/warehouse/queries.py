"""Reading the warehouse: the named OLAP queries of ``sql/02_olap_queries.sql`` and the frames
the model code reads (``read_metrics``, ``read_hourly``).

A named query is a block of that file introduced by ``-- name:`` and ``-- doc:`` lines and one
``-- param: NAME = DEFAULT -- what`` line per ``%(NAME)s`` placeholder. Keeping them as plain
SQL in one file lets them be read, reviewed and run with psql; this module only parses the
blocks, fills in defaults and runs them read-only.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ml_cloud_optimizer.data.schema import ENTITY_COLUMNS, METRIC_COLUMNS, Fleet, validate_fleet
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


class QueryError(ValueError):
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
    for begin, stop in zip(starts, starts[1:]):
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
    where, args = _filters("ts", start, end, entity_ids)
    value_columns = [c for c in METRIC_COLUMNS if c not in ("entity_id", "ts", "is_peak")]
    select = (
        "SELECT entity_id, (extract(epoch FROM ts) * 1000000)::bigint AS ts_us, "
        + ", ".join(value_columns)
        + f", is_peak::integer AS is_peak FROM metrics WHERE {where} ORDER BY entity_id, ts"
    )
    frame = _copy_out(conn, select, args, ["entity_id", "ts_us", *value_columns, "is_peak"])
    metrics = pd.DataFrame(
        {
            "entity_id": frame["entity_id"].astype("string"),
            "ts": pd.to_datetime(frame["ts_us"], unit="us", utc=True),
            **{c: frame[c].astype("float64") for c in value_columns},
            "is_peak": frame["is_peak"].astype("Float64").astype("boolean"),
        }
    )
    entity_where, entity_args = _filters(None, None, None, entity_ids)
    with transaction(conn), conn.cursor() as cur:
        cur.execute(
            f"SELECT {', '.join(ENTITY_COLUMNS)} FROM entities WHERE {entity_where} ORDER BY entity_id",
            entity_args,
        )
        entities = pd.DataFrame.from_records(cur.fetchall(), columns=list(ENTITY_COLUMNS))
    return validate_fleet(Fleet(metrics=metrics, entities=entities, source="warehouse"))


def read_hourly(conn, start=None, end=None, entity_ids=None) -> pd.DataFrame:
    """Rows of ``metrics_hourly`` with hour in [start, end) for ``entity_ids`` (default all).

    Columns are ``HOURLY_COLUMNS``; ``hour`` is UTC and marks the start of the hour.
    """
    where, args = _filters("hour", start, end, entity_ids)
    names = [c if c != "hour" else "(extract(epoch FROM hour) * 1000000)::bigint" for c in HOURLY_COLUMNS]
    select = f"SELECT {', '.join(names)} FROM metrics_hourly WHERE {where} ORDER BY entity_id, hour"
    frame = _copy_out(conn, select, args, HOURLY_COLUMNS)
    frame["entity_id"] = frame["entity_id"].astype("string")
    frame["hour"] = pd.to_datetime(frame["hour"], unit="us", utc=True)
    for column in HOURLY_COLUMNS[2:]:
        frame[column] = frame[column].astype("int64" if column in ("n_samples", "peak_samples") else "float64")
    return frame


def _parse_block(block: str) -> NamedQuery:
    name = _NAME.search(block).group(1)
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


def _filters(time_column, start, end, entity_ids) -> tuple[str, list]:
    clauses, args = ["TRUE"], []
    if start is not None:
        clauses.append(f"{time_column} >= %s")
        args.append(_utc(start))
    if end is not None:
        clauses.append(f"{time_column} < %s")
        args.append(_utc(end))
    if entity_ids is not None:
        clauses.append("entity_id = ANY(%s::text[])")
        args.append([str(e) for e in entity_ids])
    return " AND ".join(clauses), args


def _utc(value) -> pd.Timestamp:
    stamp = pd.Timestamp(value)
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def _copy_out(conn, select: str, args: list, names: list[str]) -> pd.DataFrame:
    """Run ``select`` through COPY TO STDOUT as CSV and parse it with pyarrow: fast for millions of rows."""
    buffer = io.BytesIO()
    with transaction(conn), conn.cursor() as cur:
        statement = cur.mogrify(select, args).decode()
        cur.copy_expert(f"COPY ({statement}) TO STDOUT WITH (FORMAT csv)", buffer)
    buffer.seek(0)
    if buffer.getbuffer().nbytes == 0:
        return pd.DataFrame({name: pd.Series(dtype="float64") for name in names}).astype({names[0]: "object"})
    # entity_id stays text even when ids look like numbers ("007").
    return pd.read_csv(buffer, header=None, names=names, dtype={names[0]: "string"}, engine="pyarrow")
