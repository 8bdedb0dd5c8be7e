"""Prices: CPU and memory priced apart, from the defaults, OpenCost's JSON or an instance-price CSV."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from ml_cloud_optimizer.optimizer.capacity import recommend
from ml_cloud_optimizer.optimizer.prices import DEFAULT_PRICES, DEFAULT_SOURCE, PriceFileError, read_prices

# OpenCost's own configs/default.json (github.com/opencost/opencost, configs/default.json), verbatim.
OPENCOST_DEFAULT_JSON = """{
    "provider": "custom",
    "description": "Default prices based on GCP us-central1",
    "CPU": "0.031611",
    "spotCPU": "0.006655",
    "RAM": "0.004237",
    "spotRAM": "0.000892",
    "GPU": "0.95",
    "storage": "0.00005479452",
    "zoneNetworkEgress": "0.01",
    "regionNetworkEgress": "0.01",
    "internetNetworkEgress": "0.12",
    "natGatewayEgress": "0.045",
    "natGatewayIngress": "0.045",
    "firstFiveForwardingRulesCost": "0.0",
    "additionalForwardingRuleCost": "0.0",
    "LBIngressDataCost": "0.0"
}"""

KUBECOST_CSV = """EndTimestamp,InstanceID,Region,AssetClass,InstanceIDField,InstanceType,MarketPriceHourly,Version
# a comment line, skipped as OpenCost skips it
2019-04-17 23:34:22 UTC,i-0abc,us-east-1,node,spec.providerID,m5.xlarge,0.190,
2019-04-17 23:34:22 UTC,i-0def,us-east-1,node,spec.providerID,m5.xlarge,0.194,
2019-04-17 23:34:22 UTC,c5.large,,node,metadata.labels.node.kubernetes.io/instance-type,,0.085,
2019-04-17 23:34:22 UTC,gke-standard-cluster-1-pool-1-91dc432d-cg69,,node,metadata.name,,0.1337,
2019-04-17 23:34:22 UTC,Quadro_RTX_4000,,gpu,nvidia.com/gpu_type,,0.75,
2019-04-17 23:34:22 UTC,pvc-123,,pv,metadata.name,,0.00005,
2019-04-17 23:34:22 UTC,aws:///us-east-1a/i-0xyz,us-east-1,node,spec.providerID,,0.5,
"""


def _entities(**rows) -> pd.DataFrame:
    """entity_id -> (instance_type, region, vcpus, mem_gib)."""
    return pd.DataFrame(
        [
            {"entity_id": e, "instance_type": t, "region": r, "vcpus": float(v), "mem_gib": m, "hourly_price": 1.0}
            for e, (t, r, v, m) in rows.items()
        ]
    )


def test_defaults_are_the_built_in_list_prices_and_say_so():
    rates = DEFAULT_PRICES.rates(_entities(a=("m5.xlarge", "us-east-1", 4, 16.0)))
    assert rates.cpu.tolist() == [0.0316] and rates.ram.tolist() == [0.0042] and rates.matched == 0
    assert "built-in list-price defaults" in DEFAULT_PRICES.describe(rates)
    assert DEFAULT_PRICES.params(rates)["prices"] == DEFAULT_SOURCE


def test_opencost_custom_pricing_json(tmp_path):
    """The file OpenCost ships as its defaults, opencost/opencost configs/default.json: string values,
    CPU per core-hour and RAM per GiB-hour, spot beside them, GPU/storage/network keys ignored."""
    path = tmp_path / "default.json"
    path.write_text(OPENCOST_DEFAULT_JSON)
    prices = read_prices(path)
    assert (prices.cpu, prices.ram, prices.spot_cpu, prices.spot_ram) == (0.031611, 0.004237, 0.006655, 0.000892)
    rates = prices.rates(_entities(a=("m5.xlarge", "us-east-1", 4, 16.0)), spot=True)
    assert rates.cpu.tolist() == [0.006655] and rates.ram.tolist() == [0.000892]
    assert "OpenCost custom pricing" in prices.describe(rates) and str(path) in prices.describe(rates)


def test_opencost_json_takes_numbers_too_and_without_spot_prices_spot_is_on_demand(tmp_path):
    path = tmp_path / "p.json"
    path.write_text(json.dumps({"CPU": 0.04, "RAM": "0.005"}))
    prices = read_prices(path)
    assert prices.flat(spot=True) == prices.flat() == (0.04, 0.005)


def test_kubecost_csv_splits_a_node_price_with_the_default_ratio(tmp_path):
    path = tmp_path / "prices.csv"
    path.write_text(KUBECOST_CSV)
    prices = read_prices(path)
    entities = _entities(
        a=("m5.xlarge", "us-east-1", 4, 16.0),  # two rows of its type and region: averaged, 0.192
        b=("m5.xlarge", "eu-west-1", 4, 16.0),  # no row for eu-west-1: defaults
        c=("C5.LARGE", "ap-southeast-1", 2, 4.0),  # an instance-type label row without region: any region
        d=("r5.large", "us-east-1", 2, 16.0),  # not in the file: defaults
        **{"gke-standard-cluster-1-pool-1-91dc432d-cg69": ("n1", "us-central1", 2, 7.5)},  # by node name
    )
    rates = prices.rates(entities)
    assert rates.from_file.tolist() == [True, False, True, False, True] and rates.matched == 3
    # Split as OpenCost does for a node whose total alone is known: CPU:RAM = 0.0316:0.0042.
    # m5.xlarge at the defaults would cost 4 x 0.0316 + 16 x 0.0042 = 0.1936; the file says 0.192.
    assert rates.cpu[0] == pytest.approx(0.0316 * 0.192 / 0.1936)
    assert rates.ram[0] == pytest.approx(0.0042 * 0.192 / 0.1936)
    assert 4 * rates.cpu[0] + 16 * rates.ram[0] == pytest.approx(0.192)
    assert 2 * rates.cpu[2] + 4 * rates.ram[2] == pytest.approx(0.085)
    assert 2 * rates.cpu[4] + 7.5 * rates.ram[4] == pytest.approx(0.1337)
    assert (rates.cpu[1], rates.ram[1]) == (0.0316, 0.0042)
    described = prices.describe(rates)
    assert "Kubecost CSV pricing" in described and "3 of 5 entities" in described and "2 at the defaults" in described
    file, default = prices.source, DEFAULT_SOURCE
    assert prices.labels(rates).tolist() == [file, default, file, default, file]


def test_simple_instance_csv_with_spot_prices(tmp_path):
    path = tmp_path / "instances.csv"
    path.write_text(
        "instance_type,region,on_demand_hourly,spot_hourly\nm5.xlarge,us-east-1,0.192,0.0576\nc5.large,,0.085,\n"
    )
    prices = read_prices(path)
    entities = _entities(a=("m5.xlarge", "us-east-1", 4, 16.0), b=("c5.large", "eu-west-1", 2, 4.0))
    on_demand, spot = prices.rates(entities), prices.rates(entities, spot=True)
    assert 4 * on_demand.cpu[0] + 16 * on_demand.ram[0] == pytest.approx(0.192)
    assert 4 * spot.cpu[0] + 16 * spot.ram[0] == pytest.approx(0.0576)
    assert 2 * spot.cpu[1] + 4 * spot.ram[1] == pytest.approx(0.085)  # no spot price given: on demand


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("empty.json", "  \n", "empty price file"),
        ("broken.json", '{"CPU": "0.03",', "not valid JSON"),
        ("list.json", '["CPU", "RAM"]', "expected OpenCost's custom pricing object"),
        ("noram.json", '{"CPU": "0.03"}', "no RAM price"),
        ("word.json", '{"CPU": "cheap", "RAM": "0.004"}', "CPU 'cheap' is not a non-negative hourly price"),
        ("negative.json", '{"CPU": "-1", "RAM": "0.004"}', "CPU '-1' is not a non-negative"),
        ("zeros.json", '{"CPU": "0", "RAM": "0"}', "both 0"),
        ("other.csv", "name,price\nm5,0.1\n", "not a price file"),
        ("bad.csv", "instance_type,region,on_demand_hourly\nm5.large,us-east-1,abc\n", "line 2: on_demand_hourly"),
        ("short.csv", "instance_type,region,on_demand_hourly\nm5.large,0.1\n", "line 2: 2 fields where the header"),
        ("headonly.csv", "instance_type,on_demand_hourly\n", "a header but no instance prices"),
        (
            "pvonly.csv",
            "EndTimestamp,InstanceID,Region,AssetClass,InstanceIDField,InstanceType,MarketPriceHourly,Version\n"
            ",pvc-1,,pv,metadata.name,,0.1,\n",
            "no node prices",
        ),
    ],
)
def test_a_bad_price_file_is_one_line_naming_the_file(tmp_path, name, text, message):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(PriceFileError, match=message) as info:
        read_prices(path)
    assert str(info.value).startswith(str(path)) and "\n" not in str(info.value)


def test_a_missing_price_file_says_so(tmp_path):
    with pytest.raises(PriceFileError, match="no such price file"):
        read_prices(tmp_path / "nope.json")


def test_shrinking_cpu_saves_only_the_cpu_share():
    """An m5.xlarge (4 vCPU, 16 GiB, $0.192/h) whose CPU forecast needs 2 cores and whose memory is left alone.

    Valued at hourly_price / vcpus, halving the cores would "save" $0.096/h: half the instance,
    memory included. Priced apart at the defaults the saving is 2 cores x $0.0316 = $0.0632/h,
    and memory (16 GiB x $0.0042 = $0.0672/h) is paid before and after.
    """
    entities = _entities(a=("m5.xlarge", "us-east-1", 4, 16.0)).assign(hourly_price=0.192)
    forecasts = pd.DataFrame(
        {"entity_id": ["a"], "ts": pd.to_datetime(["2026-01-05T00:00Z"]), "p50_h1": [0.3], "p90_h1": [0.35]}
    )
    # p90 0.35 x 4 = 1.4 cores / 0.7 = 2.0 cores
    row = recommend(forecasts, entities, target_utilization=0.7).iloc[0]
    assert row["request_cores"] == 2.0
    assert row["cpu_hourly_cost"] == pytest.approx(0.0632)
    assert row["mem_hourly_cost"] == pytest.approx(0.0672)
    assert row["current_hourly_cost"] == pytest.approx(0.1264 + 0.0672)
    assert row["hourly_saving"] == pytest.approx(0.0632)
    assert not np.isclose(row["hourly_saving"], 0.096)


def test_shrinking_cpu_at_a_files_instance_price_saves_its_cpu_share(tmp_path):
    path = tmp_path / "p.csv"
    path.write_text("instance_type,region,on_demand_hourly\nm5.xlarge,us-east-1,0.192\n")
    entities = _entities(a=("m5.xlarge", "us-east-1", 4, 16.0))
    forecasts = pd.DataFrame(
        {"entity_id": ["a"], "ts": pd.to_datetime(["2026-01-05T00:00Z"]), "p50_h1": [0.3], "p90_h1": [0.35]}
    )
    row = recommend(forecasts, entities, target_utilization=0.7, prices=read_prices(path)).iloc[0]
    assert row["current_hourly_cost"] == pytest.approx(0.192)  # the instance's own price, split, adds back up
    assert row["hourly_saving"] == pytest.approx(2 * 0.0316 * 0.192 / 0.1936)  # 2 cores at $0.031339
