"""Request parsing: both protocols, both input forms, and a named 400 for every kind of mistake."""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import pytest
from kserve.protocol.infer_type import InferInput, InferRequest, RequestedOutput

from ml_cloud_optimizer.serving.errors import ERROR_KINDS, RequestError
from ml_cloud_optimizer.serving.parser import RequestParser
from ml_cloud_optimizer.serving.types import RequestLimits

FEATURES = ["cpu_util", "mem_util", "cpu_util_lag_1"]
T0 = 1_767_225_600  # 2026-01-01T00:00:00Z
MIN_HISTORY = 4


@pytest.fixture
def parser() -> RequestParser:
    return RequestParser(
        feature_names=FEATURES,
        horizons=(1, 12),
        min_history=MIN_HISTORY,
        output_names=("entity_id", "ts", "p50_h1", "p50_h12", "peak_prob"),
        limits=RequestLimits(max_entities=5, max_history_rows=100),
        target_utilization=0.7,
    )


def history_body(n_entities: int = 2, steps: int = 6) -> dict:
    instances = []
    for i in range(n_entities):
        instances.append(
            {
                "entity_id": f"vm-{i}",
                "vcpus": 2 + i,
                "replicas": 1 + i,
                "history": {
                    "ts": [T0 + 300 * k for k in range(steps)],
                    "cpu_util": [0.1 * i + 0.01 * k for k in range(steps)],
                    "mem_util": [0.5] * steps,
                },
            }
        )
    return {"instances": instances}


def v2_request(inputs: list[InferInput], parameters: dict | None = None, outputs=None) -> InferRequest:
    return InferRequest(model_name="m", infer_inputs=inputs, parameters=parameters, request_outputs=outputs)


def v2_history(entity: list[str], ts: list[int], cpu_values: list[float], **extra) -> list[InferInput]:
    n = len(entity)
    inputs = [
        InferInput("entity_id", [n], "BYTES", entity),
        InferInput("ts", [n], "INT64", ts),
        InferInput("cpu_util", [n], "FP64", cpu_values),
    ]
    inputs += [InferInput(name, [n], datatype, data) for name, (datatype, data) in extra.items()]
    return inputs


def test_v1_history_becomes_a_canonical_long_frame(parser):
    request = parser.parse_v1(history_body(2, 6))
    assert request.form == "history"
    assert request.entity_id.tolist() == ["vm-0", "vm-1"]
    frame = request.history
    assert list(frame.columns) == ["entity_id", "ts", "cpu_util", "mem_util"]
    assert len(frame) == 12
    assert str(frame["ts"].dtype) == "datetime64[ns, UTC]"
    assert frame["ts"].iloc[0] == pd.Timestamp(T0, unit="s", tz="UTC")
    assert frame.loc[frame["entity_id"] == "vm-1", "cpu_util"].iloc[-1] == pytest.approx(0.15)
    assert request.vcpus.tolist() == [2.0, 3.0] and request.replicas.tolist() == [1, 2]
    assert request.horizons == (1, 12) and request.target_utilization == 0.7


def test_a_metric_one_instance_leaves_out_is_missing_there(parser):
    body = history_body(2, 6)
    del body["instances"][1]["history"]["mem_util"]
    frame = parser.parse_v1(body).history
    mem = frame.groupby("entity_id")["mem_util"]
    assert mem.apply(lambda s: s.isna().all()).to_dict() == {"vm-0": False, "vm-1": True}
    assert frame.loc[frame["entity_id"] == "vm-0", "mem_util"].eq(0.5).all()


def test_v1_history_accepts_iso_timestamps_and_request_parameters(parser):
    body = history_body(1, 5)
    body["instances"][0]["history"]["ts"] = [
        pd.Timestamp(T0 + 300 * k, unit="s", tz="UTC").isoformat() for k in range(5)
    ]
    body["parameters"] = {"horizons": [12], "target_utilization": 0.5}
    request = parser.parse_v1(body)
    assert request.history["ts"].iloc[-1] == pd.Timestamp(T0 + 1200, unit="s", tz="UTC")
    assert request.horizons == (12,) and request.target_utilization == 0.5


def test_v1_feature_rows_as_lists_or_objects_with_null_as_missing(parser):
    body = {
        "instances": [
            {"entity_id": "a", "features": [0.4, None, 0.3]},
            {"entity_id": "a", "features": {"cpu_util": 0.5, "mem_util": 0.2, "cpu_util_lag_1": 0.45}, "ts": T0},
        ]
    }
    with pytest.raises(RequestError, match=r"instances\[0\]\.ts"):
        parser.parse_v1(body)  # ts given for one row only
    body["instances"][0]["ts"] = T0 - 300
    request = parser.parse_v1(body)
    assert request.form == "features"
    assert request.features.shape == (2, 3)
    assert np.isnan(request.features[0, 1]) and request.features[1, 2] == 0.45
    assert request.entity_id.tolist() == ["a", "a"]
    assert request.ts.iloc[1] == pd.Timestamp(T0, unit="s", tz="UTC")


