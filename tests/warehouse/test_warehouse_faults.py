"""Faults during a load, against a real PostgreSQL: a failing source, a killed backend, a killed loader, races.

``load_fleet`` claims one transaction and idempotent re-runs. These tests break a load where
it hurts (mid-COPY, with part of the rows already inserted server-side; mid-statement, with the
loader's locks held) and check that nothing partial stays, that nothing stale blocks the
re-run, and that the re-run leaves every (entity, ts) row exactly once with the file's values.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from contextlib import closing
from pathlib import Path

import pandas as pd
import psycopg2
import pytest

from fleets import make_known_fleet
from ml_cloud_optimizer.data.io import write_fleet
from ml_cloud_optimizer.data.schema import Fleet, validate_fleet
from ml_cloud_optimizer.data.synthetic import generate_fleet
from ml_cloud_optimizer.warehouse import connect, load_fleet, loader, read_metrics

# Bytes of COPY stream sent before a fault: two of the loader's 1 MB COPY buffers and then some.
_FAULT_AFTER_BYTES = 2_500_000

_STATE_SQL = """
SELECT (SELECT count(*) FROM metrics),
       (SELECT count(*) FROM (SELECT DISTINCT entity_id, ts FROM metrics) AS keys),
       (SELECT count(*) FROM load_log),
       (SELECT coalesce(sum(inserted), 0) FROM load_log),
       (SELECT count(*) FROM pg_inherits WHERE inhparent = 'metrics'::regclass),
       (SELECT coalesce(sum(n_samples), 0) FROM metrics_hourly),
       (SELECT count(*) FROM pg_class WHERE relname = 'mlco_staging'),
       (SELECT count(*) FROM pg_locks AS l JOIN pg_stat_activity AS a USING (pid)
         WHERE a.datname = current_database() AND l.pid <> pg_backend_pid()
           AND l.locktype IN ('relation', 'advisory', 'transactionid'))
"""
_STATE_KEYS = ["rows", "keys", "loads", "inserted", "partitions", "hourly_samples", "staging", "foreign_locks"]


def _state(dsn: str) -> dict[str, int]:
    """What the warehouse holds, seen from a new session: rows, loads, partitions, leftovers."""
    with closing(connect(dsn)) as conn, conn.cursor() as cur:
        cur.execute(_STATE_SQL)
        return dict(zip(_STATE_KEYS, map(int, cur.fetchone()), strict=True))


def _loaded_exactly(dsn: str, expected: pd.DataFrame, loads: int, partitions: int) -> None:
    """The warehouse holds ``expected`` and nothing else, each key once, with nothing left over."""
    rows = len(expected)
    state = _state(dsn)
    assert state == {
        "rows": rows,
        "keys": rows,
        "loads": loads,
        "inserted": rows,  # summed over the committed loads: every row was new exactly once
        "partitions": partitions,
        "hourly_samples": rows,
        "staging": 0,
        "foreign_locks": 0,
    }
    with closing(connect(dsn)) as conn:
        pd.testing.assert_frame_equal(read_metrics(conn).metrics, expected.reset_index(drop=True))


def _wait_for(probe, what: str, timeout: float = 60.0, interval: float = 0.002):
    """Poll ``probe`` until it returns something truthy; fail naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = probe()
        if found:
            return found
        time.sleep(interval)
    pytest.fail(f"gave up after {timeout:.0f} s waiting for {what}")


def _observer(dsn: str):
    conn = connect(dsn)
    conn.autocommit = True
    return closing(conn)


def _fetch(conn, query: str, args=None):
    with conn.cursor() as cur:
        cur.execute(query, args)
        return cur.fetchone()


def _copy_progress(conn, pid: int | None = None):
    """(backend pid, rows COPY has inserted so far) of a COPY running in this database, else None."""
    query = "SELECT pid, tuples_processed FROM pg_stat_progress_copy WHERE datname = current_database()"
    row = _fetch(conn, query) if pid is None else _fetch(conn, query + " AND pid = %s", (pid,))
    return row if row is not None and row[1] > 0 else None


