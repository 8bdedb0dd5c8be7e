"""Memory recommendations: p90 plus headroom, never below the recent peak working set; `mlco recommend --target`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ml_cloud_optimizer.cli import main
from ml_cloud_optimizer.data.io import read_fleet, write_fleet
from ml_cloud_optimizer.data.synthetic import generate_fleet
from ml_cloud_optimizer.models.baselines import PersistenceForecaster
from ml_cloud_optimizer.models.bundle import ModelBundle
from ml_cloud_optimizer.optimizer.capacity import recommend
from ml_cloud_optimizer.optimizer.memory import peak_working_set, size_memory
from ml_cloud_optimizer.resources import as_target
from ml_cloud_optimizer.warehouse.optimizer_runs import read_recommendations

T0 = pd.Timestamp("2026-01-05T00:00Z")


def _entities(vcpus=4.0, mem_gib=16.0) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "entity_id": ["a"],
            "service": "web",
            "instance_type": "m5.xlarge",
            "region": "us-east-1",
            "vcpus": vcpus,
            "mem_gib": mem_gib,
            "hourly_price": 0.192,
        }
    )


def _forecast(p50: float, p90: float, origins: int = 1) -> pd.DataFrame:
    ts = pd.date_range(T0, periods=origins, freq="5min")
    return pd.DataFrame({"entity_id": "a", "ts": ts, "p50_h1": p50, "p90_h1": p90})


def _peak(gib: float, origins: int = 1) -> pd.DataFrame:
    return pd.DataFrame({"entity_id": "a", "ts": pd.date_range(T0, periods=origins, freq="5min"), "peak_mem_gib": gib})


def test_size_memory_takes_the_larger_of_p90_with_headroom_and_the_peak_rounded_to_64_mib():
    got = size_memory([1.0, 4.0, np.nan, 2.0], [3.01, 1.0, 2.5, np.nan], headroom=0.15)
    # 1.15 < 3.01 -> 3.0625; 4.6 > 1.0 -> 4.625; p90 unknown: the peak 2.5; no peak: 2.3 -> 2.3125
    np.testing.assert_allclose(got, [3.0625, 4.625, 2.5, 2.3125])


def test_memory_request_never_below_the_recent_peak_even_when_the_forecast_is_low():
    # The forecast says 5% of 16 GiB (0.8 GiB); the entity used 11 GiB within the lookback.
    row = recommend(None, _entities(), mem_forecasts=_forecast(0.04, 0.05), peak_mem=_peak(11.0)).iloc[0]
    assert row["p90_mem_gib"] == pytest.approx(0.8)
    assert row["peak_mem_gib"] == 11.0
    assert row["request_mem_gib"] == 11.0  # not 0.8 x 1.15 = 0.92
    # Memory only: CPU stays as provisioned and saves nothing; memory saves 5 GiB x $0.0042.
    assert row["request_cores"] == row["current_cores"] == 4.0 and np.isnan(row["p90_cores"])
    assert row["cpu_hourly_cost"] == pytest.approx(4 * 0.0316)
    assert row["mem_hourly_cost"] == pytest.approx(11 * 0.0042)
    assert row["hourly_saving"] == pytest.approx(5 * 0.0042)


def test_a_high_memory_forecast_is_covered_with_headroom_above_the_peak():
    row = recommend(None, _entities(), mem_forecasts=_forecast(0.5, 0.75), peak_mem=_peak(10.0)).iloc[0]
    # 0.75 x 16 = 12 GiB x 1.15 = 13.8 -> 13.8125 (64 MiB steps), above the 10 GiB peak
    assert row["request_mem_gib"] == pytest.approx(13.8125)
    assert row["hourly_saving"] == pytest.approx((16 - 13.8125) * 0.0042)


def test_memory_above_the_current_size_needs_more_replicas_and_costs_more():
    row = recommend(None, _entities(mem_gib=4.0), mem_forecasts=_forecast(0.9, 1.2), peak_mem=_peak(4.5)).iloc[0]
    assert row["request_mem_gib"] == pytest.approx(5.5625)  # 1.2 x 4 x 1.15 = 5.52
    assert row["replicas"] == 2 and row["hourly_saving"] < 0


def test_cpu_and_memory_together_cost_the_sum_of_their_shares():
    recs = recommend(
        _forecast(0.3, 0.35), _entities(), mem_forecasts=_forecast(0.2, 0.25), peak_mem=_peak(3.0), mem_headroom=0.0
    )
    row = recs.iloc[0]
    assert row["request_cores"] == 2.0 and row["request_mem_gib"] == 4.0
    assert row["hourly_cost"] == pytest.approx(2 * 0.0316 + 4 * 0.0042)
    assert row["hourly_saving"] == pytest.approx(2 * 0.0316 + 12 * 0.0042)


def test_the_peak_is_the_largest_working_set_of_the_lookback_before_each_origin():
    ts = pd.date_range(T0, periods=6, freq="1h")
    metrics = pd.DataFrame({"entity_id": "a", "ts": ts, "mem_util": [0.1, 0.5, 0.2, np.nan, 0.1, 0.1]})
    peak = peak_working_set(metrics, _entities(mem_gib=10.0), pd.Timedelta(hours=2))
    # a 2-hour window ending at each sample: 1, 5, 5, 2 (the gap adds nothing), 1, 1 GiB
    np.testing.assert_allclose(peak["peak_mem_gib"], [1.0, 5.0, 5.0, 2.0, 1.0, 1.0])


# -- `mlco recommend --target` end to end --------------------------------------------------------


@pytest.fixture(scope="module")
def fleet_file(tmp_path_factory) -> Path:
    fleet = generate_fleet(288 * 10 * 3, entities=3, seed=4)
    path = tmp_path_factory.mktemp("fleet") / "fleet.parquet"
    write_fleet(fleet, path)
    return path


@pytest.fixture(scope="module")
def models(tmp_path_factory, fleet_file) -> Path:
    """``train/champion`` (CPU) and ``train/champion-mem`` (memory): LightGBM with a p90 head, trained here."""
    from ml_cloud_optimizer.models.tabular import LightGBMForecaster

    fleet = read_fleet(fleet_file)
    root = tmp_path_factory.mktemp("models") / "train"
    quick = {"horizons": (1, 12), "quantile": True, "refit": False, "n_estimators": 40, "n_jobs": 1}
    ModelBundle(LightGBMForecaster(**quick).fit(fleet.metrics, fleet.entities)).save(root / "champion")
    mem = LightGBMForecaster(**quick).fit(as_target(fleet.metrics, "mem"), fleet.entities)
    ModelBundle(mem, metadata={"target": "mem"}).save(root / "champion-mem")
    return root


def _price_file(tmp_path: Path, fleet_file: Path) -> tuple[Path, str]:
    """A Kubecost CSV pricing the first entity's instance type (in its region) at 10% under list."""
    first = read_fleet(fleet_file).entities.iloc[0]
    path = tmp_path / "kubecost.csv"
    path.write_text(
        "EndTimestamp,InstanceID,Region,AssetClass,InstanceIDField,InstanceType,MarketPriceHourly,Version\n"
        f",i-1,{first['region']},node,spec.providerID,{first['instance_type']},{0.9 * first['hourly_price']:.4f},\n"
    )
    return path, str(first["instance_type"])