def test_v2_history_reads_capacity_on_each_entitys_last_sample(parser):
    inputs = v2_history(
        ["b", "b", "b", "b", "a", "a", "a", "a"],
        [T0 + 300 * k for k in range(4)] * 2,
        [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8],
        vcpus=("FP64", [1, 1, 1, 8, 2, 2, 2, 4]),
        replicas=("INT64", [1, 1, 1, 3, 1, 1, 1, 1]),
    )
    request = parser.parse_v2(v2_request(inputs, {"horizons": "12"}))
    assert request.entity_id.tolist() == ["b", "a"]  # request order, not sorted
    assert request.vcpus.tolist() == [8.0, 4.0] and request.replicas.tolist() == [3, 1]
    assert request.horizons == (12,)
    assert request.history.groupby("entity_id")["cpu_util"].max().to_dict() == {"a": 0.8, "b": 0.4}


def test_v2_binary_tensors_parse_like_json_ones(parser):
    n = 4
    entity = InferInput("entity_id", [n], "BYTES")
    entity.set_data_from_numpy(np.array([b"x"] * n, dtype=object), binary_data=True)
    ts = InferInput("ts", [n], "INT64")
    ts.set_data_from_numpy(np.arange(T0, T0 + 300 * n, 300, dtype=np.int64), binary_data=True)
    cpu = InferInput("cpu_util", [n], "FP32")
    cpu.set_data_from_numpy(np.array([0.25, 0.5, 0.75, 1.0], dtype=np.float32), binary_data=True)
    request = parser.parse_v2(v2_request([entity, ts, cpu]))
    assert request.entity_id.tolist() == ["x"]
    assert request.history["cpu_util"].tolist() == [0.25, 0.5, 0.75, 1.0]


def test_v2_feature_rows(parser):
    features = InferInput("features", [2, 3], "FP64", [[0.1, 0.2, 0.3], [0.4, float("nan"), 0.6]])
    ids = InferInput("entity_id", [2], "BYTES", ["p", "q"])
    request = parser.parse_v2(v2_request([features, ids], outputs=[RequestedOutput("p50_h12")]))
    assert request.form == "features" and request.features.shape == (2, 3)
    assert request.entity_id.tolist() == ["p", "q"] and request.outputs == ("p50_h12",)
    assert np.isnan(request.features[1, 1])


def _set(path, value):
    def mutate(body):
        target = body
        for key in path[:-1]:
            target = target[key]
        if value is KeyError:
            del target[path[-1]]
        else:
            target[path[-1]] = value
        return body

    return mutate


