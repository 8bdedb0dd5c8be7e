"""`mlco backtest` with the replay's rules: the flags reach the replay, the run records them, bad values are refused."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from ml_cloud_optimizer.cli import main
from ml_cloud_optimizer.data.io import write_fleet
from ml_cloud_optimizer.data.synthetic import generate_fleet


@pytest.fixture(scope="module")
def fleet_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("fleet") / "fleet.parquet"
    write_fleet(generate_fleet(288 * 6 * 3, entities=3, seed=4), path)
    return path


def _run(fleet_file: Path, out: Path, *flags: str) -> None:
    argv = ["backtest", "--trace", str(fleet_file), "--forecaster", "persistence", "--out", str(out), *flags]
    assert main(argv) == 0


def test_rules_flags_reach_the_replay_and_the_run_records_them(tmp_path, fleet_file, capsys):
    _run(fleet_file, tmp_path / "evict")
    evicting = pd.read_csv(tmp_path / "evict" / "backtest_summary.csv").set_index("policy")
    printed = capsys.readouterr().out
    assert "rules: changes at least 15 min apart" in printed and "by eviction" in printed
    assert "forecast vs vpa: core-hours x" in printed and "chosen on the validation window" in printed

    _run(fleet_file, tmp_path / "inplace", "--in-place", "--min-interval", "60", "--startup-delay", "1")
    params = json.loads((tmp_path / "inplace" / "backtest_params.json").read_text())
    assert params["in_place"] is True and params["min_interval_minutes"] == 60 and params["startup_delay_minutes"] == 1
    assert params["recommended"] in ("forecast", "hybrid") and params["recommended"] in params["settings"]
    in_place = pd.read_csv(tmp_path / "inplace" / "backtest_summary.csv").set_index("policy")
    assert (in_place["evictions"] == 0).all() and (in_place["mem_evictions"] == 0).all()
    assert evicting.loc["vpa", "evictions"] > 0  # by default a VPA change recreates the pod
    # changes an hour apart at most: no policy changes a workload more than 24 times a day
    assert (in_place["changes_per_workload_day"] <= 24 + 1e-9).all()
    assert {"forecast", "hybrid", "forecast_1h", "hybrid_1h"} <= set(in_place.index)
    assert "in place" in capsys.readouterr().out


def test_a_fixed_coverage_and_no_long_horizon_are_honoured(tmp_path, fleet_file):
    _run(fleet_file, tmp_path / "run", "--coverage", "0.9", "--long-horizon", "0", "--no-memory")
    params = json.loads((tmp_path / "run" / "backtest_params.json").read_text())
    assert params["coverage"] == 0.9 and params["long_horizon"] == 0
    assert {s["coverage"] for s in params["settings"].values()} == {0.9}
    summary = pd.read_csv(tmp_path / "run" / "backtest_summary.csv")
    assert not summary["policy"].str.endswith("_1h").any()


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("--min-interval", "-5", "--min-interval -5.0: expected a number of minutes"),
        ("--startup-delay", "nan", "--startup-delay nan: expected a number of minutes"),
        ("--validation-steps", "0", "--validation-steps 0: expected a whole number"),
        ("--validation-steps", "100000", "too short for a replay"),
    ],
)
def test_bad_rules_are_one_line_errors(fleet_file, capsys, flag, value, message):
    assert main(["backtest", "--trace", str(fleet_file), "--forecaster", "persistence", flag, value]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]


def test_the_summary_figure_adds_a_churn_panel_when_changes_were_charged():
    from ml_cloud_optimizer.optimizer.plots import backtest_summary_figure

    summary = pd.DataFrame(
        {
            "policy": ["vpa", "forecast", "hybrid"],
            "core_hours": [10.0, 8.0, 9.0],
            "demand_core_hours": [6.0] * 3,
            "underprovisioned_share": [0.02, 0.01, 0.005],
            "changes_per_workload_day": [1.0, 3.0, 4.0],
        }
    )
    assert len(backtest_summary_figure(summary).axes) == 3
    assert len(backtest_summary_figure(summary.drop(columns="changes_per_workload_day")).axes) == 2
