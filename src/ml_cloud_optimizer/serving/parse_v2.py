"""A v2 ``InferRequest`` (REST, REST with binary tensors, or gRPC) as a ``ForecastRequest``.

History as long tensors, one element per sample: ``entity_id`` BYTES, ``ts`` INT64 epoch
seconds (or BYTES ISO-8601), ``cpu_util`` and the other metrics FP64/FP32, optional
``vcpus`` and ``replicas``, whose value on an entity's last sample counts. Or feature rows:
``features`` FP64/FP32 ``[rows, n_features]`` with optional per-row ``entity_id``, ``ts``,
``vcpus``, ``replicas``. Request parameters ``horizons`` ("1,12" or an int) and
``target_utilization``; requested ``outputs`` must be tensors the model returns.

A memory model takes ``mem_gib`` (GiB of one replica, FP64) in place of ``vcpus`` and
``replicas``, and its history must carry ``mem_util`` (``RequestParser.resource``).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from kserve.errors import InvalidInput
from kserve.protocol.infer_type import InferInput, InferRequest, to_http_parameters

from ml_cloud_optimizer.data.schema import VALUE_COLUMNS
from ml_cloud_optimizer.serving.checks import (
    CAPACITY_DEFAULTS,
    capacity_array,
    capacity_request,
    check_features,
    history_frame,
    parameters,
    reject_unknown,
    require_feature_rows,
    timestamps,
)
from ml_cloud_optimizer.serving.errors import ErrorKind, RequestError
from ml_cloud_optimizer.serving.types import ForecastRequest

if TYPE_CHECKING:
    from ml_cloud_optimizer.serving.parser import RequestParser

__all__ = ["parse_v2"]

NUMERIC_V2 = {"FP64", "FP32", "FP16", "INT64", "INT32", "INT16", "INT8", "UINT64", "UINT32", "UINT16", "UINT8"}
INTEGER_V2 = {"INT64", "INT32", "INT16", "INT8", "UINT64", "UINT32", "UINT16", "UINT8"}
# Elements of one tensor: past every request limit, so a declared shape cannot ask for more memory.
_MAX_TENSOR_SIZE = 50_000_000


def parse_v2(request: InferRequest, parser: RequestParser) -> ForecastRequest:
    """Parse a v2 ``InferRequest`` for the model ``parser`` describes; the answer's id and options come along."""
    params = request.parameters
    if params is not None and request.from_grpc:
        params = to_http_parameters(params)
    params = {k: v for k, v in (params or {}).items() if k not in ("binary_data_output",)}
    horizons, target = parameters(
        params, "parameters", horizons=parser.horizons, target_utilization=parser.target_utilization
    )
    outputs = None
    if request.request_outputs:
        outputs = tuple(o.name for o in request.request_outputs)
        unknown = [o for o in outputs if o not in parser.output_names]
        if unknown:
            raise RequestError(
                f"outputs.{unknown[0]}",
                f"unknown output; the model returns {', '.join(parser.output_names)}",
                ErrorKind.UNKNOWN_FIELD,
            )
    inputs: dict[str, InferInput] = {}
    for inp in request.inputs:
        if inp.name in inputs:
            raise RequestError(f"inputs.{inp.name}", "given twice", ErrorKind.MALFORMED)
        inputs[inp.name] = inp
    if not inputs:
        raise RequestError("inputs", "empty; give history tensors or 'features'", ErrorKind.MISSING_FIELD)
    if "features" in inputs:
        parsed = _features(inputs, parser, horizons, target)
    else:
        parsed = _history(inputs, parser, horizons, target)
    parsed.outputs = outputs
    parsed.protocol = "v2-grpc" if request.from_grpc else "v2-rest"
    parsed.response_id = request.id
    parsed.binary_outputs = request.use_binary_outputs
    parsed.request_outputs = request.request_outputs
    return parsed


