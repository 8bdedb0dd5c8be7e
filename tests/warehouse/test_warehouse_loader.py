"""The COPY loader against a real PostgreSQL: exact round trips, idempotent reloads, upserts, refusals."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fleets import make_known_fleet
from ml_cloud_optimizer.data.schema import DataValidationError, Fleet, validate_fleet
from ml_cloud_optimizer.warehouse import encode_metrics_copy, load_fleet, read_hourly, read_metrics


def _counts(conn) -> dict[str, int]:
    with conn.cursor() as cur:
        cur.execute(
            "SELECT (SELECT count(*) FROM metrics), (SELECT count(*) FROM entities),"
            " (SELECT count(*) FROM instance_types), (SELECT count(*) FROM load_log),"
            " (SELECT count(*) FROM metrics_hourly),"
            " (SELECT count(*) FROM pg_inherits WHERE inhparent = 'metrics'::regclass)"
        )
        row = cur.fetchone()
    conn.rollback()
    return dict(zip(["metrics", "entities", "instance_types", "loads", "hourly", "partitions"], row, strict=True))


def _fleet_with(metrics: pd.DataFrame, entities: pd.DataFrame) -> Fleet:
    return Fleet(metrics=metrics.reset_index(drop=True), entities=entities, source="test")


def test_load_round_trips_every_value_null_and_id_exactly(warehouse):
    fleet = make_known_fleet()
    report = load_fleet(warehouse, fleet)

    rows = len(fleet.metrics)
    assert (report.rows, report.inserted, report.updated, report.unchanged) == (rows, rows, 0, 0)
    assert report.fast_path and report.partitions_created == 2 and report.entities == 4
    back = read_metrics(warehouse)
    pd.testing.assert_frame_equal(back.metrics, fleet.metrics)
    pd.testing.assert_frame_equal(
        back.entities.sort_values("entity_id").reset_index(drop=True),
        fleet.entities.sort_values("entity_id").reset_index(drop=True),
    )


def test_encoding_groups_rows_by_layout_and_keeps_every_row(warehouse):
    # ids of three byte lengths and four null patterns: several record layouts in one stream
    fleet = make_known_fleet(days=1)
    pieces = encode_metrics_copy(fleet.metrics)
    assert len(pieces) > 3
    assert bytes(pieces[0]).startswith(b"PGCOPY\n\xff\r\n\x00") and bytes(pieces[-1]) == b"\xff\xff"
    load_fleet(warehouse, fleet)
    assert _counts(warehouse)["metrics"] == len(fleet.metrics)


def test_reload_of_the_same_fleet_leaves_the_same_rows(warehouse):
    fleet = make_known_fleet()
    load_fleet(warehouse, fleet)
    first = _counts(warehouse)

    report = load_fleet(warehouse, fleet)

    assert not report.fast_path
    assert (report.inserted, report.updated, report.unchanged) == (0, 0, len(fleet.metrics))
    second = _counts(warehouse)
    assert {k: v for k, v in second.items() if k != "loads"} == {k: v for k, v in first.items() if k != "loads"}
    assert second["loads"] == first["loads"] + 1
    pd.testing.assert_frame_equal(read_metrics(warehouse).metrics, fleet.metrics)


def test_overlapping_load_upserts_and_changed_values_win(warehouse):
    fleet = make_known_fleet(days=3)
    metrics, entities = fleet.metrics, fleet.entities
    day2 = pd.Timestamp("2024-01-08", tz="UTC")
    load_fleet(warehouse, _fleet_with(metrics[metrics["ts"] < day2 + pd.Timedelta(hours=12)], entities))

    # second load: from the middle of day 2 on, with day 2's first half changed
    newer = metrics[metrics["ts"] >= day2].copy()
    changed = newer["ts"] < day2 + pd.Timedelta(hours=12)
    newer.loc[changed, "cpu_util"] = newer.loc[changed, "cpu_util"] / 2
    entities = entities.assign(service=entities["service"].where(entities["entity_id"] != "web-b", "api"))
    report = load_fleet(warehouse, _fleet_with(newer, entities))

    expected_new = int((newer["ts"] >= day2 + pd.Timedelta(hours=12)).sum())
    assert (report.inserted, report.updated, report.unchanged) == (expected_new, int(changed.sum()), 0)
    back = read_metrics(warehouse)
    expected = pd.concat([metrics[metrics["ts"] < day2], newer]).sort_values(["entity_id", "ts"])
    pd.testing.assert_frame_equal(back.metrics, expected.reset_index(drop=True))
    assert back.entities.set_index("entity_id").loc["web-b", "service"] == "api"


def test_partial_overlap_counts_unchanged_rows(warehouse):
    fleet = make_known_fleet(days=2)
    load_fleet(warehouse, fleet)
    again = fleet.metrics.copy()
    again.loc[again.index[:10], "mem_util"] = np.nan  # value -> NULL is a change too
    report = load_fleet(warehouse, _fleet_with(again, fleet.entities))
    assert (report.inserted, report.updated, report.unchanged) == (0, 10, len(again) - 10)
    assert read_metrics(warehouse).metrics["mem_util"].isna().sum() == again["mem_util"].isna().sum()


def test_hourly_view_is_refreshed_by_each_load(warehouse):
    fleet = make_known_fleet(days=2)
    first_day = fleet.metrics[fleet.metrics["ts"] < pd.Timestamp("2024-01-08", tz="UTC")]
    load_fleet(warehouse, _fleet_with(first_day, fleet.entities))
    assert read_hourly(warehouse)["hour"].max() < pd.Timestamp("2024-01-08", tz="UTC")
    load_fleet(warehouse, fleet)
    hourly = read_hourly(warehouse)
    assert len(hourly) == fleet.metrics.groupby(["entity_id", fleet.metrics["ts"].dt.floor("h")]).ngroups
    assert hourly["n_samples"].sum() == len(fleet.metrics)


def test_load_with_refresh_off_leaves_the_view_for_later(warehouse):
    load_fleet(warehouse, make_known_fleet(days=1), refresh=False)
    assert _counts(warehouse)["hourly"] == 0


def test_autocommit_connection_still_loads_in_one_transaction(warehouse):
    warehouse.autocommit = True
    fleet = make_known_fleet(days=1)
    bad = fleet.entities.copy()
    bad["service"] = bad["service"].astype(object)
    bad.loc[3, "service"] = None  # NOT NULL in the warehouse; the contract does not check it
    with pytest.raises(DataValidationError, match="refused the load"):
        load_fleet(warehouse, _fleet_with(fleet.metrics, bad))
    assert warehouse.autocommit
    assert set(_counts(warehouse).values()) == {0}


@pytest.mark.parametrize(
    "spoil, message",
    [
        (lambda m, _e: m.assign(cpu_util=m["cpu_util"].where(m.index != 5, 3.0)), "cpu_util"),
        (lambda m, _e: pd.concat([m, m.iloc[[7]]]), "duplicate"),
        (lambda m, _e: m.assign(ts=m["ts"].where(m.index != 9, m["ts"].iloc[9] + pd.Timedelta(seconds=30))), "grid"),
        (
            lambda m, _e: m.assign(net_in_kbps=m["net_in_kbps"].astype(object).where(m.index != 2, "lots")),
            "net_in_kbps",
        ),
        (lambda m, _e: m.assign(entity_id=m["entity_id"].replace("web-a", "ghost")), "entities"),
    ],
    ids=["range", "duplicate-key", "off-grid", "type", "unknown-entity"],
)
def test_bad_input_is_refused_with_one_line_and_nothing_written(warehouse, spoil, message):
    good = make_known_fleet(days=2)
    load_fleet(warehouse, make_known_fleet(days=1, start="2024-01-01"))
    before = _counts(warehouse)

    with pytest.raises(DataValidationError, match=message) as refused:
        load_fleet(warehouse, _fleet_with(spoil(good.metrics, good.entities), good.entities))

    assert "\n" not in str(refused.value)
    assert _counts(warehouse) == before


def test_entities_of_one_type_keep_their_own_sizes_and_the_catalogue_takes_the_median(warehouse):
    fleet = make_known_fleet(days=1)
    entities = fleet.entities.copy()
    # db-é (2 vCPUs, 16 GiB, 0.13 $/h) becomes a second, smaller "m.xlarge" beside web-b (4, 16, 0.20)
    entities.loc[entities["entity_id"] == "db-é", ["instance_type", "region"]] = ["m.xlarge", "us-east-1"]
    load_fleet(warehouse, _fleet_with(fleet.metrics, entities))

    back = read_metrics(warehouse).entities.set_index("entity_id")
    assert back.loc["db-é", ["vcpus", "hourly_price"]].tolist() == [2, 0.13]
    assert back.loc["web-b", ["vcpus", "hourly_price"]].tolist() == [4, 0.20]
    with warehouse.cursor() as cur:
        cur.execute("SELECT vcpus, mem_gib, hourly_price FROM instance_types WHERE instance_type = 'm.xlarge'")
        assert cur.fetchall() == [(3, 16.0, pytest.approx(0.165))]


def test_a_span_of_decades_is_refused_before_creating_partitions(warehouse):
    fleet = make_known_fleet(days=1)
    metrics = fleet.metrics.copy()
    metrics.loc[metrics.index[0], "ts"] = pd.Timestamp("1990-01-01", tz="UTC")
    with pytest.raises(DataValidationError, match="spans"):
        load_fleet(warehouse, validate_fleet(_fleet_with(metrics, fleet.entities)))
    assert _counts(warehouse)["partitions"] == 0


def test_empty_fleet_loads_nothing(warehouse):
    fleet = make_known_fleet(days=1)
    report = load_fleet(warehouse, _fleet_with(fleet.metrics.iloc[:0], fleet.entities))
    assert (report.rows, report.inserted) == (0, 0)
    assert _counts(warehouse)["metrics"] == 0 and _counts(warehouse)["entities"] == 4


def test_read_metrics_returns_exactly_the_window_and_entities_asked_for(warehouse):
    fleet = make_known_fleet(days=3)
    load_fleet(warehouse, fleet)
    start, end = pd.Timestamp("2024-01-08 06:00", tz="UTC"), pd.Timestamp("2024-01-09", tz="UTC")

    back = read_metrics(warehouse, start="2024-01-08 06:00", end=end, entity_ids=["db-é", "web-b"])

    m = fleet.metrics
    expected = m[(m["ts"] >= start) & (m["ts"] < end) & m["entity_id"].isin(["db-é", "web-b"])]
    pd.testing.assert_frame_equal(back.metrics, expected.reset_index(drop=True))
    assert sorted(back.entities["entity_id"]) == ["db-é", "web-b"]
