"""How long each named OLAP query takes on ``--rows`` metric rows, beside a plain full scan.

Loads ``--rows`` synthetic rows (refreshing the hourly view and statistics), then runs every
query of sql/02_olap_queries.sql ``--repeats`` times with its defaults (the whole range) and
again over one day in the middle, and reports the median milliseconds of each, measured
client-side around execute + fetch. Baselines measured in the same run:

* ``full_scan_ms``: ``SELECT count(*), avg(cpu_util) FROM metrics``, the least any query over
  every row pays; each query's ``x_full_scan`` is its time over that.
* ``one_day_scan_ms``: the same over the one-day window, which partition pruning and the
  BRIN index shrink; compare it with ``full_scan_ms``.
* ``read_metrics_ms`` (binary COPY viewed by numpy, then validate_fleet) beside ``fetchall_ms``
  (the same rows through a psycopg2 cursor into a DataFrame), the naive way to read them.

Uses DATABASE_URL when set, else an embedded server in a temporary directory.
Last stdout line: JSON {"rows", "queries": {name: {"ms", "one_day_ms", "rows_out", ...}}, ...}.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from contextlib import closing

import pandas as pd

from ml_cloud_optimizer.data.synthetic import generate_fleet
from ml_cloud_optimizer.warehouse import (
    apply_schema,
    connect,
    create_database,
    drop_database,
    load_fleet,
    load_queries,
    read_hourly,
    read_metrics,
    run_query,
)
from ml_cloud_optimizer.warehouse.server import temporary_server

DATABASE = "mlco_bench_olap"


def log(message: str) -> None:
    print(f"[olap_queries] {message}", file=sys.stderr, flush=True)


def median_ms(repeats: int, work) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeats):
        started = time.perf_counter()
        result = work()
        times.append((time.perf_counter() - started) * 1000)
    return round(statistics.median(times), 1), result


def scan(conn, where: str = "TRUE"):
    with conn.cursor() as cur:
        cur.execute(f"SELECT count(*), avg(cpu_util) FROM metrics WHERE {where}")
        return cur.fetchone()


def fetchall_frame(conn) -> pd.DataFrame:
    with conn.cursor() as cur:
        cur.execute("SELECT * FROM metrics ORDER BY entity_id, ts")
        columns = [d.name for d in cur.description]
        return pd.DataFrame.from_records(cur.fetchall(), columns=columns)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    log(f"generating {args.rows:,} rows")
    fleet = generate_fleet(args.rows, seed=args.seed)
    first, last = fleet.metrics["ts"].min(), fleet.metrics["ts"].max()
    day = (first + (last - first) / 2).floor("D")
    one_day = {"start": day.isoformat(), "end": (day + pd.Timedelta(days=1)).isoformat()}
    results: dict[str, dict] = {}

    with temporary_server() as server_url:
        drop_database(server_url, DATABASE)
        dsn = create_database(server_url, DATABASE)
        try:
            with closing(connect(dsn)) as conn:
                apply_schema(conn)
                report = load_fleet(conn, fleet)
                log(f"loaded {report.rows:,} rows in {report.seconds:.1f} s (refresh {report.refresh_seconds:.1f} s)")
                conn.autocommit = True  # each timed statement on its own, as the CLI runs them

                full_scan_ms, _ = median_ms(args.repeats, lambda: scan(conn))
                day_where = f"ts >= '{one_day['start']}' AND ts < '{one_day['end']}'"
                one_day_scan_ms, _ = median_ms(args.repeats, lambda: scan(conn, day_where))
                log(f"full scan {full_scan_ms} ms, one-day scan {one_day_scan_ms} ms")

                for name in load_queries():
                    ms, frame = median_ms(args.repeats, lambda name=name: run_query(conn, name))
                    day_ms, _ = median_ms(args.repeats, lambda name=name: run_query(conn, name, one_day))
                    results[name] = {
                        "ms": ms,
                        "one_day_ms": day_ms,
                        "rows_out": len(frame),
                        "x_full_scan": round(ms / full_scan_ms, 2),
                    }
                    log(f"{name}: {ms} ms ({len(frame):,} rows), one day {day_ms} ms")

                hourly_ms, hourly = median_ms(args.repeats, lambda: read_hourly(conn))
                read_ms, _ = median_ms(args.repeats, lambda: read_metrics(conn))
                fetchall_ms, _ = median_ms(args.repeats, lambda: fetchall_frame(conn))
                log(f"read_metrics {read_ms} ms vs fetchall {fetchall_ms} ms; read_hourly {hourly_ms} ms")
        finally:
            drop_database(server_url, DATABASE)

    print(
        json.dumps(
            {
                "rows": report.rows,
                "queries": results,
                "full_scan_ms": full_scan_ms,
                "one_day_scan_ms": one_day_scan_ms,
                "one_day_window": one_day,
                "read_hourly_ms": hourly_ms,
                "read_hourly_rows": len(hourly),
                "read_metrics_ms": read_ms,
                "fetchall_ms": fetchall_ms,
                "read_metrics_speedup_vs_fetchall": round(fetchall_ms / read_ms, 2),
                "load_seconds": round(report.seconds, 2),
                "refresh_seconds": round(report.refresh_seconds, 2),
            }
        )
    )


if __name__ == "__main__":
    main()
