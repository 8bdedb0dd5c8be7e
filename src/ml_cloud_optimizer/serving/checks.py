"""The checks both protocols share: each takes raw values and returns them typed, or raises ``RequestError``.

``parse_v1`` and ``parse_v2`` only walk their protocol's layout; what a value may be (a
number within its bounds, an epoch second, a known horizon) and what a history must be (no
two samples in a slot, enough samples, not too many) is decided here, once, so a mistake
gets the same answer whichever protocol carried it. The bounds themselves are constants of
``ml_cloud_optimizer.serving.types``, each with its reason.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from functools import partial

import numpy as np
import pandas as pd

from ml_cloud_optimizer.data.schema import STEP_SECONDS, VALUE_COLUMNS
from ml_cloud_optimizer.serving.errors import ErrorKind, RequestError
from ml_cloud_optimizer.serving.types import (
    MAX_MEM_GIB,
    MAX_REPLICAS,
    MAX_TARGET_UTILIZATION,
    MAX_VCPUS,
    METRIC_BOUNDS,
    MIN_MEM_GIB,
    MIN_TARGET_UTILIZATION,
    MIN_VCPUS,
    TS_MAX,
    TS_MIN,
    ForecastRequest,
    RequestLimits,
    feature_bounds,
)

__all__ = [
    "CAPACITY_DEFAULTS",
    "REQUIRED_HISTORY",
    "bounded_array",
    "bounded_int",
    "bounded_number",
    "capacity_array",
    "capacity_number",
    "capacity_request",
    "check_features",
    "check_finite",
    "check_unique",
    "entity_id",
    "history_frame",
    "json_column",
    "parameters",
    "reject_unknown",
    "require_feature_rows",
    "timestamps",
]

REQUIRED_HISTORY = ("ts", "cpu_util")  # a CPU model's; RequestParser.required_history is the model's own
# Capacity inputs (``types.CAPACITY_INPUTS``): their bounds, and their value when a request leaves them out.
_CAPACITY_BOUNDS = {
    "vcpus": (MIN_VCPUS, MAX_VCPUS),
    "replicas": (1, MAX_REPLICAS),
    "mem_gib": (MIN_MEM_GIB, MAX_MEM_GIB),
}
CAPACITY_DEFAULTS = {"vcpus": 1.0, "replicas": 1, "mem_gib": 1.0}
_HORIZON_TEXT = re.compile(r"-?[0-9]{1,18}")
# The integers a JSON number may be to become a numpy array: int64 and uint64.
_INT_RANGE = (-(2**63), 2**64 - 1)

# locate(name, row) -> the field of flat sample ``row`` of column ``name``, e.g. "inputs.ts[7]".
Locate = Callable[[str, int], str]


def _show(value) -> str:
    """A number as a client wrote it: ``1e+308``, not ``np.float64(1e+308)``; a huge integer by its size
    (``repr`` itself refuses past 4,300 digits)."""
    value = value.item() if isinstance(value, np.generic) else value
    if isinstance(value, int) and not _INT_RANGE[0] <= value <= _INT_RANGE[1]:
        return f"an integer of {value.bit_length()} bits"
    return repr(value)


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
        target = bounded_number(
            params["target_utilization"],
            f"{where}.target_utilization",
            MIN_TARGET_UTILIZATION,
            MAX_TARGET_UTILIZATION,
        )
    return asked, target


def _horizons(value, where: str, known: tuple[int, ...]) -> tuple[int, ...]:
    if isinstance(value, str):
        parts = [p.strip() for p in value.split(",")]
        # ASCII digits, int64-sized: "²" is a digit to str.isdigit but not to int(), and int()
        # refuses texts over 4,300 digits; either would escape as a ValueError (a 500).
        if not all(_HORIZON_TEXT.fullmatch(p) for p in parts):
            raise RequestError(where, f"{value[:40]!r}: expected horizons in steps, like '1,12'", ErrorKind.WRONG_TYPE)
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
        low, high = METRIC_BOUNDS[name]
        bad = (values < low) | (values > high)  # NaN (absent) is neither
        if bad.any():
            row = int(np.argmax(bad))
            why = " (utilisation is a fraction)" if name.endswith("_util") else ""
            raise RequestError(
                locate(name, row), f"{_show(values[row])} is outside [{low}, {high}]{why}", ErrorKind.OUT_OF_RANGE
            )
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
    # Samples, not span: two samples a day apart are two samples, however many slots lie between.
    samples = np.bincount(codes)
    short = samples < min_history
    if short.any():
        e = int(np.argmax(short))
        row = int(np.argmax(codes == e))
        raise RequestError(
            locate("ts", row),
            f"entity {entity_rows[row]!r} has {int(samples[e])} samples of history,"
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


def bounded_number(value, where: str, low: float, high: float) -> float:
    """A JSON number within ``[low, high]`` (bools, strings, NaN and infinities refused)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise RequestError(where, f"expected a number in [{low}, {high}]", ErrorKind.WRONG_TYPE)
    if isinstance(value, float) and not np.isfinite(value):
        raise RequestError(where, f"{_show(value)} is not a finite number", ErrorKind.NON_FINITE)
    if not low <= value <= high:
        raise RequestError(where, f"{_show(value)} is outside [{low}, {high}]", ErrorKind.OUT_OF_RANGE)
    return float(value)


