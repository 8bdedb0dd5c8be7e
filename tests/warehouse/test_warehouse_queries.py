"""Every named OLAP query gives the numbers pandas computes from the same rows."""

from __future__ import annotations

import os
from contextlib import closing

import numpy as np
import pandas as pd
import pytest

from fleets import make_known_fleet
from ml_cloud_optimizer.warehouse import (
    HOURLY_COLUMNS,
    QueryError,
    apply_schema,
    connect,
    create_database,
    drop_database,
    load_fleet,
    load_queries,
    read_hourly,
    run_query,
)

START, END = "2024-01-08", "2024-01-09"  # a one-day window for the parameterised runs
NO_WINDOW = {}
ONE_DAY = {"start": START, "end": END}


@pytest.fixture(scope="module")
def loaded(warehouse_url):
    """The known fleet in a warehouse shared by this module's read-only tests, and its pandas frame."""
    name = f"mlco_test_{os.getpid()}_queries"
    dsn = create_database(warehouse_url, name)
    try:
        with closing(connect(dsn)) as conn:
            apply_schema(conn)
            fleet = make_known_fleet(days=3)
            load_fleet(conn, fleet)
            joined = fleet.metrics.merge(fleet.entities, on="entity_id")
            joined["cost"] = joined["hourly_price"] / 12
            yield conn, joined
    finally:
        drop_database(warehouse_url, name)


def _window(frame: pd.DataFrame, params: dict) -> pd.DataFrame:
    if not params:
        return frame
    start, end = pd.Timestamp(params["start"], tz="UTC"), pd.Timestamp(params["end"], tz="UTC")
    return frame[(frame["ts"] >= start) & (frame["ts"] < end)]


def _assert_same(sql: pd.DataFrame, expected: pd.DataFrame, keys: list[str]) -> None:
    """Same rows by ``keys`` (NULL keys compared as such) and numbers equal to 1e-9."""
    assert len(sql) > 0, "the query returned nothing, so it proves nothing"
    assert list(sql.columns) == list(expected.columns)
    left = sql.copy()
    right = expected.copy()
    for key in keys:
        left[key] = left[key].astype(object).where(left[key].notna(), "<all>")
        right[key] = right[key].astype(object).where(right[key].notna(), "<all>")
    left = left.sort_values(keys, key=lambda s: s.astype(str)).reset_index(drop=True)
    right = right.sort_values(keys, key=lambda s: s.astype(str)).reset_index(drop=True)
    assert left[keys].astype(str).equals(right[keys].astype(str))
    for column in expected.columns.difference(keys):
        if not pd.api.types.is_numeric_dtype(right[column]):
            assert left[column].astype(str).tolist() == right[column].astype(str).tolist(), column
        else:
            np.testing.assert_allclose(
                left[column].astype(float), right[column].astype(float), rtol=1e-9, atol=1e-12, err_msg=column
            )


def _group_stats(frame: pd.DataFrame, by: list) -> pd.DataFrame:
    grouped = frame.groupby(by, dropna=False)
    return pd.DataFrame(
        {
            "entities": grouped["entity_id"].nunique(),
            "samples": grouped.size(),
            "cpu_mean": grouped["cpu_util"].mean(),
        }
    )


def test_catalogue_lists_every_query_with_doc_and_declared_defaults():
    catalogue = load_queries()
    assert list(catalogue) == [
        "hourly_rollup",
        "daily_rollup",
        "entity_daily_percentiles",
        "zscore_peaks",
        "cost_by_service_region",
        "rightsizing",
        "load_heatmap",
    ]
    for query in catalogue.values():
        assert query.doc and not query.sql.endswith(";")
        assert {"start", "end"} <= set(query.defaults)
        assert set(query.param_docs) == set(query.defaults)


def test_unknown_query_or_parameter_is_refused_by_name(warehouse):
    with pytest.raises(QueryError, match="no query named 'nope'"):
        run_query(warehouse, "nope")
    with pytest.raises(QueryError, match=r"no parameter 'zz'.*start, end"):
        run_query(warehouse, "load_heatmap", {"zz": "1"})


