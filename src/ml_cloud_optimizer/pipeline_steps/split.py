"""One global time cut-off per run: everything before it trains, everything after it is the hold-out.

A global cut-off (rather than one per entity) means every model, every baseline and the deploy
step's comparison with the serving model are judged on the same wall-clock window, and no
training row lies after any evaluated one. It is ``evaluation.holdout_cutoff``'s, so the
evaluate task, which recomputes it from the same rows, agrees.
"""

from __future__ import annotations

import logging

import pandas as pd

from ml_cloud_optimizer.data.schema import Fleet
from ml_cloud_optimizer.evaluation import check_evaluable, holdout_cutoff

__all__ = ["split_by_time", "training_part"]

_log = logging.getLogger(__name__)


def split_by_time(fleet: Fleet, holdout_fraction: float) -> tuple[Fleet, str]:
    """The training part of ``fleet`` and the cut-off (ISO 8601) where the hold-out starts.

    The cut-off sits ``holdout_fraction`` of the time span before the end, on the 5-minute grid.
    Data that cannot be evaluated so (``evaluation.check_evaluable``) fails here, in one line,
    before any training task starts.
    """
    check_evaluable(fleet.metrics, holdout_fraction)
    cutoff = holdout_cutoff(fleet.metrics, holdout_fraction)
    train = training_part(fleet, cutoff.isoformat())
    _log.info(
        "split at %s UTC: %s rows to train, %s held out",
        f"{cutoff:%Y-%m-%d %H:%M}",
        f"{len(train.metrics):,}",
        f"{len(fleet.metrics) - len(train.metrics):,}",
    )
    return train, cutoff.isoformat()


def training_part(fleet: Fleet, cutoff: str) -> Fleet:
    """The rows of ``fleet`` before ``cutoff``, and the entities that have any."""
    metrics = fleet.metrics.loc[fleet.metrics["ts"] < pd.Timestamp(cutoff)].reset_index(drop=True)
    entities = fleet.entities.loc[fleet.entities["entity_id"].isin(metrics["entity_id"].unique())]
    return Fleet(metrics=metrics, entities=entities.reset_index(drop=True), source=fleet.source)
