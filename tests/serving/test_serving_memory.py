"""A real model server serving a memory champion: memory forecasts, memory inputs and answers, memory metadata.

One server process (``python -m ml_cloud_optimizer.serving``, no flag naming the resource: the
bundle carries it) serves a small LightGBM champion with a peak classifier, both trained on the
memory view of a generated fleet. Every answer is compared with the offline prediction of the
same bundle, and with memory itself.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ml_cloud_optimizer.data.synthetic import generate_fleet
from ml_cloud_optimizer.features import build_features
from ml_cloud_optimizer.models.bundle import ModelBundle
from ml_cloud_optimizer.models.peak import PeakClassifier
from ml_cloud_optimizer.models.tabular import LightGBMForecaster
from ml_cloud_optimizer.resources import as_target, data_names
from ml_cloud_optimizer.serving.local import LocalServer
from ml_cloud_optimizer.serving.model import ForecastModel
from serving_support import MODEL_NAME, history_sample, v1_history, v2_history

V1 = f"/v1/models/{MODEL_NAME}:predict"
V2 = f"/v2/models/{MODEL_NAME}/infer"
FORECAST = ["p50_h1", "p50_h12", "p90_h1", "p90_h12"]
MEM_GIB = [16.0, 6.0, 0.5]


@pytest.fixture(scope="module")
def mem_champion(tmp_path_factory):
    fleet = generate_fleet(4 * 288 * 6, entities=4, seed=3)
    view = as_target(fleet.metrics, "mem")
    forecaster = LightGBMForecaster(n_estimators=40, max_train_rows=10_000, n_jobs=1).fit(view)
    peak = PeakClassifier(n_estimators=20, early_stopping_rounds=5).fit(view)
    directory = tmp_path_factory.mktemp("mem") / "champion-mem"
    return ModelBundle(forecaster, peak, {"source": "tests", "target": "mem"}).save(directory)


@pytest.fixture(scope="module")
def server(mem_champion, tmp_path_factory):
    log = tmp_path_factory.mktemp("server") / "server.log"
    with LocalServer(mem_champion, MODEL_NAME, log_path=log) as running:
        yield running


@pytest.fixture(scope="module")
def history():
    return history_sample(entities=3)


@pytest.fixture(scope="module")
def offline(mem_champion, history):
    return ModelBundle.load(mem_champion).predict(history).set_index("entity_id")


def memory_body(history: pd.DataFrame) -> dict:
    """``v1_history``'s body with each instance's memory size in place of its vCPUs and replicas."""
    body = v1_history(history)
    for instance, gib in zip(body["instances"], MEM_GIB, strict=True):
        del instance["vcpus"], instance["replicas"]
        instance["mem_gib"] = gib
    return body


def expected_mem_gib(p90_peak, observed_peak, mem_gib, target: float) -> np.ndarray:
    """GiB of one replica: the forecast peak at the target, never below the highest sample, in 16 MiB steps."""
    need = np.maximum(np.asarray(p90_peak) / target, np.asarray(observed_peak)) * np.asarray(mem_gib)
    return np.maximum(np.ceil(need * 64 - 1e-9), 1) / 64


def test_metadata_names_memory(http, mem_champion):
    meta = http.get(f"/v2/models/{MODEL_NAME}").json()
    assert meta["platform"] == "mlco-forecast/mem"
    inputs = {t["name"]: t for t in meta["inputs"]}
    outputs = {t["name"] for t in meta["outputs"]}
    assert inputs["mem_gib"]["datatype"] == "FP64" and not {"vcpus", "replicas"} & set(inputs)
    assert outputs == {"entity_id", "ts", *FORECAST, "peak_prob", "recommended_mem_gib"}
    n_features = len(ModelBundle.load(mem_champion).forecaster.feature_spec.columns)
    assert inputs["features"]["shape"] == [-1, n_features]


def test_v1_history_forecasts_memory(http, history, offline):
    response = http.post(V1, json=memory_body(history))
    assert response.status_code == 200, response.text
    served = pd.DataFrame(response.json()["predictions"]).set_index("entity_id")
    assert list(served.index) == list(pd.unique(history["entity_id"]))
    assert set(served.columns) == {"ts", *FORECAST, "peak_prob", "recommended_mem_gib"}
    for column in [*FORECAST, "peak_prob"]:
        np.testing.assert_allclose(served[column], offline.loc[served.index, column], rtol=1e-12, atol=0)
    # Memory forecasts: near each entity's last memory reading, not its CPU.
    last = history.groupby("entity_id").tail(1).set_index("entity_id").loc[served.index]
    assert (served["p50_h1"] - last["mem_util"]).abs().max() < 0.1
    assert (served["p50_h1"] - last["mem_util"]).abs().sum() < (served["p50_h1"] - last["cpu_util"]).abs().sum()
    highest = history.groupby("entity_id")["mem_util"].max().loc[served.index]
    want = expected_mem_gib(served[["p90_h1", "p90_h12"]].max(axis=1), highest, MEM_GIB, 0.7)
    np.testing.assert_allclose(served["recommended_mem_gib"], want)
    assert (served["recommended_mem_gib"].to_numpy() >= highest.to_numpy() * MEM_GIB).all()


def test_v2_history_forecasts_memory(http, history, offline):
    body = v2_history(history)
    n = len(history)
    body["inputs"].append({"name": "mem_gib", "datatype": "FP64", "shape": [n], "data": [8.0] * n})
    body["parameters"] = {"horizons": "12", "target_utilization": 0.5}
    response = http.post(V2, json=body)
    assert response.status_code == 200, response.text
    outputs = {o["name"]: o for o in response.json()["outputs"]}
    assert set(outputs) == {"entity_id", "ts", "p50_h12", "p90_h12", "peak_prob", "recommended_mem_gib"}
    assert outputs["recommended_mem_gib"]["datatype"] == "FP64"
    ids = outputs["entity_id"]["data"]
    np.testing.assert_allclose(outputs["p50_h12"]["data"], offline.loc[ids, "p50_h12"], rtol=1e-12)
    highest = history.groupby("entity_id")["mem_util"].max().loc[ids]
    want = expected_mem_gib(outputs["p90_h12"]["data"], highest, 8.0, 0.5)
    np.testing.assert_allclose(outputs["recommended_mem_gib"]["data"], want)


def test_history_without_memory_is_refused_naming_the_field(http, history):
    body = memory_body(history)
    del body["instances"][1]["history"]["mem_util"]
    response = http.post(V1, json=body)
    assert response.status_code == 400
    assert response.json()["error"] == "instances[1].history.mem_util: missing"

    v2 = v2_history(history)
    v2["inputs"] = [t for t in v2["inputs"] if t["name"] != "mem_util"]
    response = http.post(V2, json=v2)
    assert response.status_code == 400
    assert response.json()["error"] == "inputs.mem_util: missing"


def test_cpu_sizing_inputs_are_unknown_to_a_memory_model(http, history):
    response = http.post(V1, json=v1_history(history))  # vcpus and replicas, as for a CPU model
    assert response.status_code == 400
    error = response.json()["error"]
    assert error.startswith("instances[0].vcpus: unknown field; expected entity_id, history, mem_gib")
    body = memory_body(history)
    body["instances"][2]["mem_gib"] = 0
    response = http.post(V1, json=body)
    assert response.status_code == 400 and response.json()["error"].startswith("instances[2].mem_gib: 0 is outside")


def test_a_history_without_cpu_is_enough(http, history):
    """Memory needs memory; CPU is one more input, NaN when missing, as in training."""
    body = memory_body(history)
    for instance in body["instances"]:
        del instance["history"]["cpu_util"]
    response = http.post(V1, json=body)
    assert response.status_code == 200, response.text
    served = pd.DataFrame(response.json()["predictions"]).set_index("entity_id")
    assert served["p50_h12"].notna().all()


def test_feature_rows_by_their_data_names_answer_as_history_does(http, mem_champion, history, offline):
    """Feature rows of a memory model are named as canonical data names them (``mem_util_lag_1``)."""
    spec = ModelBundle.load(mem_champion).forecaster.feature_spec
    rows = build_features(as_target(history, "mem"), spec).groupby("entity_id").tail(1)
    names = data_names(spec.columns, "mem")
    assert "mem_util_lag_1" in names and "mem_cpu_ratio" in names
    instances = [
        {
            "entity_id": str(e),
            "features": dict(zip(names, [None if np.isnan(v) else float(v) for v in row], strict=True)),
        }
        for e, row in zip(rows["entity_id"], rows[spec.columns].to_numpy(dtype="float64"), strict=True)
    ]
    response = http.post(V1, json={"instances": instances})
    assert response.status_code == 200, response.text
    served = pd.DataFrame(response.json()["predictions"]).set_index("entity_id")
    np.testing.assert_allclose(served["p50_h12"], offline.loc[served.index, "p50_h12"], rtol=1e-9)
    # The current value is the anchor: named as memory when missing.
    instances[0]["features"]["mem_util"] = None
    response = http.post(V1, json={"instances": instances})
    assert response.status_code == 400 and response.json()["error"].startswith("features[0].mem_util: missing")


def test_cpu_models_name_their_resource_and_keep_their_fields(champion_dir):
    model = ForecastModel(MODEL_NAME, champion_dir)
    model.load()
    assert model.resource == "cpu" and model.platform == "mlco-forecast/cpu"
    assert model.output_names[-2:] == ["recommended_vcpus", "recommended_replicas"]
    assert [t["name"] for t in model.get_input_types()][-3:] == ["vcpus", "replicas", "features"]
