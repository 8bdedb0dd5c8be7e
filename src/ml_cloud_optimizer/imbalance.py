"""Three answers to rare positives (peaks are a few percent of rows): SMOTE, class weights, focal loss.

* ``smote_resample`` adds synthetic minority rows by interpolating between neighbours. It is
  for training rows only: resampling a validation or test window would grade the model on
  points that never happened. Feature NaNs are not allowed by SMOTE; fill them first.
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

__all__ = ["FocalLoss", "class_weights", "smote_resample"]


def smote_resample(X, y, *, random_state: int = 0, k_neighbors: int = 5, sampling_strategy="auto"):
    """Oversample the minority class of training rows ``X``, ``y`` with imbalanced-learn's SMOTE.

    The original rows come first, unchanged and in order; the synthetic rows follow them, so
    ``X_res[:len(X)]`` is ``X``. ``k_neighbors`` shrinks to what the minority class allows.

    Args:
        X: training features (DataFrame or 2-D array) without NaN.
        y: binary training labels.
        random_state: seed of the neighbour draws.
        k_neighbors: neighbours to interpolate towards.
        sampling_strategy: passed to SMOTE ("auto": as many minority as majority rows).

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
    values = X.to_numpy(dtype="float64") if isinstance(X, pd.DataFrame) else np.asarray(X, dtype="float64")
    if np.isnan(values).any():
        raise ValueError("smote_resample: X holds NaN; fill missing features before resampling")
    from imblearn.over_sampling import SMOTE

    smote = SMOTE(
        sampling_strategy=sampling_strategy,
        k_neighbors=min(k_neighbors, int(counts.min()) - 1),
        random_state=random_state,
    )
    return smote.fit_resample(X, y)


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
