"""Training speed: tabular fit seconds on 1M x 50, and LSTM/GRU sequences/s against a plain PyTorch loop.

Tabular: each tabular forecaster's own booster-fitting step (``train_booster``, public for
this, with the forecaster's default parameters from ``base_params()``) on a
random-but-structured matrix, a fixed number of rounds without early stopping so the times
compare, beside scikit-learn's HistGradientBoostingRegressor with the same rounds, loss and
threads.

Sequence: what ``mlco train`` runs for ``lstm`` and ``gru``: the forecaster built the way the
CLI builds it (``models.registry.build_forecaster``: our default window, hidden size,
layers, batch, epochs and samples per epoch) and its ``fit`` on the training part of a
generated fleet (``--records``, ``mlco train``'s default 100,000, the hold-out's last 20% cut
off as ``mlco train`` does): cutting the windows, training with early stopping and restoring
the best epoch. The baseline is a textbook PyTorch loop over the same windows: the windows
``fit`` uses (``SequenceForecaster.training_windows``, our code) copied into one tensor with
the relative channels (``with_relative_channels``) computed once, so its recurrent layer reads
as many channels per step as ours, then ``nn.LSTM``/``nn.GRU`` + ``nn.Linear`` of the same
size, Adam at the same (constant) learning rate,
``nn.L1Loss``, a shuffled slice of ``samples_per_epoch`` windows per epoch in batches of the
same size, the same autocast (bf16 on CUDA), and a validation pass per epoch, for as many
epochs as ``fit`` ran in that round. Both figures are training windows per second of the whole
fit (window cutting included); ``loop_ratio`` compares the epoch loops alone. Contenders
alternate over ``--repeats`` rounds; each ratio is median(ours) / median(plain).
Target: ours / plain >= 0.5.

Usage:
    .venv/bin/python bench/train_speed.py                 # 1,000,000 rows, 100,000 records
    .venv/bin/python bench/train_speed.py --skip-tabular --records 20000 --epochs 1 --repeats 1
    .venv/bin/python bench/train_speed.py --skip-tabular --device cuda
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np
import torch
from torch import nn

from ml_cloud_optimizer.data.synthetic import generate_fleet
from ml_cloud_optimizer.evaluation import time_split
from ml_cloud_optimizer.models._torch import autocast_dtype  # the precision ``fit`` trains in, for the baseline
from ml_cloud_optimizer.models.cores import idle_cores
from ml_cloud_optimizer.models.registry import build_forecaster
from ml_cloud_optimizer.models.sequence import NET_INPUTS, SequenceForecaster, with_relative_channels
from ml_cloud_optimizer.models.tabular import CatBoostForecaster, LightGBMForecaster, XGBoostForecaster

TARGET_RATIO = 0.5
HOLDOUT = 0.2  # `mlco train --holdout` default: models are fitted on the time before it


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

    def __init__(self, cell: str, n_inputs: int, hidden: int, layers: int, n_outputs: int):
        super().__init__()
        self.rnn = {"lstm": nn.LSTM, "gru": nn.GRU}[cell](n_inputs, hidden, layers, batch_first=True)
        self.head = nn.Linear(hidden, n_outputs)

    def forward(self, x):
        out, _ = self.rnn(x)
        return self.head(out[:, -1])


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def trained_windows(model: SequenceForecaster, epochs: int) -> int:
    """Windows stepped over in ``epochs`` epochs of ``fit`` (``samples_per_epoch`` of them, or all)."""
    n = model.n_train_windows_
    return epochs * (min(n, model.samples_per_epoch) if model.samples_per_epoch else n)


def ours_fit(model: SequenceForecaster, metrics) -> dict:
    """``fit`` as ``mlco train`` runs it: seconds in all, seconds of the epoch loops, epochs run, windows."""
    started, cpu_started = time.perf_counter(), time.process_time()
    model.fit(metrics)
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    epochs = len(model.history_)
    loop = sum(e["seconds"] for e in model.history_)
    return {
        "seconds": seconds,
        "cpu_seconds": cpu,
        "loop_seconds": loop,
        "epochs": epochs,
        "windows": trained_windows(model, epochs),
    }


def plain_fit(model: SequenceForecaster, metrics, device: torch.device, epochs: int, threads: int) -> dict:
    """A textbook loop training ``model``'s architecture size on the windows ``model.fit`` would cut."""
    torch.set_num_threads(threads)
    started, cpu_started = time.perf_counter(), time.process_time()
    data = model.training_windows(metrics, device)
    train = torch.as_tensor(data.train_rows, device=device)
    val = torch.as_tensor(data.val_rows, device=device)
    # Copies, with the relative channels our net computes per batch computed once: a plain dataset
    # of the same width as what our recurrent cell reads.
    x, y = with_relative_channels(data.panel.windows(train, model.window)), data.targets[train, :-1]
    x_val, y_val = with_relative_channels(data.panel.windows(val, model.window)), data.targets[val, :-1]
    torch.manual_seed(model.seed)
    net = PlainNet(model.cell, x.shape[2], model.hidden, model.layers, y.shape[1]).to(device)
    optimizer = torch.optim.Adam(net.parameters(), lr=model.lr)
    loss_fn, amp = nn.L1Loss(), autocast_dtype(device)
    per_epoch = min(len(x), model.samples_per_epoch or len(x))
    _sync(device)
    loop_started = time.perf_counter()
    for _ in range(epochs):
        net.train()
        order = torch.randperm(len(x), device=device)[:per_epoch]
        for start in range(0, per_epoch, model.batch_size):
            batch = order[start : start + model.batch_size]
            optimizer.zero_grad()
            with torch.autocast(device.type, dtype=amp or torch.float32, enabled=amp is not None):
                out = net(x[batch])
            loss = loss_fn(out.float(), y[batch])
            loss.backward()
            optimizer.step()
        net.eval()
        with torch.no_grad(), torch.autocast(device.type, dtype=amp or torch.float32, enabled=amp is not None):
            val_loss = sum(
                float(loss_fn(net(x_val[i : i + 8192]).float(), y_val[i : i + 8192])) * len(x_val[i : i + 8192])
                for i in range(0, len(x_val), 8192)
            )
        _say(f"    plain epoch: val L1 {val_loss / max(len(x_val), 1):.4f}")
    _sync(device)
    ended = time.perf_counter()
    return {
        "seconds": ended - started,
        "cpu_seconds": time.process_time() - cpu_started,
        "loop_seconds": ended - loop_started,
        "epochs": epochs,
        "windows": epochs * per_epoch,
    }


