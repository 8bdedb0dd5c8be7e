"""The checks both protocols share: each takes raw values and returns them typed, or raises ``RequestError``.

``parse_v1`` and ``parse_v2`` only walk their protocol's layout; what a value may be (a
positive number, an epoch second, a known horizon) and what a history must be (no two
samples in a slot, enough steps, not too many) is decided here, once, so a mistake gets
the same answer whichever protocol carried it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from functools import partial

import numpy as np
import pandas as pd
from kserve.errors import InvalidInput
from kserve.protocol.infer_type import InferInput

from ml_cloud_optimizer.data.schema import STEP_SECONDS, UTIL_MAX, VALUE_COLUMNS
from ml_cloud_optimizer.serving.errors import ErrorKind, RequestError
from ml_cloud_optimizer.serving.types import RequestLimits

__all__ = [
    "INTEGER_V2",
    "NUMERIC_V2",
    "REQUIRED_HISTORY",
    "check_datatype",
    "check_finite",
    "check_unique",
    "entity_id",
    "history_frame",
    "json_column",
    "parameters",
    "positive_array",
    "positive_int",
    "positive_number",
    "reject_unknown",
    "require_feature_rows",
    "strings",
    "tensor",
    "timestamps",
]

REQUIRED_HISTORY = ("ts", "cpu_util")
NUMERIC_V2 = {"FP64", "FP32", "FP16", "INT64", "INT32", "INT16", "INT8", "UINT64", "UINT32", "UINT16", "UINT8"}
INTEGER_V2 = {"INT64", "INT32", "INT16", "INT8", "UINT64", "UINT32", "UINT16", "UINT8"}
_UTIL_COLUMNS = ("cpu_util", "mem_util")
# Epoch seconds accepted for ``ts``: 1970 to 2100, which also keeps nanoseconds inside int64.
_TS_MAX = 4_102_444_800

# locate(name, row) -> the field of flat sample ``row`` of column ``name``, e.g. "inputs.ts[7]".
Locate = Callable[[str, int], str]


# -- request parameters ---------------------------------------------------------------------


def parameters(
    params, where: str, *, horizons: tuple[int, ...], target_utilization: float
) -> tuple[tuple[int, ...], float]:
    """``horizons`` and ``target_utilization`` of a request, defaulting to the model's."""
    if params is None:
        return horizons, target_utilization
    if not isinstance(params, Mapping):
        raise RequestError(where, "expected an object", ErrorKind.WRONG_TYPE)
    reject_unknown(params, ("horizons", "target_utilization"), where)
    asked = horizons
    if "horizons" in params:
        asked = _horizons(params["horizons"], f"{where}.horizons", horizons)
    target = target_utilization
    if "target_utilization" in params:
        value = params["target_utilization"]
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise RequestError(f"{where}.target_utilization", "expected a number in (0, 1]", ErrorKind.WRONG_TYPE)
        if not 0.0 < value <= 1.0:
            raise RequestError(f"{where}.target_utilization", f"{value!r} is outside (0, 1]", ErrorKind.OUT_OF_RANGE)
        target = float(value)
    return asked, target


def _horizons(value, where: str, known: tuple[int, ...]) -> tuple[int, ...]:
    if isinstance(value, str):
        parts = [p.strip() for p in value.split(",")]
        if not all(p.lstrip("-").isdigit() for p in parts):
            raise RequestError(where, f"{value!r}: expected horizons in steps, like '1,12'", ErrorKind.WRONG_TYPE)
        value = [int(p) for p in parts]
    elif isinstance(value, int) and not isinstance(value, bool):
        value = [value]
    if (
        not isinstance(value, list)
        or not value
        or not all(isinstance(h, int) and not isinstance(h, bool) for h in value)
    ):
        raise RequestError(
            where, "expected a non-empty list of integer horizons (steps of 5 minutes)", ErrorKind.WRONG_TYPE
        )
    unknown = [h for h in value if h not in known]
    if unknown:
        raise RequestError(
            where, f"unknown horizon {unknown[0]}; the model forecasts {list(known)}", ErrorKind.UNKNOWN_HORIZON
        )
    return tuple(dict.fromkeys(value))


def require_feature_rows(feature_names: Sequence[str]) -> None:
    """Refuse feature rows for a model that forecasts from history only."""
    if not feature_names:
        raise RequestError("features", "this model forecasts from history only; send 'history'", ErrorKind.UNSUPPORTED)


