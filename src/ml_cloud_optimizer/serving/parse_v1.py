"""A v1 JSON body as a ``ForecastRequest``.

Body::

    {"instances": [{"entity_id": "web-1", "vcpus": 4, "replicas": 2,
                    "history": {"ts": [1700000000, ...], "cpu_util": [0.41, ...], "mem_util": [...]}}],
     "parameters": {"horizons": [12], "target_utilization": 0.6}}

or instances of ``{"entity_id": "web-1", "features": [...]}`` (a list in feature order, or an
object keyed by feature name; ``null`` marks a missing value, as NaN does in training).
One request takes either histories or feature rows, not both.

A memory model's instances give ``mem_gib`` (GiB of one replica) in place of ``vcpus`` and
``replicas``, and their histories must carry ``mem_util`` (``RequestParser.resource``).
"""

from __future__ import annotations

from collections.abc import Mapping
from itertools import chain
from typing import TYPE_CHECKING

import numpy as np

from ml_cloud_optimizer.data.schema import VALUE_COLUMNS
from ml_cloud_optimizer.serving.checks import (
    CAPACITY_DEFAULTS,
    capacity_number,
    capacity_request,
    check_features,
    check_unique,
    entity_id,
    history_frame,
    json_column,
    parameters,
    reject_unknown,
    require_feature_rows,
    timestamps,
)
from ml_cloud_optimizer.serving.errors import ErrorKind, RequestError
from ml_cloud_optimizer.serving.types import ForecastRequest

if TYPE_CHECKING:
    from ml_cloud_optimizer.serving.parser import RequestParser

__all__ = ["parse_v1"]


def parse_v1(body, parser: RequestParser) -> ForecastRequest:
    """Parse a v1 ``{"instances": [...], "parameters": {...}}`` body for the model ``parser`` describes."""
    if not isinstance(body, Mapping):
        raise RequestError("body", "expected a JSON object with an 'instances' list", ErrorKind.MALFORMED)
    reject_unknown(body, ("instances", "parameters"), "body")
    instances = body.get("instances")
    if instances is None:
        raise RequestError("instances", "missing; expected a list of entities", ErrorKind.MISSING_FIELD)
    if not isinstance(instances, list) or not instances:
        raise RequestError("instances", "expected a non-empty list", ErrorKind.WRONG_TYPE)
    if len(instances) > parser.limits.max_entities:
        raise RequestError(
            "instances", f"{len(instances)} rows, at most {parser.limits.max_entities} per request", ErrorKind.OVERSIZED
        )
    horizons, target = parameters(
        body.get("parameters"), "parameters", horizons=parser.horizons, target_utilization=parser.target_utilization
    )
    for i, inst in enumerate(instances):
        if not isinstance(inst, Mapping):
            raise RequestError(f"instances[{i}]", "expected an object", ErrorKind.WRONG_TYPE)
    has_history = ["history" in inst for inst in instances]
    has_features = ["features" in inst for inst in instances]
    for i, (h, f) in enumerate(zip(has_history, has_features, strict=True)):
        if h == f:
            raise RequestError(
                f"instances[{i}]",
                "give exactly one of 'history' or 'features'",
                ErrorKind.MALFORMED if h else ErrorKind.MISSING_FIELD,
            )
    if any(has_history) and any(has_features):
        i = next(i for i, h in enumerate(has_history) if h != has_history[0])
        raise RequestError(
            f"instances[{i}]", "one request takes either histories or feature rows, not both", ErrorKind.MALFORMED
        )
    if has_history[0]:
        return _history(instances, parser, horizons, target)
    return _features(instances, parser, horizons, target)


def _capacity_arrays(parser: RequestParser, n: int) -> dict[str, np.ndarray]:
    """One array per capacity input of the model, at its default until an instance gives it."""
    return {
        name: np.full(n, CAPACITY_DEFAULTS[name], dtype=np.int64 if name == "replicas" else np.float64)
        for name in parser.capacity_inputs
    }


def _capacity(inst: Mapping, where: str, i: int, capacity: dict[str, np.ndarray]) -> None:
    for name, values in capacity.items():
        values[i] = capacity_number(name, inst.get(name, CAPACITY_DEFAULTS[name]), f"{where}.{name}")


