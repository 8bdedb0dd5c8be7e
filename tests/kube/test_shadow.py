"""Shadow mode's log and report: logged requests set beside the usage of the hour that followed."""

from __future__ import annotations

import pandas as pd
import pytest

from ml_cloud_optimizer.cli import main
from ml_cloud_optimizer.data import read_fleet, write_fleet
from ml_cloud_optimizer.kube.forecasting import Forecasting
from ml_cloud_optimizer.kube.shadow import REPORT_COLUMNS, ShadowLog
from ml_cloud_optimizer.models.bundle import ModelBundle


@pytest.fixture
def logged(tmp_path, workload_fleet, champions):
    """A shadow log of one cycle run on the fleet without its last day, and the whole fleet."""
    fleet = read_fleet(workload_fleet)
    cut = fleet.metrics["ts"].max() - pd.Timedelta(days=1)
    seen = type(fleet)(fleet.metrics.loc[fleet.metrics["ts"] <= cut].reset_index(drop=True), fleet.entities)
    past = tmp_path / "past.parquet"
    write_fleet(seen, past)
    cpu, mem = ModelBundle.load(champions / "champion"), ModelBundle.load(champions / "champion-mem")
    cycle = Forecasting(str(past), cpu, mem).run()
    log = ShadowLog(tmp_path / "shadow.jsonl")
    assert log.append(cycle) == 2
    return log, fleet, cut


def _fleet_path(fleet, tmp_path):
    path = tmp_path / "whole.parquet"
    write_fleet(fleet, path)
    return path


def test_report_counts_the_slots_above_the_logged_request(logged, tmp_path, capsys):
    log, fleet, cut = logged
    out = tmp_path / "report"
    assert (
        main(
            ["shadow-report", "--log", str(log.path), "--source", str(_fleet_path(fleet, tmp_path)), "--out", str(out)]
        )
        == 0
    )
    table = pd.read_csv(out / "shadow-report.csv")
    assert list(table.columns) == REPORT_COLUMNS and len(table) == 2
    entry = log.read().set_index("workload").loc["shop/Deployment/web"]
    metrics = fleet.metrics.loc[fleet.metrics["entity_id"].astype(str) == "shop/Deployment/web"]
    vcpus = float(fleet.entities.set_index("entity_id").loc["shop/Deployment/web", "vcpus"])
    after = metrics.loc[(metrics["ts"] > cut) & (metrics["ts"] <= cut + pd.Timedelta(hours=1))]
    used = after["cpu_util"] * vcpus
    row = table.set_index("workload").loc["shop/Deployment/web"]
    assert row["short_share"] == pytest.approx((used > entry["request_cores"]).mean())
    assert row["peak_over_request"] == pytest.approx(used.max() / entry["request_cores"])
    assert "shop/StatefulSet/db" in capsys.readouterr().out


def test_a_log_with_nothing_after_it_is_one_line(logged, capsys):
    log, _, _ = logged
    past = log.path.parent / "past.parquet"  # the log's own data: no hour after any origin
    assert main(["shadow-report", "--log", str(log.path), "--source", str(past)]) == 2
    assert "no usage after any logged recommendation" in capsys.readouterr().err


def test_a_broken_log_line_is_named(tmp_path, workload_fleet, capsys):
    bad = tmp_path / "shadow.jsonl"
    bad.write_text('{"workload": "a"}\nnot json\n')
    assert main(["shadow-report", "--log", str(bad), "--source", str(workload_fleet)]) == 2
    assert f"{bad}:2: not a shadow log line" in capsys.readouterr().err
