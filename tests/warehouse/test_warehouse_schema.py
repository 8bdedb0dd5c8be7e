"""The warehouse DDL on a real PostgreSQL: idempotent, partitioned by week, strict about values."""

from __future__ import annotations

import json

import psycopg2
import pytest

from fleets import make_known_fleet
from ml_cloud_optimizer.warehouse import apply_schema, load_fleet, load_queries, schema_files

_CATALOG_SNAPSHOT = """
SELECT c.relname, c.relkind, coalesce(pg_get_expr(c.relpartbound, c.oid), '')
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = 'public'
ORDER BY 1
"""


def _snapshot(conn) -> list[tuple]:
    with conn.cursor() as cur:
        cur.execute(_CATALOG_SNAPSHOT)
        relations = cur.fetchall()
        cur.execute("SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint ORDER BY 1, 2")
        return relations + cur.fetchall()


def _partitions(conn) -> list[str]:
    with conn.cursor() as cur:
        cur.execute("SELECT inhrelid::regclass::text FROM pg_inherits WHERE inhparent = 'metrics'::regclass ORDER BY 1")
        return [r[0] for r in cur.fetchall()]


def test_schema_files_are_numbered_ddl_without_the_query_catalogue():
    names = [p.name for p in schema_files()]
    assert names == sorted(names)
    assert "01_schema.sql" in names and "03_metrics_hourly.sql" in names
    assert "02_olap_queries.sql" not in names


def test_schema_applies_twice_cleanly_and_keeps_data(warehouse):
    load_fleet(warehouse, make_known_fleet(days=1))
    before = _snapshot(warehouse)
    with warehouse.cursor() as cur:
        cur.execute("SELECT count(*), sum(cpu_util) FROM metrics")
        rows_before = cur.fetchone()

    apply_schema(warehouse)
    apply_schema(warehouse)

    assert _snapshot(warehouse) == before
    with warehouse.cursor() as cur:
        cur.execute("SELECT count(*), sum(cpu_util) FROM metrics")
        assert cur.fetchone() == rows_before
    assert rows_before[0] > 0


def test_partition_function_creates_weekly_partitions_once(warehouse):
    with warehouse, warehouse.cursor() as cur:
        cur.execute("SELECT ensure_metric_partitions('2024-01-03', '2024-01-16')")
        assert cur.fetchone()[0] == 3  # weeks of Jan 1, Jan 8 and Jan 15
        cur.execute("SELECT ensure_metric_partitions('2024-01-01', '2024-01-15')")
        assert cur.fetchone()[0] == 0
    assert _partitions(warehouse) == ["metrics_20240101", "metrics_20240108", "metrics_20240115"]
    with warehouse.cursor() as cur:
        cur.execute("SELECT pg_get_expr(relpartbound, oid) FROM pg_class WHERE relname = 'metrics_20240108'")
        bound = cur.fetchone()[0]
    assert "2024-01-08 00:00:00+00" in bound and "2024-01-15 00:00:00+00" in bound


def test_no_default_partition_so_rows_outside_every_partition_are_refused(warehouse):
    with pytest.raises(psycopg2.errors.CheckViolation, match="no partition"):
        with warehouse, warehouse.cursor() as cur:
            cur.execute("INSERT INTO metrics (entity_id, ts, cpu_util) VALUES ('x', '2030-01-01', 0.5)")


def test_indexes_brin_on_time_and_btree_on_entity_time(warehouse):
    with warehouse.cursor() as cur:
        cur.execute("SELECT indexdef FROM pg_indexes WHERE tablename = 'metrics'")
        definitions = [r[0] for r in cur.fetchall()]
    assert any("USING brin (ts)" in d for d in definitions)
    assert any("USING btree (entity_id, ts)" in d and "UNIQUE" in d for d in definitions)