# -- history --------------------------------------------------------------------------------


def history_frame(
    entity_rows: np.ndarray,
    arrays: dict[str, np.ndarray],
    locate: Locate,
    *,
    limits: RequestLimits,
    min_history: int,
    absent: dict[str, np.ndarray] | None = None,
) -> pd.DataFrame:
    """Check history columns (types done) and build the canonical long frame.

    ``absent`` marks, per metric, the samples of entities that did not give it: NaN there.
    """
    absent = absent or {}
    ts = timestamps(arrays["ts"], lambda row: locate("ts", row))
    frame = {"entity_id": pd.array(entity_rows, dtype="string"), "ts": ts}
    for name in VALUE_COLUMNS:
        if name not in arrays:
            continue
        values = np.asarray(arrays[name], dtype="float64")
        check_finite(values, partial(locate, name), allow_nan=False)
        if name in absent:
            values = np.where(absent[name], np.nan, values)
        low_bad = values < 0
        high_bad = values > UTIL_MAX if name in _UTIL_COLUMNS else np.zeros(len(values), dtype=bool)
        bad = low_bad | high_bad
        if bad.any():
            row = int(np.argmax(bad))
            bound = f"[0, {UTIL_MAX}] (utilisation is a fraction)" if name in _UTIL_COLUMNS else ">= 0"
            raise RequestError(locate(name, row), f"{values[row]!r} is outside {bound}", ErrorKind.OUT_OF_RANGE)
        frame[name] = values
    history = pd.DataFrame(frame)
    slot = ts.astype("int64") // (STEP_SECONDS * 10**9)
    codes, _ = pd.factorize(entity_rows)
    key = pd.DataFrame({"e": codes, "s": slot})
    dup = key.duplicated()
    if dup.any():
        row = int(np.argmax(dup.to_numpy()))
        raise RequestError(
            locate("ts", row), f"two samples of entity {entity_rows[row]!r} in one 5-minute slot", ErrorKind.MALFORMED
        )
    span = key.groupby("e", sort=False)["s"].agg(["min", "max"])
    steps = (span["max"] - span["min"] + 1).to_numpy()
    # The model lays each entity out on its full grid: a gap of years would be millions of rows.
    if steps.sum() > limits.max_history_rows:
        e = int(span.index[np.argmax(steps)])
        row = int(np.argmax(codes == e))
        raise RequestError(
            locate("ts", row),
            f"the histories span {int(steps.sum())} 5-minute steps"
            f" (entity {entity_rows[row]!r}: {int(steps.max())}),"
            f" at most {limits.max_history_rows} per request",
            ErrorKind.OVERSIZED,
        )
    short = steps < min_history
    if short.any():
        e = int(span.index[np.argmax(short)])
        row = int(np.argmax(codes == e))
        raise RequestError(
            locate("ts", row),
            f"entity {entity_rows[row]!r} has {int(steps[np.argmax(short)])} steps of history,"
            f" the model needs at least {min_history}",
            ErrorKind.HISTORY_TOO_SHORT,
        )
    return history


# -- values ---------------------------------------------------------------------------------


def reject_unknown(mapping: Mapping, known: Sequence[str], where: str) -> None:
    allowed = set(known)
    unknown = [k for k in mapping if k not in allowed]
    if unknown:
        raise RequestError(
            f"{where}.{unknown[0]}", f"unknown field; expected {', '.join(sorted(allowed))}", ErrorKind.UNKNOWN_FIELD
        )


