"""Property-based fuzzing of a live model server: random and malformed payloads never get a 5xx.

Over 1,000 payloads go to one server process on a loopback port: arbitrary JSON and bytes
to the v1 and v2 endpoints, bodies in KServe's binary tensor extension with arbitrary
headers and lengths, valid requests with one field deleted or replaced by an arbitrary
value, and malformed gRPC tensors. Every HTTP answer must be below 500 (a 4xx
carries an ``error`` message); no gRPC call may end INTERNAL or UNKNOWN; the server's
``internal`` error counter must not move; and a valid request still succeeds afterwards.
"""

from __future__ import annotations

import copy
import itertools
import json
import time

import grpc
import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
from kserve.protocol.grpc import grpc_predict_v2_pb2_grpc as pb_grpc

from ml_cloud_optimizer.serving.local import LocalServer
from serving_support import MODEL_NAME, history_sample, v1_history, v2_history

pytestmark = pytest.mark.slow  # many generated requests against a real server

V1 = f"/v1/models/{MODEL_NAME}:predict"
V2 = f"/v2/models/{MODEL_NAME}/infer"
MIN_PAYLOADS = 1000
SETTINGS = settings(
    deadline=None, database=None, derandomize=True, suppress_health_check=list(HealthCheck), print_blob=True
)

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5),
    max_leaves=25,
)
field_names = st.sampled_from(
    [
        "instances",
        "inputs",
        "parameters",
        "history",
        "features",
        "entity_id",
        "ts",
        "cpu_util",
        "name",
        "shape",
        "datatype",
        "data",
        "horizons",
        "id",
        "outputs",
    ]
)
json_objects = st.dictionaries(field_names | st.text(max_size=8), json_values, max_size=6)


@pytest.fixture(scope="module")
def server(champion_dir, tmp_path_factory):
    log = tmp_path_factory.mktemp("fuzz") / "server.log"
    args = ("--max_batch_entities", "8", "--max_history_rows", "5000")
    with LocalServer(champion_dir, MODEL_NAME, args=args, log_path=log) as running:
        yield running


@pytest.fixture(scope="module")
def http(server):
    with httpx.Client(base_url=server.http_url, timeout=30) as client:
        yield client


def _paths(value, prefix=()):
    """Every path into a JSON document, the document itself included."""
    yield prefix
    if isinstance(value, dict):
        for key, child in value.items():
            yield from _paths(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value[:3]):
            yield from _paths(child, (*prefix, index))


def _mutated(body, path, replacement, delete: bool):
    body = copy.deepcopy(body)
    if not path:
        return replacement
    parent = body
    for key in path[:-1]:
        parent = parent[key]
    if delete:
        del parent[path[-1]]
    else:
        parent[path[-1]] = replacement
    return body


def _internal_errors(http) -> float:
    text = http.get("/metrics").text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("mlco_request_errors_total{") and 'kind="internal"' in line
    )