def test_a_query_file_whose_placeholders_and_params_disagree_is_refused(tmp_path):
    path = tmp_path / "q.sql"
    path.write_text("-- name: q\n-- doc: d\n-- param: a = 1 -- x\nSELECT %(a)s, %(b)s\n")
    with pytest.raises(QueryError, match=r"not declared \['b'\]"):
        load_queries(path)


@pytest.mark.parametrize("params", [NO_WINDOW, ONE_DAY], ids=["all", "one-day"])
def test_hourly_rollup_matches_pandas(loaded, params):
    conn, joined = loaded
    frame = _window(joined, params).assign(hour=lambda f: f["ts"].dt.floor("h"))
    parts = []
    for dimension in ["service", "region", "instance_type", None]:
        by = ["hour"] + ([dimension] if dimension else [])
        grouped = frame.groupby(by)
        part = _group_stats(frame, by).assign(
            cpu_max=grouped["cpu_util"].max(),
            mem_mean=grouped["mem_util"].mean(),
            requests_per_s=grouped["request_rate"].sum(min_count=1) / 12,
            cost_usd=grouped["cost"].sum(),
        )
        part = part.reset_index().assign(grouped_by=dimension or "fleet")
        parts.append(part)
    expected = pd.concat(parts, ignore_index=True)
    columns = [
        "hour",
        "grouped_by",
        "service",
        "region",
        "instance_type",
        "entities",
        "samples",
        "cpu_mean",
        "cpu_max",
        "mem_mean",
        "requests_per_s",
        "cost_usd",
    ]
    expected = expected.reindex(columns=columns)

    result = run_query(conn, "hourly_rollup", params)
    _assert_same(result, expected, ["hour", "grouped_by", "service", "region", "instance_type"])


@pytest.mark.parametrize("params", [NO_WINDOW, ONE_DAY], ids=["all", "one-day"])
def test_daily_rollup_matches_pandas(loaded, params):
    conn, joined = loaded
    frame = _window(joined, params).assign(day=lambda f: f["ts"].dt.floor("D"))
    levels = [(["service", "region", "instance_type"], 0), (["service", "region"], 1), (["service"], 3), ([], 7)]
    parts = []
    for dims, level in levels:
        by = ["day", *dims]
        grouped = frame.groupby(by)
        part = _group_stats(frame, by).assign(
            cpu_p95=grouped["cpu_util"].quantile(0.95),
            mem_mean=grouped["mem_util"].mean(),
            cost_usd=grouped["cost"].sum(),
            rollup_level=level,
        )
        parts.append(part.reset_index())
    columns = [
        "day",
        "service",
        "region",
        "instance_type",
        "rollup_level",
        "entities",
        "samples",
        "cpu_mean",
        "cpu_p95",
        "mem_mean",
        "cost_usd",
    ]
    expected = pd.concat(parts, ignore_index=True).reindex(columns=columns)

    result = run_query(conn, "daily_rollup", params)
    _assert_same(result, expected, ["day", "service", "region", "instance_type"])


@pytest.mark.parametrize("params", [NO_WINDOW, ONE_DAY, {"entity": "db-é"}], ids=["all", "one-day", "one-entity"])
def test_entity_daily_percentiles_match_pandas(loaded, params):
    conn, joined = loaded
    frame = _window(joined, {k: v for k, v in params.items() if k != "entity"})
    if "entity" in params:
        frame = frame[frame["entity_id"] == params["entity"]]
    grouped = frame.assign(day=frame["ts"].dt.floor("D")).groupby(["entity_id", "day"])
    expected = pd.DataFrame({"samples": grouped.size()})
    for metric, prefix in [("cpu_util", "cpu"), ("mem_util", "mem")]:
        for q in (50, 95, 99):
            expected[f"{prefix}_p{q}"] = grouped[metric].quantile(q / 100)
    expected = expected.reset_index()

    result = run_query(conn, "entity_daily_percentiles", params)
    _assert_same(result, expected, ["entity_id", "day"])
    assert result["mem_p50"].notna().all()  # db-é's half day without memory still has readings later


