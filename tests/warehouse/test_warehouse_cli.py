"""`mlco db` end to end: on the session's server via DATABASE_URL, and on an embedded server of its own."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
from contextlib import closing
from pathlib import Path

import pandas as pd
import psycopg2
import pytest

from fleets import make_known_fleet, server_home
from ml_cloud_optimizer.cli import main
from ml_cloud_optimizer.data.io import entities_path, write_fleet
from ml_cloud_optimizer.warehouse import connect, database_url, load_queries, stop_embedded
from ml_cloud_optimizer.warehouse.server import embedded_url, pgdata_dir


def _rows(dsn: str) -> int:
    with closing(connect(dsn)) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM metrics")
        return cur.fetchone()[0]


@pytest.fixture
def db_env(warehouse_dsn, monkeypatch, tmp_path):
    """`mlco db` pointed at a fresh warehouse database through DATABASE_URL."""
    monkeypatch.setenv("DATABASE_URL", warehouse_dsn)
    monkeypatch.setenv("MLCO_HOME", str(tmp_path / "home"))
    return warehouse_dsn


@pytest.fixture
def fleet_file(tmp_path) -> Path:
    return write_fleet(make_known_fleet(days=2), tmp_path / "fleet.parquet")[0]


def test_load_twice_then_query_table_and_csv(db_env, fleet_file, capsys):
    assert main(["db", "init"]) == 0
    assert main(["db", "load", str(fleet_file)]) == 0
    assert main(["db", "load", str(fleet_file), "--format", "canonical"]) == 0
    out = capsys.readouterr().out.splitlines()
    rows = len(pd.read_parquet(fleet_file))
    assert f"{rows:,} new" in out[1] and "direct COPY" in out[1]
    assert f"0 new, 0 updated, {rows:,} unchanged" in out[2] and "staged upsert" in out[2]
    assert _rows(db_env) == rows

    assert main(["db", "query", "load_heatmap", "--param", "start=2024-01-08", "--csv"]) == 0
    heatmap = pd.read_csv(io.StringIO(capsys.readouterr().out))
    assert list(heatmap.columns) == ["hour_utc", "mon", "tue", "wed", "thu", "fri", "sat", "sun", "all_days"]
    assert len(heatmap) == 24 and heatmap["mon"].notna().all() and heatmap["sun"].isna().all()

    assert main(["db", "query", "cost_by_service_region"]) == 0
    table = capsys.readouterr().out.splitlines()
    header = ["service", "region", "entities", "instance_hours", "cost_usd", "cpu_mean", "idle_cost_usd"]
    assert table[0].split() == header
    assert len(table) == 1 + 4 + 3 + 1  # header, four (service, region) pairs, three services, the total
    assert "None" not in "\n".join(table)


@pytest.mark.usefixtures("db_env")
def test_query_list_names_every_query_and_its_defaults(capsys):
    assert main(["db", "query", "--list"]) == 0
    out = capsys.readouterr().out
    for name, query in load_queries().items():
        assert f"{name}: {query.doc}" in out
    assert "    z = 3  (z-score threshold (float))" in out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["db", "query", "nope"], "no query named 'nope'"),
        (["db", "query", "zscore_peaks", "--param", "zz=1"], "no parameter 'zz'"),
        (["db", "query", "zscore_peaks", "--param", "z=abc"], 'invalid input syntax for type double precision: "abc"'),
        (["db", "query", "zscore_peaks", "--param", "z"], "--param expects K=V"),
        (["db", "query"], "name a query"),
        (["db", "load", "/no/such/fleet.parquet"], "no such file"),
    ],
)
@pytest.mark.usefixtures("db_env")
def test_mistakes_exit_2_with_one_line(capsys, argv, message):
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and lines[0].startswith("mlco db: error:")


def test_bad_file_exits_2_and_leaves_the_table_unchanged(db_env, fleet_file, tmp_path, capsys):
    assert main(["db", "load", str(fleet_file)]) == 0
    before = _rows(db_env)
    metrics = pd.read_parquet(fleet_file)
    metrics.loc[3, "cpu_util"] = 7.0
    bad = tmp_path / "bad.parquet"
    metrics.to_parquet(bad, index=False)
    shutil.copy(entities_path(fleet_file), entities_path(bad))
    capsys.readouterr()

    assert main(["db", "load", str(bad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cpu_util" in err[0] and "outside" in err[0]
    assert _rows(db_env) == before


@pytest.mark.usefixtures("db_env")
def test_status_reports_what_the_warehouse_holds(fleet_file, capsys):
    assert main(["db", "load", str(fleet_file)]) == 0
    capsys.readouterr()
    assert main(["db", "status"]) == 0
    out = capsys.readouterr().out
    rows = len(pd.read_parquet(fleet_file))
    assert "warehouse: DATABASE_URL" in out
    assert f"metrics: {rows:,} rows, 4 entities, 2024-01-07 00:00 .. 2024-01-08 23:55 UTC, 2 weekly partitions" in out
    assert "1 loads" in out


def test_stop_with_database_url_set_starts_and_stops_nothing(db_env, capsys):
    assert main(["db", "stop"]) == 0
    assert "DATABASE_URL is set" in capsys.readouterr().out
    assert _rows(db_env) == 0  # the server is still there


def test_embedded_server_is_reused_across_connects_and_commands_and_stops(monkeypatch, capsys):
    home = server_home()
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.setenv("MLCO_HOME", str(home))
    pgdata = pgdata_dir()
    assert pgdata == home / "pgdata"
    try:
        assert embedded_url() is None
        url = database_url()
        postmaster = (pgdata / "postmaster.pid").read_text().splitlines()[0]
        with closing(connect()) as first, closing(connect()) as second:
            with first.cursor() as a, second.cursor() as b:
                a.execute("SELECT pg_postmaster_start_time(), pg_backend_pid()")
                b.execute("SELECT pg_postmaster_start_time(), pg_backend_pid()")
                (started_a, session_a), (started_b, session_b) = a.fetchone(), b.fetchone()
        assert started_a == started_b and session_a != session_b  # one server, two sessions
        assert database_url() == url

        # another process (a later `mlco db` command) finds the same server running
        env = {**os.environ, "MLCO_HOME": str(home)}
        env.pop("DATABASE_URL", None)
        command = [sys.executable, "-m", "ml_cloud_optimizer", "db", "url"]
        shown = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
        assert shown.returncode == 0, shown.stderr
        assert shown.stdout.strip() == url
        assert (pgdata / "postmaster.pid").read_text().splitlines()[0] == postmaster

        assert main(["db", "stop"]) == 0
        assert "stopped embedded PostgreSQL" in capsys.readouterr().out
        assert embedded_url() is None
        with pytest.raises(psycopg2.OperationalError):
            psycopg2.connect(url, connect_timeout=5)
        assert main(["db", "stop"]) == 0
        assert "no embedded PostgreSQL running" in capsys.readouterr().out
        assert main(["db", "status"]) == 0
        assert "not running" in capsys.readouterr().out
    finally:
        stop_embedded(pgdata)
        shutil.rmtree(home, ignore_errors=True)
