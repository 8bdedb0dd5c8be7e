"""Numeric bounds on every request field, history counted in samples, and capacity math that cannot overflow.

Each case here was a failure of an attacker-style review: ``vcpus: 1e308`` or
``target_utilization: 1e-300`` answered 200 with ``recommended_replicas`` of -2**63, a
history of three samples spread over ten slots passed ``min_history`` 4, and a feature row
with ``cpu_util`` -5 was forecast from. Parser cases run on ``RequestParser`` itself; the
last test sends the same requests to a real server on loopback.
"""

from __future__ import annotations

import copy
import math

import httpx
import numpy as np
import pytest
from kserve.protocol.infer_type import InferInput, InferRequest

from ml_cloud_optimizer.data.schema import UTIL_MAX
from ml_cloud_optimizer.data.synthetic import generate_fleet
from ml_cloud_optimizer.features import build_features
from ml_cloud_optimizer.features.tabular import FeatureSpec
from ml_cloud_optimizer.serving.capacity import recommend_capacity
from ml_cloud_optimizer.serving.errors import RequestError
from ml_cloud_optimizer.serving.local import LocalServer
from ml_cloud_optimizer.serving.parser import RequestParser
from ml_cloud_optimizer.serving.types import (
    MAX_RECOMMENDED_REPLICAS,
    MAX_RECOMMENDED_VCPUS,
    MAX_REPLICAS,
    MAX_VCPUS,
    MIN_TARGET_UTILIZATION,
    MIN_VCPUS,
    RequestLimits,
    feature_bounds,
)
from serving_support import MODEL_NAME, history_sample, v1_history

T0 = 1_767_225_600  # 2026-01-01T00:00:00Z
MIN_HISTORY = 4
FEATURES = ["hour", "cpu_util", "cpu_util_lag_1", "cpu_util_std_6h", "cpu_util_delta_1", "net_in_kbps", "cpu_util_z"]
BAD_KINDS = {"out_of_range", "non_finite", "wrong_type"}


@pytest.fixture
def parser() -> RequestParser:
    return RequestParser(
        feature_names=FEATURES,
        horizons=(1, 12),
        min_history=MIN_HISTORY,
        limits=RequestLimits(max_entities=5, max_history_rows=1000),
    )


def history_body(steps: int = 6) -> dict:
    series = {
        "ts": [T0 + 300 * k for k in range(steps)],
        "cpu_util": [0.4] * steps,
        "net_in_kbps": [100.0] * steps,
    }
    return {"instances": [{"entity_id": "vm", "vcpus": 4, "replicas": 2, "history": series}]}


def feature_body() -> dict:
    row = [3.0, 0.4, 0.35, 0.05, 0.05, 100.0, 1.2]
    return {"instances": [{"entity_id": "a", "features": row, "vcpus": 2}, {"entity_id": "b", "features": list(row)}]}


def _put(body: dict, path: tuple, value) -> dict:
    body = copy.deepcopy(body)
    target = body
    for key in path[:-1]:
        target = target.setdefault(key, {}) if isinstance(key, str) else target[key]
    target[path[-1]] = value
    return body


# (what, body, path, value, field the error must start with); every one of these passed before.
V1_EXTREMES = [
    ("vcpus 1e308", history_body, ("instances", 0, "vcpus"), 1e308, "instances[0].vcpus"),
    ("vcpus 1e-300", history_body, ("instances", 0, "vcpus"), 1e-300, "instances[0].vcpus"),
    ("vcpus just past the largest node", history_body, ("instances", 0, "vcpus"), MAX_VCPUS + 1, "instances[0].vcpus"),
    ("replicas 2**70", history_body, ("instances", 0, "replicas"), 2**70, "instances[0].replicas"),
    ("target 1e-300", history_body, ("parameters", "target_utilization"), 1e-300, "parameters.target_utilization"),
    ("target NaN", history_body, ("parameters", "target_utilization"), math.nan, "parameters.target_utilization"),
    ("rate 1e308", history_body, ("instances", 0, "history", "net_in_kbps", 2), 1e308, "instances[0].history.net_in"),
    ("ts 2**70", history_body, ("instances", 0, "history", "ts", 1), 2**70, "instances[0].history.ts"),
    ("cpu 2**70", history_body, ("instances", 0, "history", "cpu_util", 3), 2**70, "instances[0].history.cpu_util"),
    ("vcpus of a feature row", feature_body, ("instances", 0, "vcpus"), 1e308, "instances[0].vcpus"),
    ("feature cpu -5", feature_body, ("instances", 1, "features", 1), -5.0, "instances[1].features.cpu_util"),
    ("feature lag 1e308", feature_body, ("instances", 0, "features", 2), 1e308, "instances[0].features.cpu_util_lag_1"),
    ("feature hour 25", feature_body, ("instances", 1, "features", 0), 25.0, "instances[1].features.hour"),
    ("feature z 1e308", feature_body, ("instances", 1, "features", 6), 1e308, "instances[1].features.cpu_util_z"),
    ("feature rate -1e-300", feature_body, ("instances", 0, "features", 5), -1e-300, "instances[0].features.net_in"),
    ("feature-row ts 1e308", feature_body, ("instances", 0, "ts"), 1e308, "instances[0].ts"),
]


