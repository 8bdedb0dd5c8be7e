"""Layouts read without flags: the shared PlanetLab trace (a long CSV beside entities.csv) and its look-alikes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ml_cloud_optimizer.data import DataValidationError, detect_format, read_fleet, read_trace

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data" / "traces"
PLANETLAB = SHARED / "planetlab_2011"
DAY = 86_400


@pytest.fixture
def planetlab_like(tmp_path) -> Path:
    """Two VMs, two days a week apart, unix seconds and integer percent, an entities.csv beside."""
    directory = tmp_path / "pl"
    directory.mkdir()
    start = 1_299_110_400  # 2011-03-03 00:00 UTC
    rows = [
        (start + day * DAY + 300 * i, vm, (7 * i + 11 * k) % 90)
        for k, vm in enumerate(("pl_a_root", "pl_b_slice"))
        for day in (0, 7)
        for i in range(288)
    ]
    pd.DataFrame(rows, columns=["timestamp", "entity_id", "cpu_util"]).to_csv(directory / "pl.csv", index=False)
    pd.DataFrame({"entity_id": ["pl_a_root", "pl_b_slice"], "n_days": [2, 2]}).to_csv(
        directory / "entities.csv", index=False
    )
    return directory


def test_a_long_csv_with_common_column_names_reads_without_a_mapping(planetlab_like):
    assert detect_format(planetlab_like) == "long"
    fleet = read_fleet(planetlab_like)
    assert fleet.metrics["entity_id"].nunique() == 2 and len(fleet.metrics) == 4 * 288
    a = fleet.metrics.loc[fleet.metrics["entity_id"] == "pl_a_root"].sort_values("ts")
    assert np.allclose(a["cpu_util"].iloc[:3], [0.0, 0.07, 0.14])  # integer percent, read as fractions
    assert a["ts"].iloc[0] == pd.Timestamp("2011-03-03", tz="UTC")
    assert (a["ts"].diff().dropna() > pd.Timedelta("1d")).sum() == 1  # the missing week is a gap, not an error
    assert fleet.gaps.set_index("entity_id").loc["pl_a_root", "missing_slots"] == 6 * 288


def test_a_mapping_given_is_followed_to_the_letter(planetlab_like):
    path = planetlab_like / "pl.csv"
    with pytest.raises(DataValidationError, match="no column for ts"):
        read_trace(path, "long", columns={"entity_id": "entity_id"})
    renamed = path.with_name("two.csv")
    frame = pd.read_csv(path).rename(columns={"timestamp": "time"}).assign(timestamp=lambda f: f["time"])
    frame.to_csv(renamed, index=False)
    assert read_trace(renamed, "long", columns={"ts": "time"}).metrics["ts"].notna().all()


def test_a_directory_of_several_long_csvs_is_still_refused(planetlab_like):
    (planetlab_like / "other.csv").write_text("timestamp,entity_id,cpu_util\n1299110400,x,5\n")
    with pytest.raises(DataValidationError, match="no trace files of a known format"):
        detect_format(planetlab_like)


def test_shared_planetlab_trace_reads_without_flags():
    if not PLANETLAB.is_dir():
        pytest.skip(f"shared PlanetLab trace not found at {PLANETLAB}")
    fleet = read_fleet(PLANETLAB)
    assert fleet.metrics["entity_id"].nunique() == 107 and len(fleet.metrics) == 283_680
    assert fleet.metrics["cpu_util"].min() >= 0 and fleet.metrics["cpu_util"].max() == pytest.approx(0.99)
    days = fleet.metrics["ts"].dt.normalize().nunique()
    assert days == 10