def sequence_speed(kind: str, metrics, device: torch.device, threads: int, epochs: int | None, repeats: int) -> dict:
    """Our ``fit`` and the plain loop, alternated ``repeats`` times; ratios of medians of windows/s."""
    rates: dict[str, list[float]] = {"ours": [], "plain": []}
    loops: dict[str, list[float]] = {"ours": [], "plain": []}
    cpu_rates: dict[str, list[float]] = {"ours": [], "plain": []}
    # Warm-up, untimed: one epoch of each on one entity (thread pools, allocator, first-call paths).
    one = metrics[metrics["entity_id"] == metrics["entity_id"].iloc[0]]
    _say(f"{kind}: warm-up (untimed) on one entity ...")
    warm = build_forecaster(kind, seed=0, epochs=1, threads=threads)
    warm.device = str(device)
    ours_fit(warm, one)
    plain_fit(warm, one, device, 1, threads)
    model = None
    for r in range(repeats):
        model = build_forecaster(kind, seed=0, epochs=epochs, threads=threads)  # as `mlco train` builds it
        model.device = str(device)
        _say(f"{kind}: round {r + 1}/{repeats} ours (fit) ...")
        ours = ours_fit(model, metrics)
        _say(f"{kind}: round {r + 1}/{repeats} plain loop, {ours['epochs']} epochs ...")
        plain = plain_fit(
            build_forecaster(kind, seed=0, epochs=epochs, threads=threads), metrics, device, ours["epochs"], threads
        )
        for name, run in (("ours", ours), ("plain", plain)):
            rates[name].append(run["windows"] / run["seconds"])
            cpu_rates[name].append(run["windows"] / run["cpu_seconds"])
            loops[name].append(run["windows"] / run["loop_seconds"])
            _say(
                f"  {name}: {run['epochs']} epochs, {run['windows']:,} windows in {run['seconds']:.1f} s"
                f" (loops {run['loop_seconds']:.1f} s): {rates[name][-1]:,.0f} seq/s"
            )
    assert model is not None
    median = {name: float(np.median(v)) for name, v in rates.items()}
    loop_median = {name: float(np.median(v)) for name, v in loops.items()}
    cpu_median = {name: float(np.median(v)) for name, v in cpu_rates.items()}
    return {
        "ours_seq_per_s": round(median["ours"], 1),
        "plain_seq_per_s": round(median["plain"], 1),
        "ratio": round(median["ours"] / median["plain"], 3),
        "ours_loop_seq_per_s": round(loop_median["ours"], 1),
        "plain_loop_seq_per_s": round(loop_median["plain"], 1),
        "loop_ratio": round(loop_median["ours"] / loop_median["plain"], 3),
        # Windows per CPU-second of this process: steadier than wall time on a shared CPU (not for CUDA).
        "cpu_ratio": round(cpu_median["ours"] / cpu_median["plain"], 3),
        "train_windows": model.n_train_windows_,
        "val_windows": model.n_val_windows_,
        "shape": {
            "window": model.window,
            "channels": NET_INPUTS,
            "hidden": model.hidden,
            "layers": model.layers,
            "batch": model.batch_size,
            "samples_per_epoch": model.samples_per_epoch,
            "epochs": model.epochs,
            "outputs": len(model.horizons),
        },
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows of the tabular matrix")
    parser.add_argument("--cols", type=int, default=50, help="features of the tabular matrix")
    parser.add_argument("--rounds", type=int, default=50, help="boosting rounds (fixed, no early stopping)")
    parser.add_argument(
        "--records", type=int, default=100_000, help="generated fleet rows for LSTM/GRU (default: mlco train's)"
    )
    parser.add_argument("--epochs", type=int, default=None, help="most LSTM/GRU epochs (default: the models')")
    parser.add_argument("--repeats", type=int, default=3, help="alternating rounds per sequence contender")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: idle cores)")
    parser.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda[:n]")
    parser.add_argument("--skip-tabular", action="store_true", help="time the sequence models only")
    args = parser.parse_args(argv)

    threads = args.threads or idle_cores()
    torch.set_num_threads(threads)
    auto = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(auto if args.device == "auto" else args.device)
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
    fleet = generate_fleet(args.records, seed=0)
    train, _ = time_split(fleet.metrics, HOLDOUT)
    _say(f"sequence: {fleet.metrics['entity_id'].nunique()} entities, {len(train):,} training rows of {args.records:,}")
    for cell in ("lstm", "gru"):
        result[cell] = sequence_speed(cell, train, device, threads, args.epochs, args.repeats)
    result["device"] = name
    result["records"] = args.records
    result["amp"] = str(autocast_dtype(device)).replace("torch.", "")
    result["repeats"] = args.repeats
    result["target_ratio"] = TARGET_RATIO
    result["meets_target"] = all(result[c]["ratio"] >= TARGET_RATIO for c in ("lstm", "gru"))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
