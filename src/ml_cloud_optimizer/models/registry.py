"""Every model kind in one table: kind -> module, class, family and simplicity, imported lazily.

Adding a forecaster means one ``ModelKind`` line here plus its module; the CLI's defaults,
the pipeline's model lists, the leaderboard's tie rule and model loading all derive from
this table. The table names modules instead of importing them so that loading a LightGBM
model never pays for torch, and ``mlco --help`` stays fast; hence this module imports only
the standard library (and ``errors``, which imports nothing).

Peak classifiers have a table of their own: ``"lightgbm"`` names both a forecaster and a
saved peak-model kind.
"""

from __future__ import annotations

import importlib
import inspect
from dataclasses import dataclass
from typing import Any

from ml_cloud_optimizer.errors import UserInputError

__all__ = [
    "FAMILIES",
    "FORECASTERS",
    "PEAK_MODELS",
    "TRAINABLE",
    "ModelKind",
    "build_forecaster",
    "family",
    "forecaster_entry",
    "kinds",
    "peak_entry",
    "simplicity",
]

FAMILIES = ("baseline", "tabular", "sequence", "ensemble", "peak")


@dataclass(frozen=True)
class ModelKind:
    """Where the class for ``kind`` lives, and how simple it is.

    Attributes:
        kind: the name saved with a model and given on the command line.
        family: one of ``FAMILIES``; the pipeline trains tabular and sequence models in
            separate tasks, and sequence models are the ones that need torch. An ``ensemble``
            is never trained by name: evaluation builds it from fitted candidates.
        module: the module that defines the class, imported on first ``load``.
        name: the class's name in ``module``.
        simplicity: rank in the leaderboard's tie rule; the lower, the simpler.
    """

    kind: str
    family: str
    module: str
    name: str
    simplicity: int

    def load(self) -> type[Any]:
        """The class, importing its module now if it was not yet."""
        return getattr(importlib.import_module(self.module), self.name)


_MODELS = "ml_cloud_optimizer.models"

# Dict order is the order of every derived list (CLI defaults, pipeline fan-out).
FORECASTERS: dict[str, ModelKind] = {
    entry.kind: entry
    for entry in (
        ModelKind("persistence", "baseline", f"{_MODELS}.baselines", "PersistenceForecaster", 0),
        ModelKind("seasonal_naive", "baseline", f"{_MODELS}.baselines", "SeasonalNaiveForecaster", 1),
        ModelKind("lightgbm", "tabular", f"{_MODELS}.tabular", "LightGBMForecaster", 2),
        ModelKind("xgboost", "tabular", f"{_MODELS}.tabular", "XGBoostForecaster", 3),
        ModelKind("catboost", "tabular", f"{_MODELS}.tabular", "CatBoostForecaster", 4),
        ModelKind("lstm", "sequence", f"{_MODELS}.sequence", "LSTMForecaster", 6),
        ModelKind("gru", "sequence", f"{_MODELS}.sequence", "GRUForecaster", 5),
        ModelKind("blend", "ensemble", f"{_MODELS}.blend", "BlendForecaster", 7),
    )
}

# Saved peak-model kinds (the ``kind`` in peak.json).
PEAK_MODELS: dict[str, ModelKind] = {
    entry.kind: entry
    for entry in (
        ModelKind("lightgbm", "peak", f"{_MODELS}.peak.boosted", "PeakClassifier", 0),
        ModelKind("gru_focal", "peak", f"{_MODELS}.peak.recurrent", "SequencePeakClassifier", 1),
    )
}


def kinds(*families: str) -> tuple[str, ...]:
    """Forecaster kinds of the given families, in table order; every kind when none is given.

    Example:
        >>> kinds("tabular")
        ('lightgbm', 'xgboost', 'catboost')
    """
    unknown = set(families) - set(FAMILIES)
    if unknown:
        raise UserInputError(f"unknown model family {sorted(unknown)[0]!r}; known: {', '.join(FAMILIES)}")
    return tuple(k for k, e in FORECASTERS.items() if not families or e.family in families)


def forecaster_entry(kind: str) -> ModelKind:
    """The table entry for forecaster ``kind``; a one-line ``UserInputError`` naming the known kinds."""
    try:
        return FORECASTERS[kind]
    except KeyError:
        raise UserInputError(f"unknown model kind {kind!r}; known: {', '.join(FORECASTERS)}") from None


def peak_entry(kind: str) -> ModelKind:
    """The table entry for saved peak-model ``kind``."""
    try:
        return PEAK_MODELS[kind]
    except KeyError:
        raise UserInputError(f"unknown peak model kind {kind!r}; known: {', '.join(PEAK_MODELS)}") from None


def family(kind: str) -> str:
    """The family of forecaster ``kind`` ("baseline", "tabular", "sequence" or "ensemble")."""
    return forecaster_entry(kind).family


def simplicity(kind: str) -> int:
    """Tie-rule rank of ``kind``; a kind not in the table counts as the least simple."""
    entry = FORECASTERS.get(kind)
    return entry.simplicity if entry is not None else len(FORECASTERS)


# build_forecaster's settings -> the constructor parameter names that take them, first match wins.
_SETTINGS = {
    "horizons": ("horizons",),
    "seed": ("random_state", "seed"),
    "trials": ("n_trials",),
    "epochs": ("epochs",),
    "threads": ("n_jobs", "num_threads"),
}


def build_forecaster(kind: str, *, horizons=None, seed=None, trials=None, epochs=None, threads=None):
    """An unfitted forecaster of ``kind`` with the run's settings.

    Each setting goes to whichever constructor parameter of the class takes it
    (``seed`` to ``random_state`` or ``seed``, ``threads`` to ``n_jobs`` or ``num_threads``,
    ``trials`` to ``n_trials``); one the class lacks is dropped, and ``None`` keeps the
    class's default. That is what lets the CLI and the pipeline build any kind alike.

    Example:
        >>> build_forecaster("lightgbm", seed=3, threads=1).random_state
        3
    """
    cls = forecaster_entry(kind).load()
    accepted = inspect.signature(cls.__init__).parameters
    given = {"horizons": horizons, "seed": seed, "trials": trials, "epochs": epochs, "threads": threads}
    params = {}
    for setting, value in given.items():
        if value is None:
            continue
        name = next((n for n in _SETTINGS[setting] if n in accepted), None)
        if name is not None:
            params[name] = tuple(int(h) for h in value) if setting == "horizons" else int(value)
    return cls(**params)


TRAINABLE: tuple[str, ...] = kinds("tabular", "sequence")
