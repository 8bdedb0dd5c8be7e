"""Request parsing and validation: a v1 JSON body or a v2 tensor request becomes one ``ForecastRequest``.

Both protocols carry the same two forms of input, and both end in the same checks, so a
client mistake gets the same answer whichever protocol it used:

* history: per entity, recent samples (``ts`` plus the canonical metrics of
  ``ml_cloud_optimizer.data.schema``), at least the model's ``min_history`` steps of them;
* feature rows: ready-made rows of the model's feature columns, in the order the v2 model
  metadata declares them (what ``ml_cloud_optimizer.features.build_features`` returns).

v1 body::

    {"instances": [{"entity_id": "web-1", "vcpus": 4, "replicas": 2,
                    "history": {"ts": [1700000000, ...], "cpu_util": [0.41, ...], "mem_util": [...]}}],
     "parameters": {"horizons": [12], "target_utilization": 0.6}}

or instances of ``{"entity_id": "web-1", "features": [...]}`` (a list in feature order, or an
object keyed by feature name; ``null`` marks a missing value, as NaN does in training).

v2 request: history as long tensors, one element per sample (``entity_id`` BYTES, ``ts``
INT64 epoch seconds, ``cpu_util`` and the other metrics FP64/FP32, optional ``vcpus`` and
``replicas``, whose value on an entity's last sample counts); or feature rows as ``features``
FP64/FP32 ``[rows, n_features]`` with optional per-row ``entity_id``, ``ts``, ``vcpus``,
``replicas``. Request parameters ``horizons`` ("1,12" or an int) and ``target_utilization``.

Every mistake raises ``RequestError``, a KServe ``InvalidInput`` (so HTTP 400 and gRPC
INVALID_ARGUMENT), whose message starts with the field at fault and whose ``kind`` feeds
the error counter.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import chain

import numpy as np
import pandas as pd
from kserve.errors import InvalidInput
from kserve.protocol.infer_type import InferInput, InferRequest, to_http_parameters

from ml_cloud_optimizer.data.schema import STEP_SECONDS, UTIL_MAX, VALUE_COLUMNS

__all__ = [
    "ERROR_KINDS",
    "HISTORY_INPUTS",
    "ForecastRequest",
    "RequestError",
    "RequestLimits",
    "RequestParser",
]

# What a client got wrong; the label values of the error counter.
ERROR_KINDS = (
    "malformed",
    "missing_field",
    "unknown_field",
    "wrong_type",
    "bad_shape",
    "non_finite",
    "out_of_range",
    "history_too_short",
    "unknown_horizon",
    "oversized",
    "unsupported",
)

# Inputs of the history form, besides the metrics themselves.
HISTORY_INPUTS = ("entity_id", "ts", *VALUE_COLUMNS, "vcpus", "replicas")
_FEATURE_ROW_INPUTS = ("features", "entity_id", "ts", "vcpus", "replicas")
_UTIL_COLUMNS = ("cpu_util", "mem_util")
_REQUIRED_HISTORY = ("ts", "cpu_util")
# Epoch seconds accepted for ``ts``: 1970 to 2100, which also keeps nanoseconds inside int64.
_TS_MAX = 4_102_444_800
_NUMERIC_V2 = {"FP64", "FP32", "FP16", "INT64", "INT32", "INT16", "INT8", "UINT64", "UINT32", "UINT16", "UINT8"}
_INTEGER_V2 = {"INT64", "INT32", "INT16", "INT8", "UINT64", "UINT32", "UINT16", "UINT8"}


class RequestError(InvalidInput):
    """A client mistake: ``field`` names where it is, ``kind`` (one of ``ERROR_KINDS``) what it is."""

    def __init__(self, field: str, message: str, kind: str):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.kind = kind


@dataclass(frozen=True)
class RequestLimits:
    """Bounds on one request, so that one client cannot take the server's memory or minutes.

    Attributes:
        max_entities: answer rows (entities, or feature rows) in one request.
        max_history_rows: history samples in one request, over all entities.
    """

    max_entities: int = 1000
    max_history_rows: int = 250_000


@dataclass
class ForecastRequest:
    """A validated request, in one of its two forms.

    Attributes:
        entity_id: one per answer row, in request order (object array of str).
        history: canonical long frame (``entity_id``, ``ts``, metrics) for history requests, else None.
        features: ``(rows, n_features)`` float64 for feature-row requests, else None.
        ts: origin of each answer row (UTC datetime64) where known, else None.
        vcpus: vCPUs of one replica of each answer row's entity.
        replicas: current replicas of each answer row's entity.
        horizons: the horizons to answer, a subset of the model's.
        target_utilization: utilisation the recommended capacity aims at.
        outputs: v2 output tensors the client asked for (None: all).
    """

    entity_id: np.ndarray
    history: pd.DataFrame | None
    features: np.ndarray | None
    ts: np.ndarray | None
    vcpus: np.ndarray
    replicas: np.ndarray
    horizons: tuple[int, ...]
    target_utilization: float
    outputs: tuple[str, ...] | None = None

    @property
    def form(self) -> str:
        """``"history"`` or ``"features"``."""
        return "history" if self.history is not None else "features"


class RequestParser:
    """Turns v1 bodies and v2 ``InferRequest`` objects into ``ForecastRequest`` objects, or says what is wrong.

    Args:
        feature_names: the model's feature columns, in order; empty if it cannot take feature rows.
        horizons: the horizons the model forecasts.
        min_history: steps of history the model needs per entity.
        output_names: every v2 output tensor the model can return.
        limits: bounds on a request.
        target_utilization: the default target utilisation of the capacity recommendation.
    """

    def __init__(
        self,
        *,
        feature_names: Sequence[str],
        horizons: Sequence[int],
        min_history: int,
        output_names: Sequence[str] = (),
        limits: RequestLimits = RequestLimits(),
        target_utilization: float = 0.7,
    ):
        self.feature_names = list(feature_names)
        self.horizons = tuple(int(h) for h in horizons)
        self.min_history = int(min_history)
        self.output_names = tuple(output_names)
        self.limits = limits
        self.target_utilization = float(target_utilization)

    # -- v1 ---------------------------------------------------------------------------------

    def parse_v1(self, body) -> ForecastRequest:
        """Parse a v1 ``{"instances": [...], "parameters": {...}}`` body."""
        if not isinstance(body, Mapping):
            raise RequestError("body", "expected a JSON object with an 'instances' list", "malformed")
        _reject_unknown(body, ("instances", "parameters"), "body")
        instances = body.get("instances")
        if instances is None:
            raise RequestError("instances", "missing; expected a list of entities", "missing_field")
        if not isinstance(instances, list) or not instances:
            raise RequestError("instances", "expected a non-empty list", "wrong_type")
        if len(instances) > self.limits.max_entities:
            raise RequestError(
                "instances", f"{len(instances)} rows, at most {self.limits.max_entities} per request", "oversized"
            )
        horizons, target = self._parameters(body.get("parameters"), "parameters")
        for i, inst in enumerate(instances):
            if not isinstance(inst, Mapping):
                raise RequestError(f"instances[{i}]", "expected an object", "wrong_type")
        has_history = ["history" in inst for inst in instances]
        has_features = ["features" in inst for inst in instances]
        for i, (h, f) in enumerate(zip(has_history, has_features)):
            if h == f:
                raise RequestError(
                    f"instances[{i}]", "give exactly one of 'history' or 'features'",
                    "malformed" if h else "missing_field",
                )
        if any(has_history) and any(has_features):
            i = next(i for i, h in enumerate(has_history) if h != has_history[0])
            raise RequestError(f"instances[{i}]", "one request takes either histories or feature rows, not both",
                               "malformed")
        if has_history[0]:
            return self._v1_history(instances, horizons, target)
        return self._v1_features(instances, horizons, target)

    def _v1_history(self, instances: list, horizons, target) -> ForecastRequest:
        ids, columns, lengths = [], {}, []
        vcpus = np.ones(len(instances))
        replicas = np.ones(len(instances), dtype=np.int64)
        for i, inst in enumerate(instances):
            where = f"instances[{i}]"
            _reject_unknown(inst, ("entity_id", "history", "vcpus", "replicas"), where)
            ids.append(_entity_id(inst.get("entity_id"), f"{where}.entity_id"))
            vcpus[i] = _positive_number(inst.get("vcpus", 1.0), f"{where}.vcpus")
            replicas[i] = _positive_int(inst.get("replicas", 1), f"{where}.replicas")
            history = inst["history"]
            if not isinstance(history, Mapping):
                raise RequestError(f"{where}.history", "expected an object of equal-length lists", "wrong_type")
            _reject_unknown(history, ("ts", *VALUE_COLUMNS), f"{where}.history")
            n = None
            for name in _REQUIRED_HISTORY:
                if name not in history:
                    raise RequestError(f"{where}.history.{name}", "missing", "missing_field")
            for name, values in history.items():
                if not isinstance(values, list):
                    raise RequestError(f"{where}.history.{name}", "expected a list", "wrong_type")
                if n is None:
                    n = len(values)
                elif len(values) != n:
                    raise RequestError(
                        f"{where}.history.{name}", f"{len(values)} values, but {n} in the columns before", "bad_shape"
                    )
            if n == 0:
                raise RequestError(f"{where}.history", "no samples", "history_too_short")
            lengths.append(n)
            for name in history:
                columns.setdefault(name, {})[i] = history[name]
        _check_unique(ids, "instances[{}].entity_id")
        total = sum(lengths)
        if total > self.limits.max_history_rows:
            raise RequestError(
                "instances", f"{total} history samples, at most {self.limits.max_history_rows} per request", "oversized"
            )
        offsets = np.concatenate([[0], np.cumsum(lengths)])

        def locate(name: str, row: int) -> str:
            i = int(np.searchsorted(offsets, row, side="right") - 1)
            return f"instances[{i}].history.{name}"

        arrays, absent = {}, {}
        for name, per_instance in columns.items():
            flat = list(chain.from_iterable(per_instance.get(i, [0.0] * lengths[i]) for i in range(len(instances))))
            arrays[name] = _json_column(flat, name, locate, allow_strings=name == "ts")
            if len(per_instance) != len(instances):
                # A metric an instance leaves out is NaN there, as in the canonical frame.
                absent[name] = np.zeros(total, dtype=bool)
                for i in set(range(len(instances))) - set(per_instance):
                    absent[name][offsets[i]:offsets[i + 1]] = True
        entity_rows = np.repeat(np.asarray(ids, dtype=object), lengths)
        history = self._history_frame(entity_rows, arrays, locate, absent)
        return ForecastRequest(
            entity_id=np.asarray(ids, dtype=object), history=history, features=None, ts=None,
            vcpus=vcpus, replicas=replicas, horizons=horizons, target_utilization=target,
        )

    def _v1_features(self, instances: list, horizons, target) -> ForecastRequest:
        self._require_feature_rows()
        width = len(self.feature_names)
        rows, ids, ts = [], [], []
        vcpus = np.ones(len(instances))
        replicas = np.ones(len(instances), dtype=np.int64)
        for i, inst in enumerate(instances):
            where = f"instances[{i}]"
            _reject_unknown(inst, ("entity_id", "features", "ts", "vcpus", "replicas"), where)
            ids.append(_entity_id(inst.get("entity_id", str(i)), f"{where}.entity_id"))
            vcpus[i] = _positive_number(inst.get("vcpus", 1.0), f"{where}.vcpus")
            replicas[i] = _positive_int(inst.get("replicas", 1), f"{where}.replicas")
            ts.append(inst.get("ts"))
            row = inst["features"]
            if isinstance(row, Mapping):
                _reject_unknown(row, self.feature_names, f"{where}.features")
                absent = [c for c in self.feature_names if c not in row]
                if absent:
                    raise RequestError(f"{where}.features.{absent[0]}", f"missing ({len(absent)} features missing)",
                                       "missing_field")
                row = [row[c] for c in self.feature_names]
            elif not isinstance(row, list):
                raise RequestError(f"{where}.features", f"expected a list of {width} numbers or an object",
                                   "wrong_type")
            if len(row) != width:
                raise RequestError(f"{where}.features", f"{len(row)} values, the model takes {width}", "bad_shape")
            rows.append(row)
        flat = list(chain.from_iterable(rows))
        matrix = _json_column(flat, "features", lambda name, r: f"instances[{r // width}].features",
                              allow_missing=True).reshape(len(rows), width)
        _check_finite(matrix, lambda r: f"instances[{r // width}].features", allow_nan=True)
        origins = None
        given = [t is not None for t in ts]
        if any(given):
            if not all(given):
                raise RequestError(f"instances[{given.index(False)}].ts", "missing, while other instances give it",
                                   "missing_field")
            origins = _timestamps(_json_column(ts, "ts", lambda n, r: f"instances[{r}].ts", allow_strings=True),
                                  lambda r: f"instances[{r}].ts")
        return ForecastRequest(
            entity_id=np.asarray(ids, dtype=object), history=None, features=matrix, ts=origins,
            vcpus=vcpus, replicas=replicas, horizons=horizons, target_utilization=target,
        )

    # -- v2 ---------------------------------------------------------------------------------

    def parse_v2(self, request: InferRequest) -> ForecastRequest:
        """Parse a v2 ``InferRequest`` (REST or gRPC)."""
        params = request.parameters
        if params is not None and request.from_grpc:
            params = to_http_parameters(params)
        params = {k: v for k, v in (params or {}).items() if k not in ("binary_data_output",)}
        horizons, target = self._parameters(params, "parameters")
        outputs = None
        if request.request_outputs:
            outputs = tuple(o.name for o in request.request_outputs)
            unknown = [o for o in outputs if o not in self.output_names]
            if unknown:
                raise RequestError(f"outputs.{unknown[0]}",
                                   f"unknown output; the model returns {', '.join(self.output_names)}", "unknown_field")
        inputs: dict[str, InferInput] = {}
        for inp in request.inputs:
            if inp.name in inputs:
                raise RequestError(f"inputs.{inp.name}", "given twice", "malformed")
            inputs[inp.name] = inp
        if not inputs:
            raise RequestError("inputs", "empty; give history tensors or 'features'", "missing_field")
        if "features" in inputs:
            parsed = self._v2_features(inputs, horizons, target)
        else:
            parsed = self._v2_history(inputs, horizons, target)
        parsed.outputs = outputs
        return parsed

    def _v2_history(self, inputs: dict[str, InferInput], horizons, target) -> ForecastRequest:
        _reject_unknown(inputs, HISTORY_INPUTS, "inputs")
        for name in ("entity_id", *_REQUIRED_HISTORY):
            if name not in inputs:
                raise RequestError(f"inputs.{name}", "missing", "missing_field")
        _check_datatype(inputs["entity_id"], "inputs.entity_id", {"BYTES"})
        _check_datatype(inputs["ts"], "inputs.ts", _INTEGER_V2 | {"BYTES"})
        for name in inputs:
            if name not in ("entity_id", "ts"):
                _check_datatype(inputs[name], f"inputs.{name}", _NUMERIC_V2)
        arrays = {name: _tensor(inp, name) for name, inp in inputs.items()}
        n = len(arrays["entity_id"])
        for name, values in arrays.items():
            if values.ndim != 1:
                raise RequestError(f"inputs.{name}", f"shape {list(values.shape)}, expected [{n}]", "bad_shape")
            if len(values) != n:
                raise RequestError(f"inputs.{name}", f"{len(values)} elements, but entity_id has {n}", "bad_shape")
        if n == 0:
            raise RequestError("inputs.entity_id", "empty", "bad_shape")
        if n > self.limits.max_history_rows:
            raise RequestError("inputs", f"{n} history samples, at most {self.limits.max_history_rows} per request",
                               "oversized")
        rows = _strings(arrays.pop("entity_id"), "inputs.entity_id")
        if arrays["ts"].dtype == object:
            arrays["ts"] = _strings(arrays["ts"], "inputs.ts").astype(str)
        entity_order = pd.unique(rows)
        if len(entity_order) > self.limits.max_entities:
            raise RequestError("inputs.entity_id", f"{len(entity_order)} entities, at most {self.limits.max_entities}"
                               " per request", "oversized")
        # The capacity inputs of each entity are read on its last sample.
        last = pd.Series(np.arange(n)).groupby(rows, sort=False).last().reindex(entity_order).to_numpy()
        vcpus = arrays.pop("vcpus", np.ones(n))
        replicas = arrays.pop("replicas", np.ones(n, dtype=np.int64))
        vcpus = _positive_array(np.asarray(vcpus, dtype="float64")[last], "inputs.vcpus")
        replicas = _positive_array(np.asarray(replicas, dtype="float64")[last], "inputs.replicas", integer=True)
        history = self._history_frame(rows, arrays, lambda name, row: f"inputs.{name}[{row}]")
        return ForecastRequest(
            entity_id=np.asarray(entity_order, dtype=object), history=history, features=None, ts=None,
            vcpus=vcpus, replicas=replicas.astype(np.int64), horizons=horizons, target_utilization=target,
        )

    def _v2_features(self, inputs: dict[str, InferInput], horizons, target) -> ForecastRequest:
        self._require_feature_rows()
        _reject_unknown(inputs, _FEATURE_ROW_INPUTS, "inputs")
        width = len(self.feature_names)
        _check_datatype(inputs["features"], "inputs.features", _NUMERIC_V2)
        matrix = _tensor(inputs["features"], "features").astype("float64", copy=False)
        if matrix.ndim == 1 and width == matrix.size:
            matrix = matrix.reshape(1, width)
        if matrix.ndim != 2 or matrix.shape[1] != width:
            raise RequestError("inputs.features", f"shape {list(matrix.shape)}, expected [rows, {width}]", "bad_shape")
        n = matrix.shape[0]
        if n == 0:
            raise RequestError("inputs.features", "no rows", "bad_shape")
        if n > self.limits.max_entities:
            raise RequestError("inputs.features", f"{n} rows, at most {self.limits.max_entities} per request",
                               "oversized")
        _check_finite(matrix, lambda r: f"inputs.features[{r // width}]", allow_nan=True)
        extra = {}
        for name in ("entity_id", "ts", "vcpus", "replicas"):
            if name in inputs:
                values = _tensor(inputs[name], name)
                if values.ndim != 1 or len(values) != n:
                    raise RequestError(f"inputs.{name}", f"shape {list(values.shape)}, expected [{n}]", "bad_shape")
                extra[name] = values
        ids = (_strings(extra["entity_id"], "inputs.entity_id") if "entity_id" in extra
               else np.arange(n).astype(str).astype(object))
        origins = None
        if "ts" in extra:
            _check_datatype(inputs["ts"], "inputs.ts", _INTEGER_V2 | {"BYTES"})
            raw = extra["ts"]
            if raw.dtype == object:
                raw = _strings(raw, "inputs.ts").astype(str)
            origins = _timestamps(raw, lambda r: f"inputs.ts[{r}]")
        vcpus = np.ones(n)
        replicas = np.ones(n, dtype=np.int64)
        if "vcpus" in extra:
            _check_datatype(inputs["vcpus"], "inputs.vcpus", _NUMERIC_V2)
            vcpus = _positive_array(extra["vcpus"].astype("float64"), "inputs.vcpus")
        if "replicas" in extra:
            _check_datatype(inputs["replicas"], "inputs.replicas", _NUMERIC_V2)
            replicas = _positive_array(extra["replicas"].astype("float64"), "inputs.replicas", integer=True)
        return ForecastRequest(
            entity_id=ids, history=None, features=matrix, ts=origins, vcpus=vcpus,
            replicas=replicas.astype(np.int64), horizons=horizons, target_utilization=target,
        )

    # -- shared -----------------------------------------------------------------------------

    def _require_feature_rows(self) -> None:
        if not self.feature_names:
            raise RequestError("features", "this model forecasts from history only; send 'history'", "unsupported")

    def _parameters(self, params, where: str) -> tuple[tuple[int, ...], float]:
        if params is None:
            return self.horizons, self.target_utilization
        if not isinstance(params, Mapping):
            raise RequestError(where, "expected an object", "wrong_type")
        _reject_unknown(params, ("horizons", "target_utilization"), where)
        horizons = self.horizons
        if "horizons" in params:
            horizons = self._horizons(params["horizons"], f"{where}.horizons")
        target = self.target_utilization
        if "target_utilization" in params:
            value = params["target_utilization"]
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise RequestError(f"{where}.target_utilization", "expected a number in (0, 1]", "wrong_type")
            if not 0.0 < value <= 1.0:
                raise RequestError(f"{where}.target_utilization", f"{value!r} is outside (0, 1]", "out_of_range")
            target = float(value)
        return horizons, target

    def _horizons(self, value, where: str) -> tuple[int, ...]:
        if isinstance(value, str):
            parts = [p.strip() for p in value.split(",")]
            if not all(p.lstrip("-").isdigit() for p in parts):
                raise RequestError(where, f"{value!r}: expected horizons in steps, like '1,12'", "wrong_type")
            value = [int(p) for p in parts]
        elif isinstance(value, int) and not isinstance(value, bool):
            value = [value]
        if not isinstance(value, list) or not value or not all(
            isinstance(h, int) and not isinstance(h, bool) for h in value
        ):
            raise RequestError(where, "expected a non-empty list of integer horizons (steps of 5 minutes)",
                               "wrong_type")
        unknown = [h for h in value if h not in self.horizons]
        if unknown:
            raise RequestError(where, f"unknown horizon {unknown[0]}; the model forecasts {list(self.horizons)}",
                               "unknown_horizon")
        return tuple(dict.fromkeys(value))

    def _history_frame(self, entity_rows: np.ndarray, arrays: dict[str, np.ndarray], locate,
                       absent: dict[str, np.ndarray] | None = None) -> pd.DataFrame:
        """Check history columns (types done) and build the canonical long frame.

        ``absent`` marks, per metric, the samples of entities that did not give it: NaN there.
        """
        absent = absent or {}
        ts = _timestamps(arrays["ts"], lambda row: locate("ts", row))
        frame = {"entity_id": pd.array(entity_rows, dtype="string"), "ts": ts}
        for name in VALUE_COLUMNS:
            if name not in arrays:
                continue
            values = np.asarray(arrays[name], dtype="float64")
            _check_finite(values, lambda row, name=name: locate(name, row), allow_nan=False)
            if name in absent:
                values = np.where(absent[name], np.nan, values)
            low_bad = values < 0
            high_bad = values > UTIL_MAX if name in _UTIL_COLUMNS else np.zeros(len(values), dtype=bool)
            bad = low_bad | high_bad
            if bad.any():
                row = int(np.argmax(bad))
                bound = f"[0, {UTIL_MAX}] (utilisation is a fraction)" if name in _UTIL_COLUMNS else ">= 0"
                raise RequestError(locate(name, row), f"{values[row]!r} is outside {bound}", "out_of_range")
            frame[name] = values
        history = pd.DataFrame(frame)
        slot = ts.astype("int64") // (STEP_SECONDS * 10**9)
        codes, _ = pd.factorize(entity_rows)
        key = pd.DataFrame({"e": codes, "s": slot})
        dup = key.duplicated()
        if dup.any():
            row = int(np.argmax(dup.to_numpy()))
            raise RequestError(locate("ts", row), f"two samples of entity {entity_rows[row]!r} in one 5-minute slot",
                               "malformed")
        span = key.groupby("e", sort=False)["s"].agg(["min", "max"])
        steps = (span["max"] - span["min"] + 1).to_numpy()
        # The model lays each entity out on its full grid: a gap of years would be millions of rows.
        if steps.sum() > self.limits.max_history_rows:
            e = int(span.index[np.argmax(steps)])
            row = int(np.argmax(codes == e))
            raise RequestError(
                locate("ts", row),
                f"the histories span {int(steps.sum())} 5-minute steps"
                f" (entity {entity_rows[row]!r}: {int(steps.max())}),"
                f" at most {self.limits.max_history_rows} per request",
                "oversized",
            )
        short = steps < self.min_history
        if short.any():
            e = int(span.index[np.argmax(short)])
            row = int(np.argmax(codes == e))
            raise RequestError(
                locate("ts", row),
                f"entity {entity_rows[row]!r} has {int(steps[np.argmax(short)])} steps of history,"
                f" the model needs at least {self.min_history}",
                "history_too_short",
            )
        return history


# -- helpers --------------------------------------------------------------------------------


def _reject_unknown(mapping: Mapping, known: Sequence[str], where: str) -> None:
    known = set(known)
    unknown = [k for k in mapping if k not in known]
    if unknown:
        raise RequestError(f"{where}.{unknown[0]}", f"unknown field; expected {', '.join(sorted(known))}",
                           "unknown_field")


def _entity_id(value, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise RequestError(where, "expected a non-empty string", "missing_field" if value is None else "wrong_type")
    return value


def _positive_number(value, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise RequestError(where, "expected a positive number", "wrong_type")
    if not np.isfinite(value) or value <= 0:
        raise RequestError(where, f"{value!r} is not a positive finite number", "out_of_range")
    return float(value)


def _positive_int(value, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise RequestError(where, "expected a positive integer", "wrong_type")
    if not 1 <= value <= 1_000_000:
        raise RequestError(where, f"{value!r} is outside [1, 1000000]", "out_of_range")
    return value


def _positive_array(values: np.ndarray, where: str, integer: bool = False) -> np.ndarray:
    bad = ~np.isfinite(values) | (values <= 0)
    if integer:
        bad |= (values != np.round(values)) | (values > 1_000_000)
    if bad.any():
        row = int(np.argmax(bad))
        what = "a positive integer" if integer else "a positive finite number"
        raise RequestError(f"{where}[{row}]", f"{values[row]!r} is not {what}", "out_of_range")
    return values


def _check_unique(ids: list[str], template: str) -> None:
    dup = pd.Series(ids).duplicated()
    if dup.any():
        i = int(np.argmax(dup.to_numpy()))
        raise RequestError(template.format(i), f"entity {ids[i]!r} appears twice", "malformed")


def _json_column(values: list, name: str, locate, *, allow_strings: bool = False,
                 allow_missing: bool = False) -> np.ndarray:
    """A flat JSON list as a 1-D array of numbers (or strings for ``ts``), typed strictly."""
    try:
        array = np.asarray(values)
    except (ValueError, TypeError, OverflowError):
        array = np.asarray(values, dtype=object)
    if array.ndim == 1 and array.dtype.kind in "iuf":
        return array
    if array.ndim == 1 and allow_strings and array.dtype.kind == "U":
        return array
    if array.ndim == 1 and allow_missing and array.dtype == object:
        is_missing = np.fromiter((v is None for v in values), dtype=bool, count=len(values))
        rest = array[~is_missing]
        if rest.size == 0 or np.asarray(rest.tolist()).dtype.kind in "iuf":
            out = np.full(len(values), np.nan)
            out[~is_missing] = np.asarray(rest.tolist(), dtype="float64")
            return out
    # The error path only: find the first offending element to name it.
    row = next(
        (i for i, v in enumerate(values) if isinstance(v, bool) or not isinstance(v, (int, float))), 0
    )
    bad = values[row] if values else None
    if isinstance(bad, (list, dict)):
        raise RequestError(locate(name, row), "expected a flat list of values", "bad_shape")
    expected = "numbers (epoch seconds) or ISO-8601 strings" if allow_strings else "numbers"
    raise RequestError(locate(name, row), f"expected {expected}, got {type(bad).__name__} {bad!r:.40}",
                       "non_finite" if bad is None else "wrong_type")


def _check_finite(values: np.ndarray, locate, *, allow_nan: bool) -> None:
    bad = np.isinf(values) if allow_nan else ~np.isfinite(values)
    if bad.any():
        flat = int(np.argmax(bad.ravel()))
        raise RequestError(locate(flat), f"{values.ravel()[flat]!r} is not a finite number", "non_finite")


def _timestamps(raw: np.ndarray, locate) -> pd.Series:
    """Epoch seconds or ISO-8601 strings as UTC timestamps."""
    if raw.dtype.kind in "iu":
        bad = (raw < 0) | (raw > _TS_MAX)
        if bad.any():
            row = int(np.argmax(bad))
            raise RequestError(locate(row), f"{raw[row]!r} epoch seconds is outside 1970-2100", "out_of_range")
        return pd.Series(pd.to_datetime(raw.astype("int64"), unit="s", utc=True))
    if raw.dtype.kind == "f":
        bad = ~np.isfinite(raw) | (raw != np.round(raw))
        if bad.any():
            row = int(np.argmax(bad))
            raise RequestError(locate(row), f"{raw[row]!r}: expected whole epoch seconds", "wrong_type")
        return _timestamps(raw.astype("int64"), locate)
    ts = pd.Series(pd.to_datetime(pd.Series(raw, dtype=object), utc=True, format="ISO8601", errors="coerce"))
    if ts.isna().any():
        row = int(np.argmax(ts.isna().to_numpy()))
        raise RequestError(locate(row), f"{str(raw[row])[:40]!r} is not an ISO-8601 timestamp", "wrong_type")
    seconds = ts.astype("int64") // 10**9
    bad = (seconds < 0) | (seconds > _TS_MAX)
    if bad.any():
        row = int(np.argmax(bad.to_numpy()))
        raise RequestError(locate(row), f"{raw[row]!r} is outside 1970-2100", "out_of_range")
    return ts


def _tensor(inp: InferInput, name: str) -> np.ndarray:
    """A v2 input as a numpy array, with shape and datatype mistakes as ``RequestError``."""
    where = f"inputs.{name}"
    shape = list(inp.shape or [])
    if any((not isinstance(d, int)) or d < 0 for d in shape):
        raise RequestError(where, f"shape {shape} has a negative or unknown dimension", "bad_shape")
    size = int(np.prod(shape, dtype=np.int64)) if shape else 1
    if size > 50_000_000:
        raise RequestError(where, f"shape {shape} is too large", "oversized")
    try:
        array = inp.as_numpy()
    except InvalidInput as exc:
        raise RequestError(where, f"datatype {inp.datatype!r} is not supported: {exc}", "wrong_type") from None
    except (ValueError, TypeError, OverflowError) as exc:
        kind = "bad_shape" if "reshape" in str(exc) or "shape" in str(exc) else "wrong_type"
        raise RequestError(where, f"data do not fit datatype {inp.datatype} and shape {shape}: {exc}", kind) from None
    if array.ndim == 2 and array.shape[1] == 1 and name != "features":
        array = array[:, 0]
    return array


def _check_datatype(inp: InferInput, where: str, allowed: set[str]) -> None:
    if inp.datatype not in allowed:
        raise RequestError(where, f"datatype {inp.datatype}, expected one of {', '.join(sorted(allowed))}",
                           "wrong_type")


def _strings(values: np.ndarray, where: str) -> np.ndarray:
    """BYTES tensor elements as non-empty str (gRPC gives bytes, JSON gives str)."""
    kind = pd.api.types.infer_dtype(values, skipna=False)
    if kind == "bytes":
        try:
            values = pd.Series(values).str.decode("utf-8").to_numpy(dtype=object)
        except UnicodeDecodeError:
            raise RequestError(where, "not UTF-8 text", "wrong_type") from None
    elif kind != "string":
        raise RequestError(where, f"expected strings, got {kind} values", "wrong_type")
    empty = pd.Series(values).str.len().to_numpy() == 0
    if empty.any():
        raise RequestError(f"{where}[{int(np.argmax(empty))}]", "empty string", "wrong_type")
    return values