def _pandas_zscores(frame: pd.DataFrame, window: str, min_samples: int) -> pd.DataFrame:
    parts = []
    for _, series in frame.sort_values("ts").groupby("entity_id"):
        rolling = series.rolling(window, on="ts", closed="left")["cpu_util"]
        parts.append(
            series[["entity_id", "ts", "cpu_util"]].assign(
                moving_avg=rolling.mean().to_numpy(),
                moving_std=rolling.std().to_numpy(),
                window_samples=rolling.count().to_numpy(),
            )
        )
    scored = pd.concat(parts, ignore_index=True)
    scored["z"] = (scored["cpu_util"] - scored["moving_avg"]) / scored["moving_std"]
    return scored[(scored["window_samples"] >= min_samples) & (scored["moving_std"] > 0)]


@pytest.mark.parametrize(
    "params",
    [NO_WINDOW, ONE_DAY, {"window": "2 hours", "z": "2.5", "min_samples": "10"}],
    ids=["defaults", "one-day", "wider-window"],
)
def test_zscore_peaks_match_pandas_rolling_windows(loaded, params):
    conn, joined = loaded
    window = params.get("window", "1 hour").replace(" hours", "h").replace(" hour", "h")
    scored = _pandas_zscores(joined, window, int(params.get("min_samples", 6)))
    scored = _window(scored, {k: params[k] for k in ("start", "end") if k in params})
    threshold = float(params.get("z", 3))
    # a float rounding apart from the threshold could fall either side: leave those out
    clear = (scored["z"] - threshold).abs() > 1e-9
    expected = scored[clear & (scored["z"] >= threshold)]
    expected = expected.assign(window_samples=expected["window_samples"].astype("int64"))

    result = run_query(conn, "zscore_peaks", params)
    decidable = scored[clear].set_index(["entity_id", "ts"]).index
    result = result[result.set_index(["entity_id", "ts"]).index.isin(decidable)]
    _assert_same(result, expected.reset_index(drop=True), ["entity_id", "ts"])
    if not params:
        spikes = result[(result["entity_id"] == "web-a") & (result["cpu_util"] == 1.2)]
        assert len(spikes) == 3  # the three planted spikes are found


@pytest.mark.parametrize("params", [NO_WINDOW, ONE_DAY], ids=["all", "one-day"])
def test_cost_by_service_region_matches_pandas(loaded, params):
    conn, joined = loaded
    frame = _window(joined, params).assign(idle=lambda f: f["hourly_price"] * (1 - f["cpu_util"].clip(upper=1)) / 12)
    parts = []
    for dims in (["service", "region"], ["service"], []):
        by = dims or (lambda _: 0)
        grouped = frame.groupby(by)
        part = pd.DataFrame(
            {
                "entities": grouped["entity_id"].nunique(),
                "instance_hours": grouped.size() / 12,
                "cost_usd": grouped["cost"].sum(),
                "cpu_mean": grouped["cpu_util"].mean(),
                "idle_cost_usd": grouped["idle"].sum(),
            }
        )
        parts.append(part.reset_index(drop=not dims))
    columns = ["service", "region", "entities", "instance_hours", "cost_usd", "cpu_mean", "idle_cost_usd"]
    expected = pd.concat(parts, ignore_index=True).reindex(columns=columns)

    result = run_query(conn, "cost_by_service_region", params)
    _assert_same(result, expected, ["service", "region"])


