"""Pure helpers of the scale benches (bench/scale.py, bench/pipeline_local.py): no I/O, no heavy imports.

* ``growth_exponent``: how a cost grows between two sizes, ``log(c2 / c1) / log(n2 / n1)``; 1 is
  linear, 2 quadratic, 0 a fixed cost.
* ``project``: a stage's cost at a size not run, from the sizes that were: linear through the
  last two points (fixed part plus a per-row slope), or proportional from one point.
* ``covered_seconds``: the wall time covered by a set of possibly overlapping intervals (two loop
  iterations computing at once count once), for the pipeline's overhead ratio.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Sequence

__all__ = ["covered_seconds", "growth_exponent", "growth_exponents", "overhead_ratio", "project"]


def growth_exponent(n1: float, cost1: float, n2: float, cost2: float) -> float:
    """``log(cost2 / cost1) / log(n2 / n1)``: 1.0 when the cost grows as the size does.

    Example:
        >>> growth_exponent(1e5, 2.0, 1e6, 20.0)
        1.0
    """
    if n1 <= 0 or n2 <= 0 or n1 == n2:
        raise ValueError(f"growth_exponent: sizes must be positive and differ, got {n1} and {n2}")
    if cost1 <= 0 or cost2 <= 0:
        raise ValueError(f"growth_exponent: costs must be positive, got {cost1} and {cost2}")
    return math.log(cost2 / cost1) / math.log(n2 / n1)


def growth_exponents(points: Sequence[tuple[float, float]]) -> list[float]:
    """Exponents between consecutive ``(size, cost)`` points, in size order."""
    ordered = sorted(points)
    return [growth_exponent(n1, c1, n2, c2) for (n1, c1), (n2, c2) in itertools.pairwise(ordered)]


def project(points: Sequence[tuple[float, float]], size: float, floor: float = 0.0) -> float:
    """A cost at ``size`` from measured ``(size, cost)`` points.

    Two or more points: the line through the two largest (a fixed part and a per-row slope;
    a falling slope is taken as flat). One point: ``floor`` (the part that does not grow, such
    as a process's memory after its imports) plus the rest in proportion to size. None: NaN.

    Example:
        >>> project([(1e5, 1.0), (1e6, 3.7)], 1e7)  # 0.7 fixed + 3 per million rows
        30.7
        >>> project([(1e5, 0.5)], 1e6, floor=0.25)
        2.75
    """
    if not points:
        return math.nan
    ordered = sorted(points)
    if len(ordered) == 1:
        n, cost = ordered[0]
        return floor + (cost - floor) * size / n
    (n1, c1), (n2, c2) = ordered[-2:]
    slope = max((c2 - c1) / (n2 - n1), 0.0)
    return round(c2 + slope * (size - n2), 10)


def covered_seconds(intervals: Iterable[tuple[float, float]]) -> float:
    """Length of the union of ``(start, end)`` intervals: time during which at least one ran.

    Example:
        >>> covered_seconds([(0, 10), (5, 12), (20, 21)])
        13.0
    """
    total, reach = 0.0, -math.inf
    for start, end in sorted(intervals):
        if end <= reach:
            continue
        total += end - max(start, reach)
        reach = end
    return total


def overhead_ratio(total_seconds: float, compute_seconds: float) -> float:
    """``(total - compute) / total``: the share of the wall time not spent computing a stage."""
    if total_seconds <= 0:
        raise ValueError(f"overhead_ratio: total must be positive, got {total_seconds}")
    return (total_seconds - compute_seconds) / total_seconds
