"""`mlco train`, driven through its own argparse registration: sources, output, and user errors."""

from __future__ import annotations

import argparse
import json
from contextlib import closing

import numpy as np
import pandas as pd
import pytest

from ml_cloud_optimizer.cli import UserError, main
from ml_cloud_optimizer.cli import train as train_cli
from ml_cloud_optimizer.data.io import write_fleet
from ml_cloud_optimizer.data.synthetic import generate_fleet
from ml_cloud_optimizer.models.bundle import ModelBundle


def _run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="mlco")
    train_cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return args.func(args)


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("MLCO_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'home' / 'mlflow.db'}")
    (tmp_path / "home").mkdir()
    return tmp_path


@pytest.mark.usefixtures("restore_logging")
def test_train_from_a_saved_fleet_prints_the_leaderboard_and_champion(home, capsys):
    fleet = generate_fleet(5_000, entities=3, seed=8)
    path = home / "fleet.parquet"
    write_fleet(fleet, path)
    out = home / "out"
    code = main(
        [
            "train",
            "--source",
            str(path),
            "--models",
            "lightgbm",
            "--jobs",
            "1",
            "--out",
            str(out),
            "--no-peak",
            "--no-tracking",
        ]
    )
    captured = capsys.readouterr()
    assert code == 0
    assert "| persistence" in captured.out and "| seasonal_naive" in captured.out and "| lightgbm" in captured.out
    assert f"champion directory: {out / 'champion'}" in captured.out
    assert "[lightgbm] fitting" in captured.err  # progress per model on stderr
    bundle = ModelBundle.load(out / "champion")
    assert bundle.peak is None and len(bundle.predict(fleet.metrics)) == 3
    assert json.loads((out / "champion" / "bundle.json").read_text())["source"]


@pytest.mark.usefixtures("restore_logging")
def test_train_from_the_warehouse_registers_the_champion(home, warehouse_dsn, monkeypatch, capsys):
    from ml_cloud_optimizer.warehouse import connect, load_fleet

    fleet = generate_fleet(4_000, entities=2, seed=9)
    with closing(connect(warehouse_dsn)) as conn:
        load_fleet(conn, fleet)
    monkeypatch.setenv("DATABASE_URL", warehouse_dsn)
    code = main(
        [
            "train",
            "--source",
            "warehouse",
            "--models",
            "xgboost",
            "--jobs",
            "1",
            "--no-peak",
            "--out",
            str(home / "out"),
        ]
    )
    captured = capsys.readouterr()
    assert code == 0
    assert "registered: mlco-forecaster version 1 (alias champion)" in captured.out
    assert "data: warehouse, 2 entities" in captured.err


def test_user_mistakes_are_one_line_errors(home):
    with pytest.raises(UserError, match="no such file"):
        _run(["train", "--source", str(home / "missing.csv"), "--models", "lightgbm"])
    with pytest.raises(UserError, match="unknown model kind"):
        _run(["train", "--records", "3000", "--models", "prophet", "--no-tracking"])
    with pytest.raises(UserError, match="--models blend: built from the other models when it wins on validation"):
        _run(["train", "--records", "3000", "--models", "blend", "--no-tracking"])
    with pytest.raises(UserError, match="--holdout"):
        _run(["train", "--holdout", "2", "--models", "lightgbm"])
    with pytest.raises(UserError, match="--backtest"):
        _run(["train", "--backtest", "1", "--models", "lightgbm"])


def test_backtest_table_covers_every_fold(tmp_path):
    metrics = generate_fleet(5_000, entities=2, seed=1).metrics
    table = train_cli._backtest(metrics, {}, folds=3, holdout=0.3, out=tmp_path)
    assert table.startswith("rolling-origin backtest:")
    assert "mae_h12_fold3" in table and "persistence" in table and "seasonal_naive" in table
    assert (tmp_path / "backtest.csv").read_text().count("\n") == 1 + 3 * 2 * 2  # header, folds x models x horizons