@pytest.mark.parametrize(
    "column, value",
    [
        ("cpu_util", "1.6"),
        ("cpu_util", "-0.1"),
        ("cpu_util", "'NaN'"),
        ("mem_util", "2"),
        ("net_in_kbps", "-1"),
        ("request_rate", "'infinity'"),
        ("disk_write_kbps", "'NaN'"),
    ],
)
def test_check_constraints_refuse_out_of_range_values(warehouse, column, value):
    with warehouse, warehouse.cursor() as cur:
        cur.execute("SELECT ensure_metric_partitions('2024-01-01', '2024-01-02')")
    columns = "entity_id, ts, cpu_util" + ("" if column == "cpu_util" else f", {column}")
    values = f"'x', '2024-01-01 00:05+00', {value if column == 'cpu_util' else '0.5'}"
    values += "" if column == "cpu_util" else f", {value}"
    with pytest.raises(psycopg2.errors.CheckViolation):
        with warehouse, warehouse.cursor() as cur:
            cur.execute(f"INSERT INTO metrics ({columns}) VALUES ({values})")


def test_constraints_refuse_off_grid_times_and_missing_cpu(warehouse):
    with warehouse, warehouse.cursor() as cur:
        cur.execute("SELECT ensure_metric_partitions('2024-01-01', '2024-01-02')")
    with pytest.raises(psycopg2.errors.CheckViolation, match="metrics_ts_on_grid"):
        with warehouse, warehouse.cursor() as cur:
            cur.execute("INSERT INTO metrics (entity_id, ts, cpu_util) VALUES ('x', '2024-01-01 00:03+00', 0.5)")
    with pytest.raises(psycopg2.errors.NotNullViolation):
        with warehouse, warehouse.cursor() as cur:
            cur.execute("INSERT INTO metrics (entity_id, ts) VALUES ('x', '2024-01-01 00:05+00')")


def _scanned_relations(plan: dict) -> set[str]:
    found = set()
    if "Relation Name" in plan:
        found.add(plan["Relation Name"])
    for child in plan.get("Plans", []):
        found |= _scanned_relations(child)
    return found


def _explain(conn, statement: str) -> set[str]:
    with conn.cursor() as cur:
        cur.execute(f"EXPLAIN (FORMAT JSON) {statement}")
        (plan,) = cur.fetchone()
    plan = plan if isinstance(plan, list) else json.loads(plan)
    return _scanned_relations(plan[0]["Plan"])


def test_explain_of_a_time_range_query_shows_partition_pruning(warehouse):
    load_fleet(warehouse, make_known_fleet(days=3))  # 2024-01-07 .. 01-09: two weekly partitions
    assert _partitions(warehouse) == ["metrics_20240101", "metrics_20240108"]

    everything = _explain(warehouse, "SELECT avg(cpu_util) FROM metrics")
    one_day = _explain(warehouse, "SELECT avg(cpu_util) FROM metrics WHERE ts >= '2024-01-08' AND ts < '2024-01-09'")
    assert everything == {"metrics_20240101", "metrics_20240108"}
    assert one_day == {"metrics_20240108"}

    daily = load_queries()["daily_rollup"]
    with warehouse.cursor() as cur:
        statement = cur.mogrify(daily.sql, daily.bind({"start": "2024-01-07", "end": "2024-01-08"})).decode()
    scanned = _explain(warehouse, statement)
    assert "metrics_20240101" in scanned and "metrics_20240108" not in scanned


def test_a_warehouse_with_whole_vcpus_is_made_fractional_and_takes_a_quarter_core(warehouse):
    """Warehouses made before fractional vCPUs stored them as integer; applying the schema converts them."""
    with warehouse, warehouse.cursor() as cur:
        for table in ("entities", "instance_types"):
            cur.execute(f"ALTER TABLE {table} ALTER COLUMN vcpus TYPE integer USING vcpus::integer")
    apply_schema(warehouse)
    with warehouse.cursor() as cur:
        cur.execute(
            "SELECT table_name, data_type FROM information_schema.columns"
            " WHERE column_name = 'vcpus' AND table_name IN ('entities', 'instance_types') ORDER BY 1"
        )
        assert cur.fetchall() == [("entities", "double precision"), ("instance_types", "double precision")]
    fleet = make_known_fleet(days=1)
    fleet.entities["vcpus"] = 0.25
    load_fleet(warehouse, fleet)
    with warehouse.cursor() as cur:
        cur.execute("SELECT DISTINCT vcpus FROM entities")
        assert cur.fetchall() == [(0.25,)]
