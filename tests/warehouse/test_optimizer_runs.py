"""Optimizer runs in the warehouse: stored whole or not at all, read back, scored against loaded metrics.

Also: the optimizer package itself never imports the database driver.
"""

from __future__ import annotations

import subprocess
import sys
from functools import partial

import numpy as np
import pandas as pd
import psycopg2
import pytest

from ml_cloud_optimizer.data.synthetic import generate_fleet
from ml_cloud_optimizer.models.baselines import PersistenceForecaster
from ml_cloud_optimizer.optimizer.capacity import forecasts_long, recommend
from ml_cloud_optimizer.optimizer.monitoring import monitor
from ml_cloud_optimizer.warehouse import load_fleet
from ml_cloud_optimizer.warehouse.optimizer_runs import read_recommendations, store_run, stored_accuracy


def _entities(vcpus: dict[str, int]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "entity_id": list(vcpus),
            "service": "web",
            "instance_type": [f"t-{v}" for v in vcpus.values()],
            "region": "eu",
            "vcpus": list(vcpus.values()),
            "mem_gib": 8.0,
            "hourly_price": [0.05 * v for v in vcpus.values()],
        }
    )


def _two_hour_forecasts():
    origins = pd.date_range("2026-01-05T00:00:00Z", periods=24, freq="5min")
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"entity_id": np.repeat(["a", "b"], 24), "ts": np.tile(origins, 2)})
    frame["p50_h1"] = rng.uniform(0.1, 0.5, 48)
    frame["p90_h1"] = frame["p50_h1"] + 0.1
    frame["p50_h12"] = rng.uniform(0.1, 0.5, 48)
    frame["p90_h12"] = frame["p50_h12"] + 0.2
    return frame


def test_importing_the_optimizer_leaves_the_database_driver_out():
    code = (
        "import sys, ml_cloud_optimizer.optimizer as o, ml_cloud_optimizer.optimizer.capacity, "
        "ml_cloud_optimizer.optimizer.monitoring; o.round_up, o.recommend, o.monitor; "
        "print('psycopg2' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_forecasts_must_be_in_the_long_layout():
    forecasts = _two_hour_forecasts()
    recs = recommend(forecasts, _entities({"a": 4, "b": 2}))
    with pytest.raises(ValueError, match="forecasts_long"):
        store_run(None, recs, forecasts, model="test", source="unit")


def test_stored_recommendations_read_back_whole_and_latest_first(warehouse):
    entities = _entities({"a": 4, "b": 2})
    forecasts = _two_hour_forecasts()
    recs = recommend(forecasts, entities)
    first = store_run(warehouse, recs, forecasts_long(forecasts), model="test", source="unit", params={"k": 1})
    later = recommend(forecasts, entities, target_utilization=0.5)
    second = store_run(warehouse, later, forecasts_long(forecasts), model="test", source="unit")
    assert second > first
    back = read_recommendations(warehouse)
    pd.testing.assert_frame_equal(back, later.astype({"replicas": "int64"}), check_dtype=False)
    pd.testing.assert_frame_equal(read_recommendations(warehouse, first), recs, check_dtype=False)
    with warehouse.cursor() as cur:
        cur.execute("SELECT count(*), count(p90) FROM forecasts WHERE run_id = %s", (first,))
        assert cur.fetchone() == (96, 96)


def test_a_bad_recommendation_row_rolls_the_whole_run_back(warehouse):
    forecasts = _two_hour_forecasts()
    recs = recommend(forecasts, _entities({"a": 4, "b": 2}))
    recs.loc[1, "request_cores"] = -1.0
    with pytest.raises(psycopg2.errors.CheckViolation):
        store_run(warehouse, recs, forecasts_long(forecasts), model="test", source="unit")
    with warehouse.cursor() as cur:
        cur.execute("SELECT (SELECT count(*) FROM optimizer_runs), (SELECT count(*) FROM forecasts)")
        assert cur.fetchone() == (0, 0)
    assert read_recommendations(warehouse).empty


def test_stored_forecasts_are_scored_against_loaded_metrics(warehouse):
    fleet = generate_fleet(288 * 9 * 3, entities=3, seed=5)
    load_fleet(warehouse, fleet)
    metrics = fleet.metrics
    forecasts = PersistenceForecaster(horizons=(12,)).fit(metrics).predict(metrics)
    forecasts["p90_h12"] = forecasts["p50_h12"] + 0.05
    recent = metrics["ts"].max() - pd.Timedelta(hours=6)
    store_run(
        warehouse, recommend(forecasts, fleet.entities), forecasts_long(forecasts), model="persistence", source="t"
    )

    got = stored_accuracy(warehouse, recent)
    assert list(got["horizon"]) == [12]
    actual = metrics.rename(columns={"ts": "target", "cpu_util": "actual"})[["entity_id", "target", "actual"]]
    frame = forecasts.assign(target=forecasts["ts"] + pd.Timedelta(hours=1)).merge(actual, on=["entity_id", "target"])
    frame = frame[frame["target"] >= recent]
    assert got["n"].iloc[0] == len(frame)
    assert got["mae"].iloc[0] == pytest.approx((frame["actual"] - frame["p50_h12"]).abs().mean())
    assert got["p90_coverage"].iloc[0] == pytest.approx((frame["actual"] <= frame["p90_h12"]).mean())

    report = monitor(
        metrics,
        PersistenceForecaster().fit(metrics),
        stored=partial(stored_accuracy, warehouse),
        recent=pd.Timedelta(hours=6),
    )
    assert "warehouse" in set(report.accuracy["source"])