@pytest.mark.usefixtures("restore_logging")
def test_train_cpu_and_memory_writes_a_champion_and_leaderboard_each(home, capsys):
    out = home / "out"
    argv = ["train", "--target", "cpu,mem", "--models", "lightgbm", "--records", "20000", "--jobs", "2"]
    code = main([*argv, "--out", str(out), "--no-tracking", "--no-peak"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    cpu_table = captured.out.index("leaderboard (cpu: cpu_util):")
    mem_table = captured.out.index("leaderboard (mem: mem_util):")
    assert (
        cpu_table
        < captured.out.index("| lightgbm", cpu_table)
        < mem_table
        < captured.out.index("| lightgbm", mem_table)
    )
    assert f"champion directory: {out / 'champion'}\n" in captured.out
    assert f"champion-mem directory: {out / 'champion-mem'}\n" in captured.out
    for name in ("leaderboard.csv", "leaderboard.md", "leaderboard-mem.csv", "leaderboard-mem.md"):
        assert (out / name).is_file(), name
    cpu, mem = ModelBundle.load(out / "champion"), ModelBundle.load(out / "champion-mem")
    assert (cpu.target, mem.target) == ("cpu", "mem")
    fleet = generate_fleet(20_000, seed=0).metrics
    history = fleet.loc[fleet["ts"] >= fleet["ts"].max() - pd.Timedelta("1d")]
    last = history.sort_values("ts").groupby("entity_id").tail(1).set_index("entity_id")
    cpu_now, mem_now = (f.predict(history).set_index("entity_id") for f in (cpu, mem))
    # Each champion's next-step forecast sits near its own resource's last reading, far from the other's.
    gap = last["mem_util"] - last["cpu_util"]
    big = gap.abs() > 0.2
    assert big.sum() >= 3
    assert ((mem_now["p50_h1"] - last["mem_util"]).abs()[big] < (mem_now["p50_h1"] - last["cpu_util"]).abs()[big]).all()
    assert ((cpu_now["p50_h1"] - last["cpu_util"]).abs()[big] < (cpu_now["p50_h1"] - last["mem_util"]).abs()[big]).all()
    mem_board = pd.read_csv(out / "leaderboard-mem.csv")
    assert set(mem_board["model"]) == {"lightgbm", "persistence", "seasonal_naive"}
    assert not mem_board.equals(pd.read_csv(out / "leaderboard.csv"))


@pytest.mark.usefixtures("restore_logging")
def test_train_memory_on_data_without_memory_is_a_one_line_error(home, capsys):
    fleet = generate_fleet(3_000, entities=2, seed=4)
    fleet.metrics["mem_util"] = np.nan
    path = home / "cpu-only.parquet"
    write_fleet(fleet, path)
    code = main(["train", "--source", str(path), "--target", "mem", "--models", "lightgbm", "--no-tracking"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert err[-1].startswith("mlco train: error: --target mem: this data has no mem_util values")
    assert "Traceback" not in "\n".join(err)
    assert not (home / "home" / "train").exists()  # refused before anything was trained
    with pytest.raises(UserError, match="--target gpu: expected cpu, mem or cpu,mem"):
        _run(["train", "--target", "gpu", "--models", "lightgbm"])


def test_memory_backtest_scores_memory_in_its_own_file(tmp_path):
    metrics = generate_fleet(5_000, entities=2, seed=1).metrics
    cpu = train_cli._backtest(metrics, {}, folds=2, holdout=0.3, out=tmp_path)
    mem = train_cli._backtest(metrics, {}, folds=2, holdout=0.3, out=tmp_path, target="mem")
    assert cpu.startswith("rolling-origin backtest:") and mem.startswith("rolling-origin backtest (mem: mem_util):")
    cpu_scores, mem_scores = pd.read_csv(tmp_path / "backtest.csv"), pd.read_csv(tmp_path / "backtest-mem.csv")
    assert len(cpu_scores) == len(mem_scores) == 2 * 2 * 2
    # Same rows, other resource: the persistence errors differ.
    assert not np.allclose(cpu_scores["mae"], mem_scores["mae"])
