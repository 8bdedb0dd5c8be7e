"""Real-trace readers and fleet files: the shared Bitbrains trace and small files of every format."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ml_cloud_optimizer.data import (
    DataValidationError,
    detect_format,
    generate_fleet,
    read_fleet,
    read_trace,
    report_gaps,
    write_fleet,
)
from ml_cloud_optimizer.data.io import entities_path
from ml_cloud_optimizer.data.schema import STEP_SECONDS, estimate_hourly_price
from ml_cloud_optimizer.data.traces._stream import Clock
from ml_cloud_optimizer.errors import UserInputError

SHARED = Path(__file__).resolve().parents[3] / "shared"
BITBRAINS = SHARED / "data" / "traces" / "bitbrains_rnd_2013_08"

GWA_HEADER = [
    "Timestamp [ms]",
    "CPU cores",
    "CPU capacity provisioned [MHZ]",
    "CPU usage [MHZ]",
    "CPU usage [%]",
    "Memory capacity provisioned [KB]",
    "Memory usage [KB]",
    "Disk read throughput [KB/s]",
    "Disk write throughput [KB/s]",
    "Network received throughput [KB/s]",
    "Network transmitted throughput [KB/s]",
]
GRID_START = 1_375_308_000  # on the 300 s grid


def _seconds(ts: pd.Series) -> np.ndarray:
    return ((ts - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(seconds=1)).to_numpy()


# --- the shared Bitbrains trace ------------------------------------------------------------


@pytest.fixture(scope="module")
def bitbrains():
    if not BITBRAINS.is_dir():
        pytest.skip(f"shared Bitbrains trace not found at {BITBRAINS}")
    return read_trace(BITBRAINS)


def test_shared_bitbrains_trace_is_detected():
    if not BITBRAINS.is_dir():
        pytest.skip(f"shared Bitbrains trace not found at {BITBRAINS}")
    assert detect_format(BITBRAINS) == "bitbrains"
    assert detect_format(BITBRAINS / "bitbrains_rnd_2013_08.csv") == "bitbrains"


def test_shared_bitbrains_trace_becomes_a_canonical_fleet(bitbrains):
    m = bitbrains.metrics
    assert m["entity_id"].nunique() == 50 and len(bitbrains.entities) == 50
    assert (_seconds(m["ts"]) % STEP_SECONDS == 0).all()
    raw = pd.read_csv(BITBRAINS / "bitbrains_rnd_2013_08.csv", usecols=["entity_id", "cpu_util", "mem_util"])
    # Samples never share a slot in this trace, so snapping keeps every row and every value.
    assert len(m) == len(raw)
    assert m["cpu_util"].mean() == pytest.approx(raw["cpu_util"].mean() / 100, rel=1e-9)
    assert m["mem_util"].isna().sum() == raw["mem_util"].isna().sum()
    # Above 100% CPU exists in the trace and is kept.
    assert 1.0 < m["cpu_util"].max() <= 1.5
    assert m["is_peak"].isna().all() and m["request_rate"].isna().all()


def test_shared_bitbrains_gaps_and_entities(bitbrains):
    gaps = bitbrains.gaps
    assert len(gaps) == 50 and (gaps["missing_slots"] > 0).all()
    assert gaps["present_slots"].sum() == len(bitbrains.metrics)
    assert (gaps["longest_gap_slots"] <= gaps["missing_slots"]).all()
    ent = bitbrains.entities
    catalogue = pd.read_csv(BITBRAINS / "entities.csv").set_index("entity_id").loc[ent["entity_id"]]
    assert (ent["vcpus"].to_numpy() == catalogue["cpu_cores"].to_numpy()).all()
    assert np.allclose(ent["hourly_price"], estimate_hourly_price(ent["vcpus"], ent["mem_gib"]))
    assert ent["instance_type"].str.fullmatch(r"bb-\d+c-\d+g").all()


# --- original GWA-T-12 per-VM files --------------------------------------------------------


def _write_gwa(path: Path, rows: list[list[float]]) -> None:
    lines = [";\t".join(GWA_HEADER)] + [";\t".join(str(v) for v in row) for row in rows]
    path.write_text("\n".join(lines) + "\n")


@pytest.fixture
def gwa_dir(tmp_path):
    rows = []
    for k in range(12):
        if k == 5:
            continue  # a lost sample: one missing slot
        t = GRID_START + 300 * k + 130  # rounds down to slot k
        rows.append([t, 4, 10400, 2000, 10.0 + k, 8_388_608, 4_194_304, 1, 2, 3, 4])
    rows.append([GRID_START + 300 * 8 + 145, 4, 10400, 2000, 30.0, 8_388_608, 2_097_152, 3, 4, 5, 6])  # shares slot 8
    rows[0][5] = 0  # no memory provisioned yet
    directory = tmp_path / "rnd"
    directory.mkdir()
    _write_gwa(directory / "7.csv", rows)
    small = [[GRID_START + 300 * k, 2, 5200, 520, 5.0, 4_194_304, 1_048_576, 0, 0, 0, 0] for k in range(4)]
    _write_gwa(directory / "12.csv", small)
    return directory


def test_gwa_per_vm_files(gwa_dir):
    assert detect_format(gwa_dir) == "bitbrains" and detect_format(gwa_dir / "7.csv") == "bitbrains"
    fleet = read_trace(gwa_dir)
    vm = fleet.metrics[fleet.metrics["entity_id"] == "7"].set_index("ts")
    assert set(fleet.metrics["entity_id"]) == {"7", "12"}
    assert (_seconds(vm.index.to_series()) == GRID_START + 300 * np.array([0, 1, 2, 3, 4, 6, 7, 8, 9, 10, 11])).all()
    slot8 = vm.loc[pd.Timestamp(GRID_START + 300 * 8, unit="s", tz="UTC")]
    assert slot8["cpu_util"] == pytest.approx((18.0 + 30.0) / 2 / 100)
    assert slot8["mem_util"] == pytest.approx((0.5 + 0.25) / 2)
    assert slot8["net_in_kbps"] == pytest.approx(4.0)
    assert np.isnan(vm["mem_util"].iloc[0]) and vm["mem_util"].iloc[1] == pytest.approx(0.5)
    gaps = fleet.gaps.set_index("entity_id")
    assert gaps.loc["7", "missing_slots"] == 1 and gaps.loc["12", "missing_slots"] == 0
    ent = fleet.entities.set_index("entity_id")
    assert ent.loc["7", "vcpus"] == 4 and ent.loc["7", "mem_gib"] == pytest.approx(8.0)
    assert ent.loc["12", "instance_type"] == "bb-2c-4g" and ent.loc["12", "service"] == "bitbrains"
    assert set(read_trace(gwa_dir, id_prefix="rnd_").entities["entity_id"]) == {"rnd_7", "rnd_12"}


def test_shipped_layout_without_entities_file(tmp_path):
    path = tmp_path / "trace.csv"
    header = (
        "timestamp,entity_id,cpu_util,mem_util,mem_usage_kb,mem_capacity_kb,"
        "disk_read_kbps,disk_write_kbps,net_rx_kbps,net_tx_kbps"
    )
    rows = [f"{GRID_START + 300 * k + 3},rnd_1,{20 + k},10.5,1,2097152,0.5,1.5,2.5,3.5" for k in range(3)]
    path.write_text("\n".join([header, *rows]) + "\n")
    assert detect_format(path) == "bitbrains"
    fleet = read_trace(path)
    assert np.allclose(fleet.metrics["cpu_util"], [0.20, 0.21, 0.22]) and np.allclose(fleet.metrics["mem_util"], 0.105)
    assert fleet.metrics["net_out_kbps"].eq(3.5).all()
    ent = fleet.entities.iloc[0]
    assert ent["service"] == "bitbrains-rnd" and ent["vcpus"] == 1 and ent["mem_gib"] == pytest.approx(2.0)


def test_gwa_file_with_wrong_columns_is_refused(tmp_path):
    bad = tmp_path / "3.csv"
    bad.write_text("Timestamp [ms];\tCPU cores\n1;\t2\n")
    with pytest.raises(DataValidationError, match="missing columns"):
        read_trace(bad, "bitbrains")


# --- Azure V1 ------------------------------------------------------------------------------


@pytest.fixture
def azure_files(tmp_path):
    readings = []
    for k in range(6):
        readings.append(f"{300 * k},vmA+/x=,{5 + k},{40 + k},{20 + k}")
        if k != 3:
            readings.append(f"{300 * k},vmB//y=,1,3,2.5")
    path = tmp_path / "vm_cpu_readings-file-1-of-125.csv.gz"
    with gzip.open(path, "wt") as handle:
        handle.write("\n".join(readings) + "\n")
    vmtable = tmp_path / "vmtable.csv"
    vmtable.write_text(
        "vmA+/x=,sub1,dep1,0,2591700,99.1,21.2,80.3,Interactive,>24,>64\n"
        "vmC,sub1,dep2,0,2591700,50.0,10.0,40.0,Delay-insensitive,2,4\n"
    )
    return path, vmtable


def test_azure_readings(azure_files):
    path, vmtable = azure_files
    assert detect_format(path) == "azure" and detect_format(path.parent) == "azure"
    fleet = read_trace(path)
    m = fleet.metrics.set_index("entity_id")
    a = m.loc["vmA+/x="]
    assert a["ts"].iloc[0] == pd.Timestamp("2017-01-01T00:00:00Z")
    assert np.allclose(a["cpu_util"], (20 + np.arange(6)) / 100)
    assert fleet.gaps.set_index("entity_id").loc["vmB//y=", "missing_slots"] == 1
    assert (fleet.entities["vcpus"] == 1).all()

    later = read_trace(path, epoch="2019-06-01T00:00:00Z", vmtable=vmtable)
    assert later.metrics["ts"].min() == pd.Timestamp("2019-06-01T00:00:00Z")
    ent = later.entities.set_index("entity_id")
    assert ent.loc["vmA+/x=", "vcpus"] == 24 and ent.loc["vmA+/x=", "mem_gib"] == 64
    assert ent.loc["vmA+/x=", "service"] == "Interactive" and ent.loc["vmB//y=", "vcpus"] == 1
    assert "vmC" not in ent.index


def test_azure_detected_by_content_and_bad_value_refused(tmp_path):
    plain = tmp_path / "readings.csv"
    plain.write_text("0,vmA,1,2,1.5\n300,vmA,1,2,1.5\n")
    assert detect_format(plain) == "azure"
    broken = tmp_path / "vm_cpu_readings-file-2-of-125.csv"
    broken.write_text("0,vmA,1,2,1.5\n300,vmA,1,2,lots\n")
    with pytest.raises(DataValidationError, match="vm_cpu_readings-file-2") as info:
        read_trace(broken)
    assert "\n" not in str(info.value)


# --- Alibaba 2018 --------------------------------------------------------------------------


def test_alibaba_machine_usage_is_averaged_per_slot(tmp_path):
    t = np.arange(0, 900, 10)
    rng = np.random.default_rng(0)
    raw = pd.DataFrame(
        {
            "machine_id": np.repeat(["m_1", "m_2"], t.size),
            "time_stamp": np.tile(t, 2),
            "cpu": rng.integers(0, 100, 2 * t.size),
            "mem": rng.integers(50, 100, 2 * t.size),
        }
    )
    lines = [f"{r.machine_id},{r.time_stamp},{r.cpu},{r.mem},,,,," for r in raw.itertuples()]
    path = tmp_path / "machine_usage.csv"
    path.write_text("\n".join(lines) + "\n")
    renamed = tmp_path / "usage_part.csv"
    renamed.write_text(path.read_text())
    assert detect_format(path) == "alibaba" and detect_format(renamed) == "alibaba"

    fleet = read_trace(path, epoch="2018-01-01T00:00:00Z")
    # Oracle: the nearest 300 s slot of each sample, then a plain mean.
    raw["slot"] = ((raw["time_stamp"] + 150) // 300) * 300
    expected = raw.groupby(["machine_id", "slot"])[["cpu", "mem"]].mean() / 100
    epoch = pd.Timestamp("2018-01-01", tz="UTC")
    got = fleet.metrics.assign(slot=(fleet.metrics["ts"] - epoch) // pd.Timedelta(seconds=1))
    got = got.set_index(["entity_id", "slot"])
    assert len(got) == len(expected) == 8
    assert np.allclose(got.loc[expected.index, "cpu_util"], expected["cpu"])
    assert np.allclose(got.loc[expected.index, "mem_util"], expected["mem"])
    assert got["net_in_kbps"].isna().all()
    assert (fleet.entities["vcpus"] == 96).all()


# --- generic long CSV ----------------------------------------------------------------------


@pytest.fixture
def long_csv(tmp_path):
    path = tmp_path / "export.csv"
    path.write_text(
        "time,host,cpu,memory\n"
        "2024-03-01T10:00:07Z,a,50,20\n"
        "2024-03-01T10:05:02Z,a,60,30\n"
        "2024-03-01T10:15:00Z,a,70,40\n"
        "2024-03-01T10:00:00Z,b,10,90\n"
    )
    return path


MAPPING = {"ts": "time", "entity_id": "host", "cpu_util": "cpu", "mem_util": "memory"}


def test_long_csv_with_mapping(long_csv):
    assert detect_format(long_csv) == "long"
    fleet = read_trace(long_csv, columns=MAPPING, service="api", vcpus=4)
    a = fleet.metrics[fleet.metrics["entity_id"] == "a"]
    assert a["ts"].tolist() == [pd.Timestamp(f"2024-03-01T10:{mm}:00Z") for mm in ("00", "05", "15")]
    assert np.allclose(a["cpu_util"], [0.5, 0.6, 0.7]) and np.allclose(a["mem_util"], [0.2, 0.3, 0.4])
    assert fleet.gaps.set_index("entity_id").loc["a", "missing_slots"] == 1
    ent = fleet.entities.set_index("entity_id")
    assert ent.loc["a", "service"] == "api" and ent.loc["a", "vcpus"] == 4


def test_long_csv_epoch_milliseconds_and_told_cpu_unit(tmp_path):
    path = tmp_path / "ms.csv"
    path.write_text("ts,entity_id,cpu_util\n1709287200000,x,0.4\n1709287500000,x,0.9\n")
    fleet = read_trace(path, "long", cpu_unit="fraction")
    assert fleet.metrics["ts"].iloc[0] == pd.Timestamp(1_709_287_200, unit="s", tz="UTC")
    assert np.allclose(fleet.metrics["cpu_util"], [0.4, 0.9])
    as_percent = read_trace(path, "long", cpu_unit="percent", time_unit="ms")
    assert np.allclose(as_percent.metrics["cpu_util"], [0.004, 0.009])
    assert as_percent.metrics["ts"].iloc[1] == pd.Timestamp(1_709_287_500, unit="s", tz="UTC")


# --- units are never guessed where two readings fit ----------------------------------------


def test_idle_percent_trace_is_refused_until_the_cpu_unit_is_given(tmp_path):
    # An idle fleet in percent: every value <= 1.5, which used to be read as 40-120% busy.
    path = tmp_path / "idle.csv"
    path.write_text("ts,entity_id,cpu_util\n1709287200,x,0.4\n1709287500,x,1.2\n1709287800,x,0.8\n")
    with pytest.raises(DataValidationError, match=r"idle\.csv.*fraction or percent.*--cpu-unit") as info:
        read_trace(path, "long")
    assert "\n" not in str(info.value)
    fleet = read_trace(path, "long", cpu_unit="percent")
    assert np.allclose(fleet.metrics["cpu_util"], [0.004, 0.012, 0.008])


def test_cpu_unit_is_obeyed_and_a_clear_percent_column_settles_both(tmp_path):
    path = tmp_path / "host.csv"
    path.write_text("ts,entity_id,cpu_util,mem_util\n1709287200,x,0.5,40\n1709287500,x,1.0,60\n")
    # Memory above 1.5 is percent, so the idle CPU beside it is too: one unit per export.
    fleet = read_trace(path, "long")
    assert np.allclose(fleet.metrics["cpu_util"], [0.005, 0.010]) and np.allclose(fleet.metrics["mem_util"], [0.4, 0.6])
    with pytest.raises(DataValidationError, match=r"reaches 60.*not a fraction.*--cpu-unit percent"):
        read_trace(path, "long", cpu_unit="fraction")
    with pytest.raises(DataValidationError, match="cpu unit 'permille'"):
        read_trace(path, "long", cpu_unit="permille")


def test_mixed_seconds_and_milliseconds_are_refused_naming_the_time_unit(tmp_path):
    # The old reader divided the whole block by 1000 once one value looked like milliseconds,
    # putting the rows written in seconds in January 1970.
    path = tmp_path / "mixed.csv"
    path.write_text("ts,entity_id,cpu_util\n1709287200,x,40\n1709287500000,x,50\n")
    with pytest.raises(
        DataValidationError, match=r"1709287200 reads as seconds.*1709287500000 as milliseconds"
    ) as info:
        read_trace(path, "long")
    assert "--time-unit {s,ms,us,ns,iso}" in str(info.value) and "\n" not in str(info.value)
    dates_and_numbers = tmp_path / "both.csv"
    dates_and_numbers.write_text("ts,entity_id,cpu_util\n2024-03-01T10:00:00Z,x,40\n1709287500,x,50\n")
    with pytest.raises(DataValidationError, match=r"mix units.*--time-unit"):
        read_trace(dates_and_numbers, "long")
    with pytest.raises(DataValidationError, match=r"not a number of seconds.*--time-unit iso"):
        read_trace(dates_and_numbers, "long", time_unit="s")
    with pytest.raises(DataValidationError, match="time unit 'days'"):
        read_trace(path, "long", time_unit="days")


def test_clock_refuses_units_that_differ_between_blocks():
    clock = Clock(Path("big.csv"))
    assert clock.seconds(pd.Series(["1709287200", "1709287500"])).tolist() == [1709287200, 1709287500]
    with pytest.raises(DataValidationError, match="1709287200 reads as seconds, 1709287800000 as milliseconds"):
        clock.seconds(pd.Series(["1709287800000"]))  # a later block of the same trace
    micro = Clock(Path("us.csv"))
    assert micro.seconds(pd.Series([1_709_287_200_000_000.0])).tolist() == [1_709_287_200]
    told = Clock(Path("iso.csv"), "iso")
    assert told.seconds(pd.Series(["2024-03-01T10:00:00Z"])).tolist() == [1_709_287_200]


def test_gwa_files_in_different_units_are_refused(gwa_dir):
    seconds = (gwa_dir / "12.csv").read_text()
    lines = seconds.splitlines()
    stamp = lines[1].split(";")[0]
    (gwa_dir / "12.csv").write_text("\n".join([lines[0], lines[1].replace(stamp, stamp + "000", 1)]) + "\n")
    with pytest.raises(DataValidationError, match=r"mix units.*--time-unit"):
        read_trace(gwa_dir)


def test_duplicates_and_same_slot_collisions_are_counted_in_the_gap_report(tmp_path):
    path = tmp_path / "dups.csv"
    path.write_text(
        "ts,entity_id,cpu_util\n"
        "1709287200,a,10\n1709287200,a,30\n1709287200,a,50\n"  # one timestamp three times: 2 duplicates
        "1709287500,a,20\n1709287560,a,40\n"  # two timestamps snapped into one slot: a collision
        "1709287800,a,60\n"
        "1709287200,b,10\n1709287500,b,20\n"
    )
    fleet = read_trace(path, "long")
    gaps = fleet.gaps.set_index("entity_id")
    assert gaps.loc["a", "duplicate_samples"] == 2 and gaps.loc["a", "collided_slots"] == 1
    assert gaps.loc["b", "duplicate_samples"] == 0 and gaps.loc["b", "collided_slots"] == 0
    a = fleet.metrics[fleet.metrics["entity_id"] == "a"]
    assert np.allclose(a["cpu_util"], [0.30, 0.30, 0.60])  # still averaged, now counted


def test_long_csv_errors_name_the_problem(long_csv):
    with pytest.raises(DataValidationError, match=r"'when'.*mapped to ts"):
        read_trace(long_csv, "long", columns={**MAPPING, "ts": "when"})
    with pytest.raises(DataValidationError, match="no column for entity_id"):
        read_trace(long_csv, "long", columns={"ts": "time", "cpu_util": "cpu"})
    with pytest.raises(DataValidationError, match="unknown canonical name"):
        read_trace(long_csv, "long", columns={**MAPPING, "gpu_util": "cpu"})
    negative = long_csv.with_name("neg.csv")
    negative.write_text("ts,entity_id,cpu_util\n0,x,0.5\n300,x,-0.5\n")
    with pytest.raises(DataValidationError, match=r"neg\.csv.*cpu_util.*outside"):
        read_trace(negative, "long", cpu_unit="fraction")


# --- detection and bad input ---------------------------------------------------------------


def test_data_errors_are_the_typed_user_error():
    assert issubclass(DataValidationError, UserInputError) and issubclass(UserInputError, ValueError)
    with pytest.raises(UserInputError, match="records must be at least 1"):
        generate_fleet(-5)
    with pytest.raises(UserInputError, match="seed must be 0 or more"):
        generate_fleet(100, seed=-1)


def test_unknown_format_option_and_path_are_refused(long_csv, tmp_path):
    with pytest.raises(DataValidationError, match="unknown trace format 'nope'"):
        read_trace(long_csv, "nope")
    with pytest.raises(DataValidationError, match="takes no option vmtable"):
        read_trace(long_csv, "long", columns=MAPPING, vmtable="x")
    with pytest.raises(FileNotFoundError, match=r"missing\.csv"):
        read_trace(tmp_path / "missing.csv")
    garbage = tmp_path / "garbage.bin"
    garbage.write_bytes(b"\x00\x01\x02 12 34\n")
    with pytest.raises(DataValidationError, match="cannot tell the trace format"):
        detect_format(garbage)
    empty_dir = tmp_path / "empty"
    empty_dir.mkdir()
    with pytest.raises(DataValidationError, match="no trace files"):
        read_trace(empty_dir)


def test_report_gaps_counts_missing_slots():
    slots = {"a": [0, 1, 2, 5, 6, 10], "b": [3, 4, 5, 6]}
    metrics = pd.DataFrame(
        [(e, pd.Timestamp(GRID_START + 300 * s, unit="s", tz="UTC")) for e, ss in slots.items() for s in ss],
        columns=["entity_id", "ts"],
    ).sample(frac=1, random_state=0)  # order must not matter
    gaps = report_gaps(metrics).set_index("entity_id")
    assert gaps.loc["a"].tolist() == [11, 6, 5, 3, 0, 0]  # missing 3-4, 7-9; nothing merged on a grid
    assert gaps.loc["b"].tolist() == [4, 4, 0, 0, 0, 0]
    empty = report_gaps(metrics.iloc[:0])
    assert empty.empty and "duplicate_samples" in empty and "collided_slots" in empty


# --- saved fleets --------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_write_then_read_round_trip(tmp_path, suffix):
    fleet = generate_fleet(6_000, entities=3, seed=2)
    paths = write_fleet(fleet, tmp_path / "out" / f"fleet{suffix}")
    assert paths == [tmp_path / "out" / f"fleet{suffix}", tmp_path / "out" / f"fleet.entities{suffix}"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(p.name for p in paths)  # no temp files left
    back = read_fleet(paths[0])
    pd.testing.assert_frame_equal(back.metrics, fleet.metrics)
    pd.testing.assert_frame_equal(back.entities, fleet.entities)
    pd.testing.assert_frame_equal(back.gaps, fleet.gaps)


def test_saved_fleet_errors(tmp_path, long_csv):
    fleet = generate_fleet(2_000, entities=1, seed=0)
    with pytest.raises(DataValidationError, match="unsupported suffix"):
        write_fleet(fleet, tmp_path / "fleet.json")
    path = write_fleet(fleet, tmp_path / "fleet.parquet")[0]
    entities_path(path).unlink()
    with pytest.raises(DataValidationError, match="entities file missing"):
        read_fleet(path)
    corrupt = tmp_path / "bad.parquet"
    corrupt.write_bytes(b"not parquet at all")
    write_fleet(fleet, tmp_path / "bad2.parquet")
    entities_path(tmp_path / "bad2.parquet").rename(entities_path(corrupt))
    with pytest.raises(DataValidationError, match=r"bad\.parquet"):
        read_fleet(corrupt)
    # A trace goes through the trace readers.
    assert read_fleet(long_csv, columns=MAPPING).metrics["entity_id"].nunique() == 2
