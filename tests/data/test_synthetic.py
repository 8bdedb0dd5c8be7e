"""The synthetic generator: deterministic, valid, and carrying the structure it promises."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ml_cloud_optimizer.data import generate_fleet, validate_fleet
from ml_cloud_optimizer.data.schema import ENTITY_COLUMNS, METRIC_COLUMNS, STEP_SECONDS
from ml_cloud_optimizer.data.synthetic import INSTANCE_TYPES, SERVICES, STEPS_PER_DAY


@pytest.fixture(scope="module")
def fleet():
    return generate_fleet(100_000, seed=7)


@pytest.fixture(scope="module")
def metrics(fleet):
    return fleet.metrics.merge(fleet.entities[["entity_id", "service"]], on="entity_id")


def _grid(metrics: pd.DataFrame) -> pd.DataFrame:
    """cpu_util as entity x slot, missing samples as NaN."""
    return metrics.pivot(index="entity_id", columns="ts", values="cpu_util")


def test_same_seed_gives_identical_fleet_and_another_seed_differs():
    a, b = generate_fleet(20_000, seed=3), generate_fleet(20_000, seed=3)
    pd.testing.assert_frame_equal(a.metrics, b.metrics)
    pd.testing.assert_frame_equal(a.entities, b.entities)
    c = generate_fleet(20_000, seed=4)
    assert not a.metrics["cpu_util"].equals(c.metrics["cpu_util"])


def test_default_entity_count_and_length(fleet):
    expected_entities = 100_000 // (21 * STEPS_PER_DAY)
    assert len(fleet.entities) == expected_entities
    assert (fleet.gaps["expected_slots"] <= 100_000 // expected_entities).all()
    assert len(generate_fleet(5_000, entities=5).entities) == 5


def test_fleet_follows_the_contract(fleet):
    assert list(fleet.metrics.columns) == list(METRIC_COLUMNS)
    assert list(fleet.entities.columns) == list(ENTITY_COLUMNS)
    validate_fleet(fleet)  # raises on any breach
    m = fleet.metrics
    assert ((m["ts"].astype("int64") // 10**9) % STEP_SECONDS == 0).all()
    assert m["cpu_util"].between(0, 1).all() and m["mem_util"].between(0, 1).all()
    assert m[["net_in_kbps", "net_out_kbps", "disk_read_kbps", "disk_write_kbps", "request_rate"]].notna().all().all()
    assert m["is_peak"].notna().all()
    assert m["ts"].min() == pd.Timestamp("2026-01-05T00:00:00Z")
    assert fleet.source == "synthetic"


def test_entities_come_from_the_catalogue(fleet):
    catalogue = INSTANCE_TYPES.set_index("instance_type")
    ent = fleet.entities.set_index("instance_type")
    assert (ent["vcpus"].to_numpy() == catalogue.loc[ent.index, "vcpus"].to_numpy()).all()
    # Prices are list prices times a regional factor of at least 1.
    assert (ent["hourly_price"].to_numpy() >= catalogue.loc[ent.index, "hourly_price"].to_numpy() - 1e-9).all()
    assert set(fleet.entities["service"]) == set(SERVICES)


def test_web_load_repeats_daily(metrics):
    web = _grid(metrics[metrics["service"] == "web"]).to_numpy()
    today, next_day = web[:, :-STEPS_PER_DAY], web[:, STEPS_PER_DAY:]
    autocorr = [pd.Series(a).corr(pd.Series(b)) for a, b in zip(today, next_day, strict=True)]
    assert np.mean(autocorr) > 0.3


def test_weekends_are_quieter(metrics):
    weekend = metrics["ts"].dt.dayofweek >= 5
    assert metrics.loc[weekend, "cpu_util"].mean() < metrics.loc[~weekend, "cpu_util"].mean()
    web = metrics["service"] == "web"
    assert metrics.loc[web & weekend, "cpu_util"].mean() < 0.9 * metrics.loc[web & ~weekend, "cpu_util"].mean()


def test_business_hours_are_busier_than_night_for_web(metrics):
    web = metrics[metrics["service"] == "web"]
    hour = web["ts"].dt.hour
    assert web.loc[hour.between(12, 16), "cpu_util"].mean() > web.loc[hour.between(0, 4), "cpu_util"].mean() + 0.1


def test_services_differ(metrics):
    by_service = metrics.groupby("service")
    mem = by_service["mem_util"].mean()
    assert mem["db"] > 0.6 and mem["db"] > mem["web"] > mem["batch"]
    batch = metrics.loc[metrics["service"] == "batch", "cpu_util"]
    # On/off runs: a good share of both near-idle and busy samples.
    assert (batch < 0.15).mean() > 0.2 and (batch > 0.4).mean() > 0.1
    assert by_service["cpu_util"].std()["batch"] > by_service["cpu_util"].std()["db"]


def test_peak_events_are_rare_and_high(metrics):
    share = metrics["is_peak"].mean()
    assert 0.003 <= share <= 0.03
    peak = metrics["is_peak"].to_numpy(dtype=bool)
    assert metrics.loc[peak, "cpu_util"].mean() > metrics.loc[~peak, "cpu_util"].mean() + 0.15


def test_missing_samples_are_present_but_rare(fleet):
    gaps = fleet.gaps
    missing_share = gaps["missing_slots"].sum() / gaps["expected_slots"].sum()
    assert 0.0005 < missing_share < 0.006
    assert gaps["present_slots"].sum() == len(fleet.metrics)


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="records"):
        generate_fleet(0)
    with pytest.raises(ValueError, match="entities"):
        generate_fleet(100, entities=200)
    with pytest.raises(ValueError, match="grid"):
        generate_fleet(1_000, start="2026-01-05T00:01:00Z")