V1_MISTAKES = [
    ("not an object", lambda b: [b], "body", "malformed"),
    ("no instances", _set(("instances",), KeyError), "instances", "missing_field"),
    ("empty instances", _set(("instances",), []), "instances", "wrong_type"),
    ("typo at the top", _set(("instancez",), []), "body.instancez", "unknown_field"),
    ("instance not object", _set(("instances", 1), 3), "instances[1]", "wrong_type"),
    ("no entity id", _set(("instances", 0, "entity_id"), KeyError), "instances[0].entity_id", "missing_field"),
    ("numeric entity id", _set(("instances", 0, "entity_id"), 7), "instances[0].entity_id", "wrong_type"),
    ("duplicate entity", _set(("instances", 1, "entity_id"), "vm-0"), "instances[1].entity_id", "malformed"),
    (
        "no cpu",
        _set(("instances", 1, "history", "cpu_util"), KeyError),
        "instances[1].history.cpu_util",
        "missing_field",
    ),
    (
        "unknown metric",
        _set(("instances", 0, "history", "gpu_util"), [0.1] * 6),
        "instances[0].history.gpu_util",
        "unknown_field",
    ),
    (
        "ragged columns",
        _set(("instances", 0, "history", "mem_util"), [0.5] * 5),
        "instances[0].history.mem_util",
        "bad_shape",
    ),
    (
        "string metric",
        _set(("instances", 1, "history", "cpu_util", 2), "high"),
        "instances[1].history.cpu_util",
        "wrong_type",
    ),
    (
        "null metric",
        _set(("instances", 1, "history", "mem_util", 3), None),
        "instances[1].history.mem_util",
        "non_finite",
    ),
    (
        "nested metric",
        _set(("instances", 0, "history", "cpu_util", 0), [0.1]),
        "instances[0].history.cpu_util",
        "bad_shape",
    ),
    (
        "utilisation above range",
        _set(("instances", 1, "history", "cpu_util", 4), 7.0),
        "instances[1].history.cpu_util",
        "out_of_range",
    ),
    (
        "negative utilisation",
        _set(("instances", 0, "history", "mem_util", 0), -0.1),
        "instances[0].history.mem_util",
        "out_of_range",
    ),
    (
        "float timestamps",
        _set(("instances", 0, "history", "ts", 1), 1.5e9 + 0.5),
        "instances[0].history.ts",
        "wrong_type",
    ),
    (
        "timestamp far future",
        _set(("instances", 0, "history", "ts", 5), 10**12),
        "instances[0].history.ts",
        "out_of_range",
    ),
    (
        "bad ISO text",
        _set(("instances", 0, "history", "ts"), ["yesterday"] * 6),
        "instances[0].history.ts",
        "wrong_type",
    ),
    (
        "two samples in a slot",
        _set(("instances", 1, "history", "ts", 1), T0 + 10),
        "instances[1].history.ts",
        "malformed",
    ),
    (
        "history too short",
        _set(("instances", 1, "history"), {"ts": [T0, T0 + 300], "cpu_util": [0.1, 0.2]}),
        "instances[1].history",
        "history_too_short",
    ),
    (
        "empty history",
        _set(("instances", 0, "history"), {"ts": [], "cpu_util": []}),
        "instances[0].history",
        "history_too_short",
    ),
    ("zero vcpus", _set(("instances", 0, "vcpus"), 0), "instances[0].vcpus", "out_of_range"),
    ("fractional replicas", _set(("instances", 0, "replicas"), 1.5), "instances[0].replicas", "wrong_type"),
    ("unknown horizon", _set(("parameters",), {"horizons": [6]}), "parameters.horizons", "unknown_horizon"),
    ("horizon text", _set(("parameters",), {"horizons": "soon"}), "parameters.horizons", "wrong_type"),
    (
        "target above one",
        _set(("parameters",), {"target_utilization": 1.5}),
        "parameters.target_utilization",
        "out_of_range",
    ),
    ("unknown parameter", _set(("parameters",), {"horizon": 12}), "parameters.horizon", "unknown_field"),
    ("both forms", _set(("instances", 0, "features"), [0.1, 0.2, 0.3]), "instances[0]", "malformed"),
    (
        "mixed forms",
        _set(("instances", 1), {"entity_id": "z", "features": [0.1, 0.2, 0.3]}),
        "instances[1]",
        "malformed",
    ),
]


@pytest.mark.parametrize("mutate, field, kind", [m[1:] for m in V1_MISTAKES], ids=[m[0] for m in V1_MISTAKES])
def test_every_v1_mistake_is_named(parser, mutate, field, kind):
    body = mutate(copy.deepcopy(history_body(2, 6)))
    with pytest.raises(RequestError) as caught:
        parser.parse_v1(body)
    assert kind in ERROR_KINDS
    assert caught.value.kind == kind, str(caught.value)
    assert str(caught.value).startswith(field), str(caught.value)


def test_oversized_requests_are_refused(parser):
    with pytest.raises(RequestError, match=r"^instances: 6 rows, at most 5") as caught:
        parser.parse_v1(history_body(6, 5))
    assert caught.value.kind == "oversized"
    with pytest.raises(RequestError, match=r"^instances: 120 history samples") as caught:
        parser.parse_v1(history_body(4, 30))
    assert caught.value.kind == "oversized"
    gap = history_body(1, 6)
    gap["instances"][0]["history"]["ts"][0] = 0  # 1970: 56 years of grid before the rest
    with pytest.raises(RequestError, match=r"^instances\[0\]\.history\.ts: the histories span") as caught:
        parser.parse_v1(gap)
    assert caught.value.kind == "oversized"


def test_feature_row_mistakes_are_named(parser):
    cases = [
        ({"entity_id": "a", "features": [0.1, 0.2]}, r"instances\[0\]\.features: 2 values", "bad_shape"),
        ({"entity_id": "a", "features": {"cpu_util": 0.1}}, r"instances\[0\]\.features\.mem_util", "missing_field"),
        ({"entity_id": "a", "features": [0.1, "x", 0.3]}, r"instances\[0\]\.features", "wrong_type"),
        ({"entity_id": "a", "features": "0.1,0.2,0.3"}, r"instances\[0\]\.features", "wrong_type"),
    ]
    for instance, pattern, kind in cases:
        with pytest.raises(RequestError, match=pattern) as caught:
            parser.parse_v1({"instances": [instance]})
        assert caught.value.kind == kind