def _backend_gone(conn, pid: int) -> bool:
    return _fetch(conn, "SELECT count(*) FROM pg_stat_activity WHERE pid = %s", (pid,))[0] == 0


def _faulty_stream(fault):
    """``iter_metrics_copy``, but calling ``fault()`` once ``_FAULT_AFTER_BYTES`` were yielded."""
    real = loader.iter_metrics_copy

    def stream(metrics, *args, **kwargs):
        sent = 0
        for piece in real(metrics, *args, **kwargs):
            yield piece
            sent += len(piece)
            if sent >= _FAULT_AFTER_BYTES:
                fault()
                sent = -(1 << 62)

    return stream


def _rescaled(fleet: Fleet, factor: float, *, source: str) -> Fleet:
    metrics = fleet.metrics.assign(cpu_util=fleet.metrics["cpu_util"] * factor)
    return Fleet(metrics=metrics.reset_index(drop=True), entities=fleet.entities, source=source)


def _first_half(fleet: Fleet, *, factor: float = 1.0) -> Fleet:
    """The fleet's first half in time, CPU scaled by ``factor``: rows a later full load must update."""
    cut = fleet.metrics["ts"].min() + (fleet.metrics["ts"].max() - fleet.metrics["ts"].min()) / 2
    half = Fleet(metrics=fleet.metrics[fleet.metrics["ts"] < cut], entities=fleet.entities, source="half")
    return _rescaled(half, factor, source="half")


@pytest.fixture(scope="module")
def mid_fleet() -> Fleet:
    """About 60k rows, 6 MB of COPY stream: several COPY buffers, so a fault can land in the middle."""
    return generate_fleet(60_000, seed=3)


@pytest.mark.parametrize("path", ["direct", "staged"])
def test_a_source_failing_mid_copy_leaves_nothing_and_the_rerun_loads_every_row_once(
    warehouse, warehouse_dsn, mid_fleet, monkeypatch, path
):
    if path == "staged":
        load_fleet(warehouse, _first_half(mid_fleet, factor=0.5))
    before = _state(warehouse_dsn)
    loader_pid = _fetch(warehouse, "SELECT pg_backend_pid()")[0]
    warehouse.rollback()
    progress = []

    def fail():
        with _observer(warehouse_dsn) as watcher:
            progress.append(_wait_for(lambda: _copy_progress(watcher, loader_pid), "rows to reach the server"))
        raise RuntimeError("the source broke")

    monkeypatch.setattr(loader, "iter_metrics_copy", _faulty_stream(fail))
    with pytest.raises(psycopg2.Error, match="the source broke"):
        load_fleet(warehouse, mid_fleet)

    assert 0 < progress[0][1] < len(mid_fleet.metrics)  # part of the rows were in, uncommitted
    assert _state(warehouse_dsn) == before
    monkeypatch.undo()
    report = load_fleet(warehouse, mid_fleet)  # the same session: its staging name is free again
    assert report.fast_path == (path == "direct")
    _loaded_exactly(warehouse_dsn, mid_fleet.metrics, loads=before["loads"] + 1, partitions=4)


def test_a_backend_terminated_mid_copy_leaves_nothing_and_a_new_session_loads_every_row_once(
    warehouse, warehouse_dsn, mid_fleet, monkeypatch
):
    loader_pid = _fetch(warehouse, "SELECT pg_backend_pid()")[0]
    warehouse.rollback()

    def terminate():
        with _observer(warehouse_dsn) as admin:
            _wait_for(lambda: _copy_progress(admin, loader_pid), "rows to reach the server")
            assert _fetch(admin, "SELECT pg_terminate_backend(%s, 10000)", (loader_pid,))[0]

    monkeypatch.setattr(loader, "iter_metrics_copy", _faulty_stream(terminate))
    # psycopg2's rollback on the dead connection may report "connection already closed" instead
    with pytest.raises((psycopg2.OperationalError, psycopg2.InterfaceError)):
        load_fleet(warehouse, mid_fleet)

    assert _state(warehouse_dsn) == dict.fromkeys(_STATE_KEYS, 0)
    monkeypatch.undo()
    with closing(connect(warehouse_dsn)) as conn:
        assert load_fleet(conn, mid_fleet).fast_path
    _loaded_exactly(warehouse_dsn, mid_fleet.metrics, loads=1, partitions=4)