def _history(instances: list, parser: RequestParser, horizons: tuple[int, ...], target: float) -> ForecastRequest:
    ids: list[str] = []
    columns: dict[str, dict[int, list]] = {}
    lengths: list[int] = []
    capacity = _capacity_arrays(parser, len(instances))
    for i, inst in enumerate(instances):
        where = f"instances[{i}]"
        reject_unknown(inst, ("entity_id", "history", *parser.capacity_inputs), where)
        ids.append(entity_id(inst.get("entity_id"), f"{where}.entity_id"))
        _capacity(inst, where, i, capacity)
        history = inst["history"]
        if not isinstance(history, Mapping):
            raise RequestError(f"{where}.history", "expected an object of equal-length lists", ErrorKind.WRONG_TYPE)
        reject_unknown(history, ("ts", *VALUE_COLUMNS), f"{where}.history")
        n: int | None = None
        for name in parser.required_history:
            if name not in history:
                raise RequestError(f"{where}.history.{name}", "missing", ErrorKind.MISSING_FIELD)
        for name, values in history.items():
            if not isinstance(values, list):
                raise RequestError(f"{where}.history.{name}", "expected a list", ErrorKind.WRONG_TYPE)
            if n is None:
                n = len(values)
            elif len(values) != n:
                raise RequestError(
                    f"{where}.history.{name}",
                    f"{len(values)} values, but {n} in the columns before",
                    ErrorKind.BAD_SHAPE,
                )
        if not n:  # None only for an empty object, which required_history already refused
            raise RequestError(f"{where}.history", "no samples", ErrorKind.HISTORY_TOO_SHORT)
        lengths.append(n)
        for name in history:
            columns.setdefault(name, {})[i] = history[name]
    check_unique(ids, "instances[{}].entity_id")
    total = sum(lengths)
    if total > parser.limits.max_history_rows:
        raise RequestError(
            "instances",
            f"{total} history samples, at most {parser.limits.max_history_rows} per request",
            ErrorKind.OVERSIZED,
        )
    offsets = np.concatenate([[0], np.cumsum(lengths)])

    def locate(name: str, row: int) -> str:
        i = int(np.searchsorted(offsets, row, side="right") - 1)
        return f"instances[{i}].history.{name}"

    arrays, absent = {}, {}
    for name, per_instance in columns.items():
        flat = list(chain.from_iterable(per_instance.get(i, [0.0] * lengths[i]) for i in range(len(instances))))
        arrays[name] = json_column(flat, name, locate, allow_strings=name == "ts")
        if len(per_instance) != len(instances):
            # A metric an instance leaves out is NaN there, as in the canonical frame.
            absent[name] = np.zeros(total, dtype=bool)
            for i in set(range(len(instances))) - set(per_instance):
                absent[name][offsets[i] : offsets[i + 1]] = True
    entity_rows = np.repeat(np.asarray(ids, dtype=object), lengths)
    history = history_frame(
        entity_rows, arrays, locate, limits=parser.limits, min_history=parser.min_history, absent=absent
    )
    return capacity_request(
        capacity,
        len(instances),
        entity_id=np.asarray(ids, dtype=object),
        history=history,
        features=None,
        ts=None,
        horizons=horizons,
        target_utilization=target,
    )


def _features(instances: list, parser: RequestParser, horizons: tuple[int, ...], target: float) -> ForecastRequest:
    require_feature_rows(parser.feature_names)
    names = parser.feature_names
    width = len(names)
    rows, ids, ts = [], [], []
    capacity = _capacity_arrays(parser, len(instances))
    for i, inst in enumerate(instances):
        where = f"instances[{i}]"
        reject_unknown(inst, ("entity_id", "features", "ts", *parser.capacity_inputs), where)
        ids.append(entity_id(inst.get("entity_id", str(i)), f"{where}.entity_id"))
        _capacity(inst, where, i, capacity)
        ts.append(inst.get("ts"))
        row = inst["features"]
        if isinstance(row, Mapping):
            reject_unknown(row, names, f"{where}.features")
            absent = [c for c in names if c not in row]
            if absent:
                raise RequestError(
                    f"{where}.features.{absent[0]}",
                    f"missing ({len(absent)} features missing)",
                    ErrorKind.MISSING_FIELD,
                )
            row = [row[c] for c in names]
        elif not isinstance(row, list):
            raise RequestError(
                f"{where}.features", f"expected a list of {width} numbers or an object", ErrorKind.WRONG_TYPE
            )
        if len(row) != width:
            raise RequestError(f"{where}.features", f"{len(row)} values, the model takes {width}", ErrorKind.BAD_SHAPE)
        rows.append(row)
    flat = list(chain.from_iterable(rows))
    matrix = json_column(
        flat, "features", lambda _name, r: f"instances[{r // width}].features", allow_missing=True
    ).reshape(len(rows), width)
    check_features(matrix, names, lambda r: f"instances[{r}].features")
    origins = None
    given = [t is not None for t in ts]
    if any(given):
        if not all(given):
            raise RequestError(
                f"instances[{given.index(False)}].ts", "missing, while other instances give it", ErrorKind.MISSING_FIELD
            )
        origins = timestamps(
            json_column(ts, "ts", lambda _name, r: f"instances[{r}].ts", allow_strings=True),
            lambda r: f"instances[{r}].ts",
        )
    return capacity_request(
        capacity,
        len(instances),
        entity_id=np.asarray(ids, dtype=object),
        history=None,
        features=matrix,
        ts=origins,
        horizons=horizons,
        target_utilization=target,
    )