V2_MISTAKES = [
    ("no inputs", lambda: [], "inputs", "missing_field"),
    ("no ts", lambda: v2_history(["a"] * 4, [T0] * 4, [0.1] * 4)[::2], "inputs.ts", "missing_field"),
    (
        "unknown input",
        lambda: v2_history(["a"] * 4, [T0 + 300 * k for k in range(4)], [0.1] * 4, cpu=("FP64", [0.1] * 4)),
        "inputs.cpu",
        "unknown_field",
    ),
    (
        "string as FP64",
        lambda: v2_history(["a"] * 4, [T0 + 300 * k for k in range(4)], ["x"] * 4),
        "inputs.cpu_util",
        "wrong_type",
    ),
    (
        "BOOL metric",
        lambda: [
            *v2_history(["a"] * 4, [T0 + 300 * k for k in range(4)], [0.1] * 4)[:2],
            InferInput("cpu_util", [4], "BOOL", [True] * 4),
        ],
        "inputs.cpu_util",
        "wrong_type",
    ),
    ("numbers as ids", lambda: v2_history([1, 2, 3, 4], [T0] * 4, [0.1] * 4), "inputs.entity_id", "wrong_type"),
    (
        "shape disagrees with data",
        lambda: [
            *v2_history(["a"] * 4, [T0 + 300 * k for k in range(4)], [0.1] * 4)[:2],
            InferInput("cpu_util", [5], "FP64", [0.1] * 4),
        ],
        "inputs.cpu_util",
        "bad_shape",
    ),
    (
        "lengths disagree",
        lambda: v2_history(["a"] * 4, [T0 + 300 * k for k in range(4)], [0.1] * 4, mem_util=("FP64", [0.1] * 3)),
        "inputs.mem_util",
        "bad_shape",
    ),
    (
        "negative dimension",
        lambda: [
            *v2_history(["a"] * 4, [T0 + 300 * k for k in range(4)], [0.1] * 4)[:2],
            InferInput("cpu_util", [-1], "FP64", [0.1] * 4),
        ],
        "inputs.cpu_util",
        "bad_shape",
    ),
    (
        "NaN metric",
        lambda: v2_history(["a"] * 4, [T0 + 300 * k for k in range(4)], [0.1, float("nan"), 0.1, 0.1]),
        "inputs.cpu_util[1]",
        "non_finite",
    ),
    (
        "inf metric",
        lambda: v2_history(["a"] * 4, [T0 + 300 * k for k in range(4)], [0.1, 0.1, float("inf"), 0.1]),
        "inputs.cpu_util[2]",
        "non_finite",
    ),
    (
        "too short",
        lambda: v2_history(["a"] * 3, [T0 + 300 * k for k in range(3)], [0.1] * 3),
        "inputs.ts",
        "history_too_short",
    ),
    (
        "inf feature",
        lambda: [InferInput("features", [1, 3], "FP64", [0.1, float("inf"), 0.2])],
        "inputs.features[0]",
        "non_finite",
    ),
    (
        "feature width",
        lambda: [InferInput("features", [2, 2], "FP64", [0.1, 0.2, 0.3, 0.4])],
        "inputs.features",
        "bad_shape",
    ),
    ("too many rows", lambda: [InferInput("features", [6, 3], "FP64", [0.1] * 18)], "inputs.features", "oversized"),
]


@pytest.mark.parametrize("build, field, kind", [m[1:] for m in V2_MISTAKES], ids=[m[0] for m in V2_MISTAKES])
def test_every_v2_mistake_is_named(parser, build, field, kind):
    with pytest.raises(RequestError) as caught:
        parser.parse_v2(v2_request(build()))
    assert caught.value.kind == kind, str(caught.value)
    assert str(caught.value).startswith(field), str(caught.value)


def test_v2_parameters_and_outputs_are_checked(parser):
    inputs = v2_history(["a"] * 4, [T0 + 300 * k for k in range(4)], [0.1] * 4)
    with pytest.raises(RequestError, match=r"^parameters\.horizons: unknown horizon 3"):
        parser.parse_v2(v2_request(inputs, {"horizons": 3}))
    with pytest.raises(RequestError, match=r"^outputs\.p99_h1: unknown output"):
        parser.parse_v2(v2_request(inputs, outputs=[RequestedOutput("p99_h1")]))
    assert parser.parse_v2(v2_request(inputs, {"horizons": "1, 12", "binary_data_output": False})).horizons == (1, 12)


def test_a_history_only_model_refuses_feature_rows():
    parser = RequestParser(feature_names=[], horizons=(1,), min_history=2)
    with pytest.raises(RequestError, match="history only") as caught:
        parser.parse_v1({"instances": [{"entity_id": "a", "features": [0.1]}]})
    assert caught.value.kind == "unsupported"
