"""Three answers to rare positives (peaks are a few percent of rows): SMOTE, class weights, focal loss.

* ``smote_resample`` adds synthetic minority rows by interpolating between neighbours. It is
  for training rows only: resampling a validation or test window would grade the model on
  points that never happened. Feature NaNs are not allowed by SMOTE; fill them first.
* ``class_weights`` gives each class a weight inversely proportional to its frequency, the
  cheap alternative that changes no data.
* ``FocalLoss`` down-weights well-classified examples so a network's gradient is not
  dominated by the many easy negatives (Lin et al., 2017).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from imblearn.over_sampling import SMOTE
from sklearn.utils.class_weight import compute_class_weight
from torch import nn

__all__ = ["smote_resample", "class_weights", "FocalLoss"]


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
    smote = SMOTE(
        sampling_strategy=sampling_strategy,
        k_neighbors=min(k_neighbors, int(counts.min()) - 1),
        random_state=random_state,
    )
    return smote.fit_resample(X, y)


def class_weights(y) -> dict:
    """``{class: weight}`` with weights ``n_rows / (n_classes * n_rows_of_class)`` ("balanced")."""
    labels = np.asarray(y)
    classes = np.unique(labels)
    weights = compute_class_weight("balanced", classes=classes, y=labels)
    return {c.item() if hasattr(c, "item") else c: float(w) for c, w in zip(classes, weights)}


class FocalLoss(nn.Module):
    """Binary focal loss on logits: ``-alpha_t * (1 - p_t) ** gamma * log(p_t)``.

    With ``gamma=0`` and ``alpha=None`` it is binary cross-entropy; a larger ``gamma``
    shrinks the loss of examples already classified with confidence.

    Args:
        gamma: focusing exponent (2 is the usual choice).
        alpha: weight of the positive class in [0, 1] (negatives get ``1 - alpha``); None weighs both alike.
        reduction: "mean", "sum" or "none".
    """

    def __init__(self, gamma: float = 2.0, alpha: float | None = 0.25, reduction: str = "mean"):
        super().__init__()
        if gamma < 0:
            raise ValueError(f"FocalLoss: gamma must be >= 0, got {gamma}")
        if alpha is not None and not 0.0 <= alpha <= 1.0:
            raise ValueError(f"FocalLoss: alpha must be in [0, 1], got {alpha}")
        if reduction not in ("mean", "sum", "none"):
            raise ValueError(f"FocalLoss: reduction must be mean, sum or none, got {reduction!r}")
        self.gamma, self.alpha, self.reduction = gamma, alpha, reduction

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        targets = targets.to(logits.dtype)
        ce = nn.functional.binary_cross_entropy_with_logits(logits, targets, reduction="none")
        p_t = torch.exp(-ce)  # probability given to the true class
        loss = ce * (1.0 - p_t) ** self.gamma
        if self.alpha is not None:
            loss = loss * (self.alpha * targets + (1.0 - self.alpha) * (1.0 - targets))
        if self.reduction == "mean":
            return loss.mean()
        if self.reduction == "sum":
            return loss.sum()
        return loss