def entity_id(value, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise RequestError(
            where, "expected a non-empty string", ErrorKind.MISSING_FIELD if value is None else ErrorKind.WRONG_TYPE
        )
    return value


def positive_number(value, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise RequestError(where, "expected a positive number", ErrorKind.WRONG_TYPE)
    if not np.isfinite(value) or value <= 0:
        raise RequestError(where, f"{value!r} is not a positive finite number", ErrorKind.OUT_OF_RANGE)
    return float(value)


def positive_int(value, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise RequestError(where, "expected a positive integer", ErrorKind.WRONG_TYPE)
    if not 1 <= value <= 1_000_000:
        raise RequestError(where, f"{value!r} is outside [1, 1000000]", ErrorKind.OUT_OF_RANGE)
    return value


def positive_array(values: np.ndarray, where: str, integer: bool = False) -> np.ndarray:
    bad = ~np.isfinite(values) | (values <= 0)
    if integer:
        bad |= (values != np.round(values)) | (values > 1_000_000)
    if bad.any():
        row = int(np.argmax(bad))
        what = "a positive integer" if integer else "a positive finite number"
        raise RequestError(f"{where}[{row}]", f"{values[row]!r} is not {what}", ErrorKind.OUT_OF_RANGE)
    return values


def check_unique(ids: list[str], template: str) -> None:
    dup = pd.Series(ids).duplicated()
    if dup.any():
        i = int(np.argmax(dup.to_numpy()))
        raise RequestError(template.format(i), f"entity {ids[i]!r} appears twice", ErrorKind.MALFORMED)


def json_column(
    values: list, name: str, locate: Locate, *, allow_strings: bool = False, allow_missing: bool = False
) -> np.ndarray:
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
    row = next((i for i, v in enumerate(values) if isinstance(v, bool) or not isinstance(v, (int, float))), 0)
    bad = values[row] if values else None
    if isinstance(bad, (list, dict)):
        raise RequestError(locate(name, row), "expected a flat list of values", ErrorKind.BAD_SHAPE)
    expected = "numbers (epoch seconds) or ISO-8601 strings" if allow_strings else "numbers"
    raise RequestError(
        locate(name, row),
        f"expected {expected}, got {type(bad).__name__} {bad!r:.40}",
        ErrorKind.NON_FINITE if bad is None else ErrorKind.WRONG_TYPE,
    )


def check_finite(values: np.ndarray, locate: Callable[[int], str], *, allow_nan: bool) -> None:
    bad = np.isinf(values) if allow_nan else ~np.isfinite(values)
    if bad.any():
        flat = int(np.argmax(bad.ravel()))
        raise RequestError(locate(flat), f"{values.ravel()[flat]!r} is not a finite number", ErrorKind.NON_FINITE)


def timestamps(raw: np.ndarray, locate: Callable[[int], str]) -> pd.Series:
    """Epoch seconds or ISO-8601 strings as UTC timestamps."""
    if raw.dtype.kind in "iu":
        bad = (raw < 0) | (raw > _TS_MAX)
        if bad.any():
            row = int(np.argmax(bad))
            raise RequestError(locate(row), f"{raw[row]!r} epoch seconds is outside 1970-2100", ErrorKind.OUT_OF_RANGE)
        return pd.Series(pd.to_datetime(raw.astype("int64"), unit="s", utc=True))
    if raw.dtype.kind == "f":
        bad = ~np.isfinite(raw) | (raw != np.round(raw))
        if bad.any():
            row = int(np.argmax(bad))
            raise RequestError(locate(row), f"{raw[row]!r}: expected whole epoch seconds", ErrorKind.WRONG_TYPE)
        return timestamps(raw.astype("int64"), locate)
    ts = pd.Series(pd.to_datetime(pd.Series(raw, dtype=object), utc=True, format="ISO8601", errors="coerce"))
    if ts.isna().any():
        row = int(np.argmax(ts.isna().to_numpy()))
        raise RequestError(locate(row), f"{str(raw[row])[:40]!r} is not an ISO-8601 timestamp", ErrorKind.WRONG_TYPE)
    seconds = ts.astype("int64") // 10**9
    bad = (seconds < 0) | (seconds > _TS_MAX)
    if bad.any():
        row = int(np.argmax(bad.to_numpy()))
        raise RequestError(locate(row), f"{raw[row]!r} is outside 1970-2100", ErrorKind.OUT_OF_RANGE)
    return ts


# -- v2 tensors -----------------------------------------------------------------------------


def tensor(inp: InferInput, name: str) -> np.ndarray:
    """A v2 input as a numpy array, with shape and datatype mistakes as ``RequestError``."""
    where = f"inputs.{name}"
    shape = list(inp.shape or [])
    if any((not isinstance(d, int)) or d < 0 for d in shape):
        raise RequestError(where, f"shape {shape} has a negative or unknown dimension", ErrorKind.BAD_SHAPE)
    size = int(np.prod(shape, dtype=np.int64)) if shape else 1
    if size > 50_000_000:
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
