"""`mlco generate` and `mlco ingest`, in-process and as the installed console script."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from ml_cloud_optimizer.cli import build_parser, main
from ml_cloud_optimizer.cli.data import trace_options
from ml_cloud_optimizer.data import generate_fleet, read_fleet

MLCO = Path(sys.executable).with_name("mlco")


@pytest.fixture
def long_csv(tmp_path):
    path = tmp_path / "hosts.csv"
    path.write_text(
        "time,host,cpu\n"
        "1709287200,web1,35\n1709287500,web1,45\n1709288100,web1,55\n"
        "1709287200,web2,5\n1709287500,web2,15\n"
    )
    return path


def test_generate_writes_the_fleet_it_reports(tmp_path, capsys):
    out = tmp_path / "fleet.parquet"
    assert main(["generate", "--records", "12000", "--entities", "2", "--seed", "5", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "2 entities" in printed and "peak share" in printed and str(out) in printed
    saved = read_fleet(out)
    expected = generate_fleet(12_000, entities=2, seed=5)
    pd.testing.assert_frame_equal(saved.metrics, expected.metrics)
    assert f"{len(expected.metrics):,} rows" in printed


def test_ingest_long_csv_with_map_and_out(tmp_path, long_csv, capsys):
    out = tmp_path / "canonical.csv"
    mapping = "ts=time,entity_id=host,cpu_util=cpu"
    assert main(["ingest", str(long_csv), "--format", "long", "--map", mapping, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "2 entities, 5 rows" in printed and "grid 300 s" in printed
    assert "gaps: 1 of 2 entities, 1 missing slots" in printed
    saved = read_fleet(out)
    assert saved.metrics["cpu_util"].max() == pytest.approx(0.55)


def test_ingest_bad_input_is_one_line_exit_2(long_csv, tmp_path, capsys):
    assert main(["ingest", str(long_csv), "--format", "long", "--map", "ts=when,entity_id=host,cpu_util=cpu"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "'when'" in err and "Traceback" not in err
    assert main(["ingest", str(tmp_path / "nothing.csv")]) == 2
    assert "nothing.csv" in capsys.readouterr().err


def test_installed_mlco_exits_2_with_one_line_on_bad_input(tmp_path):
    if not MLCO.exists():
        pytest.skip(f"console script not installed beside the interpreter: {MLCO}")
    garbage = tmp_path / "vm_cpu_readings-file-1-of-9.csv"
    garbage.write_text("0,vmA,1,2,3\nnot,a,valid,row,here\n")
    result = subprocess.run([str(MLCO), "ingest", str(garbage)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("mlco ingest: error:")
    assert garbage.name in result.stderr and result.stdout == ""


def test_ingest_names_the_unit_flags_and_obeys_them(tmp_path, capsys):
    idle = tmp_path / "idle.csv"
    idle.write_text("ts,entity_id,cpu_util\n1709287200,x,0.4\n1709287500,x,1.2\n")
    assert main(["ingest", str(idle), "--format", "long"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("mlco ingest: error:") and "--cpu-unit {fraction,percent}" in err
    out = tmp_path / "idle.parquet"
    assert main(["ingest", str(idle), "--format", "long", "--cpu-unit", "percent", "--out", str(out)]) == 0
    assert read_fleet(out).metrics["cpu_util"].max() == pytest.approx(0.012)

    mixed = tmp_path / "mixed.csv"
    mixed.write_text("ts,entity_id,cpu_util\n1709287200,x,40\n1709287500000,x,50\n")
    assert main(["ingest", str(mixed)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "mix units" in err and "--time-unit {s,ms,us,ns,iso}" in err
    assert main(["ingest", str(mixed), "--time-unit", "s"]) == 2  # obeyed: milliseconds as seconds overflow
    assert "past the year 2262" in capsys.readouterr().err
    assert main(["ingest", str(mixed), "--time-unit", "fortnights"]) == 2
    assert "argument --time-unit: invalid choice" in capsys.readouterr().err


def test_ingest_gap_line_counts_duplicates_and_collisions(tmp_path, capsys):
    path = tmp_path / "dups.csv"
    path.write_text(
        "time,host,cpu\n1709287200,a,10\n1709287200,a,30\n1709287500,a,20\n1709287560,a,40\n1709288100,a,50\n"
    )
    assert main(["ingest", str(path), "--map", "ts=time,entity_id=host,cpu_util=cpu"]) == 0
    printed = capsys.readouterr().out
    assert "gaps: 1 of 1 entities, 1 missing slots" in printed
    assert "merged: 1 duplicate timestamps averaged, 1 slots averaging several samples" in printed


def test_db_load_takes_the_unit_flags(tmp_path, capsys):
    idle = tmp_path / "idle.csv"
    idle.write_text("ts,entity_id,cpu_util\n1709287200,x,0.4\n1709287500,x,1.2\n")
    # Refused while reading, before any warehouse is started: the message names the flag db load takes.
    assert main(["db", "load", str(idle), "--format", "long"]) == 2
    assert "--cpu-unit" in capsys.readouterr().err
    args = build_parser().parse_args(["db", "load", str(idle), "--cpu-unit", "percent", "--time-unit", "s"])
    assert trace_options(args) == {"cpu_unit": "percent", "time_unit": "s"}