def _mlco(*argv: str, dsn: str, home: Path) -> subprocess.Popen:
    """``mlco ARGV`` as its own process, on the warehouse ``dsn``."""
    env = {**os.environ, "DATABASE_URL": dsn, "MLCO_HOME": str(home)}
    command = [sys.executable, "-m", "ml_cloud_optimizer", *argv]
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(process: subprocess.Popen, timeout: float = 180) -> str:
    out, err = process.communicate(timeout=timeout)
    assert process.returncode == 0, err
    return out


def _running(process: subprocess.Popen, probe):
    """``probe`` for ``_wait_for``, failing at once should ``process`` end before it is caught."""

    def check():
        if process.poll() is not None:
            pytest.fail(f"the load ended (exit {process.returncode}) before the fault: {process.stderr.read()}")
        return probe()

    return check


def _kill(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGKILL)
    process.communicate(timeout=30)


@pytest.fixture(scope="module")
def big_file(tmp_path_factory) -> tuple[Fleet, Path]:
    """About 200k rows on disk: the COPY alone takes most of a second, long enough to be caught in."""
    fleet = generate_fleet(200_000, seed=5)
    return fleet, write_fleet(fleet, tmp_path_factory.mktemp("big") / "fleet.parquet")[0]


@pytest.mark.slow
@pytest.mark.parametrize("path", ["direct", "staged"])
def test_kill_9_of_mlco_db_load_mid_copy_then_rerun_loads_every_row_once(warehouse_dsn, big_file, tmp_path, path):
    fleet, path_on_disk = big_file
    if path == "staged":
        with closing(connect(warehouse_dsn)) as conn:
            load_fleet(conn, _first_half(fleet, factor=0.5))
    before = _state(warehouse_dsn)

    with _observer(warehouse_dsn) as watcher:
        process = _mlco("db", "load", str(path_on_disk), dsn=warehouse_dsn, home=tmp_path)
        try:
            pid, copied = _wait_for(_running(process, lambda: _copy_progress(watcher)), "the COPY", 180)
        finally:
            _kill(process)
        assert process.returncode == -signal.SIGKILL
        assert 0 < copied < len(fleet.metrics)
        # the server sees the hang-up at once: it is reading the COPY stream from the socket
        _wait_for(lambda: _backend_gone(watcher, pid), "the killed loader's backend to exit", 30, 0.05)

    assert _state(warehouse_dsn) == before
    out = _finish(_mlco("db", "load", str(path_on_disk), dsn=warehouse_dsn, home=tmp_path))
    assert ("direct COPY" if path == "direct" else "staged upsert") in out
    _loaded_exactly(warehouse_dsn, fleet.metrics, loads=before["loads"] + 1, partitions=4)


def test_kill_9_while_the_load_waits_on_a_reader_frees_its_locks_without_waiting_for_the_reader(
    warehouse_dsn, tmp_path
):
    """A loader killed mid-statement must not leave a backend holding the metrics lock.

    Its REFRESH waits for a dashboard's open transaction on metrics_hourly; a backend that
    noticed the dead client only when next writing to it would sit there, holding metrics in
    SHARE ROW EXCLUSIVE mode, for as long as the reader stays, and every re-run would queue behind.
    """
    fleet = make_known_fleet(days=2)
    path = write_fleet(fleet, tmp_path / "fleet.parquet")[0]
    reader = connect(warehouse_dsn)
    with closing(reader), _observer(warehouse_dsn) as watcher:
        _fetch(reader, "SELECT count(*) FROM metrics_hourly")  # and stays in its transaction
        process = _mlco("db", "load", str(path), dsn=warehouse_dsn, home=tmp_path)
        try:
            waiting = (
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
                " AND query LIKE 'REFRESH MATERIALIZED VIEW%'"
            )
            (pid,) = _wait_for(_running(process, lambda: _fetch(watcher, waiting)), "the REFRESH to wait", 120)
        finally:
            _kill(process)
        assert process.returncode == -signal.SIGKILL
        _wait_for(lambda: _backend_gone(watcher, pid), "the killed loader's backend to exit", 15, 0.05)
        assert _fetch(watcher, "SELECT count(*) FROM metrics")[0] == 0
        lock_free = "SELECT count(*) FROM pg_locks WHERE relation = 'metrics'::regclass AND pid <> pg_backend_pid()"
        assert _fetch(watcher, lock_free)[0] == 0
        reader.rollback()

    _finish(_mlco("db", "load", str(path), dsn=warehouse_dsn, home=tmp_path))
    _loaded_exactly(warehouse_dsn, fleet.metrics, loads=1, partitions=2)


