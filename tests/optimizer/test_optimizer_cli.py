"""`mlco recommend | backtest | monitor` end to end, on files and on a real warehouse."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ml_cloud_optimizer.cli import main
from ml_cloud_optimizer.data.io import write_fleet
from ml_cloud_optimizer.data.synthetic import generate_fleet
from ml_cloud_optimizer.models.baselines import PersistenceForecaster
from ml_cloud_optimizer.warehouse import load_fleet
from ml_cloud_optimizer.warehouse.optimizer_runs import read_recommendations


@pytest.fixture(scope="module")
def fleet_file(tmp_path_factory) -> Path:
    fleet = generate_fleet(288 * 6 * 3, entities=3, seed=2)
    path = tmp_path_factory.mktemp("fleet") / "fleet.parquet"
    write_fleet(fleet, path)
    return path


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, fleet_file) -> Path:
    from ml_cloud_optimizer.data.io import read_fleet

    return PersistenceForecaster().fit(read_fleet(fleet_file).metrics).save(tmp_path_factory.mktemp("model") / "m")


def test_backtest_prints_every_policy_and_writes_the_run(tmp_path, fleet_file, capsys):
    out = tmp_path / "run"
    code = main(["backtest", "--trace", str(fleet_file), "--forecaster", "persistence", "--out", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    for policy in ("static", "reactive_hpa", "vpa", "forecast"):
        assert policy in printed
    assert "forecast_persistence" not in printed  # it would repeat the forecast row
    assert "forecast vs vpa: core-hours x" in printed
    summary = pd.read_csv(out / "backtest_summary.csv")
    assert summary["core_hours"].gt(0).all()
    assert (out / "backtest_summary.png").read_bytes().startswith(b"\x89PNG")
    assert json.loads((out / "backtest_params.json").read_text())["forecaster"] == "persistence"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["backtest", "--trace", "/nonexistent/trace.csv"], "trace.csv"),
        (["backtest", "--trace", "FLEET", "--forecaster", "nope"], "unknown model kind"),
        (["backtest", "--trace", "FLEET", "--replay-fraction", "1.5"], "--replay-fraction 1.5: expected a share"),
        (["recommend", "--model", "/nonexistent/model", "--no-store", "--source", "FLEET"], "no such model"),
        (
            ["recommend", "--model", "MODEL", "--no-store", "--source", "FLEET", "--target-utilization", "0"],
            "target utilization",
        ),
    ],
)
def test_bad_input_is_one_line_and_exit_2(argv, message, fleet_file, model_dir, capsys):
    argv = [str(fleet_file) if a == "FLEET" else str(model_dir) if a == "MODEL" else a for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err


def test_recommend_from_a_file_without_the_warehouse(tmp_path, fleet_file, model_dir, capsys):
    out = tmp_path / "run"
    code = main(
        [
            "recommend",
            "--model",
            str(model_dir),
            "--source",
            str(fleet_file),
            "--no-store",
            "--hours",
            "6",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    recs = pd.read_csv(out / "recommendations.csv")
    assert recs["entity_id"].nunique() == 3
    assert 6 <= recs.groupby("entity_id")["hour"].nunique().max() <= 8  # 6 h of origins, 1 h ahead
    printed = capsys.readouterr().out
    assert "next hour, 3 entities" in printed and "warehouse run" not in printed


def test_recommend_from_the_warehouse_stores_the_run(
    warehouse, warehouse_dsn, tmp_path, fleet_file, model_dir, monkeypatch, capsys
):
    from ml_cloud_optimizer.data.io import read_fleet

    load_fleet(warehouse, read_fleet(fleet_file))
    monkeypatch.setenv("DATABASE_URL", warehouse_dsn)
    code = main(["recommend", "--model", str(model_dir), "--hours", "2", "--out", str(tmp_path / "run")])
    assert code == 0
    assert "warehouse run 1" in capsys.readouterr().out
    stored = read_recommendations(warehouse)
    written = pd.read_csv(tmp_path / "run" / "recommendations.csv")
    assert len(stored) == len(written) > 0
    np.testing.assert_allclose(stored["request_cores"].to_numpy(), written["request_cores"].to_numpy())


def test_recommend_on_an_empty_warehouse_says_what_to_do(warehouse_dsn, model_dir, monkeypatch, capsys):
    monkeypatch.setenv("DATABASE_URL", warehouse_dsn)
    assert main(["recommend", "--model", str(model_dir)]) == 2
    assert "mlco db load" in capsys.readouterr().err


def test_monitor_writes_a_verdict(tmp_path, fleet_file, model_dir, capsys):
    out = tmp_path / "run"
    assert main(["monitor", "--model", str(model_dir), "--source", str(fleet_file), "--out", str(out)]) == 0
    verdict = json.loads((out / "monitoring.json").read_text())
    assert isinstance(verdict["retrain"], bool)
    printed = capsys.readouterr().out
    assert "most drifted features" in printed


def test_a_fresh_process_exits_2_with_one_line(tmp_path):
    """Through the installed `mlco` console script."""
    command = [str(Path(sys.executable).with_name("mlco")), "backtest", "--trace", str(tmp_path / "missing.csv")]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1 and "missing.csv" in done.stderr


def test_default_directories_chain_into_the_report(tmp_path, fleet_file, model_dir, capsys):
    import shutil

    home = tmp_path / "home"  # MLCO_HOME, set by the autouse fixture
    shutil.copytree(model_dir, home / "train" / "champion")
    assert main(["recommend", "--source", str(fleet_file), "--no-store", "--hours", "3"]) == 0
    assert main(["backtest", "--trace", str(fleet_file), "--forecaster", "persistence"]) == 0
    assert (home / "recommend" / "recommendations.csv").is_file()
    assert (home / "backtest" / "backtest_summary.csv").is_file()
    capsys.readouterr()
    assert main(["report"]) == 0
    assert str(home / "report.html") in capsys.readouterr().out
    html = (home / "report.html").read_text()
    assert "Forecast-driven against VPA-style" in html and "Latest hour, 3 entities" in html


def test_old_target_utilisation_flag_is_a_hidden_deprecated_alias(model_dir, fleet_file, capsys):
    argv = ["recommend", "--model", str(model_dir), "--no-store", "--source", str(fleet_file)]
    assert main([*argv, "--target-utilisation", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0] == "mlco: --target-utilisation is deprecated; use --target-utilization"
    assert len(err) == 2 and "target utilization" in err[1]
    with pytest.raises(SystemExit):
        main(["recommend", "--help"])
    shown = capsys.readouterr().out
    assert "--target-utilization" in shown and "--target-utilisation" not in shown
