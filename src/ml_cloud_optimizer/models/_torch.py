"""Everything the recurrent models share in PyTorch: the network, the device, the training loop, the losses.

Both ``sequence`` (the LSTM/GRU forecasters) and ``peak.recurrent`` (the GRU peak classifier)
train the same kind of network on the same windows (``windows``), so the pieces live once,
here, and torch is imported by this module and the two that use it, nothing else. The model
server imports ``models`` for every champion; only a champion with a recurrent forecaster or
peak model reaches this module, so serving a LightGBM champion never loads torch (the lean
predictor image has none; ``tests/serving/test_serving_imports.py`` checks it).

The module is private: its names are the models' machinery, not an API. ``imbalance.FocalLoss``
names the focal loss lazily from here, and ``bench/train_speed.py`` borrows ``autocast_dtype`` so
its plain loop trains at the models' precision.

* ``RecurrentNet``: a stacked LSTM or GRU with a linear head that starts at zero.
* ``select_device``, ``autocast_dtype``, ``torch_threads``: CUDA with bf16 autocast when a GPU
  is present, else the CPU cores other processes leave idle.
* ``train_epoch``, ``mean_loss``, ``fit_recurrent``, ``TrainingLog``: the one step loop, the
  early-stopping score, and training with best-checkpoint restore (optionally under a
  one-cycle learning-rate schedule).
* ``predict_windows``: batched inference over panel rows (raw outputs; callers map them).
* ``WeightedL1Loss`` and ``FocalLoss``: the forecasters' and the peak classifier's losses.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from ml_cloud_optimizer.models.cores import idle_cores
from ml_cloud_optimizer.models.windows import Panel

__all__ = [
    "FocalLoss",
    "RecurrentNet",
    "TrainingLog",
    "WeightedL1Loss",
    "autocast_dtype",
    "fit_recurrent",
    "mean_loss",
    "predict_windows",
    "select_device",
    "torch_threads",
    "train_epoch",
]

PREDICT_BATCH = 8192  # windows per inference batch: large, since no gradients are kept
SCHEDULES = ("constant", "one_cycle")


class RecurrentNet(nn.Module):
    """A stacked LSTM or GRU whose last hidden state, beside the last input step, feeds a linear head."""

    def __init__(self, cell: str, n_inputs: int, hidden: int, layers: int, n_outputs: int, dropout: float = 0.0):
        super().__init__()
        rnn = {"lstm": nn.LSTM, "gru": nn.GRU}[cell]
        self.rnn = rnn(n_inputs, hidden, layers, batch_first=True, dropout=dropout if layers > 1 else 0.0)
        self.head = nn.Linear(hidden + n_inputs, n_outputs)
        # Start from "no change": a forecaster begins as persistence and moves away where it pays.
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(x)
        return self.head(torch.cat([out[:, -1], x[:, -1]], dim=1))


def select_device(device: str | torch.device = "auto") -> torch.device:
    """``auto`` means CUDA when a GPU is visible, else the CPU."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def autocast_dtype(device: torch.device) -> torch.dtype | None:
    """bf16 on CUDA (tensor cores, no loss scaling needed); full precision on the CPU."""
    return torch.bfloat16 if device.type == "cuda" else None


@contextlib.contextmanager
def torch_threads(count: int | None = None) -> Iterator[int]:
    """Use ``count`` intra-op threads (default: ``idle_cores()``), then restore the previous setting."""
    previous = torch.get_num_threads()
    torch.set_num_threads(max(1, int(count or idle_cores())))
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(previous)


def _autocast(device: torch.device, amp_dtype: torch.dtype | None):
    """Autocast to ``amp_dtype`` on ``device``; a no-op context when it is None (full precision)."""
    return torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None)


def train_epoch(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    *,
    amp_dtype: torch.dtype | None = None,
    clip_norm: float | None = 1.0,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
) -> float:
    """One pass of optimizer steps over ``batches`` of ``(inputs, targets)``; returns the mean loss.

    The loss is summed on the device and read once at the end, so a GPU never waits for the host.
    ``scheduler``, when given, steps after every optimizer step.
    """
    model.train()
    total, count = None, 0
    for x, y in batches:
        optimizer.zero_grad(set_to_none=True)
        with _autocast(x.device, amp_dtype):
            out = model(x)
        loss = loss_fn(out.float(), y)
        loss.backward()
        if clip_norm:
            nn.utils.clip_grad_norm_(model.parameters(), clip_norm)
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        batch_loss = loss.detach() * len(x)
        total = batch_loss if total is None else total + batch_loss
        count += len(x)
    return float(total) / count if total is not None else float("nan")


@torch.inference_mode()
def mean_loss(
    model: nn.Module,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    *,
    amp_dtype: torch.dtype | None = None,
) -> float:
    """Mean of ``loss_fn`` over ``batches`` without updating anything (the early-stopping score)."""
    model.eval()
    total, count = 0.0, 0
    for x, y in batches:
        with _autocast(x.device, amp_dtype):
            out = model(x)
        total += float(loss_fn(out.float(), y)) * len(x)
        count += len(x)
    return total / count if count else float("nan")


