"""The shared Bitbrains trace through a real Prometheus: ``mlco ingest prometheus://`` agrees with the CSV.

The whole trace (50 VMs, 30 days, 431,129 rows) is written with ``write_openmetrics``,
backfilled with promtool (``--max-block-duration=744h``: one pass over the file instead of one
per 2-hour block, 10 s instead of 5.5 min) and read back by the real CLI, ``mlco ingest
prometheus://127.0.0.1:PORT --level pod --window 15m --out f.parquet``; its ``cpu_util`` and
``mem_util`` must be within 2% of the CSV ingest (mean absolute difference over the mean).

Why the CPU is compared with a smoothed CSV: the writer's counter advances by
``cpu_util[s] * vcpus * 300`` core-seconds at slot ``s`` (the 5 minutes ending at ``s``). With a
window of ``k`` steps (15m: k = 3), ``rate()`` at ``t`` in Prometheus 2.42 takes the samples in
``[t - 300k, t]`` (both ends included), which are the counter at ``t - 300k`` and at ``t``
(the window's edges, so no extrapolation): ``(c(t) - c(t - 300k)) / 300k = vcpus * mean(
cpu_util[t - 300(k-1)], ..., cpu_util[t])``. Divided by the request (``vcpus``), the reader's
``cpu_util`` at ``t`` is the mean of the ``k`` CSV slots ending at ``t``: a trailing rolling mean.
That holds where all ``k`` slots and the counter sample at ``t - 300k`` exist (the slot
before, or the writer's starting zero before an entity's first slot); slots whose window
touches one of the trace's gaps are left out (about 0.2% of rows). Memory is a gauge read at
``t``, so it is compared slot for slot, where the CSV has it.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ml_cloud_optimizer.cli import main
from ml_cloud_optimizer.data import read_fleet
from ml_cloud_optimizer.data.openmetrics import write_openmetrics
from ml_cloud_optimizer.data.schema import STEP_SECONDS
from prometheus_support import running_prometheus

SHARED = Path(__file__).resolve().parents[3] / "shared"
BITBRAINS = SHARED / "data" / "traces" / "bitbrains_rnd_2013_08"
WINDOW_STEPS = 3  # --window 15m
TOLERANCE = 0.02


@pytest.fixture(scope="module")
def csv_fleet():
    """The CSV ingest of the shared trace: the reference."""
    wanted = [BITBRAINS / "bitbrains_rnd_2013_08.csv", BITBRAINS / "entities.csv"]
    missing = [str(p) for p in wanted if not p.is_file()]
    if missing:
        pytest.fail(f"the shared Bitbrains trace is missing: {', '.join(missing)} (expected under {SHARED})")
    return read_fleet(BITBRAINS)


@pytest.fixture(scope="module")
def ingested(csv_fleet, tmp_path_factory):
    """(fleet read back by ``mlco ingest``, CSV entity id -> its id there, the server, the last instant)."""
    root = tmp_path_factory.mktemp("prometheus")
    trace = root / "trace.om"
    began = time.perf_counter()
    pods = write_openmetrics(csv_fleet, trace)
    wrote = time.perf_counter()
    backfill = ["promtool", "tsdb", "create-blocks-from", "openmetrics", "--max-block-duration=744h", "-q"]
    done = subprocess.run([*backfill, str(trace), str(root / "data")], capture_output=True, text=True)
    assert done.returncode == 0, f"promtool could not backfill: {done.stderr[-2000:]}"
    backfilled = time.perf_counter()
    seconds = csv_fleet.metrics["ts"].astype("int64") // 10**9
    out = root / "f.parquet"
    with running_prometheus(root) as hostport:
        started = time.perf_counter()
        argv = ["ingest", f"prometheus://{hostport}", "--level", "pod", "--window", f"{5 * WINDOW_STEPS}m"]
        argv += ["--start", str(seconds.min()), "--end", str(seconds.max()), "--out", str(out)]
        assert main(argv) == 0
        print(
            f"write {wrote - began:.1f} s, promtool {backfilled - wrote:.1f} s,"
            f" ingest {time.perf_counter() - started:.1f} s ({len(csv_fleet.metrics)} rows)"
        )
        yield read_fleet(out), pods, hostport, int(seconds.max())


def _smoothed_cpu(metrics: pd.DataFrame) -> pd.DataFrame:
    """Per (entity, ts): the mean CSV ``cpu_util`` of the window's slots, where the window is whole."""
    wide = metrics.pivot(index="ts", columns="entity_id", values="cpu_util")
    grid = pd.date_range(wide.index.min() - pd.Timedelta(seconds=STEP_SECONDS), wide.index.max(), freq="300s")
    wide = wide.reindex(grid)
    counter = wide.notna()  # where the writer put a counter sample: every present slot...
    first = wide.notna().to_numpy().argmax(axis=0)
    counter.iloc[first - 1, np.arange(wide.shape[1])] = True  # ...and the starting zero a step before the first
    mean = wide.rolling(WINDOW_STEPS, min_periods=WINDOW_STEPS).mean()
    whole = mean.notna() & counter.shift(WINDOW_STEPS, fill_value=False)
    expected = mean.where(whole).stack().rename("expected").reset_index()
    expected.columns = ["ts", "entity_id", "expected"]
    return expected


