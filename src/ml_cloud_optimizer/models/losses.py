"""Training losses of the torch models, kept apart so that nothing without a network imports torch.

* ``WeightedL1Loss``: the sequence forecasters' MAE in utilisation units.
* ``FocalLoss``: the recurrent peak classifier's answer to rare positives (``imbalance``
  has the other two, SMOTE and class weights, which need no torch).
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["FocalLoss", "WeightedL1Loss"]


class WeightedL1Loss(nn.Module):
    """Mean absolute error per sample weighted by the last column of the targets.

    The forecasters predict changes in each entity's own scale, which keeps the network's
    inputs and outputs of one size; weighting each sample by its entity's scale makes the
    loss the plain MAE in utilisation units, the metric forecasts are judged on, instead of
    letting near-constant entities (tiny scale, large scaled noise) dominate it.
    """

    def forward(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return ((output - target[:, :-1]).abs() * target[:, -1:]).mean()


class FocalLoss(nn.Module):
    """Binary focal loss on logits: ``-alpha_t * (1 - p_t) ** gamma * log(p_t)``.

    Down-weights well-classified examples so a network's gradient is not dominated by the
    many easy negatives (Lin et al., 2017). With ``gamma=0`` and ``alpha=None`` it is binary
    cross-entropy; a larger ``gamma`` shrinks the loss of examples already classified with
    confidence.

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
