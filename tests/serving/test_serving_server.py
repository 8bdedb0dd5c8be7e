"""A real model server on a real loopback port: v1, v2 REST, v2 gRPC, health, metadata, metrics.

One server process per module (``python -m ml_cloud_optimizer.serving``, as the ServingRuntime runs it) serves a
tiny LightGBM champion trained with the real classes. Every answer is compared with the
offline prediction of the same bundle on the same input.
"""

from __future__ import annotations

import math
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import grpc
import numpy as np
import pandas as pd
import pytest
import tritonclient.http as triton
from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
from kserve.protocol.grpc import grpc_predict_v2_pb2_grpc as pb_grpc

from ml_cloud_optimizer.data.schema import VALUE_COLUMNS
from ml_cloud_optimizer.models.bundle import ModelBundle
from ml_cloud_optimizer.serving.local import LocalServer, free_port
from serving_support import (
    MODEL_NAME,
    feature_rows,
    grpc_history,
    history_sample,
    v1_features,
    v1_history,
    v2_history,
)

MAX_ENTITIES = 20
FORECAST = ["p50_h1", "p50_h12", "p90_h1", "p90_h12"]


@pytest.fixture(scope="module")
def server(champion_dir, tmp_path_factory):
    log = tmp_path_factory.mktemp("server") / "server.log"
    args = ("--max_batch_entities", str(MAX_ENTITIES), "--max_body_mb", "2")
    with LocalServer(champion_dir, MODEL_NAME, args=args, log_path=log) as running:
        yield running


@pytest.fixture(scope="module")
def history():
    return history_sample(entities=3)


@pytest.fixture(scope="module")
def offline(champion_dir, history):
    """What the bundle predicts offline for ``history``, one row per entity."""
    return ModelBundle.load(champion_dir).predict(history).set_index("entity_id")


def expected_capacity(p90: np.ndarray, vcpus: float, replicas: int, target: float) -> tuple[np.ndarray, np.ndarray]:
    """Cores for the peak p90 at the target, in quarter cores; replicas of ``vcpus`` to hold them."""
    cores = np.maximum(np.ceil(p90 * vcpus * replicas / target / 0.25 - 1e-9), 1) * 0.25
    return cores, np.maximum(np.ceil(cores / vcpus - 1e-9), 1)


def test_health_readiness_and_metadata(http, champion_dir):
    assert http.get("/v2/health/live").json() == {"live": True}
    assert http.get("/v2/health/ready").json() == {"ready": True}
    assert http.get(f"/v2/models/{MODEL_NAME}/ready").json() == {"name": MODEL_NAME, "ready": True}
    assert http.get(f"/v1/models/{MODEL_NAME}").json() == {"name": MODEL_NAME, "ready": True}
    assert http.get("/v2/models/absent/ready").status_code == 404

    meta = http.get(f"/v2/models/{MODEL_NAME}").json()
    inputs = {t["name"]: t for t in meta["inputs"]}
    outputs = {t["name"]: t for t in meta["outputs"]}
    n_features = len(ModelBundle.load(champion_dir).forecaster.feature_spec.columns)
    assert inputs["features"] == {"name": "features", "datatype": "FP64", "shape": [-1, n_features]}
    assert inputs["entity_id"]["datatype"] == "BYTES" and inputs["ts"]["datatype"] == "INT64"
    assert set(VALUE_COLUMNS) <= set(inputs)
    assert set(outputs) == {"entity_id", "ts", *FORECAST, "peak_prob", "recommended_vcpus", "recommended_replicas"}
    assert outputs["recommended_replicas"]["datatype"] == "INT64"


def test_v1_predict_equals_offline_prediction(http, history, offline):
    response = http.post(f"/v1/models/{MODEL_NAME}:predict", json=v1_history(history))
    assert response.status_code == 200, response.text
    served = pd.DataFrame(response.json()["predictions"]).set_index("entity_id")
    assert list(served.index) == list(pd.unique(history["entity_id"]))  # request order
    for column in [*FORECAST, "peak_prob"]:
        np.testing.assert_allclose(served[column], offline.loc[served.index, column], rtol=1e-12, atol=0)
    assert (pd.to_datetime(served["ts"], utc=True).to_numpy() == offline.loc[served.index, "ts"].to_numpy()).all()
    peak = served[["p90_h1", "p90_h12"]].max(axis=1).to_numpy()
    cores, replicas = expected_capacity(peak, vcpus=4, replicas=2, target=0.7)
    np.testing.assert_allclose(served["recommended_vcpus"], cores)
    np.testing.assert_array_equal(served["recommended_replicas"], replicas)