def test_rightsizing_matches_pandas_and_finds_what_was_planted(loaded):
    conn, joined = loaded
    quantile, target, idle_cpu, hours = 0.95, 0.7, 0.05, 730.0
    grouped = joined.groupby("entity_id")
    usage = (
        joined.drop_duplicates("entity_id")
        .set_index("entity_id")[["service", "region", "instance_type", "vcpus", "mem_gib", "hourly_price"]]
        .assign(cpu_q=grouped["cpu_util"].quantile(quantile), mem_q=grouped["mem_util"].quantile(quantile))
    )
    vcpus_needed = np.maximum(1, usage["cpu_q"] * usage["vcpus"] / target)
    mem_needed = (usage["mem_q"] * usage["mem_gib"] / target).fillna(0)
    steps = np.arange(1, 11)
    fits = (
        (usage["vcpus"].to_numpy()[:, None] % 2**steps == 0)
        & (usage["vcpus"].to_numpy()[:, None] // 2**steps >= vcpus_needed.to_numpy()[:, None])
        & (usage["mem_gib"].to_numpy()[:, None] / 2**steps >= mem_needed.to_numpy()[:, None])
    )
    k = np.where(fits.any(axis=1), np.where(fits, steps, 0).max(axis=1), 0)
    idle = usage["cpu_q"] < idle_cpu
    expected = usage.assign(
        finding=np.where(idle, "idle", "over-provisioned"),
        recommended_vcpus=np.where(idle, 0, usage["vcpus"] // 2**k),
        recommended_mem_gib=np.where(idle, 0, usage["mem_gib"] / 2**k),
        monthly_saving_usd=usage["hourly_price"] * np.where(idle, 1, 1 - 1 / 2.0**k) * hours,
    )[idle | (k > 0)].reset_index()
    expected = expected[
        [
            "entity_id",
            "service",
            "region",
            "instance_type",
            "vcpus",
            "mem_gib",
            "cpu_q",
            "mem_q",
            "finding",
            "recommended_vcpus",
            "recommended_mem_gib",
            "monthly_saving_usd",
        ]
    ]

    result = run_query(conn, "rightsizing")
    _assert_same(result, expected, ["entity_id"])
    findings = dict(zip(result["entity_id"], result["finding"], strict=True))
    assert findings == {"batch-a": "idle", "web-a": "over-provisioned"}
    web_a = result.set_index("entity_id").loc["web-a"]
    assert (web_a["recommended_vcpus"], web_a["monthly_saving_usd"]) == (4, pytest.approx(0.40 / 2 * 730))
    assert result["monthly_saving_usd"].is_monotonic_decreasing


@pytest.mark.parametrize("params", [NO_WINDOW, ONE_DAY], ids=["all", "one-day"])
def test_load_heatmap_matches_pandas_pivot(loaded, params):
    conn, joined = loaded
    frame = _window(joined, params)
    hour, weekday = frame["ts"].dt.hour, frame["ts"].dt.dayofweek
    pivot = frame.pivot_table(index=hour, columns=weekday, values="cpu_util", aggfunc="mean")
    days = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
    expected = pivot.reindex(columns=range(7)).set_axis(days, axis=1)
    expected["all_days"] = frame.groupby(frame["ts"].dt.hour)["cpu_util"].mean()
    expected = expected.rename_axis("hour_utc").reset_index()

    result = run_query(conn, "load_heatmap", params)
    assert len(result) == 24
    _assert_same(result, expected, ["hour_utc"])


def test_read_hourly_matches_pandas_hourly_aggregates(loaded):
    conn, joined = loaded
    grouped = joined.assign(hour=joined["ts"].dt.floor("h")).groupby(["entity_id", "hour"])
    expected = pd.DataFrame(
        {
            "n_samples": grouped.size(),
            "cpu_mean": grouped["cpu_util"].mean(),
            "cpu_max": grouped["cpu_util"].max(),
            "cpu_p95": grouped["cpu_util"].quantile(0.95),
            "mem_mean": grouped["mem_util"].mean(),
            "mem_max": grouped["mem_util"].max(),
            **{c: grouped[c].mean() for c in ["net_in_kbps", "net_out_kbps", "disk_read_kbps", "disk_write_kbps"]},
            "request_rate": grouped["request_rate"].mean(),
            "peak_samples": grouped["is_peak"].sum(),
        }
    ).reset_index()

    hourly = read_hourly(conn)
    assert list(hourly.columns) == HOURLY_COLUMNS
    assert str(hourly["hour"].dtype) == "datetime64[ns, UTC]" and str(hourly["entity_id"].dtype) == "string"
    _assert_same(hourly.astype({"entity_id": object}), expected, ["entity_id", "hour"])

    some = read_hourly(conn, start="2024-01-08", end="2024-01-08 06:00", entity_ids=["web-a", "db-é"])
    assert set(some["entity_id"]) == {"web-a", "db-é"}
    assert some["hour"].min() == pd.Timestamp("2024-01-08", tz="UTC")
    assert some["hour"].max() == pd.Timestamp("2024-01-08 05:00", tz="UTC")