@dataclass
class TrainingLog:
    """What ``fit_recurrent`` did: per-epoch losses and the epoch whose weights were kept."""

    epochs: list[dict] = field(default_factory=list)
    best_epoch: int = -1
    best_loss: float = float("inf")


def _one_cycle(optimizer, lr: float, total_steps: int):
    """One-cycle schedule with a warm-up of a tenth of the steps, and never of zero steps.

    ``OneCycleLR`` divides by the warm-up's length in steps less one, so a run of exactly 10
    steps at ``pct_start=0.1`` raises ZeroDivisionError; short runs warm up over two steps.
    """
    pct_start = 0.1 if total_steps < 4 else max(0.1, 2 / total_steps)
    return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=total_steps, pct_start=pct_start)


def fit_recurrent(
    model: nn.Module,
    panel: Panel,
    targets: torch.Tensor,
    train_rows: np.ndarray,
    val_rows: np.ndarray,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    *,
    window: int,
    epochs: int,
    batch_size: int,
    lr: float,
    patience: int,
    samples_per_epoch: int | None,
    seed: int,
    device: torch.device,
    schedule: str = "constant",
) -> TrainingLog:
    """Train ``model`` on windows ending at ``train_rows``; early stopping and best-checkpoint restore on ``val_rows``.

    ``targets`` is ``[len(panel), outputs]`` on ``device``, indexed by row. Without validation
    rows every epoch counts as an improvement and the last weights are kept.

    ``schedule`` is "constant" (Adam at ``lr`` throughout) or "one_cycle": a short warm-up to
    ``lr`` and a cosine decay over all ``epochs`` (Smith's one-cycle policy). On noisy load the
    decay matters: at a constant rate the validation loss of the last epochs jumps by several
    percent from one epoch to the next, and early stopping then picks noise.
    """
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {', '.join(SCHEDULES)}, got {schedule!r}")
    rng = np.random.default_rng(seed)
    amp_dtype = autocast_dtype(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    per_epoch = min(len(train_rows), samples_per_epoch or len(train_rows))
    steps = max(1, epochs * -(-per_epoch // batch_size))
    scheduler = _one_cycle(optimizer, lr, steps) if schedule == "one_cycle" else None
    val_index = torch.as_tensor(val_rows, dtype=torch.long, device=device)
    log, best_state, stale = TrainingLog(), None, 0
    for epoch in range(epochs):
        started = time.perf_counter()
        rows = train_rows
        if samples_per_epoch and len(rows) > samples_per_epoch:
            rows = rng.choice(rows, size=samples_per_epoch, replace=False)
        order = torch.as_tensor(rng.permutation(rows), dtype=torch.long, device=device)
        train_loss = train_epoch(
            model,
            optimizer,
            _window_batches(panel, targets, order, window, batch_size),
            loss_fn,
            amp_dtype=amp_dtype,
            scheduler=scheduler,
        )
        val_loss = (
            mean_loss(
                model, _window_batches(panel, targets, val_index, window, PREDICT_BATCH), loss_fn, amp_dtype=amp_dtype
            )
            if len(val_index)
            else train_loss
        )
        log.epochs.append(
            {
                "epoch": epoch,
                "train_loss": train_loss,
                "val_loss": val_loss,
                "lr": optimizer.param_groups[0]["lr"],  # at the epoch's end
                "seconds": time.perf_counter() - started,
            }
        )
        if val_loss < log.best_loss:
            log.best_loss, log.best_epoch, stale = val_loss, epoch, 0
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        else:
            stale += 1
            if stale >= patience:
                break
    if best_state is not None:
        model.load_state_dict(best_state)
    return log


def _window_batches(
    panel: Panel, targets: torch.Tensor, rows: torch.Tensor, window: int, batch_size: int
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    for start in range(0, len(rows), batch_size):
        index = rows[start : start + batch_size]
        yield panel.windows(index, window), targets[index]


def predict_windows(
    net: RecurrentNet, panel: Panel, rows: np.ndarray, window: int, device: torch.device, *, batch: int = PREDICT_BATCH
) -> np.ndarray:
    """The net's raw outputs, ``float32 [len(rows), outputs]``, for the windows ending at panel ``rows``.

    Both recurrent models forecast this way, so inference batching and bf16 autocast on CUDA
    are written once; each caller maps the outputs itself (the forecasters rescale changes,
    the peak classifier applies the sigmoid). ``net`` is left on ``device`` in eval mode.
    """
    net = net.to(device).eval()
    amp_dtype = autocast_dtype(device)
    chunks = []
    with torch.inference_mode():
        index = torch.as_tensor(rows, dtype=torch.long, device=device)
        for start in range(0, len(index), batch):
            x = panel.windows(index[start : start + batch], window)
            with _autocast(device, amp_dtype):
                chunks.append(net(x).float().cpu())
    if not chunks:
        return np.zeros((0, net.head.out_features), dtype=np.float32)
    return torch.cat(chunks).numpy()


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
