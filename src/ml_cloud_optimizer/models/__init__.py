"""Forecasters behind one interface (see ``base``): baselines, tabular and sequence models.

Which kinds exist, and where each is defined, is ``registry``'s table. The names below are
loaded on first use, so that importing ``models.registry`` (as the CLI does to list the
kinds) pays for neither scikit-learn nor any model library.
"""

from __future__ import annotations

import importlib

__all__ = [
    "DEFAULT_HORIZONS",
    "HEADLINE_HORIZON",
    "Forecaster",
    "clip_forecast",
    "forecast_column",
    "forecaster_class",
    "register_forecaster",
]


def __getattr__(name: str):
    if name not in __all__:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.base"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
