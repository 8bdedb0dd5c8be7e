"""Kubernetes resource quantities: the strings we write into objects, and the numbers we read back.

Why a module of its own: every object we emit (VPA bounds, patched requests) carries CPU and
memory as quantity strings, and every object or input we read (a VPA, a manifest, a table
typed by hand) may carry any spelling the API server accepts: ``250m``, ``0.25``, ``2``,
``512Mi``, ``1G``, ``1e3``, a bare YAML number.

What we write is canonical and rounded *up*: CPU in whole millicores (``"250m"``, or ``"2"`` for
whole cores), memory in whole MiB with the largest binary suffix that is exact (``"512Mi"``,
``"1536Mi"``, ``"2Gi"``). Up, because a request below the forecast's need is a throttled or
OOM-killed pod while one millicore or one MiB more costs nothing; and the API server itself
would round a finer CPU value up to a millicore. A float product such as ``0.1 * 3`` is first
rounded to six decimals of the unit, so ``300.00000000000006`` millicores stays ``300m``.
"""

from __future__ import annotations

import math
import re

__all__ = ["bytes_quantity", "cores_quantity", "parse_bytes", "parse_cores", "parse_quantity"]

MIB = 2**20
_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL = {"n": 1e-9, "u": 1e-6, "m": 1e-3, "": 1.0, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18}
_QUANTITY = re.compile(
    r"^(?P<number>[+-]?(?:\d+(?:\.\d*)?|\.\d+))"
    r"(?:(?P<suffix>[KMGTPE]i|[numkMGTPE])|[eE](?P<exponent>[+-]?\d+))?$"
)


def cores_quantity(cores: float) -> str:
    """``cores`` as a CPU quantity in whole millicores, rounded up: 0.25 -> ``"250m"``, 2.0 -> ``"2"``."""
    millicores = _whole_units(cores, 1e-3, "cores")
    return str(millicores // 1000) if millicores % 1000 == 0 else f"{millicores}m"


def bytes_quantity(size: float) -> str:
    """``size`` bytes as a memory quantity in whole MiB, rounded up: ``"512Mi"``, ``"1536Mi"``, ``"2Gi"``."""
    mebibytes = _whole_units(size, MIB, "bytes")
    for suffix, per in (("Ti", 2**20), ("Gi", 2**10)):
        if mebibytes % per == 0:
            return f"{mebibytes // per}{suffix}"
    return f"{mebibytes}Mi"


def parse_quantity(value: str | float) -> float:
    """Any quantity the API server accepts (``"250m"``, ``"1.5Gi"``, ``"1e3"``, a YAML number) as a float.

    Raises ValueError naming the text when it is not a quantity.
    """
    if isinstance(value, bool):
        raise ValueError(f"{value!r}: not a Kubernetes quantity")
    if isinstance(value, int | float):
        return float(value)
    text = str(value).strip()
    match = _QUANTITY.match(text)
    if match is None:
        raise ValueError(
            f"{value!r}: not a Kubernetes quantity (expected a number with an optional suffix:"
            " m, k, M, G, T, Ki, Mi, Gi, Ti, or an exponent such as 1e3)"
        )
    number = float(match.group("number"))
    if match.group("exponent") is not None:
        return number * 10.0 ** int(match.group("exponent"))
    suffix = match.group("suffix") or ""
    return number * _BINARY[suffix] if suffix in _BINARY else number * _DECIMAL[suffix]


def parse_cores(value: str | float) -> float:
    """A CPU quantity (``"250m"``, ``"2"``, ``0.5``) in cores; negative amounts are refused."""
    return _non_negative(parse_quantity(value), value, "cores")


def parse_bytes(value: str | float) -> float:
    """A memory quantity (``"512Mi"``, ``"1G"``, ``"1e9"``) in bytes; negative amounts are refused."""
    return _non_negative(parse_quantity(value), value, "bytes")


def _whole_units(amount: float, unit: float, what: str) -> int:
    """``amount`` in whole ``unit``s, rounded up; a non-finite or non-positive amount is a ValueError."""
    try:  # numbers only (numpy's too): a string here is a caller's mix-up, not an amount
        number = math.nan if isinstance(amount, str | bytes | bool) else float(amount)
    except (TypeError, ValueError):
        number = math.nan
    if not (math.isfinite(number) and number > 0):
        raise ValueError(f"{amount!r} {what}: a request must be a positive finite amount")
    return max(1, math.ceil(round(number / unit, 6)))


def _non_negative(amount: float, value: str | float, what: str) -> float:
    if not math.isfinite(amount) or amount < 0:
        raise ValueError(f"{value!r}: {what} must be a non-negative finite amount")
    return amount
