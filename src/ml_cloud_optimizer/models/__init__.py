"""Forecasters behind one interface (see ``base``): baselines, tabular and sequence models."""

from ml_cloud_optimizer.models.base import (
    DEFAULT_HORIZONS,
    HEADLINE_HORIZON,
    Forecaster,
    forecast_column,
    forecaster_class,
    register_forecaster,
)

__all__ = [
    "DEFAULT_HORIZONS",
    "HEADLINE_HORIZON",
    "Forecaster",
    "forecast_column",
    "forecaster_class",
    "register_forecaster",
]
