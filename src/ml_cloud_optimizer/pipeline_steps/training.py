"""Fit one forecaster of a given kind on the training window, with the run's budget, and save it."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from ml_cloud_optimizer.data.schema import Fleet
from ml_cloud_optimizer.horizons import check_horizons
from ml_cloud_optimizer.logs import quiet_optuna
from ml_cloud_optimizer.models.base import Forecaster
from ml_cloud_optimizer.models.registry import build_forecaster, forecaster_entry, kinds

__all__ = ["FIT_INFO", "SEQUENCE_KINDS", "TABULAR_KINDS", "THREADS_ENV", "save_model", "train_forecaster"]

_log = logging.getLogger(__name__)

# Threads a training task may use; unset (a cluster pod sized for the task) keeps the models' defaults.
THREADS_ENV = "MLCO_THREADS"
# Written beside the model's own files: what evaluation's tie rule (the faster fit) needs to know.
FIT_INFO = "fit.json"

TABULAR_KINDS = kinds("tabular")
SEQUENCE_KINDS = kinds("sequence")


def train_forecaster(
    kind: str, train: Fleet, *, horizons, trials: int = 0, epochs: int | None = None, seed: int = 0
) -> Forecaster:
    """Fit the forecaster ``kind`` on ``train``.

    The horizons are checked first, so a run set up without the headline horizon (in the
    KFP UI, say) fails at its first training task instead of after every model has trained.

    Args:
        kind: one of ``TABULAR_KINDS`` or ``SEQUENCE_KINDS``.
        train: the training window.
        horizons: steps ahead (whole numbers; KFP may hand them over as floats).
        trials: Optuna trials for a tabular model (0: library defaults).
        epochs: most epochs for a sequence model (None: its default).
        seed: the model's seed.
    """
    forecaster_entry(kind)
    horizons = check_horizons(horizons)
    threads = int(os.environ[THREADS_ENV]) if os.environ.get(THREADS_ENV) else None
    model = build_forecaster(kind, horizons=horizons, trials=trials, epochs=epochs, seed=seed, threads=threads or None)
    if trials:
        quiet_optuna()
    model.fit(train.metrics, train.entities)  # sets fit_seconds_
    _log.info("trained %s on %s rows in %.1f s", kind, f"{len(train.metrics):,}", model.fit_seconds_)
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
