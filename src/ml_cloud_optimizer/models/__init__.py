"""Forecasters behind one interface (see ``base``): baselines, tabular and sequence models.

Which kinds exist, and where each is defined, is ``registry``'s table. The names below are
loaded on first use, so that importing ``models.registry`` (as the CLI does to list the
kinds) pays for neither scikit-learn nor any model library. The horizons live in ``ml_cloud_optimizer.horizons``.
"""

from __future__ import annotations

from ml_cloud_optimizer._lazy import lazy_exports

__all__ = [
    "Forecaster",
    "clip_forecast",
    "forecast_column",
    "forecaster_class",
    "register_forecaster",
]


__getattr__, __dir__ = lazy_exports(__name__, dict.fromkeys(__all__, "base"))