@pytest.mark.parametrize("build, path, value, field", [c[1:] for c in V1_EXTREMES], ids=[c[0] for c in V1_EXTREMES])
def test_every_v1_number_outside_its_bounds_is_refused_by_name(parser, build, path, value, field):
    body = _put(build(), path, value)
    if path[-1] == "ts":
        body["instances"][1]["ts"] = T0
    with pytest.raises(RequestError) as caught:
        parser.parse_v1(body)
    assert str(caught.value).startswith(field), str(caught.value)
    assert caught.value.kind in BAD_KINDS, str(caught.value)


def test_a_float_timestamp_is_range_checked_before_it_is_cast(parser):
    """1e308 used to wrap around to -2**63 in the int64 cast, and the error quoted that number."""
    body = _put(history_body(), ("instances", 0, "history", "ts", 2), 1e308)
    with pytest.raises(RequestError, match=r"^instances\[0\]\.history\.ts: 1e\+308 epoch seconds") as caught:
        parser.parse_v1(body)
    assert caught.value.kind == "out_of_range"


def test_an_integer_too_long_to_print_is_still_a_named_400(parser):
    """``repr(10**5000)`` raises ValueError, so quoting it in the message would have been a 500."""
    for path in [("instances", 0, "replicas"), ("instances", 0, "vcpus"), ("instances", 0, "history", "cpu_util", 1)]:
        with pytest.raises(RequestError, match=r"an integer of 16610 bits") as caught:
            parser.parse_v1(_put(history_body(), path, 10**5000))
        assert caught.value.kind == "out_of_range" and caught.value.field.startswith(_v1_name(path))


def _v1_name(path: tuple) -> str:
    return "instances[0]." + ".".join(str(key) for key in path[2:] if isinstance(key, str))


def test_the_bounds_themselves_are_accepted(parser):
    body = _put(history_body(), ("instances", 0, "vcpus"), MAX_VCPUS)
    body = _put(body, ("instances", 0, "replicas"), MAX_REPLICAS)
    body = _put(body, ("parameters", "target_utilization"), MIN_TARGET_UTILIZATION)
    body = _put(body, ("instances", 0, "history", "cpu_util"), [0.0, -0.0, UTIL_MAX, 1e-300, 0.5, 0.5])
    request = parser.parse_v1(body)
    assert request.vcpus.tolist() == [MAX_VCPUS] and request.replicas.tolist() == [MAX_REPLICAS]
    assert request.target_utilization == MIN_TARGET_UTILIZATION
    assert parser.parse_v1(_put(history_body(), ("instances", 0, "vcpus"), MIN_VCPUS)).vcpus.tolist() == [MIN_VCPUS]


def _v2(inputs: list[InferInput], parameters: dict | None = None) -> InferRequest:
    return InferRequest(model_name="m", infer_inputs=inputs, parameters=parameters)


def _v2_history(n: int = 5, **extra) -> list[InferInput]:
    inputs = [
        InferInput("entity_id", [n], "BYTES", ["e"] * n),
        InferInput("ts", [n], "INT64", [T0 + 300 * k for k in range(n)]),
        InferInput("cpu_util", [n], "FP64", [0.3] * n),
    ]
    return inputs + [InferInput(name, [n], datatype, data) for name, (datatype, data) in extra.items()]


def _swap(inputs: list[InferInput], new: InferInput) -> list[InferInput]:
    """``inputs`` with the tensor of ``new``'s name replaced by ``new``."""
    return [new if inp.name == new.name else inp for inp in inputs]