def _history(
    inputs: dict[str, InferInput], parser: RequestParser, horizons: tuple[int, ...], target: float
) -> ForecastRequest:
    limits = parser.limits
    reject_unknown(inputs, ("entity_id", "ts", *VALUE_COLUMNS, *parser.capacity_inputs), "inputs")
    for name in ("entity_id", *parser.required_history):
        if name not in inputs:
            raise RequestError(f"inputs.{name}", "missing", ErrorKind.MISSING_FIELD)
    check_datatype(inputs["entity_id"], "inputs.entity_id", {"BYTES"})
    check_datatype(inputs["ts"], "inputs.ts", INTEGER_V2 | {"BYTES"})
    for name in inputs:
        if name not in ("entity_id", "ts"):
            check_datatype(inputs[name], f"inputs.{name}", NUMERIC_V2)
    arrays = {name: tensor(inp, name) for name, inp in inputs.items()}
    n = len(arrays["entity_id"])
    for name, values in arrays.items():
        if values.ndim != 1:
            raise RequestError(f"inputs.{name}", f"shape {list(values.shape)}, expected [{n}]", ErrorKind.BAD_SHAPE)
        if len(values) != n:
            raise RequestError(f"inputs.{name}", f"{len(values)} elements, but entity_id has {n}", ErrorKind.BAD_SHAPE)
    if n == 0:
        raise RequestError("inputs.entity_id", "empty", ErrorKind.BAD_SHAPE)
    if n > limits.max_history_rows:
        raise RequestError(
            "inputs", f"{n} history samples, at most {limits.max_history_rows} per request", ErrorKind.OVERSIZED
        )
    rows = strings(arrays.pop("entity_id"), "inputs.entity_id")
    if arrays["ts"].dtype == object:
        arrays["ts"] = strings(arrays["ts"], "inputs.ts").astype(str)
    entity_order = pd.unique(rows)
    if len(entity_order) > limits.max_entities:
        raise RequestError(
            "inputs.entity_id",
            f"{len(entity_order)} entities, at most {limits.max_entities} per request",
            ErrorKind.OVERSIZED,
        )
    # The capacity inputs of each entity are read on its last sample; every sample is checked.
    last = pd.Series(np.arange(n)).groupby(rows, sort=False).last().reindex(entity_order).to_numpy()
    capacity = {
        name: capacity_array(name, arrays.pop(name, np.full(n, CAPACITY_DEFAULTS[name])), f"inputs.{name}")[last]
        for name in parser.capacity_inputs
    }
    history = history_frame(
        rows, arrays, lambda name, row: f"inputs.{name}[{row}]", limits=limits, min_history=parser.min_history
    )
    return capacity_request(
        capacity,
        len(entity_order),
        entity_id=np.asarray(entity_order, dtype=object),
        history=history,
        features=None,
        ts=None,
        horizons=horizons,
        target_utilization=target,
    )


