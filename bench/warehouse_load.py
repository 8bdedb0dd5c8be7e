"""Bulk-load speed: `mlco db load` against the physical limit, a binary COPY of pre-encoded rows.

Generates ``--rows`` synthetic metric rows once and, untimed, writes them as a Parquet fleet
(for mlco), encodes them as one binary COPY stream (for the baseline) and writes them as CSV
(for psql). Each repeat then loads the same rows into fresh databases holding the same
partitioned, indexed, constrained schema:

* mlco: ``mlco db load FILE --no-refresh`` run in this process (``cli.main``), timed from the
  call to its return: reading the file, validate_fleet, connecting, applying the schema, the
  binary encoding, the dimension upserts, creating the weekly partitions, the COPY, the commit.
  The hourly view's refresh is timed apart. The file is read once untimed first, so the
  one-off costs of a first call in a process (lazy imports, allocator warm-up) are left out.
* binary COPY, the baseline: ``COPY metrics FROM STDIN (FORMAT binary)`` of the bytes encoded
  beforehand, through psycopg2, timed from the COPY to its commit; partitions made beforehand.
  No loader can beat it on this server, so ``ratio`` (its time over mlco's) says how much of
  the limit mlco reaches (target 0.7).
* psql CSV: ``psql -c "\\copy metrics FROM file.csv (FORMAT csv)"`` as a subprocess, timed from
  start to exit, partitions made beforehand: the common way in, reported as ``vs_psql_csv``.

The three alternate, rotating who goes first, and medians of the repeats are reported. A
re-load of the same rows (every row compared and found unchanged through the staging table)
is timed once. Uses DATABASE_URL when set, else an embedded server in a temporary directory.
Last stdout line: JSON {"rows", "mlco_rows_per_s", "binary_copy_rows_per_s", "ratio",
"psql_csv_rows_per_s", "vs_psql_csv", ...}.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import closing, redirect_stdout
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pa_csv

from ml_cloud_optimizer.cli import build_parser
from ml_cloud_optimizer.cli import main as mlco
from ml_cloud_optimizer.data.io import read_fleet, write_fleet
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

# The loader's own COPY buffer (warehouse.loader._COPY_BUFFER_BYTES), so both send alike.
COPY_BUFFER_BYTES = 1 << 20
RATIO_TARGET = 0.7


def log(message: str) -> None:
    print(f"[warehouse_load] {message}", file=sys.stderr, flush=True)


def fresh_database(server_url: str, name: str) -> str:
    drop_database(server_url, name)
    dsn = create_database(server_url, name)
    with closing(connect(dsn)) as conn:
        apply_schema(conn)
    return dsn


def count_rows(dsn: str) -> int:
    with closing(connect(dsn)) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM metrics")
        return cur.fetchone()[0]


def make_partitions(dsn: str, first_ts, last_ts) -> None:
    with closing(connect(dsn)) as conn, conn, conn.cursor() as cur:
        cur.execute("SELECT ensure_metric_partitions(%s, %s)", (first_ts, last_ts + STEP))


def time_mlco(server_url: str, fleet_path: Path, rows: int) -> tuple[float, float]:
    """``mlco db load`` end to end, as the CLI runs it; its report line goes to stderr."""
    dsn = fresh_database(server_url, "mlco_bench_load")
    previous = os.environ.get("DATABASE_URL")
    os.environ["DATABASE_URL"] = dsn
    try:
        with redirect_stdout(sys.stderr):
            started = time.perf_counter()
            status = mlco(["db", "load", str(fleet_path), "--no-refresh"])
            seconds = time.perf_counter() - started
        assert status == 0 and count_rows(dsn) == rows
        with closing(connect(dsn)) as conn:
            refresh = refresh_aggregates(conn)
        return seconds, refresh
    finally:
        if previous is None:
            os.environ.pop("DATABASE_URL", None)
        else:
            os.environ["DATABASE_URL"] = previous
        drop_database(server_url, "mlco_bench_load")


def time_binary_copy(server_url: str, payload: bytes, first_ts, last_ts, rows: int) -> float:
    """The baseline: only the COPY of bytes already in memory, and its commit."""
    dsn = fresh_database(server_url, "mlco_bench_binary")
    try:
        make_partitions(dsn, first_ts, last_ts)
        statement = f"COPY metrics ({', '.join(METRIC_COLUMNS)}) FROM STDIN WITH (FORMAT binary)"
        stream = io.BytesIO(payload)
        with closing(connect(dsn)) as conn:
            started = time.perf_counter()
            with conn, conn.cursor() as cur:
                cur.copy_expert(statement, stream, COPY_BUFFER_BYTES)
            seconds = time.perf_counter() - started
        assert count_rows(dsn) == rows
        return seconds
    finally:
        drop_database(server_url, "mlco_bench_binary")


def time_psql(server_url: str, csv_path: Path, first_ts, last_ts, rows: int) -> float:
    dsn = fresh_database(server_url, "mlco_bench_psql")
    try:
        make_partitions(dsn, first_ts, last_ts)
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
        assert count_rows(dsn) == rows
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
    payload = b"".join(encode_metrics_copy(validated.metrics))
    encode_s = time.perf_counter() - started
    build_parser()  # import every CLI module now, not inside the first timed load

    with tempfile.TemporaryDirectory(prefix="mlco-bench-") as scratch, temporary_server() as server_url:
        fleet_path = write_fleet(validated, Path(scratch) / "fleet.parquet")[0]
        csv_path = Path(scratch) / "metrics.csv"
        # same rows, same order as mlco sends them; NULL as empty field, the CSV default
        pa_csv.write_csv(
            pa.Table.from_pandas(validated.metrics[list(METRIC_COLUMNS)], preserve_index=False),
            csv_path,
            pa_csv.WriteOptions(include_header=False),
        )
        log(
            f"fleet file {fleet_path.stat().st_size / 1e6:.0f} MB, binary COPY stream {len(payload) / 1e6:.0f} MB,"
            f" CSV {csv_path.stat().st_size / 1e6:.0f} MB; psql {psql_path()}"
        )
        first_ts, last_ts = metrics["ts"].min(), metrics["ts"].max()
        read_fleet(fleet_path)  # untimed warm-up: the first call in a process pays one-off costs
        started = time.perf_counter()
        read_fleet(fleet_path)  # the part of mlco's time before it reaches the loader
        read_s = time.perf_counter() - started

        timings: dict[str, list[float]] = {"mlco": [], "binary": [], "psql": []}
        refresh_s = []
        kinds = list(timings)
        for repeat in range(args.repeats):
            for which in kinds[repeat % 3 :] + kinds[: repeat % 3]:
                if which == "mlco":
                    seconds, refresh = time_mlco(server_url, fleet_path, rows)
                    refresh_s.append(refresh)
                elif which == "binary":
                    seconds = time_binary_copy(server_url, payload, first_ts, last_ts, rows)
                else:
                    seconds = time_psql(server_url, csv_path, first_ts, last_ts, rows)
                timings[which].append(seconds)
                log(f"repeat {repeat + 1}/{args.repeats} {which}: {seconds:.2f} s")
        reload_s = time_reload(server_url, validated)
        log(f"reload of unchanged rows: {reload_s:.2f} s")
        with closing(connect(server_url)) as conn, conn.cursor() as cur:
            cur.execute("SHOW server_version")
            version = cur.fetchone()[0]

    mlco_s, binary_s, psql_s = (statistics.median(timings[k]) for k in kinds)
    print(
        json.dumps(
            {
                "rows": rows,
                "mlco_rows_per_s": round(rows / mlco_s),
                "binary_copy_rows_per_s": round(rows / binary_s),
                "ratio": round(binary_s / mlco_s, 3),
                "ratio_target": RATIO_TARGET,
                "psql_csv_rows_per_s": round(rows / psql_s),
                "vs_psql_csv": round(psql_s / mlco_s, 3),
                "mlco_seconds": [round(s, 3) for s in timings["mlco"]],
                "binary_copy_seconds": [round(s, 3) for s in timings["binary"]],
                "psql_csv_seconds": [round(s, 3) for s in timings["psql"]],
                "read_file_seconds": round(read_s, 3),
                "validate_seconds": round(validate_s, 3),
                "encode_seconds": round(encode_s, 3),
                "refresh_hourly_view_seconds": round(statistics.median(refresh_s), 3),
                "reload_unchanged_rows_per_s": round(rows / reload_s),
                "reload_vs_binary_copy": round(binary_s / reload_s, 3),
                "server": f"PostgreSQL {version}",
                "timed": "mlco: `mlco db load FILE --no-refresh` in-process, from the call to its return (file read,"
                " validation, schema check, encoding, partitions, COPY, commit); binary COPY: the COPY of bytes"
                " encoded beforehand and its commit, partitions made beforehand; psql: the \\copy subprocess from"
                " start to exit, partitions made beforehand",
            }
        )
    )


if __name__ == "__main__":
    main()