V2_EXTREMES = [
    ("vcpus 1e308 on the last sample", lambda: _v2_history(vcpus=("FP64", [4, 4, 4, 4, 1e308])), "inputs.vcpus[4]"),
    ("vcpus 1e308 on an earlier sample", lambda: _v2_history(vcpus=("FP64", [1e308, 4, 4, 4, 4])), "inputs.vcpus[0]"),
    ("vcpus 1e-300", lambda: _v2_history(vcpus=("FP64", [1e-300] * 5)), "inputs.vcpus[0]"),
    ("replicas past the bound", lambda: _v2_history(replicas=("INT64", [1, 1, 1, 1, 10**7])), "inputs.replicas[4]"),
    ("rate 1e308", lambda: _v2_history(request_rate=("FP64", [1, 1, 1e308, 1, 1])), "inputs.request_rate[2]"),
    ("ts uint64 max", lambda: _swap(_v2_history(), InferInput("ts", [5], "UINT64", [2**64 - 1] * 5)), "inputs.ts[0]"),
    (
        "feature cpu -5",
        lambda: [InferInput("features", [2, 7], "FP64", [3, 0.4, 0.4, 0, 0, 1, 0, 3, -5, 0.4, 0, 0, 1, 0])],
        "inputs.features[1].cpu_util",
    ),
    (
        "feature NaN then inf",
        lambda: [InferInput("features", [1, 7], "FP64", [3, math.nan, 0.4, 0, 0, 1, math.inf])],
        "inputs.features[0].cpu_util_z",
    ),
    (
        "feature-row vcpus",
        lambda: [
            InferInput("features", [1, 7], "FP64", [3, 0.4, 0.4, 0, 0, 1, 0]),
            InferInput("vcpus", [1], "FP64", [1e308]),
        ],
        "inputs.vcpus[0]",
    ),
]


@pytest.mark.parametrize("build, field", [c[1:] for c in V2_EXTREMES], ids=[c[0] for c in V2_EXTREMES])
def test_every_v2_number_outside_its_bounds_is_refused_by_name(parser, build, field):
    with pytest.raises(RequestError) as caught:
        parser.parse_v2(_v2(build()))
    assert str(caught.value).startswith(field), str(caught.value)
    assert caught.value.kind in BAD_KINDS, str(caught.value)


@pytest.mark.parametrize("value", [1e-300, -0.0, 1e308, math.nan, math.inf])
def test_v2_target_utilization_is_bounded(parser, value):
    with pytest.raises(RequestError, match=r"^parameters\.target_utilization"):
        parser.parse_v2(_v2(_v2_history(), {"target_utilization": value}))


@pytest.mark.parametrize("text", ["1" * 5000, "\u00b2", "12,\u0661"])
def test_horizon_text_int_cannot_read_is_a_named_400(parser, text):
    """int() refuses 5,000 digits and superscripts that str.isdigit accepts: that was a ValueError, a 500."""
    for parse, body in [
        (parser.parse_v1, _put(history_body(), ("parameters", "horizons"), text)),
        (parser.parse_v2, _v2(_v2_history(), {"horizons": text})),
    ]:
        with pytest.raises(RequestError, match=r"^parameters\.horizons: ") as caught:
            parse(body)
        assert caught.value.kind == "wrong_type"


def test_a_declared_shape_cannot_wrap_around_the_size_limit(parser):
    """2**40 x 2**40 is 0 in int64 arithmetic, which used to pass the size check."""
    inputs = [*_v2_history()[:2], InferInput("cpu_util", [2**40, 2**40], "FP64", [0.1] * 5)]
    with pytest.raises(RequestError, match=r"^inputs\.cpu_util: shape") as caught:
        parser.parse_v2(_v2(inputs))
    assert caught.value.kind == "oversized"


def test_history_too_short_counts_samples_not_span(parser):
    sparse = _put(
        history_body(), ("instances", 0, "history"), {"ts": [T0, T0 + 3000, T0 + 6000], "cpu_util": [0.2] * 3}
    )
    with pytest.raises(RequestError, match=r"^instances\[0\]\.history\.ts: entity 'vm' has 3 samples") as caught:
        parser.parse_v1(sparse)
    assert caught.value.kind == "history_too_short"
    gappy = _swap(_v2_history(n=3), InferInput("ts", [3], "INT64", [T0, T0 + 300 * 20, T0 + 300 * 40]))
    with pytest.raises(RequestError, match=r"^inputs\.ts.*has 3 samples"):
        parser.parse_v2(_v2(gappy))
    # Exactly min_history samples with gaps between them is enough.
    spread = {"ts": [T0 + 300 * 7 * k for k in range(MIN_HISTORY)], "cpu_util": [0.2] * MIN_HISTORY}
    assert len(parser.parse_v1(_put(history_body(), ("instances", 0, "history"), spread)).history) == MIN_HISTORY


@pytest.mark.parametrize("target", [1e-300, 0.0, 1.5, math.nan])
def test_a_server_default_target_outside_the_bounds_fails_at_load(target):
    with pytest.raises(ValueError, match="target utilization must be in"):
        RequestParser(feature_names=[], horizons=(1,), min_history=1, target_utilization=target)


