"""``write_openmetrics``: the text it writes, and a round trip through promtool and a real Prometheus.

The fleet is tiny and built by hand so every sample is known: two entities over an hour, one
with a missing slot and a missing memory reading, one with a fractional CPU size (coming to
the schema; the writer already takes it).
"""

from __future__ import annotations

import io
import re

import numpy as np
import pandas as pd
import pytest

from ml_cloud_optimizer.data import read_fleet
from ml_cloud_optimizer.data.openmetrics import pod_name, pod_names, write_openmetrics
from ml_cloud_optimizer.data.schema import DataValidationError, Fleet
from prometheus_support import running_prometheus

T0 = 1_704_067_200  # 2024-01-01T00:00:00Z
SLOTS = 12
GAP = 5  # slot missing from "Web_Frontend.1"
NO_MEM = 9  # slot of "Web_Frontend.1" without mem_util
_LINE = re.compile(r"^(\w+)\{([^}]*)\} (\S+) (\d+)$")


def _fleet() -> Fleet:
    rng = np.random.default_rng(3)
    rows = []
    for entity in ("Web_Frontend.1", "db"):
        for slot in range(SLOTS):
            if entity == "Web_Frontend.1" and slot == GAP:
                continue
            mem = np.nan if entity == "Web_Frontend.1" and slot == NO_MEM else rng.uniform(0.1, 0.9)
            rows.append((entity, pd.Timestamp(T0 + 300 * slot, unit="s", tz="UTC"), rng.uniform(0.05, 1.0), mem))
    metrics = pd.DataFrame(rows, columns=["entity_id", "ts", "cpu_util", "mem_util"])
    entities = pd.DataFrame({"entity_id": ["Web_Frontend.1", "db"], "vcpus": [2.0, 0.5], "mem_gib": [4.0, 1.5]})
    return Fleet(metrics=metrics, entities=entities, source="test")


def _samples(text: str) -> pd.DataFrame:
    """One row per sample line: name, pod, resource (requests only), value, epoch second."""
    rows = []
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        match = _LINE.match(line)
        assert match, f"not a sample line: {line!r}"
        name, labels, value, stamp = match.groups()
        pairs = dict(re.findall(r'(\w+)="([^"]*)"', labels))
        rows.append((name, pairs["pod"], pairs.get("resource"), float(value), int(stamp)))
    return pd.DataFrame(rows, columns=["name", "pod", "resource", "value", "t"])


def test_pod_names_are_dns_labels():
    assert pod_name("rnd_41") == "rnd-41"
    assert pod_name("Web_Frontend.1") == "web-frontend-1"
    assert pod_name("__") == "pod"
    long = pod_name("A" * 70 + "_b")
    assert len(long) == 63 and long == "a" * 63
    names = pod_names(["a_b", "a.b", "c"])
    assert names["c"] == "c"
    assert names["a_b"] != names["a.b"]
    label = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
    assert all(label.match(n) for n in names.values())
    assert pod_names(["x" * 80, "x" * 80 + "!"])["x" * 80].startswith("x" * 54 + "-")


