"""Bulk-load speed: mlco's loader against `psql \\copy` of the same rows into an identical table.

Generates ``--rows`` synthetic metric rows once, writes them as CSV for psql (untimed), then
for each repeat loads them into two fresh databases holding the same schema:

* mlco: ``load_fleet(conn, fleet, refresh=False)``, timed from the call to its return, so it
  includes validate_fleet, the binary encoding, the dimension upserts, creating the weekly
  partitions, the COPY and the commit. The hourly view's refresh is timed apart.
* psql: ``psql -c "\\copy metrics FROM file.csv (FORMAT csv)"`` as a subprocess, timed from
  start to exit, into the same partitioned, indexed, constrained table; its partitions are
  created beforehand, untimed.

The two alternate, and the median of the repeats is reported. A re-load of the same rows
(every row compared and found unchanged through the staging table) is timed once.
Uses DATABASE_URL when set, else an embedded server in a temporary directory.
Last stdout line: JSON {"rows", "mlco_rows_per_s", "psql_copy_rows_per_s", "ratio", ...}.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import closing
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pa_csv

from ml_cloud_optimizer.data.schema import METRIC_COLUMNS, STEP, validate_fleet
from ml_cloud_optimizer.data.synthetic import generate_fleet
from ml_cloud_optimizer.warehouse import (
    apply_schema,
    connect,
    create_database,
    drop_database,
    encode_metrics_copy,
    load_fleet,
    refresh_aggregates,
)
from ml_cloud_optimizer.warehouse.server import psql_path, temporary_server


def log(message: str) -> None:
    print(f"[warehouse_load] {message}", file=sys.stderr, flush=True)


def fresh_database(server_url: str, name: str) -> str:
    drop_database(server_url, name)
    dsn = create_database(server_url, name)
    with closing(connect(dsn)) as conn:
        apply_schema(conn)
    return dsn


def time_mlco(server_url: str, fleet) -> tuple[float, float]:
    dsn = fresh_database(server_url, "mlco_bench_load")
    try:
        with closing(connect(dsn)) as conn:
            started = time.perf_counter()
            report = load_fleet(conn, fleet, refresh=False)
            seconds = time.perf_counter() - started
            assert report.inserted == len(fleet.metrics) and report.fast_path
            refresh = refresh_aggregates(conn)
        return seconds, refresh
    finally:
        drop_database(server_url, "mlco_bench_load")


def time_psql(server_url: str, csv_path: Path, first_ts, last_ts, rows: int) -> float:
    dsn = fresh_database(server_url, "mlco_bench_psql")
    try:
        with closing(connect(dsn)) as conn, conn, conn.cursor() as cur:
            cur.execute("SELECT ensure_metric_partitions(%s, %s)", (first_ts, last_ts + STEP))
        columns = ", ".join(METRIC_COLUMNS)
        command = [
            str(psql_path()),
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-d",
            dsn,
            "-c",
            f"\\copy metrics ({columns}) FROM '{csv_path}' WITH (FORMAT csv)",
        ]
        started = time.perf_counter()
        subprocess.run(command, check=True)
        seconds = time.perf_counter() - started
        with closing(connect(dsn)) as conn, conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM metrics")
            assert cur.fetchone()[0] == rows
        return seconds
    finally:
        drop_database(server_url, "mlco_bench_psql")


def time_reload(server_url: str, fleet) -> float:
    dsn = fresh_database(server_url, "mlco_bench_reload")
    try:
        with closing(connect(dsn)) as conn:
            load_fleet(conn, fleet, refresh=False)
            report = load_fleet(conn, fleet, refresh=False)
            assert report.unchanged == len(fleet.metrics) and not report.fast_path
        return report.seconds
    finally:
        drop_database(server_url, "mlco_bench_reload")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    log(f"generating {args.rows:,} rows")
    fleet = generate_fleet(args.rows, seed=args.seed)
    metrics = fleet.metrics
    rows = len(metrics)

    started = time.perf_counter()
    validated = validate_fleet(fleet)
    validate_s = time.perf_counter() - started
    started = time.perf_counter()
    encode_metrics_copy(validated.metrics)
    encode_s = time.perf_counter() - started

    with tempfile.TemporaryDirectory(prefix="mlco-bench-") as scratch, temporary_server() as server_url:
        csv_path = Path(scratch) / "metrics.csv"
        # same rows, same order as mlco sends them; NULL as empty field, the CSV default
        pa_csv.write_csv(
            pa.Table.from_pandas(validated.metrics[list(METRIC_COLUMNS)], preserve_index=False),
            csv_path,
            pa_csv.WriteOptions(include_header=False),
        )
        log(f"CSV for psql: {csv_path.stat().st_size / 1e6:.0f} MB; psql {psql_path()}")
        first_ts, last_ts = metrics["ts"].min(), metrics["ts"].max()

        mlco_s, psql_s, refresh_s = [], [], []
        for repeat in range(args.repeats):
            runs = ["mlco", "psql"] if repeat % 2 == 0 else ["psql", "mlco"]
            for which in runs:
                if which == "mlco":
                    seconds, refresh = time_mlco(server_url, fleet)
                    mlco_s.append(seconds)
                    refresh_s.append(refresh)
                else:
                    psql_s.append(time_psql(server_url, csv_path, first_ts, last_ts, rows))
                log(f"repeat {repeat + 1}/{args.repeats} {which}: {(mlco_s if which == 'mlco' else psql_s)[-1]:.2f} s")
        reload_s = time_reload(server_url, fleet)
        log(f"reload of unchanged rows: {reload_s:.2f} s")
        with closing(connect(server_url)) as conn, conn.cursor() as cur:
            cur.execute("SHOW server_version")
            version = cur.fetchone()[0]

    mlco, psql = statistics.median(mlco_s), statistics.median(psql_s)
    print(
        json.dumps(
            {
                "rows": rows,
                "mlco_rows_per_s": round(rows / mlco),
                "psql_copy_rows_per_s": round(rows / psql),
                "ratio": round(psql / mlco, 3),
                "mlco_seconds": [round(s, 3) for s in mlco_s],
                "psql_copy_seconds": [round(s, 3) for s in psql_s],
                "mlco_validate_seconds": round(validate_s, 3),
                "mlco_encode_seconds": round(encode_s, 3),
                "refresh_hourly_view_seconds": round(statistics.median(refresh_s), 3),
                "reload_unchanged_rows_per_s": round(rows / reload_s),
                "reload_vs_psql_copy": round(psql / reload_s, 3),
                "server": f"PostgreSQL {version}",
                "timed": "mlco: load_fleet(refresh=False) call incl. validation, encoding, partitions, COPY, commit;"
                " psql: the \\copy subprocess from start to exit, partitions made beforehand",
            }
        )
    )


if __name__ == "__main__":
    main()
