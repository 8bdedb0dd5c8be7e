"""Fit one forecaster of a given kind on the training window, with the run's budget, and save it."""

from __future__ import annotations

import importlib
import json
import os
import time
from pathlib import Path

from ml_cloud_optimizer.data.schema import Fleet
from ml_cloud_optimizer.models.base import Forecaster, forecaster_class

__all__ = ["FIT_INFO", "MODEL_MODULES", "SEQUENCE_KINDS", "TABULAR_KINDS", "THREADS_ENV", "save_model",
           "train_forecaster"]

# Threads a training task may use; unset (a cluster pod sized for the task) keeps the models' defaults.
THREADS_ENV = "MLCO_THREADS"
# Written beside the model's own files: what evaluation's tie rule (the faster fit) needs to know.
FIT_INFO = "fit.json"

TABULAR_KINDS = ("lightgbm", "xgboost", "catboost")
SEQUENCE_KINDS = ("lstm", "gru")
# Importing a module registers its forecasters by kind.
MODEL_MODULES = {
    **{kind: "ml_cloud_optimizer.models.tabular" for kind in TABULAR_KINDS},
    **{kind: "ml_cloud_optimizer.models.sequence" for kind in SEQUENCE_KINDS},
}


def train_forecaster(kind: str, train: Fleet, *, horizons, trials: int = 0, epochs: int | None = None,
                     seed: int = 0) -> Forecaster:
    """Fit the forecaster ``kind`` on ``train``.

    Args:
        kind: one of ``TABULAR_KINDS`` or ``SEQUENCE_KINDS``.
        train: the training window.
        horizons: steps ahead (whole numbers; KFP may hand them over as floats).
        trials: Optuna trials for a tabular model (0: library defaults).
        epochs: most epochs for a sequence model (None: its default).
        seed: the model's seed.
    """
    if kind not in MODEL_MODULES:
        raise ValueError(f"unknown model kind {kind!r}; known: {', '.join(MODEL_MODULES)}")
    importlib.import_module(MODEL_MODULES[kind])
    params: dict = {"horizons": tuple(int(h) for h in horizons)}
    threads = int(os.environ[THREADS_ENV]) if os.environ.get(THREADS_ENV) else None
    if kind in TABULAR_KINDS:
        params.update(n_trials=int(trials), random_state=int(seed), **({"n_jobs": threads} if threads else {}))
    else:
        params.update(seed=int(seed), **({} if epochs is None else {"epochs": int(epochs)}),
                      **({"num_threads": threads} if threads else {}))
    started = time.perf_counter()
    model = forecaster_class(kind)(**params).fit(train.metrics, train.entities)
    model.fit_seconds_ = time.perf_counter() - started
    print(f"[mlco] trained {kind} on {len(train.metrics):,} rows in {model.fit_seconds_:.1f} s", flush=True)
    return model


def save_model(model: Forecaster, directory: str | Path) -> dict:
    """Save ``model`` (its own format plus metadata.json) and return what the artifact's metadata shows."""
    model.save(directory)
    summary = {
        "kind": model.kind,
        "horizons": [int(h) for h in model.horizons],
        "min_history": int(model.min_history),
        "fit_seconds": round(float(getattr(model, "fit_seconds_", 0.0)), 2),
    }
    (Path(directory) / FIT_INFO).write_text(json.dumps(summary))
    return summary