def _relative_error(got: pd.Series, want: pd.Series) -> float:
    return float((got - want).abs().mean() / want.mean())


def test_ingest_from_prometheus_matches_the_csv(csv_fleet, ingested):
    fleet, pods, _, _ = ingested
    back = {pod: entity for entity, pod in pods.items()}
    assert sorted(fleet.entities["entity_id"].astype(str)) == sorted(pods.values())
    metrics = fleet.metrics.assign(entity_id=fleet.metrics["entity_id"].astype(str).map(back))
    csv = csv_fleet.metrics.assign(entity_id=csv_fleet.metrics["entity_id"].astype(str))

    cpu = _smoothed_cpu(csv).merge(metrics[["entity_id", "ts", "cpu_util"]], on=["entity_id", "ts"], how="left")
    assert len(cpu) > 0.99 * len(csv), "too few slots have a whole rate window"
    assert cpu["cpu_util"].notna().all(), f"{int(cpu['cpu_util'].isna().sum())} slots did not come back"
    cpu_error = _relative_error(cpu["cpu_util"], cpu["expected"])

    both = csv[["entity_id", "ts", "cpu_util", "mem_util"]].merge(
        metrics[["entity_id", "ts", "cpu_util", "mem_util"]], on=["entity_id", "ts"], suffixes=("_csv", "")
    )
    known = both["mem_util_csv"].notna()
    assert both["mem_util"][known].notna().all()
    mem_error = _relative_error(both.loc[known, "mem_util"], both.loc[known, "mem_util_csv"])
    unsmoothed = _relative_error(both["cpu_util"], both["cpu_util_csv"])
    print(
        f"relative error over {len(cpu)} slots: cpu {cpu_error:.2e} (against the raw CSV, unsmoothed:"
        f" {unsmoothed:.2e}), mem {mem_error:.2e} over {int(known.sum())} slots"
    )
    assert cpu_error < TOLERANCE
    assert mem_error < TOLERANCE

    sizes = fleet.entities.assign(entity_id=fleet.entities["entity_id"].astype(str).map(back)).set_index("entity_id")
    reference = csv_fleet.entities.assign(entity_id=csv_fleet.entities["entity_id"].astype(str)).set_index("entity_id")
    np.testing.assert_allclose(sizes.loc[reference.index, "vcpus"], reference["vcpus"])
    np.testing.assert_allclose(sizes.loc[reference.index, "mem_gib"], reference["mem_gib"], rtol=1e-9)


def test_mlco_train_from_prometheus_produces_a_champion(ingested, tmp_path, capsys):
    """The issue's second check: ``mlco train --source prometheus://...`` ranks models and exports a champion."""
    _, _, hostport, last = ingested
    url = f"prometheus://{hostport}?level=pod&start={last - 8 * 86400}&end={last}"  # the last 8 days, all VMs
    out = tmp_path / "train"
    argv = ["train", "--source", url, "--models", "lightgbm", "--no-tracking", "--no-peak", "--out", str(out)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "champion: lightgbm" in printed
    assert (out / "champion" / "bundle.json").is_file()
    assert "prometheus://" in (out / "champion" / "bundle.json").read_text()  # where it learnt from, recorded