def test_recommend_cpu_and_memory_with_a_price_file_stored_in_the_warehouse(
    warehouse, warehouse_dsn, tmp_path, fleet_file, models, monkeypatch, capsys
):
    import shutil

    home = tmp_path / "home"
    shutil.copytree(models, home / "train")  # the default --model and its champion-mem sibling
    monkeypatch.setenv("DATABASE_URL", warehouse_dsn)
    prices, instance_type = _price_file(tmp_path, fleet_file)
    out = tmp_path / "run"
    argv = ["recommend", "--target", "cpu,mem", "--prices", str(prices), "--source", str(fleet_file)]
    assert main([*argv, "--hours", "3", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "request_mem_gib" in printed and "request_cores" in printed
    assert f"prices: {prices} (Kubecost CSV pricing)" in printed
    assert "of 3 entities priced from the file's instance prices" in printed

    recs = pd.read_csv(out / "recommendations.csv")
    assert recs["entity_id"].nunique() == 3
    assert (recs["request_mem_gib"] >= recs["peak_mem_gib"] - 1e-9).all()
    assert (recs["request_mem_gib"] >= recs["p90_mem_gib"] - 1e-9).all()
    assert np.allclose(recs["hourly_cost"], recs["cpu_hourly_cost"] + recs["mem_hourly_cost"])
    assert np.allclose(recs["hourly_saving"], recs["current_hourly_cost"] - recs["hourly_cost"])
    entities = read_fleet(fleet_file).entities.set_index("entity_id")
    from_file = recs["entity_id"].map(entities["instance_type"]) == instance_type
    assert (recs.loc[from_file, "prices"] == f"{prices} (Kubecost CSV pricing)").all()
    assert (recs.loc[~from_file, "prices"] == "built-in list-price defaults").all()

    stored = read_recommendations(warehouse)
    assert len(stored) == len(recs)
    np.testing.assert_allclose(stored["request_mem_gib"], recs["request_mem_gib"])
    with warehouse.cursor() as cur:
        cur.execute("SELECT model, params FROM optimizer_runs")
        model, params = cur.fetchone()
    assert "mem=lightgbm:" in model
    assert params["prices"] == f"{prices} (Kubecost CSV pricing)" and params["targets"] == ["cpu", "mem"]
    assert params["priced_from_file"] + params["priced_at_defaults"] == 3


def test_recommend_cpu_only_leaves_memory_as_provisioned_and_names_the_defaults(tmp_path, fleet_file, models, capsys):
    out = tmp_path / "run"
    argv = ["recommend", "--model", str(models / "champion"), "--source", str(fleet_file), "--no-store"]
    assert main([*argv, "--hours", "2", "--out", str(out)]) == 0
    recs = pd.read_csv(out / "recommendations.csv")
    assert np.allclose(recs["request_mem_gib"], recs["current_mem_gib"]) and recs["p90_mem_gib"].isna().all()
    assert (recs["prices"] == "built-in list-price defaults").all()
    assert "prices: built-in list-price defaults ($0.0316/core-h, $0.0042/GiB-h, on demand)" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--target", "gpu"], "--target gpu: expected cpu, mem or cpu,mem"),
        (["--target", "mem", "--mem-model", "CPU_MODEL"], "forecasts CPU, not memory"),
        (["--target", "cpu", "--model", "MEM_MODEL"], "forecasts memory, not CPU"),
        (["--target", "mem", "--mem-model", "/nonexistent/m"], "--mem-model /nonexistent/m: no such model directory"),
        (["--prices", "BAD_PRICES"], "--prices"),
    ],
)
def test_recommend_refuses_with_one_line(tmp_path, fleet_file, models, capsys, extra, message):
    bad = tmp_path / "bad.json"
    bad.write_text('{"CPU": "0.03"}')
    names = {"CPU_MODEL": models / "champion", "MEM_MODEL": models / "champion-mem", "BAD_PRICES": bad}
    extra = [str(names.get(a, a)) for a in extra]
    argv = ["recommend", "--model", str(models / "champion"), "--source", str(fleet_file), "--no-store", *extra]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    if extra[0] == "--prices":
        assert str(bad) in err[0] and "no RAM price" in err[0]


