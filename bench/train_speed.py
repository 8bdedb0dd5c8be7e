"""Training speed: tabular fit seconds on 1M x 50, and LSTM/GRU sequences/s against a plain PyTorch loop.

Tabular: each tabular forecaster's own booster-fitting step (``train_booster``, with the
forecaster's default parameters) on a random-but-structured matrix, a fixed number of
rounds without early stopping so the times compare, beside scikit-learn's
HistGradientBoostingRegressor with the same rounds, loss and threads.

Sequence: ``_torch.train_epoch`` with ``_torch.RecurrentNet`` (the step loop and network
``LSTMForecaster.fit`` uses: bf16 autocast on CUDA, gradient clipping, loss kept on the
device, scale-weighted L1) at the reference shape (window 48, 16 features, hidden 128, 2 layers, batch 1024),
beside a plain loop over ``nn.LSTM``/``nn.GRU`` + ``nn.Linear`` of the same shape, fed the
same tensors, alternated in rounds. Each figure is the best round (the machine is shared).
Target: ours / plain >= 0.5.

Usage:
    .venv/bin/python bench/train_speed.py                 # 1,000,000 rows
    .venv/bin/python bench/train_speed.py --rows 200000 --seconds 5
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np
import torch
from torch import nn

from ml_cloud_optimizer.models._torch import (
    RecurrentNet,
    WeightedL1Loss,
    autocast_dtype,
    select_device,
    train_epoch,
)
from ml_cloud_optimizer.models.cores import idle_cores
from ml_cloud_optimizer.models.tabular import CatBoostForecaster, LightGBMForecaster, XGBoostForecaster

TARGET_RATIO = 0.5
WINDOW, FEATURES, HIDDEN, LAYERS, BATCH, OUTPUTS = 48, 16, 128, 2, 1024, 2


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def structured_matrix(rows: int, cols: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Correlated features and a target with interactions, thresholds and noise (float32)."""
    rng = np.random.default_rng(seed)
    base = rng.standard_normal((rows, 8), dtype=np.float32)
    mixing = rng.standard_normal((8, cols)).astype(np.float32) / np.sqrt(8)
    X = base @ mixing + 0.5 * rng.standard_normal((rows, cols), dtype=np.float32)
    y = (
        np.sin(X[:, 0])
        + 0.5 * X[:, 1] * X[:, 2]
        + (X[:, 3] > 0.5) * X[:, 4]
        + 0.3 * rng.standard_normal(rows, dtype=np.float32)
    )
    return X, y.astype(np.float32)


def tabular_fit_seconds(rows: int, cols: int, rounds: int, threads: int) -> dict[str, float]:
    from sklearn.ensemble import HistGradientBoostingRegressor
    from threadpoolctl import threadpool_limits

    X, y = structured_matrix(rows, cols)
    out = {}
    for cls in (LightGBMForecaster, XGBoostForecaster, CatBoostForecaster):
        model = cls(n_jobs=threads)
        _say(f"tabular: {model.kind} on {rows:,} x {cols}, {rounds} rounds ...")
        started = time.perf_counter()
        model.train_booster(model.base_params(), "p50", X, y, None, rounds)
        out[model.kind] = time.perf_counter() - started
        _say(f"  {out[model.kind]:.1f} s")
    _say(f"tabular: scikit-learn HistGradientBoostingRegressor, {rounds} rounds ...")
    with threadpool_limits(threads):
        started = time.perf_counter()
        HistGradientBoostingRegressor(
            loss="absolute_error", max_iter=rounds, learning_rate=0.05, early_stopping=False, random_state=0
        ).fit(X, y)
        out["sklearn_hist_gb"] = time.perf_counter() - started
    _say(f"  {out['sklearn_hist_gb']:.1f} s")
    return out


class PlainNet(nn.Module):
    """What a user would write by hand: the recurrent layer, then a linear head on the last step."""

    def __init__(self, cell: str):
        super().__init__()
        self.rnn = {"lstm": nn.LSTM, "gru": nn.GRU}[cell](FEATURES, HIDDEN, LAYERS, batch_first=True)
        self.head = nn.Linear(HIDDEN, OUTPUTS)

    def forward(self, x):
        out, _ = self.rnn(x)
        return self.head(out[:, -1])


