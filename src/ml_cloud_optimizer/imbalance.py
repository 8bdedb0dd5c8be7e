"""Three answers to rare positives (peaks are a few percent of rows): SMOTE, class weights, focal loss.

* ``smote_resample`` adds synthetic minority rows by interpolating between neighbours. It is
  for training rows only: resampling a validation or test window would grade the model on
  points that never happened. Feature NaNs are not allowed by SMOTE; fill them first.
  ``cap_majority`` first keeps at most a fixed number of majority rows, so that what SMOTE
  and the classifier after it hold stops growing with the fleet.
* ``class_weights`` gives each class a weight inversely proportional to its frequency, the
  cheap alternative that changes no data.
* ``FocalLoss`` down-weights well-classified examples so a network's gradient is not
  dominated by the many easy negatives (Lin et al., 2017). It is a torch module and lives
  with the recurrent models' other torch code in ``models._torch``; this module names it lazily.

imbalanced-learn, scikit-learn and torch are imported only by the function that uses them:
the boosted peak classifier imports this module, and the model server that loads it has
none of the three to spare (its lean image has no torch or imbalanced-learn at all).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:  # loaded lazily by __getattr__ below: torch is slow to import
    from ml_cloud_optimizer.models._torch import FocalLoss

__all__ = ["MAJORITY_CAP", "NEIGHBOUR_BLOCK_ROWS", "FocalLoss", "cap_majority", "class_weights", "smote_resample"]

# SMOTE finds each minority row's neighbours by brute force over every pair of minority rows:
# time grows with the square of their number (the peak rows of 1M generated records hold 78,697
# peaks: 44-88 s on two cores, against 1.2-1.5 s for the 8,362 of 100,000 records; some 2.5 hours
# projected at 10M). Above this many, the search runs within blocks of consecutive rows; a run of
# `mlco run`'s default 100,000 records stays below it, exactly as before.
NEIGHBOUR_BLOCK_ROWS = 10_000

# SMOTE balances the classes 1:1, so the rows it and the classifier hold are twice the majority:
# at 10M generated records that is some 31 GiB. Past this many, further ordinary rows teach a
# classifier of rare peaks little (negative down-sampling, He et al. 2014, "Practical lessons from
# predicting clicks on ads at Facebook"), so a uniform sample of this many is kept. `mlco run`'s
# default 100,000 records have about 60,000 and are left whole.
MAJORITY_CAP = 250_000


def cap_majority(y, cap: int | None = MAJORITY_CAP, *, random_state: int = 0) -> np.ndarray:
    """A mask keeping every minority row and a seeded uniform sample of ``cap`` majority rows, in order.

    All True when the majority class has ``cap`` rows or fewer, or ``cap`` is None. The rows
    kept stay in their order, so blocks of consecutive rows (SMOTE's neighbour search above
    ``NEIGHBOUR_BLOCK_ROWS``) still hold neighbouring entities.

    Raises:
        ValueError: ``cap`` below 1.
    """
    labels = np.asarray(y)
    keep = np.ones(len(labels), dtype=bool)
    if cap is None:
        return keep
    if cap < 1:
        raise ValueError(f"cap_majority: cap must be at least 1, got {cap}")
    classes, counts = np.unique(labels, return_counts=True)
    if len(classes) < 2 or counts.max() <= cap:
        return keep
    majority = np.flatnonzero(labels == classes[np.argmax(counts)])
    dropped = np.random.default_rng(random_state).choice(majority, size=len(majority) - cap, replace=False)
    keep[dropped] = False
    return keep


def smote_resample(
    X,
    y,
    *,
    random_state: int = 0,
    k_neighbors: int = 5,
    sampling_strategy="auto",
    block_rows: int = NEIGHBOUR_BLOCK_ROWS,
):
    """Oversample the minority class of training rows ``X``, ``y`` with imbalanced-learn's SMOTE.

    The original rows come first, unchanged and in order; the synthetic rows follow them, so
    ``X_res[:len(X)]`` is ``X``. ``k_neighbors`` shrinks to what the minority class allows.

    Up to ``block_rows`` minority rows this is imbalanced-learn's SMOTE as it stands: neighbours
    among all minority rows. Above, the minority rows are cut into blocks of consecutive rows
    (equal sizes, each at most ``block_rows``) and neighbours are found within a row's block,
    so the search grows linearly with the rows instead of quadratically; the draws and the
    interpolation are SMOTE's own. Rows ordered by entity and time (as the peak rows are) give
    blocks of whole neighbouring entities.

    Args:
        X: training features (DataFrame or 2-D array) without NaN.
        y: binary training labels.
        random_state: seed of the neighbour draws.
        k_neighbors: neighbours to interpolate towards.
        sampling_strategy: passed to SMOTE ("auto": as many minority as majority rows).
        block_rows: most minority rows searched together for neighbours.

    Returns:
        ``(X_res, y_res)`` of the input types.

    Raises:
        ValueError: one class only, fewer than two minority rows, or NaN in ``X``.
    """
    labels = np.asarray(y)
    classes, counts = np.unique(labels, return_counts=True)
    if len(classes) != 2:
        raise ValueError(f"smote_resample: needs two classes in the training labels, got {len(classes)}")
    if counts.min() < 2:
        raise ValueError(f"smote_resample: the minority class has {counts.min()} row(s); SMOTE needs at least 2")
    if _has_nan(X):
        raise ValueError("smote_resample: X holds NaN; fill missing features before resampling")
    from imblearn.over_sampling import SMOTE

    k = min(k_neighbors, int(counts.min()) - 1)
    smote = SMOTE(
        sampling_strategy=sampling_strategy,
        k_neighbors=k if counts.min() <= block_rows else _block_neighbours(k + 1, block_rows),
        random_state=random_state,
    )
    return smote.fit_resample(X, y)


def _has_nan(X) -> bool:
    """Whether ``X`` holds NaN, a column at a time (no float64 copy of the whole frame)."""
    if isinstance(X, pd.DataFrame):
        return any(np.isnan(X[c].to_numpy(dtype="float64", na_value=np.nan)).any() for c in X.columns)
    return bool(np.isnan(np.asarray(X, dtype="float64")).any())


def _block_neighbours(n_neighbors: int, block_rows: int):
    """A NearestNeighbors whose ``kneighbors`` of the fitted rows looks within blocks of consecutive rows.

    SMOTE fits its neighbour search on the minority rows and asks for each one's ``k + 1``
    nearest (itself first, then ``k``); this answers within the row's block. Defined on call:
    scikit-learn is imported only when SMOTE runs.
    """
    from sklearn.neighbors import NearestNeighbors

    class BlockNeighbours(NearestNeighbors):
        def __init__(self, n_neighbors: int = 6, block_rows: int = NEIGHBOUR_BLOCK_ROWS):
            super().__init__(n_neighbors=n_neighbors)
            self.block_rows = block_rows

        def fit(self, X, y=None):
            self.fitted_rows_ = np.asarray(X)
            self.n_samples_fit_ = len(self.fitted_rows_)
            return self

        def kneighbors(self, X=None, n_neighbors=None, return_distance=True):
            rows = self.fitted_rows_
            k = n_neighbors or self.n_neighbors
            if return_distance or (X is not None and X is not rows and np.shape(X) != rows.shape):
                raise NotImplementedError("BlockNeighbours answers SMOTE's query only: the fitted rows, indices")
            blocks = np.array_split(np.arange(len(rows)), -(-len(rows) // self.block_rows))
            found = np.empty((len(rows), k), dtype=np.int64)
            for block in blocks:
                search = NearestNeighbors(n_neighbors=k).fit(rows[block])
                found[block] = block[search.kneighbors(rows[block], return_distance=False)]
            return found

        def kneighbors_graph(self, X=None, n_neighbors=None, mode="connectivity"):
            raise NotImplementedError("BlockNeighbours answers SMOTE's query only")

    return BlockNeighbours(n_neighbors=n_neighbors, block_rows=block_rows)


def class_weights(y) -> dict:
    """``{class: weight}`` with weights ``n_rows / (n_classes * n_rows_of_class)`` ("balanced")."""
    from sklearn.utils.class_weight import compute_class_weight

    labels = np.asarray(y)
    classes = np.unique(labels)
    weights = compute_class_weight("balanced", classes=classes, y=labels)
    return {c.item() if hasattr(c, "item") else c: float(w) for c, w in zip(classes, weights, strict=True)}


def __getattr__(name: str):
    if name == "FocalLoss":
        from ml_cloud_optimizer.models._torch import FocalLoss

        return FocalLoss
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
