"""Named feature sets a tabular forecaster chooses between: the rich set and plain lags of the level.

The rich set (``FeatureSpec()`` as given) was shaped on the Bitbrains trace: seasonal lags,
rolling windows of a week, other resources, calendar, ratios. On a fleet of another kind
(PlanetLab's separate days, where a week-long window or yesterday's value is mostly missing;
a provider whose load is noise around a level) those columns add variance more than signal,
and a plain model on the last two hours of the raw level does better. Neither wins everywhere,
so a forecaster keeps both and picks one per dataset on a validation window that precedes
everything it is scored on (``models.tabular_choice``).

A set is derived from a base spec rather than written out, so that a caller's lags, step and
target carry over: ``lags`` keeps the base's ``lags`` and ``target`` and drops every other
column, calendar included.

Example:
    >>> spec_for("lags").columns[:3]
    ['cpu_util', 'cpu_util_lag_1', 'cpu_util_lag_2']
"""

from __future__ import annotations

from dataclasses import replace

from ml_cloud_optimizer.features.tabular import FeatureSpec

__all__ = ["FEATURE_SETS", "spec_for"]

FEATURE_SETS = ("rich", "lags")


def spec_for(name: str, base: FeatureSpec | None = None) -> FeatureSpec:
    """The spec of feature set ``name`` (one of ``FEATURE_SETS``) built on ``base`` (default ``FeatureSpec()``)."""
    base = base or FeatureSpec()
    if name == "rich":
        return base
    if name == "lags":
        return replace(
            base,
            inputs=(),
            seasonal_lags=(),
            windows=(),
            median_windows=(),
            ewm_halflives=(),
            rolling_inputs=(),
            calendar=False,
            derived=False,
        )
    raise ValueError(f"feature set {name!r}: expected one of {', '.join(FEATURE_SETS)}")