def test_memory_only_with_the_sibling_champion(tmp_path, fleet_file, models):
    out = tmp_path / "run"
    argv = ["recommend", "--target", "mem", "--model", str(models / "champion"), "--source", str(fleet_file)]
    assert main([*argv, "--no-store", "--hours", "1", "--out", str(out)]) == 0
    recs = pd.read_csv(out / "recommendations.csv")
    assert np.allclose(recs["request_cores"], recs["current_cores"]) and recs["p90_cores"].isna().all()
    assert recs["request_mem_gib"].notna().all() and (recs["request_mem_gib"] >= recs["peak_mem_gib"]).all()


def test_recommend_reads_a_prometheus_source(tmp_path, capsys):
    """`--source prometheus://...` goes through data.io.read_fleet: a real Prometheus, backfilled with two pods."""
    import io

    from ml_cloud_optimizer.data.openmetrics import write_openmetrics
    from prometheus_support import running_prometheus

    fleet = generate_fleet(2 * 4 * 288, entities=2, seed=5)
    text = io.StringIO()
    pods = write_openmetrics(fleet, text, namespace="shop")
    first, last = fleet.metrics["ts"].min(), fleet.metrics["ts"].max()
    span = f"start={first:%Y-%m-%dT%H:%M:%SZ}&end={last:%Y-%m-%dT%H:%M:%SZ}&step=5m&level=pod"
    with running_prometheus(tmp_path / "prometheus", text.getvalue()) as hostport:
        url = f"prometheus://{hostport}?{span}"
        seen = read_fleet(url)
        ModelBundle(PersistenceForecaster().fit(seen.metrics)).save(tmp_path / "champion")
        mem = PersistenceForecaster().fit(as_target(seen.metrics, "mem"))
        ModelBundle(mem, metadata={"target": "mem"}).save(tmp_path / "champion-mem")
        argv = ["recommend", "--source", url, "--target", "cpu,mem", "--model", str(tmp_path / "champion")]
        assert main([*argv, "--no-store", "--hours", "2", "--out", str(tmp_path / "out")]) == 0
    recs = pd.read_csv(tmp_path / "out" / "recommendations.csv")
    assert sorted(recs["entity_id"].unique()) == sorted(pods.values())
    assert (recs["request_mem_gib"] >= recs["peak_mem_gib"]).all() and recs["request_cores"].gt(0).all()
    assert "next hour, 2 entities" in capsys.readouterr().out
