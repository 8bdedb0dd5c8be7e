"""`mlco db`: the PostgreSQL warehouse: init, load, query, status, url, stop.

With no ``DATABASE_URL`` every command but ``stop`` and ``status`` starts (or reuses) mlco's
embedded server under ``$MLCO_HOME/pgdata``; with it set they use that server and start
nothing. Database errors are printed as one line, like any user mistake.
"""

from __future__ import annotations

import functools
import os
import sys
from contextlib import closing

import pandas as pd
import psycopg2

from ml_cloud_optimizer.cli import UserError, checks
from ml_cloud_optimizer.cli.data import add_unit_arguments, trace_options
from ml_cloud_optimizer.data.io import CANONICAL
from ml_cloud_optimizer.data.traces import FORMATS

__all__ = ["format_table", "parse_params", "register"]


def register(subparsers) -> None:
    """Add ``db`` and its subcommands to ``subparsers``."""
    db = subparsers.add_parser("db", help="the PostgreSQL warehouse: init, load, query, status, url, stop")
    commands = db.add_subparsers(dest="db_command", metavar="DB_COMMAND", required=True)

    init = commands.add_parser("init", help="start the warehouse if embedded and apply the schema in sql/")
    init.set_defaults(func=_guarded(_init))

    load = commands.add_parser(
        "load", help="bulk-load a fleet, trace or Prometheus range (COPY, one transaction, idempotent)"
    )
    load.add_argument(
        "path",
        help="a saved fleet (.parquet/.csv), a trace file or directory, prometheus://HOST:PORT?start=...&end=...,"
        " or 'prometheus': the server in $MLCO_PROMETHEUS_URL (a missing range: the last 14 days)",
    )
    load.add_argument("--format", choices=[CANONICAL, *FORMATS], default=None, help="input format (default: detected)")
    load.add_argument("--no-refresh", action="store_true", help="skip refreshing metrics_hourly and statistics")
    add_unit_arguments(load)
    load.set_defaults(func=_guarded(_load))

    query = commands.add_parser("query", help="run a named OLAP query from sql/02_olap_queries.sql")
    query.add_argument("name", nargs="?", help="query name (see --list)")
    query.add_argument("--list", action="store_true", help="list the named queries and their parameters")
    query.add_argument("--param", action="append", default=[], metavar="K=V", help="set a query parameter (repeatable)")
    query.add_argument("--csv", action="store_true", help="write CSV instead of an aligned table")
    query.set_defaults(func=_guarded(_query))

    status = commands.add_parser("status", help="where the warehouse is and what it holds")
    status.set_defaults(func=_guarded(_status))

    url = commands.add_parser("url", help="print the warehouse's connection URL (starts it if embedded)")
    url.set_defaults(func=_guarded(_url))

    stop = commands.add_parser("stop", help="stop the embedded server (nothing to do with DATABASE_URL set)")
    stop.set_defaults(func=_guarded(_stop))


def parse_params(pairs: list[str]) -> dict[str, str]:
    """``["start=2013-08-05", "z=2.5"]`` -> ``{"start": "2013-08-05", "z": "2.5"}``."""
    params = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise UserError(f"--param expects K=V, got {pair!r}")
        params[key.strip()] = value
    return params


def format_table(frame: pd.DataFrame) -> str:
    """An aligned plain-text table: numbers right-aligned, floats to four decimals, NULL blank."""
    if frame.empty:
        return f"({', '.join(map(str, frame.columns))}: no rows)"
    shown = frame.copy()
    text_columns = shown.select_dtypes(include="object").columns
    shown[text_columns] = shown[text_columns].fillna("")
    return shown.to_string(index=False, na_rep="", float_format=lambda x: f"{x:.4f}")


def _guarded(func):
    """Turn database and query errors into one-line user errors."""
    from ml_cloud_optimizer.warehouse import QueryError
    from ml_cloud_optimizer.warehouse.server import WarehouseUnavailable

    @functools.wraps(func)
    def run(args) -> int:
        try:
            return func(args)
        except (QueryError, WarehouseUnavailable) as exc:
            raise UserError(str(exc)) from None
        except psycopg2.Error as exc:
            raise UserError(_error_line(exc)) from None

    return run


def _error_line(exc: psycopg2.Error) -> str:
    primary = getattr(getattr(exc, "diag", None), "message_primary", None)
    message = (primary or str(exc)).strip()
    return message.splitlines()[0] if message else type(exc).__name__


def _connect():
    from ml_cloud_optimizer.warehouse import connect

    return closing(connect())


def _init(_args) -> int:
    from ml_cloud_optimizer.warehouse import apply_schema

    with _connect() as conn:
        applied = apply_schema(conn)
    print(f"warehouse ready ({_where()}); applied {', '.join(applied)}")
    return 0