def bounded_int(value, where: str, high: int) -> int:
    """A JSON integer within ``[1, high]``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise RequestError(where, "expected a positive integer", ErrorKind.WRONG_TYPE)
    if not 1 <= value <= high:
        raise RequestError(where, f"{_show(value)} is outside [1, {high}]", ErrorKind.OUT_OF_RANGE)
    return value


def bounded_array(values: np.ndarray, where: str, low: float, high: float, integer: bool = False) -> np.ndarray:
    """A v2 tensor within ``[low, high]`` (and whole, for ``integer``), as float64; names the first bad element."""
    values = np.asarray(values, dtype="float64")
    bad = ~np.isfinite(values) | (values < low) | (values > high)
    if integer:
        bad |= values != np.round(values)
    if bad.any():
        row = int(np.argmax(bad))
        what = "an integer" if integer else "a number"
        kind = ErrorKind.NON_FINITE if not np.isfinite(values[row]) else ErrorKind.OUT_OF_RANGE
        raise RequestError(f"{where}[{row}]", f"{_show(values[row])} is not {what} in [{low}, {high}]", kind)
    return values


def capacity_number(name: str, value, where: str) -> float:
    """A v1 capacity input (``vcpus``, ``replicas``, ``mem_gib``) within its bounds; replicas whole."""
    if name == "replicas":
        return bounded_int(value, where, MAX_REPLICAS)
    low, high = _CAPACITY_BOUNDS[name]
    return bounded_number(value, where, low, high)


def capacity_array(name: str, values: np.ndarray, where: str) -> np.ndarray:
    """A v2 capacity tensor within its input's bounds (``bounded_array``); replicas whole."""
    low, high = _CAPACITY_BOUNDS[name]
    return bounded_array(values, where, low, high, integer=name == "replicas")


def capacity_request(capacity: dict[str, np.ndarray], n: int, **fields) -> ForecastRequest:
    """A ``ForecastRequest`` of ``n`` answer rows with the model's capacity inputs in their fields.

    The inputs of the other resource stay at one (a memory model's ``vcpus``, a CPU model's
    ``mem_gib`` is None): they are never read.
    """
    return ForecastRequest(
        vcpus=capacity.get("vcpus", np.ones(n)),
        replicas=capacity.get("replicas", np.ones(n)).astype(np.int64),
        mem_gib=capacity.get("mem_gib"),
        **fields,
    )


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
    # The error path only: find the first offending element to name it (None is fine where missing).
    rows = [i for i, v in enumerate(values) if not (allow_missing and v is None)]
    row = next((i for i in rows if isinstance(values[i], bool) or not isinstance(values[i], (int, float))), None)
    if row is None:  # numbers all, yet no numeric array: an integer past 64 bits
        row = next((i for i in rows if not _INT_RANGE[0] <= values[i] <= _INT_RANGE[1]), 0)
        raise RequestError(locate(name, row), f"{_show(values[row])} is past 64 bits", ErrorKind.OUT_OF_RANGE)
    bad = values[row]
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
        raise RequestError(locate(flat), f"{_show(values.ravel()[flat])} is not a finite number", ErrorKind.NON_FINITE)


def check_features(matrix: np.ndarray, names: Sequence[str], row_field: Callable[[int], str]) -> None:
    """Feature rows: finite, NaN for missing, and each column within ``types.feature_bounds``.

    A row's utilisation (``cpu_util``, its lags and windows) is held to what a history sample
    may be, so a feature row cannot smuggle in what history is refused for.
    """
    width = len(names)
    check_finite(matrix, lambda flat: f"{row_field(flat // width)}.{names[flat % width]}", allow_nan=True)
    low, high = np.array([feature_bounds(name) for name in names], dtype="float64").reshape(width, 2).T
    bad = (matrix < low) | (matrix > high)  # NaN (missing) is neither
    if bad.any():
        r, c = divmod(int(np.argmax(bad.ravel())), width)
        raise RequestError(
            f"{row_field(r)}.{names[c]}",
            f"{_show(matrix[r, c])} is outside [{low[c]:g}, {high[c]:g}]",
            ErrorKind.OUT_OF_RANGE,
        )


def timestamps(raw: np.ndarray, locate: Callable[[int], str]) -> pd.Series:
    """Epoch seconds (whole, 1970 to 2100) or ISO-8601 strings as UTC timestamps."""
    if raw.dtype.kind in "iuf":
        if raw.dtype.kind == "f" and not np.isfinite(raw).all():
            row = int(np.argmax(~np.isfinite(raw)))
            raise RequestError(locate(row), f"{_show(raw[row])} is not a finite number", ErrorKind.NON_FINITE)
        # Compared before any cast: 1e308 cast to int64 would wrap around to a plausible time.
        bad = (raw < TS_MIN) | (raw > TS_MAX)
        if bad.any():
            row = int(np.argmax(bad))
            raise RequestError(
                locate(row), f"{_show(raw[row])} epoch seconds is outside 1970-2100", ErrorKind.OUT_OF_RANGE
            )
        if raw.dtype.kind == "f" and (raw != np.round(raw)).any():
            row = int(np.argmax(raw != np.round(raw)))
            raise RequestError(locate(row), f"{_show(raw[row])}: expected whole epoch seconds", ErrorKind.WRONG_TYPE)
        return pd.Series(pd.to_datetime(raw.astype("int64"), unit="s", utc=True))
    ts = pd.Series(pd.to_datetime(pd.Series(raw, dtype=object), utc=True, format="ISO8601", errors="coerce"))
    if ts.isna().any():
        row = int(np.argmax(ts.isna().to_numpy()))
        raise RequestError(locate(row), f"{str(raw[row])[:40]!r} is not an ISO-8601 timestamp", ErrorKind.WRONG_TYPE)
    seconds = ts.astype("int64") // 10**9
    bad = (seconds < TS_MIN) | (seconds > TS_MAX)
    if bad.any():
        row = int(np.argmax(bad.to_numpy()))
        raise RequestError(locate(row), f"{raw[row]!r} is outside 1970-2100", ErrorKind.OUT_OF_RANGE)
    return ts