def _features(
    inputs: dict[str, InferInput], parser: RequestParser, horizons: tuple[int, ...], target: float
) -> ForecastRequest:
    require_feature_rows(parser.feature_names)
    reject_unknown(inputs, ("features", "entity_id", "ts", *parser.capacity_inputs), "inputs")
    width = len(parser.feature_names)
    max_rows = parser.limits.max_entities
    check_datatype(inputs["features"], "inputs.features", NUMERIC_V2)
    matrix = tensor(inputs["features"], "features").astype("float64", copy=False)
    if matrix.ndim == 1 and width == matrix.size:
        matrix = matrix.reshape(1, width)
    if matrix.ndim != 2 or matrix.shape[1] != width:
        raise RequestError(
            "inputs.features", f"shape {list(matrix.shape)}, expected [rows, {width}]", ErrorKind.BAD_SHAPE
        )
    n = matrix.shape[0]
    if n == 0:
        raise RequestError("inputs.features", "no rows", ErrorKind.BAD_SHAPE)
    if n > max_rows:
        raise RequestError("inputs.features", f"{n} rows, at most {max_rows} per request", ErrorKind.OVERSIZED)
    check_features(matrix, parser.feature_names, lambda r: f"inputs.features[{r}]")
    extra = {}
    for name in ("entity_id", "ts", *parser.capacity_inputs):
        if name in inputs:
            values = tensor(inputs[name], name)
            if values.ndim != 1 or len(values) != n:
                raise RequestError(f"inputs.{name}", f"shape {list(values.shape)}, expected [{n}]", ErrorKind.BAD_SHAPE)
            extra[name] = values
    ids = (
        strings(extra["entity_id"], "inputs.entity_id")
        if "entity_id" in extra
        else np.arange(n).astype(str).astype(object)
    )
    origins = None
    if "ts" in extra:
        check_datatype(inputs["ts"], "inputs.ts", INTEGER_V2 | {"BYTES"})
        raw = extra["ts"]
        if raw.dtype == object:
            raw = strings(raw, "inputs.ts").astype(str)
        origins = timestamps(raw, lambda r: f"inputs.ts[{r}]")
    capacity = {}
    for name in parser.capacity_inputs:
        if name in extra:
            check_datatype(inputs[name], f"inputs.{name}", NUMERIC_V2)
            capacity[name] = capacity_array(name, extra[name], f"inputs.{name}")
        else:
            capacity[name] = np.full(n, float(CAPACITY_DEFAULTS[name]))
    return capacity_request(
        capacity,
        n,
        entity_id=ids,
        history=None,
        features=matrix,
        ts=origins,
        horizons=horizons,
        target_utilization=target,
    )


# -- v2 tensors -----------------------------------------------------------------------------


def tensor(inp: InferInput, name: str) -> np.ndarray:
    """A v2 input as a numpy array, with shape and datatype mistakes as ``RequestError``."""
    where = f"inputs.{name}"
    shape = list(inp.shape or [])
    if any((not isinstance(d, int)) or d < 0 for d in shape):
        raise RequestError(where, f"shape {shape} has a negative or unknown dimension", ErrorKind.BAD_SHAPE)
    size = math.prod(shape)  # Python ints: a product of huge dimensions cannot wrap around
    if size > _MAX_TENSOR_SIZE:
        raise RequestError(where, f"shape {shape} is too large", ErrorKind.OVERSIZED)
    try:
        array = inp.as_numpy()
    except InvalidInput as exc:
        raise RequestError(where, f"datatype {inp.datatype!r} is not supported: {exc}", ErrorKind.WRONG_TYPE) from None
    except (ValueError, TypeError, OverflowError) as exc:
        kind = ErrorKind.BAD_SHAPE if "reshape" in str(exc) or "shape" in str(exc) else ErrorKind.WRONG_TYPE
        raise RequestError(where, f"data do not fit datatype {inp.datatype} and shape {shape}: {exc}", kind) from None
    if array.ndim == 2 and array.shape[1] == 1 and name != "features":
        array = array[:, 0]
    return array


def check_datatype(inp: InferInput, where: str, allowed: set[str]) -> None:
    if inp.datatype not in allowed:
        raise RequestError(
            where, f"datatype {inp.datatype}, expected one of {', '.join(sorted(allowed))}", ErrorKind.WRONG_TYPE
        )


def strings(values: np.ndarray, where: str) -> np.ndarray:
    """BYTES tensor elements as non-empty str (gRPC gives bytes, JSON gives str)."""
    kind = pd.api.types.infer_dtype(values, skipna=False)
    if kind == "bytes":
        try:
            values = pd.Series(values).str.decode("utf-8").to_numpy(dtype=object)
        except UnicodeDecodeError:
            raise RequestError(where, "not UTF-8 text", ErrorKind.WRONG_TYPE) from None
    elif kind != "string":
        raise RequestError(where, f"expected strings, got {kind} values", ErrorKind.WRONG_TYPE)
    empty = pd.Series(values).str.len().to_numpy() == 0
    if empty.any():
        raise RequestError(f"{where}[{int(np.argmax(empty))}]", "empty string", ErrorKind.WRONG_TYPE)
    return values