def test_v2_rest_infer_with_chosen_horizons(http, history, offline):
    body = {**v2_history(history), "id": "req-1", "parameters": {"horizons": "12", "target_utilization": 0.5}}
    response = http.post(f"/v2/models/{MODEL_NAME}/infer", json=body)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["id"] == "req-1" and answer["model_name"] == MODEL_NAME
    outputs = {o["name"]: o["data"] for o in answer["outputs"]}
    assert set(outputs) == {
        "entity_id",
        "ts",
        "p50_h12",
        "p90_h12",
        "peak_prob",
        "recommended_vcpus",
        "recommended_replicas",
    }
    ids = outputs["entity_id"]
    np.testing.assert_allclose(outputs["p50_h12"], offline.loc[ids, "p50_h12"], rtol=1e-12)
    np.testing.assert_allclose(outputs["p90_h12"], offline.loc[ids, "p90_h12"], rtol=1e-12)
    cores, _ = expected_capacity(np.asarray(outputs["p90_h12"]), vcpus=1, replicas=1, target=0.5)
    np.testing.assert_allclose(outputs["recommended_vcpus"], cores)
    # v2 requests may omit their id: the answer still gets one.
    response = http.post(f"/v2/models/{MODEL_NAME}/infer", json=v2_history(history))
    assert response.status_code == 200 and response.json()["id"]