def test_capacity_stays_finite_and_positive_whatever_it_is_given():
    peak = np.array([np.inf, -np.inf, np.nan, 1e308, -1e308, 0.5, 1e-300])
    vcpus = np.array([1e308, 1e-300, 4.0, MAX_VCPUS, MIN_VCPUS, 2.0, 1e308])
    replicas = np.array([2**62, 1, 3, MAX_REPLICAS, 0, 2, 2**63 - 1])
    total, count = recommend_capacity(peak, vcpus, replicas, MIN_TARGET_UTILIZATION)
    assert count.dtype == np.int64
    assert np.all((count >= 1) & (count <= MAX_RECOMMENDED_REPLICAS)), count
    assert np.all(np.isfinite(total) & (total > 0) & (total <= MAX_RECOMMENDED_VCPUS)), total
    assert count[2] == 3 and total[2] == 12.0  # no forecast: keep the 3 x 4 vCPUs running now
    assert total[5] == pytest.approx(200.0)  # 0.5 x 2 vCPUs x 2 replicas = 2 cores, at 1 % busy
    for target, granularity in [(1e-300, 0.25), (0.0, 0.25), (1.5, 0.25), (0.7, 0.0), (0.7, 1e308)]:
        with pytest.raises(ValueError, match="must be in"):
            recommend_capacity(peak, vcpus, replicas, target, granularity)


def test_capacity_at_the_corners_of_the_bounds_is_the_plain_formula():
    """The caps never bind inside the bounds: the largest answer is still exact."""
    total, count = recommend_capacity(np.array([UTIL_MAX]), np.array([MAX_VCPUS]), np.array([MAX_REPLICAS]), 0.01)
    expected = UTIL_MAX * MAX_VCPUS * MAX_REPLICAS / MIN_TARGET_UTILIZATION
    assert total[0] == pytest.approx(expected) and count[0] == math.ceil(UTIL_MAX * MAX_REPLICAS / 0.01)
    assert count[0] < MAX_RECOMMENDED_REPLICAS and total[0] < MAX_RECOMMENDED_VCPUS


def test_the_feature_bounds_refuse_nothing_the_feature_function_builds():
    """Every column of real feature rows lies inside its bound, so only forged rows are refused."""
    spec = FeatureSpec()
    rows = build_features(generate_fleet(3 * 288 * 8, entities=3, seed=11).metrics, spec)
    matrix = rows[spec.columns].to_numpy(dtype="float64")
    for j, name in enumerate(spec.columns):
        low, high = feature_bounds(name)
        column = matrix[:, j][~np.isnan(matrix[:, j])]
        assert column.size and low <= column.min() and column.max() <= high, (name, low, high)
    parser = RequestParser(feature_names=spec.columns, horizons=(1,), min_history=1)
    body = {
        "instances": [
            {"entity_id": str(i), "features": [None if np.isnan(v) else v for v in row]}
            for i, row in enumerate(matrix[-5:].tolist())
        ]
    }
    assert parser.parse_v1(body).features.shape == (5, len(spec.columns))
    assert feature_bounds("cpu_util") == (0.0, UTIL_MAX)


@pytest.mark.slow
def test_a_real_server_refuses_extremes_with_a_400_naming_the_field(champion_dir, tmp_path):
    valid = v1_history(history_sample(entities=1, steps=30))
    cases = [
        (("instances", 0, "vcpus"), 1e308, "instances[0].vcpus"),
        (("instances", 0, "vcpus"), 1e-300, "instances[0].vcpus"),
        (("parameters", "target_utilization"), 1e-300, "parameters.target_utilization"),
    ]
    with LocalServer(champion_dir, MODEL_NAME, log_path=tmp_path / "server.log") as server:
        with httpx.Client(base_url=server.http_url, timeout=30) as http:
            url = f"/v1/models/{MODEL_NAME}:predict"
            for path, value, field in cases:
                response = http.post(url, json=_put(valid, path, value))
                assert response.status_code == 400, (field, response.status_code, response.text[:300])
                assert response.json()["error"].startswith(field), response.text[:300]
            # The largest request the bounds allow is answered, with a finite, positive sizing.
            body = _put(_put(valid, ("instances", 0, "vcpus"), MAX_VCPUS), ("instances", 0, "replicas"), MAX_REPLICAS)
            body = _put(body, ("parameters", "target_utilization"), MIN_TARGET_UTILIZATION)
            response = http.post(url, json=body)
            assert response.status_code == 200, response.text[:300]
            row = response.json()["predictions"][0]
            assert 1 <= row["recommended_replicas"] <= MAX_RECOMMENDED_REPLICAS
            assert 0 < row["recommended_vcpus"] <= MAX_RECOMMENDED_VCPUS