def _load(args) -> int:
    source = args.path
    live = source == "prometheus" or checks.is_remote(source)
    if live:
        # A server, not a file: its range and filters are query parameters, and the file options
        # mean nothing to it. `prometheus` and a URL without a host name $MLCO_PROMETHEUS_URL.
        wrong = [f"--format {args.format}"] if args.format not in (None, "prometheus") else []
        wrong += [f"--{name.replace('_', '-')}" for name in trace_options(args)]
        if wrong:
            raise UserError(f"PATH {source}: a Prometheus source takes no {', '.join(wrong)}")
    else:
        checks.existing(source, "PATH")
    from ml_cloud_optimizer.data.io import read_fleet
    from ml_cloud_optimizer.pipeline_steps.sources import resolve_source
    from ml_cloud_optimizer.warehouse import apply_schema, load_fleet

    source = resolve_source(source)
    # Read everything before the transaction opens: a failed or partial read writes nothing.
    fleet = read_fleet(source, args.format, **trace_options(args))
    with _connect() as conn:
        apply_schema(conn)
        report = load_fleet(conn, fleet, refresh=not args.no_refresh)
    path = "direct COPY" if report.fast_path else "staged upsert"
    print(
        f"loaded {report.rows:,} rows from {source}: {report.inserted:,} new, {report.updated:,} updated,"
        f" {report.unchanged:,} unchanged; {report.entities} entities, {report.partitions_created} new partitions;"
        f" {path} in {report.seconds:.2f} s (refresh {report.refresh_seconds:.2f} s)"
    )
    return 0


def _query(args) -> int:
    from ml_cloud_optimizer.warehouse import apply_schema, has_schema, load_queries, run_query

    catalogue = load_queries()
    if args.list:
        for query in catalogue.values():
            print(f"{query.name}: {query.doc}")
            for param, default in query.defaults.items():
                print(f"    {param} = {default or repr('')}  ({query.param_docs[param]})")
        return 0
    if not args.name:
        raise UserError("name a query, or pass --list to see them")
    params = parse_params(args.param)
    if args.name in catalogue:
        catalogue[args.name].bind(params)  # refuse a bad parameter before starting any server
    with _connect() as conn:
        if not has_schema(conn):
            apply_schema(conn)
        frame = run_query(conn, args.name, params, catalogue=catalogue)
    try:
        if args.csv:
            frame.to_csv(sys.stdout, index=False)
        else:
            print(format_table(frame))
        sys.stdout.flush()
    except BrokenPipeError:
        # the reader (`| head`) has what it wanted; send the rest nowhere and exit quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0


def _status(_args) -> int:
    from ml_cloud_optimizer.warehouse import has_schema
    from ml_cloud_optimizer.warehouse.server import embedded_url, pgdata_dir

    if not os.environ.get("DATABASE_URL") and embedded_url() is None:
        print(f"embedded PostgreSQL at {pgdata_dir().absolute()}: not running (`mlco db init` starts it)")
        return 0
    with _connect() as conn:
        print(f"warehouse: {_where()}")
        if not has_schema(conn):
            print("schema: not applied (`mlco db init`)")
            return 0
        with conn.cursor() as cur:
            cur.execute(_STATUS_SQL)
            rows, entities, first, last, partitions, hourly, loads, last_load = cur.fetchone()
    span = f"{first:%Y-%m-%d %H:%M} .. {last:%Y-%m-%d %H:%M} UTC" if first is not None else "empty"
    print(f"metrics: {rows:,} rows, {entities} entities, {span}, {partitions} weekly partitions")
    latest = f", last at {last_load:%Y-%m-%d %H:%M:%S} UTC" if last_load is not None else ""
    print(f"metrics_hourly: {hourly:,} rows; {loads} loads{latest}")
    return 0


_STATUS_SQL = """
SELECT (SELECT count(*) FROM metrics),
       (SELECT count(*) FROM entities),
       (SELECT min(ts) FROM metrics),
       (SELECT max(ts) FROM metrics),
       (SELECT count(*) FROM pg_inherits WHERE inhparent = 'metrics'::regclass),
       (SELECT count(*) FROM metrics_hourly),
       (SELECT count(*) FROM load_log),
       (SELECT max(loaded_at) FROM load_log)
"""


def _url(_args) -> int:
    from ml_cloud_optimizer.warehouse import database_url

    print(database_url())
    return 0


def _stop(_args) -> int:
    from ml_cloud_optimizer.warehouse import stop_embedded
    from ml_cloud_optimizer.warehouse.server import pgdata_dir

    if os.environ.get("DATABASE_URL"):
        print("DATABASE_URL is set: mlco started no server, so there is none to stop")
        return 0
    where = pgdata_dir().absolute()
    stopped = stop_embedded()
    print(f"stopped embedded PostgreSQL at {where}" if stopped else f"no embedded PostgreSQL running at {where}")
    return 0


def _where() -> str:
    from ml_cloud_optimizer.warehouse.server import pgdata_dir

    if os.environ.get("DATABASE_URL"):
        return "DATABASE_URL"
    return f"embedded PostgreSQL at {pgdata_dir().absolute()}"