def _window(fleet: Fleet, first_day: int, last_day: int, *, entities=None, factor=1.0, source: str) -> Fleet:
    """Days ``first_day``..``last_day`` (inclusive) of ``fleet``, for ``entities``, CPU scaled by ``factor``."""
    start = fleet.metrics["ts"].min().normalize()
    ts = fleet.metrics["ts"]
    keep = (ts >= start + pd.Timedelta(days=first_day)) & (ts < start + pd.Timedelta(days=last_day + 1))
    if entities is not None:
        keep &= fleet.metrics["entity_id"].isin(entities)
    part = Fleet(metrics=fleet.metrics[keep], entities=fleet.entities, source=source)
    return _rescaled(part, factor, source=source)


def test_concurrent_overlapping_loads_leave_each_row_once_as_the_last_committed_load_wrote_it(warehouse_dsn):
    base = make_known_fleet(days=5)
    loads = [
        _window(base, 0, 2, source="days 0-2"),
        _window(base, 1, 3, factor=0.5, source="days 1-3 halved"),
        _window(base, 0, 2, source="days 0-2 again"),
        _window(base, 2, 4, entities=["web-a", "db-é"], factor=0.8, source="days 2-4 two entities"),
        _window(base, 0, 4, factor=0.9, source="days 0-4"),
        _window(base, 3, 4, source="days 3-4"),
    ]
    start = threading.Barrier(len(loads))
    errors: list[BaseException] = []

    def run(fleet: Fleet) -> None:
        try:
            with closing(connect(warehouse_dsn)) as conn:
                start.wait(timeout=60)
                load_fleet(conn, fleet)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(fleet,)) for fleet in loads]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert not errors and not any(t.is_alive() for t in threads)

    with closing(connect(warehouse_dsn)) as conn, conn.cursor() as cur:
        cur.execute("SELECT source FROM load_log ORDER BY load_id")
        order = [source for (source,) in cur.fetchall()]
    assert sorted(order) == sorted(f.source for f in loads)
    # the loads took turns, so the table is what applying them one by one in commit order gives
    by_source = {f.source: f.metrics for f in loads}
    expected = pd.concat([by_source[s] for s in order]).drop_duplicates(["entity_id", "ts"], keep="last")
    expected = validate_fleet(Fleet(metrics=expected, entities=base.entities, source="expected")).metrics
    assert len(expected) == len(base.metrics)
    _loaded_exactly(warehouse_dsn, expected, loads=len(loads), partitions=2)


@pytest.mark.slow
def test_concurrent_mlco_db_load_processes_on_overlapping_files_load_every_row_once(warehouse_dsn, tmp_path):
    base = make_known_fleet(days=5)
    files = [
        write_fleet(_window(base, 0, 2, source="a"), tmp_path / "days-0-2.parquet")[0],
        write_fleet(_window(base, 1, 4, source="b"), tmp_path / "days-1-4.parquet")[0],
        write_fleet(base, tmp_path / "all.parquet")[0],
    ]
    processes = [_mlco("db", "load", str(f), dsn=warehouse_dsn, home=tmp_path) for f in [*files, files[0]]]
    outputs = [_finish(p) for p in processes]

    assert all("loaded" in out for out in outputs)
    _loaded_exactly(warehouse_dsn, base.metrics, loads=len(processes), partitions=2)