def test_text_encodes_the_fleet_and_leaves_gaps_empty():
    fleet = _fleet()
    out = io.StringIO()
    assert write_openmetrics(fleet, out, namespace="shop") == {
        "Web_Frontend.1": "shop/web-frontend-1",
        "db": "shop/db",
    }
    text = out.getvalue()
    assert text.endswith("# EOF\n")
    assert [line.split()[2] for line in text.splitlines() if line.startswith("# TYPE")] == [
        "container_cpu_usage_seconds",
        "container_memory_working_set_bytes",
        "kube_pod_container_resource_requests",
    ]
    samples = _samples(text)
    web = fleet.metrics[fleet.metrics["entity_id"] == "Web_Frontend.1"]
    slots = ((web["ts"].astype("int64") // 10**9 - T0) // 300).to_numpy()

    counter = samples[(samples["name"] == "container_cpu_usage_seconds_total") & (samples["pod"] == "web-frontend-1")]
    assert counter["t"].tolist() == [T0 - 300, *(T0 + 300 * slots)]  # the starting zero, then present slots only
    assert counter["value"].iloc[0] == 0
    increments = np.diff(counter["value"].to_numpy())
    np.testing.assert_allclose(increments, web["cpu_util"].to_numpy() * 2.0 * 300)  # held over the gap

    memory = samples[(samples["name"] == "container_memory_working_set_bytes") & (samples["pod"] == "web-frontend-1")]
    known = web["mem_util"].notna().to_numpy()
    assert memory["t"].tolist() == (T0 + 300 * slots[known]).tolist()
    np.testing.assert_allclose(memory["value"], web["mem_util"].to_numpy()[known] * 4.0 * 2**30)

    requests = samples[samples["name"] == "kube_pod_container_resource_requests"]
    db = requests[requests["pod"] == "db"]
    assert set(db.loc[db["resource"] == "cpu", "value"]) == {0.5}  # fractional cores, as written
    assert set(db.loc[db["resource"] == "memory", "value"]) == {1.5 * 2**30}
    assert len(db) == 2 * SLOTS
    assert (T0 + 300 * GAP) not in set(samples.loc[samples["pod"] == "web-frontend-1", "t"])


def test_path_text_and_binary_files_get_the_same_bytes(tmp_path):
    fleet = _fleet()
    write_openmetrics(fleet, tmp_path / "f.om")
    text, binary = io.StringIO(), io.BytesIO()
    write_openmetrics(fleet, text)
    write_openmetrics(fleet, binary)
    assert (tmp_path / "f.om").read_bytes() == text.getvalue().encode() == binary.getvalue()


def test_unsorted_rows_and_rows_without_cpu():
    fleet = _fleet()
    shuffled = fleet.metrics.sample(frac=1.0, random_state=1).reset_index(drop=True)
    no_cpu = shuffled.copy()
    no_cpu.loc[len(no_cpu)] = ["db", pd.Timestamp(T0 + 300 * SLOTS, unit="s", tz="UTC"), np.nan, 0.5]
    expected, got = io.StringIO(), io.StringIO()
    write_openmetrics(fleet, expected)
    write_openmetrics(Fleet(metrics=no_cpu, entities=fleet.entities), got)
    assert got.getvalue() == expected.getvalue()


def test_refuses_what_it_cannot_write():
    fleet = _fleet()
    orphan = Fleet(metrics=fleet.metrics, entities=fleet.entities.iloc[:1])
    with pytest.raises(DataValidationError, match="no row in entities"):
        write_openmetrics(orphan, io.StringIO())
    twice = Fleet(metrics=pd.concat([fleet.metrics, fleet.metrics.iloc[:1]]), entities=fleet.entities)
    with pytest.raises(DataValidationError, match="duplicate"):
        write_openmetrics(twice, io.StringIO())


def test_round_trip_through_prometheus(tmp_path):
    fleet = _fleet()
    text = io.StringIO()
    write_openmetrics(fleet, text)
    with running_prometheus(tmp_path / "prom", text.getvalue()) as hostport:
        url = f"prometheus://{hostport}?start={T0 - 300}&end={T0 + 300 * SLOTS}&step=5m&level=pod"
        exact = read_fleet(url + "&window=5m")
        wide = read_fleet(url + "&window=10m")
    got = exact.metrics.assign(entity_id=exact.metrics["entity_id"].astype(str)).set_index(["entity_id", "ts"])
    want = fleet.metrics.assign(entity_id="default/" + fleet.metrics["entity_id"].map(pod_name)).set_index(
        ["entity_id", "ts"]
    )
    after_gap = ("default/web-frontend-1", pd.Timestamp(T0 + 300 * (GAP + 1), unit="s", tz="UTC"))
    missing = ("default/web-frontend-1", pd.Timestamp(T0 + 300 * GAP, unit="s", tz="UTC"))
    # A 5-minute window holds one counter sample after a gap: that slot and the gap stay empty.
    assert sorted(got.index) == sorted(want.index.drop(after_gap))
    assert missing not in got.index
    np.testing.assert_allclose(got["cpu_util"], want.loc[got.index, "cpu_util"], rtol=1e-9)
    known = want.loc[got.index, "mem_util"].notna()
    np.testing.assert_allclose(got.loc[known, "mem_util"], want.loc[got.index[known], "mem_util"], rtol=1e-9)
    sizes = exact.entities.set_index("entity_id")
    assert sizes.loc["default/db", "vcpus"] in (0.5, 1)  # 1 where the schema still rounds cores up to whole vCPUs
    assert sizes.loc["default/db", "mem_gib"] == pytest.approx(1.5)
    # A 10-minute window spans the gap; the held counter spreads one slot's use over two.
    wide_metrics = wide.metrics.set_index(["entity_id", "ts"])
    assert wide_metrics.loc[after_gap, "cpu_util"] == pytest.approx(want.loc[after_gap, "cpu_util"] / 2)
