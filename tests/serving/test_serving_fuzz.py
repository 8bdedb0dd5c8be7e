"""Property-based fuzzing of a live model server: random and malformed payloads never get a 5xx.

Over 1,000 payloads go to one server process on a loopback port: arbitrary JSON and bytes
to the v1 and v2 endpoints, bodies in KServe's binary tensor extension with arbitrary
headers and lengths, valid requests with one field deleted or replaced by an arbitrary
value, malformed gRPC tensors, and valid requests (history and feature rows, v1, v2 REST
and gRPC) with one number, or a whole column, set to an extreme: 1e308, -1e308, 1e-300,
-0.0, integers past 64 bits, zero, negatives, and NaN and infinities where the wire can
carry them (gRPC; bare ``NaN`` tokens in JSON, which the parser refuses). Every HTTP answer
must be below 500 (a 4xx carries an ``error`` message, which names the field for the number
mutations); no gRPC call may end INTERNAL or UNKNOWN; an answer that does succeed sizes
capacity finitely (replicas in ``[1, MAX_RECOMMENDED_REPLICAS]``); the server's ``internal``
error counter must not move; and a valid request still succeeds afterwards.
"""

from __future__ import annotations

import copy
import itertools
import json
import math
import time

import grpc
import httpx
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
from kserve.protocol.grpc import grpc_predict_v2_pb2_grpc as pb_grpc

from ml_cloud_optimizer.models.bundle import ModelBundle
from ml_cloud_optimizer.serving.local import LocalServer
from ml_cloud_optimizer.serving.types import MAX_RECOMMENDED_REPLICAS, MAX_RECOMMENDED_VCPUS
from serving_support import (
    MODEL_NAME,
    feature_rows,
    grpc_history,
    history_sample,
    v1_features,
    v1_history,
    v2_history,
)

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

# Numbers at and past the edges of every bound, and of float64 and int64 themselves.
EXTREMES = [
    *(1e308, -1e308, 1e-300, -1e-300, 5e-324, -0.0, 0, 0.0, -1, 1, 0.5, 1.5, 1.5000001, 0.0099, 2048.0001),
    *(2**31, 2**53 + 1, 2**63 - 1, 2**63, 2**64 - 1, 2**64, 2**70, -(2**63) - 1, -(2**70), 10**30, 4_102_444_801),
]
# Bare JSON tokens: orjson refuses the non-finite ones, reads the rest as floats.
RAW_TOKENS = ["NaN", "Infinity", "-Infinity", "1e400", "-1e400", "1e-400", "123456789012345678901234567890"]
_RAW = "@@raw:{}@@"
numbers = (
    st.sampled_from(EXTREMES)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.integers(-(2**80), 2**80)
    | st.sampled_from(RAW_TOKENS).map(_RAW.format)
)


@pytest.fixture(scope="module")
def server(champion_dir, tmp_path_factory):
    log = tmp_path_factory.mktemp("fuzz") / "server.log"
    args = ("--max_batch_entities", "8", "--max_history_rows", "5000")
    with LocalServer(champion_dir, MODEL_NAME, args=args, log_path=log) as running:
        yield running