def test_an_independent_v2_client_gets_the_same_answers(server, history, offline):
    """tritonclient's HTTP client, with its binary tensor extension, which this project did not write."""
    client = triton.InferenceServerClient(url=f"127.0.0.1:{server.http_port}")
    assert client.is_server_live() and client.is_server_ready() and client.is_model_ready(MODEL_NAME)
    metadata = client.get_model_metadata(MODEL_NAME)
    assert {"p50_h12", "peak_prob"} <= {o["name"] for o in metadata["outputs"]}
    n = len(history)
    columns = {
        "entity_id": ("BYTES", history["entity_id"].astype(str).to_numpy(dtype=object)),
        "ts": ("INT64", (history["ts"].astype("int64") // 10**9).to_numpy()),
        **{c: ("FP64", history[c].to_numpy(dtype="float64")) for c in VALUE_COLUMNS},
    }
    inputs = []
    for name, (datatype, values) in columns.items():
        tensor = triton.InferInput(name, [n], datatype)
        tensor.set_data_from_numpy(values, binary_data=True)
        inputs.append(tensor)
    wanted = [triton.InferRequestedOutput(name, binary_data=True) for name in ("entity_id", "p50_h12", "peak_prob")]
    result = client.infer(MODEL_NAME, inputs, outputs=wanted)
    ids = [v.decode() for v in result.as_numpy("entity_id")]
    np.testing.assert_allclose(result.as_numpy("p50_h12"), offline.loc[ids, "p50_h12"], rtol=1e-12)
    np.testing.assert_allclose(result.as_numpy("peak_prob"), offline.loc[ids, "peak_prob"], rtol=1e-12)
    client.close()


def test_grpc_infer_and_health(server, history, offline):
    with grpc.insecure_channel(server.grpc_target) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        assert stub.ServerLive(pb.ServerLiveRequest(), timeout=10).live
        assert stub.ServerReady(pb.ServerReadyRequest(), timeout=10).ready
        assert stub.ModelReady(pb.ModelReadyRequest(name=MODEL_NAME), timeout=10).ready
        meta = stub.ModelMetadata(pb.ModelMetadataRequest(name=MODEL_NAME), timeout=10)
        assert "features" in [t.name for t in meta.inputs]

        tensors = grpc_history(history)
        reply = stub.ModelInfer(pb.ModelInferRequest(model_name=MODEL_NAME, inputs=tensors), timeout=30)
        names = [o.name for o in reply.outputs]
        assert reply.id
        p50 = np.frombuffer(reply.raw_output_contents[names.index("p50_h1")], dtype=np.float64)
        np.testing.assert_allclose(p50, offline["p50_h1"].to_numpy(), rtol=1e-12)  # offline is sorted like the ids

        bad = pb.ModelInferRequest(model_name=MODEL_NAME, inputs=tensors[:1])
        with pytest.raises(grpc.RpcError) as caught:
            stub.ModelInfer(bad, timeout=30)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "inputs.ts" in caught.value.details()


def test_feature_rows_answer_as_the_history_does(http, champion_dir, history, offline):
    """Ready-made rows from the core's feature function give the history path's forecasts, v1 and v2."""
    rows = feature_rows(champion_dir, history)
    columns = ModelBundle.load(champion_dir).forecaster.feature_spec.columns
    response = http.post(f"/v1/models/{MODEL_NAME}:predict", json=v1_features(rows, columns))
    assert response.status_code == 200, response.text
    served = pd.DataFrame(response.json()["predictions"]).set_index("entity_id")
    for column in FORECAST:
        np.testing.assert_allclose(served[column], offline.loc[served.index, column], rtol=1e-12)
    assert served["peak_prob"].isna().all()  # the peak classifier reads history only

    matrix = rows[columns].to_numpy(dtype="float64")
    body = {
        "inputs": [
            {
                "name": "features",
                "datatype": "FP64",
                "shape": list(matrix.shape),
                "data": [None if math.isnan(v) else v for v in matrix.ravel().tolist()],
            },
            {
                "name": "entity_id",
                "datatype": "BYTES",
                "shape": [len(rows)],
                "data": rows["entity_id"].astype(str).tolist(),
            },
        ]
    }
    response = http.post(f"/v2/models/{MODEL_NAME}/infer", json=body)
    assert response.status_code == 200, response.text
    outputs = {o["name"]: o["data"] for o in response.json()["outputs"]}
    np.testing.assert_allclose(outputs["p50_h12"], offline.loc[outputs["entity_id"], "p50_h12"], rtol=1e-12)


def test_client_mistakes_get_a_400_that_names_the_field(http, history):
    v1 = f"/v1/models/{MODEL_NAME}:predict"
    v2 = f"/v2/models/{MODEL_NAME}/infer"
    short = v1_history(history.groupby("entity_id").tail(5))
    unknown_horizon = v1_history(history, parameters={"horizons": [6]})
    cases = [
        (v1, b"{not json", "Unrecognized request format"),
        (v2, b"{not json", "body"),
        (
            v2,
            b'{"inputs": [{"name": "cpu_util", "shape": ["a"], "datatype": "FP64", "data": [1]}]}',
            "inputs[0].shape[0]",
        ),
        (v1, b'{"instances": [{"entity_id": "a"}]}', "instances[0]"),
        (v1, short, "instances[0].history.ts"),
        (v1, unknown_horizon, "parameters.horizons"),
        (v1, {"instances": [{"entity_id": f"e{i}", "features": [0.1]} for i in range(MAX_ENTITIES + 1)]}, "instances"),
        (
            v2,
            {"inputs": [{"name": "features", "datatype": "FP64", "shape": [1, 3], "data": [1, 2, 3]}]},
            "inputs.features",
        ),
    ]
    for path, body, field in cases:
        kwargs = {"content": body} if isinstance(body, bytes) else {"json": body}
        response = http.post(path, headers={"content-type": "application/json"}, **kwargs)
        assert response.status_code == 400, (field, response.status_code, response.text)
        assert field in response.json()["error"], (field, response.text)
    big = b'{"instances": [' + b" " * (3 * 2**20) + b"]}"
    assert http.post(v1, content=big, headers={"content-type": "application/json"}).status_code == 413
    assert http.post("/v1/models/absent:predict", json={"instances": []}).status_code == 404
    assert http.get("/v2/health/ready").status_code == 200


def _metric(text: str, name: str, **labels) -> float:
    """Sum of the samples of ``name`` whose labels include ``labels``."""
    total = 0.0
    for line in text.splitlines():
        match = re.match(rf"^{re.escape(name)}(\{{.*\}})? (\S+)$", line)
        if match and all(f'{k}="{v}"' in (match.group(1) or "") for k, v in labels.items()):
            total += float(match.group(2))
    return total


def test_metrics_count_requests_errors_peaks_and_latency(http, history):
    before = http.get("/metrics").text
    response = http.post(f"/v1/models/{MODEL_NAME}:predict", json=v1_history(history))
    predictions = response.json()["predictions"]
    http.post(f"/v1/models/{MODEL_NAME}:predict", json=v1_history(history.groupby("entity_id").tail(3)))
    http.post(f"/v1/models/{MODEL_NAME}:predict", content=b"[", headers={"content-type": "application/json"})
    after = http.get("/metrics").text

    def delta(name, **labels):
        return _metric(after, name, **labels) - _metric(before, name, **labels)

    assert delta("mlco_requests_total", model_name=MODEL_NAME, protocol="v1", input="history") == 1
    assert delta("mlco_forecast_rows_total", model_name=MODEL_NAME, protocol="v1") == len(predictions)
    assert delta("mlco_request_errors_total", model_name=MODEL_NAME, kind="history_too_short") == 1
    assert delta("mlco_request_errors_total", model_name=MODEL_NAME, kind="malformed") == 1
    peaks = sum(p["peak_prob"] >= 0.5 for p in predictions)
    assert delta("mlco_predicted_peaks_total", model_name=MODEL_NAME) == peaks
    assert delta("mlco_inference_latency_seconds_count", model_name=MODEL_NAME, protocol="v1") == 1
    # KServe's own series stay beside ours, one histogram per stage. Both requests the model saw were
    # preprocessed; the short history is refused there, so only the first reached predict and postprocess.
    assert delta("request_preprocess_seconds_count", model_name=MODEL_NAME) == 2
    assert delta("request_predict_seconds_count", model_name=MODEL_NAME) == 1
    assert delta("request_postprocess_seconds_count", model_name=MODEL_NAME) == 1


def test_each_stage_of_a_request_is_timed_by_kserves_histograms(http, history):
    """preprocess (parse), predict (forecast) and postprocess (answer) each grow their KServe histogram."""
    stages = [f"request_{stage}_seconds" for stage in ("preprocess", "predict", "postprocess")]
    before = http.get("/metrics").text
    for path, body in (
        (f"/v1/models/{MODEL_NAME}:predict", v1_history(history)),
        (f"/v2/models/{MODEL_NAME}/infer", v2_history(history)),
    ):
        assert http.post(path, json=body).status_code == 200
    after = http.get("/metrics").text
    for name in stages:
        assert (
            _metric(after, f"{name}_count", model_name=MODEL_NAME)
            - _metric(before, f"{name}_count", model_name=MODEL_NAME)
            == 2
        ), name
        assert _metric(after, f"{name}_sum", model_name=MODEL_NAME) > _metric(
            before, f"{name}_sum", model_name=MODEL_NAME
        ), name


def test_feature_row_forecaster_matches_the_core_bit_for_bit(champion_dir):
    """The matrix path serving runs on feature rows (``TabularForecaster.predict_matrix``) gives exactly
    what ``TabularForecaster.predict_features`` gives, NaNs included."""
    forecaster = ModelBundle.load(champion_dir).forecaster
    rows = feature_rows(champion_dir, history_sample(entities=5, steps=40))
    rows = pd.concat([rows, rows.assign(mem_util=np.nan, cpu_util_lag_24=np.nan)], ignore_index=True)
    rows["entity_id"] = [f"row{i}" for i in range(len(rows))]
    core = forecaster.predict_features(rows, check_history=False).set_index("entity_id").loc[rows["entity_id"]]
    served = forecaster.predict_matrix(rows[forecaster.feature_columns_].to_numpy("float64"))
    assert set(served) == set(FORECAST)
    for column in FORECAST:
        np.testing.assert_array_equal(served[column], core[column].to_numpy())
    only = forecaster.predict_matrix(
        rows[forecaster.feature_columns_].to_numpy("float64"), horizons=(12,), quantiles=("p50",)
    )
    assert set(only) == {"p50_h12"}
    np.testing.assert_array_equal(only["p50_h12"], core["p50_h12"].to_numpy())


@pytest.mark.usefixtures("offline")
def test_asking_for_one_output_returns_one_output(http, champion_dir, history):
    rows = feature_rows(champion_dir, history)
    matrix = rows[ModelBundle.load(champion_dir).forecaster.feature_spec.columns].fillna(0.0).to_numpy("float64")
    body = {
        "inputs": [
            {"name": "features", "datatype": "FP64", "shape": list(matrix.shape), "data": matrix.ravel().tolist()}
        ],
        "parameters": {"horizons": "12"},
        "outputs": [{"name": "p50_h12"}],
    }
    response = http.post(f"/v2/models/{MODEL_NAME}/infer", json=body)
    assert response.status_code == 200, response.text
    outputs = response.json()["outputs"]
    assert [o["name"] for o in outputs] == ["p50_h12"] and len(outputs[0]["data"]) == len(rows)
    body["outputs"] = [{"name": "p90_h1"}]  # a horizon the parameters left out
    assert http.post(f"/v2/models/{MODEL_NAME}/infer", json=body).status_code == 400


def test_more_than_one_worker_is_refused_in_one_line(champion_dir):
    """KServe's --workers > 1 spawns processes that import ``kserve.model_server:app`` afresh
    (kserve/protocol/rest/multiprocess/server.py, a "spawn" context; rest/server.py
    ``create_application``), without this server's handlers, body limit and counters: refused,
    before the model is even loaded, rather than served without them."""
    command = [
        sys.executable,
        "-m",
        "ml_cloud_optimizer.serving",
        "--model_dir",
        str(champion_dir),
        "--model_name",
        MODEL_NAME,
        "--workers",
        "2",
        "--http_port",
        str(free_port()),
        "--grpc_port",
        str(free_port()),
    ]
    # Its own process group: a server that did start would leave spawned workers behind.
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
        start_new_session=True,
    )
    try:
        _, err = process.communicate(timeout=90)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        pytest.fail("python -m ml_cloud_optimizer.serving --workers 2 started serving instead of refusing")
    assert process.returncode == 2
    err = err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith("--workers 2:") and "replicas" in err


def test_build_model_server_refuses_workers():
    from ml_cloud_optimizer.serving.server import build_model_server

    with pytest.raises(ValueError, match="scale with replicas"):
        build_model_server(model_names=(MODEL_NAME,), http_port=free_port(), grpc_port=free_port(), workers=3)