def test_random_and_malformed_payloads_never_get_a_5xx(server, http):
    history = history_sample(entities=1, steps=30)
    valid_v1, valid_v2 = v1_history(history), v2_history(history)
    paths_v1, paths_v2 = list(_paths(valid_v1)), list(_paths(valid_v2))
    sent = itertools.count()
    internal_before = _internal_errors(http)

    def check(path: str, response: httpx.Response) -> None:
        next(sent)
        assert response.status_code < 500, (path, response.status_code, response.text[:500])
        if response.status_code >= 400:
            assert isinstance(response.json().get("error"), str), (response.status_code, response.text[:500])

    @settings(SETTINGS, max_examples=350)
    @given(path=st.sampled_from([V1, V2]), body=json_values | json_objects)
    def arbitrary_json(path, body):
        check(path, http.post(path, json=body))

    @settings(SETTINGS, max_examples=200)
    @given(
        path=st.sampled_from([V1, V2]),
        raw=st.binary(max_size=300),
        content_type=st.sampled_from(["application/json", "text/plain", "application/octet-stream"]),
    )
    def arbitrary_bytes(path, raw, content_type):
        check(path, http.post(path, content=raw, headers={"content-type": content_type}))

    @settings(SETTINGS, max_examples=120)
    @given(
        header=json_objects
        | st.just(
            {"inputs": [{"name": "cpu_util", "shape": [2], "datatype": "FP64", "parameters": {"binary_data_size": 16}}]}
        ),
        tail=st.binary(max_size=40),
        declared=st.integers(-5, 400) | st.text("0123456789ab -", max_size=6),
    )
    def binary_extension(header, tail, declared):
        """KServe's binary tensor extension: a JSON header of a declared length, then raw tensor bytes."""
        head = json.dumps(header).encode()
        length = str(len(head) if declared == 0 else declared).strip() or "x"
        response = http.post(
            V2,
            content=head + tail,
            headers={"content-type": "application/octet-stream", "inference-header-content-length": length},
        )
        check(V2, response)

    @settings(SETTINGS, max_examples=400)
    @given(protocol=st.sampled_from(["v1", "v2"]), data=st.data(), replacement=json_values, delete=st.booleans())
    def one_field_broken(protocol, data, replacement, delete):
        valid, paths, path = (valid_v1, paths_v1, V1) if protocol == "v1" else (valid_v2, paths_v2, V2)
        where = data.draw(st.sampled_from(paths))
        check(path, http.post(path, json=_mutated(valid, where, replacement, delete and bool(where))))

    for prop in (arbitrary_json, arbitrary_bytes, binary_extension, one_field_broken):
        started = time.perf_counter()
        prop()
        print(f"{prop.__name__}: {time.perf_counter() - started:.1f} s")

    grpc_sent = _fuzz_grpc(server)
    total = next(sent) + grpc_sent
    assert total >= MIN_PAYLOADS, f"only {total} payloads sent"
    assert _internal_errors(http) == internal_before
    # The server is still up and still right.
    assert http.get("/v2/health/ready").status_code == 200
    response = http.post(V1, json=valid_v1)
    assert response.status_code == 200 and len(response.json()["predictions"]) == 1


datatypes = st.sampled_from(["BYTES", "INT64", "FP64", "FP32", "BOOL", "INT8", "UINT64", "FP16", "STRING", ""])
tensor_names = st.sampled_from(["entity_id", "ts", "cpu_util", "mem_util", "features", "vcpus", "other"])


@st.composite
def grpc_tensors(draw):
    contents = pb.InferTensorContents(
        bytes_contents=draw(st.lists(st.binary(max_size=6), max_size=4)),
        int64_contents=draw(st.lists(st.integers(-(2**63), 2**63 - 1), max_size=4)),
        fp64_contents=draw(st.lists(st.floats(), max_size=4)),
        bool_contents=draw(st.lists(st.booleans(), max_size=2)),
    )
    return pb.ModelInferRequest.InferInputTensor(
        name=draw(tensor_names),
        datatype=draw(datatypes),
        shape=draw(st.lists(st.integers(-2, 5), max_size=3)),
        contents=contents,
    )


def _fuzz_grpc(server) -> int:
    sent = itertools.count()
    with grpc.insecure_channel(server.grpc_target) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)

        @settings(SETTINGS, max_examples=150)
        @given(
            tensors=st.lists(grpc_tensors(), max_size=4),
            params=st.dictionaries(
                st.sampled_from(["horizons", "target_utilization", "x"]), st.integers(-3, 20), max_size=2
            ),
        )
        def malformed_tensors(tensors, params):
            request = pb.ModelInferRequest(
                model_name=MODEL_NAME,
                inputs=tensors,
                parameters={k: pb.InferParameter(int64_param=v) for k, v in params.items()},
            )
            next(sent)
            try:
                stub.ModelInfer(request, timeout=30)
            except grpc.RpcError as exc:
                failure = exc
            else:
                return
            assert failure.code() not in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN), (
                failure.code(),
                failure.details(),
                json.dumps(str(request))[:500],
            )

        malformed_tensors()
    return next(sent)