def plain_steps(model, optimizer, x, y, steps: int, amp_dtype) -> None:
    loss_fn = nn.L1Loss()
    for _ in range(steps):
        optimizer.zero_grad()
        with torch.autocast(x.device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
            out = model(x)
        loss = loss_fn(out.float(), y)
        loss.backward()
        optimizer.step()
    if x.device.type == "cuda":
        torch.cuda.synchronize()


def ours_steps(model, optimizer, x, y, steps: int, amp_dtype) -> None:
    # The forecasters' targets carry a per-sample weight column (see WeightedL1Loss).
    weighted = torch.cat([y, torch.ones_like(y[:, :1])], dim=1)
    train_epoch(model, optimizer, [(x, weighted)] * steps, WeightedL1Loss(), amp_dtype=amp_dtype)  # syncs


def sequence_speed(cell: str, device: torch.device, seconds: float, rounds: int) -> dict[str, float]:
    torch.manual_seed(0)
    x = torch.randn(BATCH, WINDOW, FEATURES, device=device)
    y = torch.randn(BATCH, OUTPUTS, device=device)
    amp_dtype = autocast_dtype(device)
    contenders = {
        "ours": (RecurrentNet(cell, FEATURES, HIDDEN, LAYERS, OUTPUTS).to(device), ours_steps),
        "plain": (PlainNet(cell).to(device), plain_steps),
    }
    optimizers = {name: torch.optim.Adam(net.parameters(), lr=1e-3) for name, (net, _) in contenders.items()}
    # Warm-up (cuDNN plans, allocator, threads) and a first timing to size each round.
    per_step = {}
    for name, (net, run) in contenders.items():
        run(net, optimizers[name], x, y, 2, amp_dtype)
        started = time.perf_counter()
        run(net, optimizers[name], x, y, 1, amp_dtype)
        per_step[name] = time.perf_counter() - started
    best = dict.fromkeys(contenders, 0.0)
    for r in range(rounds):
        for name, (net, run) in contenders.items():
            steps = max(1, int(seconds / rounds / per_step[name]))
            started = time.perf_counter()
            run(net, optimizers[name], x, y, steps, amp_dtype)
            rate = steps * BATCH / (time.perf_counter() - started)
            best[name] = max(best[name], rate)
            _say(f"{cell}: round {r + 1}/{rounds} {name}: {steps} steps, {rate:,.0f} seq/s")
    return {
        "ours_seq_per_s": round(best["ours"], 1),
        "plain_seq_per_s": round(best["plain"], 1),
        "ratio": round(best["ours"] / best["plain"], 3),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows of the tabular matrix")
    parser.add_argument("--cols", type=int, default=50, help="features of the tabular matrix")
    parser.add_argument("--rounds", type=int, default=50, help="boosting rounds (fixed, no early stopping)")
    parser.add_argument("--seconds", type=float, default=20.0, help="time box per sequence contender")
    parser.add_argument("--repeats", type=int, default=3, help="alternating timing rounds per contender")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: idle cores)")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--skip-tabular", action="store_true", help="time the sequence models only")
    args = parser.parse_args(argv)

    threads = args.threads or idle_cores()
    torch.set_num_threads(threads)
    device = select_device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({threads} threads)"
    _say(f"device: {name}")
    result: dict = {}
    if not args.skip_tabular:
        fit_s = tabular_fit_seconds(args.rows, args.cols, args.rounds, threads)
        result["tabular_fit_s"] = {k: round(v, 2) for k, v in fit_s.items()}
        result["tabular_ratio_to_sklearn"] = {
            k: round(v / fit_s["sklearn_hist_gb"], 3) for k, v in fit_s.items() if k != "sklearn_hist_gb"
        }
        result["tabular_shape"] = {"rows": args.rows, "cols": args.cols, "rounds": args.rounds}
    for cell in ("lstm", "gru"):
        result[cell] = sequence_speed(cell, device, args.seconds, args.repeats)
    result["device"] = name
    result["sequence_shape"] = {
        "window": WINDOW,
        "features": FEATURES,
        "hidden": HIDDEN,
        "layers": LAYERS,
        "batch": BATCH,
        "amp": str(autocast_dtype(device)).replace("torch.", ""),
    }
    result["target_ratio"] = TARGET_RATIO
    result["meets_target"] = all(result[c]["ratio"] >= TARGET_RATIO for c in ("lstm", "gru"))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