@pytest.fixture(scope="module")
def valid_bodies(champion_dir) -> dict[str, dict]:
    """A valid request of each protocol and form, with every optional number given."""
    bundle = ModelBundle.load(champion_dir)
    columns, horizon = list(bundle.forecaster.feature_columns_), bundle.horizons[-1]
    history = history_sample(entities=1, steps=30)
    n = len(history)
    v1_params = {"horizons": [horizon], "target_utilization": 0.7}
    v2_params = {"horizons": horizon, "target_utilization": 0.7}
    rows = feature_rows(champion_dir, history_sample(entities=2, steps=30))
    v1_rows = v1_features(rows, columns)
    epochs = (rows["ts"].astype("int64") // 10**9).tolist()
    for instance, ts in zip(v1_rows["instances"], epochs, strict=True):
        instance.update(vcpus=2, replicas=3, ts=ts)
    v2 = v2_history(history)
    v2["inputs"] += [
        {"name": "vcpus", "datatype": "FP64", "shape": [n], "data": [4.0] * n},
        {"name": "replicas", "datatype": "INT64", "shape": [n], "data": [2] * n},
    ]
    matrix = rows[columns].fillna(0.0).to_numpy(dtype="float64")
    k = len(matrix)
    v2_rows = {
        "inputs": [
            {"name": "features", "datatype": "FP64", "shape": [k, len(columns)], "data": matrix.ravel().tolist()},
            {"name": "vcpus", "datatype": "FP64", "shape": [k], "data": [2.0] * k},
            {"name": "replicas", "datatype": "INT64", "shape": [k], "data": [3] * k},
            {"name": "ts", "datatype": "INT64", "shape": [k], "data": epochs},
        ]
    }
    return {
        "v1-history": {**v1_history(history), "parameters": v1_params},
        "v1-features": {**v1_rows, "parameters": v1_params},
        "v2-history": {**v2, "parameters": v2_params},
        "v2-features": {**v2_rows, "parameters": v2_params},
    }


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


def _number_fields(body) -> dict[tuple, list[tuple]]:
    """Every number (or null) of ``body``, grouped by field: a list's elements share their list's key."""
    fields: dict[tuple, list[tuple]] = {}
    for path in _all_paths(body):
        value = _get(body, path)
        if value is None or (isinstance(value, (int, float)) and not isinstance(value, bool)):
            key = path[:-1] if isinstance(path[-1], int) else path
            fields.setdefault(key, []).append(path)
    return fields


def _all_paths(value, prefix=()):
    if isinstance(value, dict):
        for key, child in value.items():
            yield from _all_paths(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            yield from _all_paths(child, (*prefix, index))
    else:
        yield prefix


def _get(body, path):
    for key in path:
        body = body[key]
    return body


def _encode(body) -> bytes:
    """JSON, with the raw-token placeholders written as bare tokens."""
    text = json.dumps(body)
    for token in RAW_TOKENS:
        text = text.replace(json.dumps(_RAW.format(token)), token)
    return text.encode()


def _v1_field(path: tuple) -> str:
    """The field a v1 error names for a number at ``path``: ``instances[0].history.cpu_util``."""
    field = ""
    for previous, key in zip((None, *path), path, strict=False):
        if isinstance(key, int) and previous != "instances":
            break
        field += f"[{key}]" if isinstance(key, int) else f".{key}" if field else key
    return field


def _v2_fields(body: dict, path: tuple) -> tuple[str, ...]:
    """How a v2 error may name a number at ``path``: ``inputs.vcpus`` (the parser) or ``inputs[5].shape``
    (KServe's request decoding, which reads the shapes), ``parameters.horizons``."""
    if path[0] == "inputs":
        return f"inputs.{body['inputs'][path[1]]['name']}", f"inputs[{path[1]}].{path[2]}"
    return (".".join(str(key) for key in path[:2]),)


def _check_capacity(columns: dict) -> None:
    """A successful answer sizes capacity finitely: replicas at least one, cores positive, under the caps."""
    for replicas in columns.get("recommended_replicas", []):
        assert isinstance(replicas, int) and 1 <= replicas <= MAX_RECOMMENDED_REPLICAS, columns
    for cores in columns.get("recommended_vcpus", []):
        assert cores is not None and math.isfinite(cores) and 0 < cores <= MAX_RECOMMENDED_VCPUS, columns


def _internal_errors(http) -> float:
    text = http.get("/metrics").text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("mlco_request_errors_total{") and 'kind="internal"' in line
    )


def test_random_and_malformed_payloads_never_get_a_5xx(server, http, valid_bodies):
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

    @settings(SETTINGS, max_examples=250)
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

    @settings(SETTINGS, max_examples=300)
    @given(protocol=st.sampled_from(["v1", "v2"]), data=st.data(), replacement=json_values, delete=st.booleans())
    def one_field_broken(protocol, data, replacement, delete):
        valid, paths, path = (valid_v1, paths_v1, V1) if protocol == "v1" else (valid_v2, paths_v2, V2)
        where = data.draw(st.sampled_from(paths))
        check(path, http.post(path, json=_mutated(valid, where, replacement, delete and bool(where))))

    forms = sorted(valid_bodies)
    fields = {form: _number_fields(body) for form, body in valid_bodies.items()}

    @settings(SETTINGS, max_examples=500)
    @given(form=st.sampled_from(forms), data=st.data(), value=numbers, whole_column=st.booleans())
    def extreme_numbers(form, data, value, whole_column):
        """A number of a valid request, or its whole column, at an extreme: a 4xx naming it, or sane capacity."""
        body, groups = valid_bodies[form], fields[form]
        key = data.draw(st.sampled_from(sorted(groups, key=str)))
        where = data.draw(st.sampled_from(groups[key]))
        if whole_column and where != key:
            where = key
            value = [value] * len(_get(body, key))
        path = V1 if form.startswith("v1") else V2
        response = http.post(
            path, content=_encode(_mutated(body, where, value, False)), headers={"content-type": "application/json"}
        )
        check(path, response)
        if response.status_code == 200:
            answer = response.json()
            if "predictions" in answer:
                rows = answer["predictions"]
                _check_capacity({name: [row[name] for row in rows] for name in rows[0]})
            else:
                _check_capacity({out["name"]: out["data"] for out in answer["outputs"]})
        elif "@@raw:" not in json.dumps(value):
            named = (_v1_field(where),) if path == V1 else _v2_fields(body, where)
            assert response.json()["error"].startswith(named), (where, value, response.text[:300])

    for prop in (arbitrary_json, arbitrary_bytes, binary_extension, one_field_broken, extreme_numbers):
        started = time.perf_counter()
        prop()
        print(f"{prop.__name__}: {time.perf_counter() - started:.1f} s")

    grpc_sent = _fuzz_grpc(server)
    total = next(sent) + grpc_sent
    print(f"{total} payloads")
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


def _grpc_capacity(response: pb.ModelInferResponse) -> dict:
    """The capacity outputs of a gRPC answer, as lists (raw or typed contents alike)."""
    columns = {}
    for index, out in enumerate(response.outputs):
        if out.name == "recommended_replicas":
            raw = response.raw_output_contents[index] if response.raw_output_contents else None
            columns[out.name] = np.frombuffer(raw, "<i8").tolist() if raw else list(out.contents.int64_contents)
        elif out.name == "recommended_vcpus":
            raw = response.raw_output_contents[index] if response.raw_output_contents else None
            columns[out.name] = np.frombuffer(raw, "<f8").tolist() if raw else list(out.contents.fp64_contents)
    return columns


def _fuzz_grpc(server) -> int:
    sent = itertools.count()
    history = history_sample(entities=1, steps=30)
    n = len(history)
    tensor, contents = pb.ModelInferRequest.InferInputTensor, pb.InferTensorContents
    valid = [
        *grpc_history(history),
        tensor(name="vcpus", datatype="FP64", shape=[n], contents=contents(fp64_contents=[4.0] * n)),
        tensor(name="replicas", datatype="INT64", shape=[n], contents=contents(int64_contents=[2] * n)),
    ]
    numeric = [i for i, t in enumerate(valid) if t.datatype in ("FP64", "INT64")]
    int64s = st.sampled_from([int(v) for v in EXTREMES if isinstance(v, int) and -(2**63) <= v < 2**63])
    int64s = int64s | st.integers(-(2**63), 2**63 - 1)
    doubles = st.sampled_from([float(v) for v in EXTREMES]) | st.floats()  # NaN and infinities included

    def call(stub, request, where: str) -> None:
        next(sent)
        try:
            response = stub.ModelInfer(request, timeout=30)
        except grpc.RpcError as exc:
            failure = exc
        else:
            _check_capacity(_grpc_capacity(response))
            return
        assert failure.code() not in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN), (
            failure.code(),
            failure.details(),
            json.dumps(str(request))[:500],
        )
        if failure.code() == grpc.StatusCode.INVALID_ARGUMENT and where:
            assert where in failure.details(), (where, failure.details())

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
            call(stub, request, "")

        @settings(SETTINGS, max_examples=200)
        @given(data=st.data(), whole_column=st.booleans())
        def extreme_numbers(data, whole_column):
            """One element (or column) of a valid gRPC history, or a parameter, at an extreme; NaN included."""
            tensors = [copy.deepcopy(t) for t in valid]
            params = {}
            choice = data.draw(st.sampled_from([*numeric, "target_utilization", "horizons"]))
            if choice in ("target_utilization", "horizons"):
                # The v2 gRPC parameter has no double: an int64, or a number's text (which is refused).
                as_text = data.draw(st.booleans())
                param = (
                    pb.InferParameter(string_param=repr(data.draw(doubles)))
                    if as_text
                    else pb.InferParameter(int64_param=data.draw(int64s))
                )
                params[choice] = param
                where = f"parameters.{choice}"
            else:
                target = tensors[choice]
                values = target.contents.fp64_contents if target.datatype == "FP64" else target.contents.int64_contents
                value = data.draw(doubles if target.datatype == "FP64" else int64s)
                rows = range(n) if whole_column else [data.draw(st.integers(0, n - 1))]
                for row in rows:
                    values[row] = value
                where = f"inputs.{target.name}"
            call(stub, pb.ModelInferRequest(model_name=MODEL_NAME, inputs=tensors, parameters=params), where)

        for prop in (malformed_tensors, extreme_numbers):
            started = time.perf_counter()
            prop()
            print(f"grpc {prop.__name__}: {time.perf_counter() - started:.1f} s")
    return next(sent)
