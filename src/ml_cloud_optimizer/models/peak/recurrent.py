"""``SequencePeakClassifier``: a GRU over the forecasters' windows, trained with the focal loss.

The windows are the sequence forecasters' (``models.windows``) plus one channel, the load's
distance from the entity's threshold in the entity's scale. The network, training loop,
focal loss and batched inference are the forecasters' own (``models._torch``); only a bundle
whose peak model is of this kind imports this module, and so torch, when it is loaded.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd
import torch

from ml_cloud_optimizer.data.schema import STEP_SECONDS
from ml_cloud_optimizer.horizons import PEAK_HORIZON
from ml_cloud_optimizer.models._torch import (
    FocalLoss,
    RecurrentNet,
    fit_recurrent,
    predict_windows,
    select_device,
    torch_threads,
)
from ml_cloud_optimizer.models.peak.base import BasePeakModel
from ml_cloud_optimizer.models.windows import INPUT_CHANNELS, EntityScaler, build_panel

__all__ = ["SequencePeakClassifier"]

_WEIGHTS_FILE = "peak_gru.pt"


class SequencePeakClassifier(BasePeakModel):
    """A GRU over the forecasters' windows, plus the load's distance from the threshold, with the focal loss.

    Args:
        horizon, quantile, decision, min_precision, validation: as for ``PeakClassifier``.
        window, hidden, layers, epochs, batch_size, lr, patience, samples_per_epoch, seasonal_lag,
            device, seed, num_threads: as for ``sequence.SequenceForecaster``.
        gamma, alpha: the focal loss's focusing exponent and positive-class weight.
    """

    kind: ClassVar[str] = "gru_focal"

    def __init__(
        self,
        horizon: int = PEAK_HORIZON,
        quantile: float = 0.95,
        decision: str = "f1",
        min_precision: float = 0.5,
        validation: float = 0.2,
        window: int = 48,
        hidden: int = 32,
        layers: int = 1,
        epochs: int = 6,
        batch_size: int = 256,
        lr: float = 3e-3,
        patience: int = 2,
        samples_per_epoch: int | None = 32_768,
        seasonal_lag: int = 288,
        gamma: float = 2.0,
        alpha: float | None = 0.5,
        device: str = "auto",
        seed: int = 0,
        num_threads: int | None = None,
    ):
        self.horizon = horizon
        self.quantile = quantile
        self.decision = decision
        self.min_precision = min_precision
        self.validation = validation
        self.window = window
        self.hidden = hidden
        self.layers = layers
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.patience = patience
        self.samples_per_epoch = samples_per_epoch
        self.seasonal_lag = seasonal_lag
        self.gamma = gamma
        self.alpha = alpha
        self.device = device
        self.seed = seed
        self.num_threads = num_threads

    @property
    def min_history(self) -> int:
        back = self.seasonal_lag - self.horizon if self.seasonal_lag else 0
        return int(self.window + max(back, 0))

    def _network(self) -> RecurrentNet:
        return RecurrentNet("gru", len(INPUT_CHANNELS) + 1, self.hidden, self.layers, 1)

    def _panel(self, metrics: pd.DataFrame, device: torch.device):
        """The forecasters' panel with one more channel: load minus the entity's threshold, in its scale."""
        panel, self.scaler_ = build_panel(
            metrics, getattr(self, "scaler_", None), seasonal_lag=self.seasonal_lag, lead=self.horizon, device=device
        )
        gap = (panel.level - self._row_thresholds(panel.frame["entity_id"])) / panel.scale
        extra = torch.as_tensor(gap, dtype=torch.float32, device=device)[:, None]
        return dataclasses.replace(panel, inputs=torch.cat([panel.inputs, extra], dim=1).contiguous())

    def _fit_scores(self, metrics, y, train, val) -> np.ndarray:
        device = select_device(self.device)
        with torch_threads(self.num_threads):
            panel = self._panel(metrics, device)
            grid_rows = _grid_rows(panel, metrics)  # metrics row -> panel row
            usable = panel.origins(self.min_history) & panel.complete(self.window)
            ok_rows = usable[grid_rows]
            targets = np.zeros((len(panel), 1), dtype=np.float32)
            targets[grid_rows, 0] = y
            train_rows, val_rows = grid_rows[train & ok_rows], grid_rows[val & ok_rows]
            self.n_train_rows_ = self.n_train_resampled_ = len(train_rows)
            self.n_train_positives_ = int(targets[train_rows, 0].sum())
            torch.manual_seed(self.seed)
            self.net_ = self._network().to(device)
            self.history_ = fit_recurrent(
                self.net_,
                panel,
                torch.from_numpy(targets).to(device),
                train_rows,
                val_rows,
                FocalLoss(self.gamma, self.alpha),
                window=self.window,
                epochs=self.epochs,
                batch_size=self.batch_size,
                lr=self.lr,
                patience=self.patience,
                samples_per_epoch=self.samples_per_epoch,
                seed=self.seed,
                device=device,
            ).epochs
            scores = self._panel_scores(panel, grid_rows, device)
        self.net_.to("cpu").eval()
        return np.nan_to_num(scores[val], nan=0.0)

    def _panel_scores(self, panel, grid_rows: np.ndarray, device: torch.device) -> np.ndarray:
        """Peak probability per metrics row (NaN where the window is too short)."""
        rows = np.flatnonzero(panel.origins(self.min_history))
        logits = predict_windows(self.net_, panel, rows, self.window, device)
        proba = np.full(len(panel), np.nan)
        proba[rows] = torch.sigmoid(torch.from_numpy(logits[:, 0])).numpy()
        return proba[grid_rows]

    def _scores(self, metrics):
        device = select_device(self.device)
        with torch_threads(self.num_threads):
            panel = self._panel(metrics, device)
            scores = self._panel_scores(panel, _grid_rows(panel, metrics), device)
        self.net_.to("cpu")
        frame = metrics[["entity_id", "ts"]].copy()
        frame["ts"] = pd.to_datetime(frame["ts"], utc=True)
        keep = ~np.isnan(scores)
        return frame.loc[keep], scores[keep]

    def _save_model(self, directory: Path) -> dict:
        torch.save(self.net_.state_dict(), directory / _WEIGHTS_FILE)
        return {
            "weights_file": _WEIGHTS_FILE,
            "scaler": self.scaler_.to_dict(),
            "input_channels": [*INPUT_CHANNELS, "cpu_over_threshold"],
        }

    def _load_model(self, directory: Path, config: dict) -> None:
        self.net_ = self._network()
        self.net_.load_state_dict(torch.load(directory / config["weights_file"], map_location="cpu", weights_only=True))
        self.net_.eval()
        self.scaler_ = EntityScaler.from_dict(config["scaler"])


def _grid_rows(panel, metrics: pd.DataFrame) -> np.ndarray:
    """For each metrics row, its row in the panel (both keyed by entity and 5-minute slot)."""
    keys = pd.MultiIndex.from_arrays([panel.frame["entity_id"].astype(str), panel.frame["ts"]])
    wanted = pd.MultiIndex.from_arrays(
        [
            metrics["entity_id"].astype(str),
            pd.to_datetime(metrics["ts"], utc=True).dt.floor(f"{STEP_SECONDS}s"),
        ]
    )
    return keys.get_indexer(wanted)
