"""LSTM/GRU forecasters: window tensors, accuracy against persistence, save/load, no leakage, GPU step."""

import json

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from ml_cloud_optimizer.data.schema import DataValidationError
from ml_cloud_optimizer.data.synthetic import generate_fleet
from ml_cloud_optimizer.models import Forecaster, forecaster_class
from ml_cloud_optimizer.models._torch import (
    RecurrentNet,
    WeightedL1Loss,
    _one_cycle,
    fit_recurrent,
    mean_loss,
    torch_threads,
    train_epoch,
)
from ml_cloud_optimizer.models.sequence import GRUForecaster, LSTMForecaster
from ml_cloud_optimizer.models.windows import INPUT_CHANNELS, build_panel

FAST = {"epochs": 3, "samples_per_epoch": 8192, "seed": 0}


@pytest.fixture(scope="module")
def fleet_metrics():
    """Four entities, two weeks: web humps, batch on/off runs and steady databases."""
    return generate_fleet(4 * 14 * 288, entities=4, seed=0).metrics


@pytest.fixture(scope="module")
def split(fleet_metrics):
    span = fleet_metrics["ts"].max() - fleet_metrics["ts"].min()
    cutoff = fleet_metrics["ts"].min() + 0.8 * span
    return fleet_metrics[fleet_metrics["ts"] < cutoff], cutoff


@pytest.fixture(scope="module", params=[LSTMForecaster, GRUForecaster], ids=["lstm", "gru"])
def fitted(request, split):
    train, _ = split
    return request.param(**FAST).fit(train)


def _holdout_mae(forecasts, metrics, cutoff, horizon):
    """MAE of a ``p50_h{horizon}`` column and of persistence over origins after ``cutoff``."""
    actual = metrics.set_index(["entity_id", "ts"])["cpu_util"]
    f = forecasts[forecasts["ts"] >= cutoff]
    target = actual.reindex(pd.MultiIndex.from_arrays([f["entity_id"], f["ts"] + horizon * pd.Timedelta("5min")]))
    last = actual.reindex(pd.MultiIndex.from_arrays([f["entity_id"], f["ts"]]))
    ok = target.notna().to_numpy()
    model = np.abs(f[f"p50_h{horizon}"].to_numpy()[ok] - target.to_numpy()[ok]).mean()
    persistence = np.abs(last.to_numpy()[ok] - target.to_numpy()[ok]).mean()
    return model, persistence, int(ok.sum())


def _gappy_metrics():
    rng = np.random.default_rng(1)
    frames = []
    for name, n in (("a", 120), ("b", 90)):
        ts = pd.date_range("2026-01-05", periods=n, freq="5min", tz="UTC")
        frames.append(pd.DataFrame({"entity_id": name, "ts": ts, "cpu_util": rng.uniform(0, 1, n)}))
    metrics = pd.concat(frames, ignore_index=True)
    return metrics.drop(index=[50, 51, 130])  # a two-slot gap in "a", one slot in "b"


def test_windows_are_the_grid_rows_before_each_origin():
    metrics = _gappy_metrics()
    panel, _ = build_panel(metrics, seasonal_lag=0)
    window = 8
    assert panel.inputs.shape == (120 + 90, len(INPUT_CHANNELS))
    rows = np.array([7, 20, 55, 119, 120 + 7, 120 + 89])
    got = panel.windows(torch.as_tensor(rows), window)
    expected = torch.stack([panel.inputs[r - window + 1 : r + 1] for r in rows])
    assert torch.equal(got, expected)

    complete = panel.complete(window)
    position = np.r_[np.arange(120), np.arange(90)]
    gap_rows = {50, 51, 130}
    for r in range(len(panel)):
        inside = position[r] >= window - 1
        clean = inside and not any(r - window < g <= r for g in gap_rows)
        assert complete[r] == clean, r


def test_targets_are_masked_where_the_future_slot_is_missing_or_in_another_entity():
    metrics = _gappy_metrics()
    panel, _ = build_panel(metrics, seasonal_lag=0)
    y, ok = panel.targets((1, 12))
    assert not ok[49] and not ok[38]  # row 50 (1 ahead of 49) and row 50 (12 ahead of 38) are missing
    assert not ok[119] and not ok[110]  # the next entity starts at row 120
    assert ok[60]
    cpu = panel.frame["cpu_util"].to_numpy()
    assert y[60, 1] == pytest.approx((cpu[72] - cpu[60]) / panel.scale[60], rel=1e-5)
    assert y[49, 0] == 0 and y[38, 1] == 0 and y[119, 0] == 0  # absent targets are 0, never NaN
    assert np.isfinite(y).all()


@pytest.mark.parametrize("horizon", [12])
def test_beats_persistence_one_hour_ahead(fitted, fleet_metrics, split, horizon):
    _, cutoff = split
    forecasts = fitted.predict(fleet_metrics)
    model, persistence, n = _holdout_mae(forecasts, fleet_metrics, cutoff, horizon)
    assert n > 1000
    assert model < 0.97 * persistence, f"{fitted.kind}: MAE {model:.4f} vs persistence {persistence:.4f}"


def test_forecast_frame_shape(fitted, split):
    train, _ = split
    forecasts = fitted.predict(train)
    assert list(forecasts.columns) == ["entity_id", "ts", "p50_h1", "p50_h12"]
    # One forecast per present slot: a history shorter than the window is a padded window.
    assert fitted.min_history == 1 < fitted.window < fitted.full_history
    assert len(forecasts) == len(train)
    keys = forecasts[["entity_id", "ts"]].astype({"entity_id": str})
    expected = train[["entity_id", "ts"]].astype({"entity_id": str}).sort_values(["entity_id", "ts"])
    pd.testing.assert_frame_equal(keys.reset_index(drop=True), expected.reset_index(drop=True))
    assert forecasts[["p50_h1", "p50_h12"]].notna().all().all()
    assert forecasts["p50_h12"].between(0, 1.5).all()


def test_save_and_load_give_identical_forecasts(fitted, fleet_metrics, tmp_path):
    fitted.save(tmp_path / "model")
    loaded = Forecaster.load(tmp_path / "model")
    assert type(loaded) is type(fitted)
    assert loaded.get_params() == fitted.get_params()
    pd.testing.assert_frame_equal(loaded.predict(fleet_metrics), fitted.predict(fleet_metrics))


def test_a_model_saved_with_other_input_channels_is_refused(fitted, tmp_path):
    path = fitted.save(tmp_path / "model")
    meta = path / Forecaster.METADATA_FILE
    metadata = json.loads(meta.read_text())
    assert metadata["input_channels"][-1] == "cpu_minus_now"  # the relative channels are part of the net's shape
    metadata["input_channels"] = metadata["input_channels"][:11]  # what the version before them saved
    meta.write_text(json.dumps(metadata))
    with pytest.raises(ValueError, match="input channels"):
        Forecaster.load(path)


def test_changing_the_future_leaves_past_forecasts_unchanged(fitted, fleet_metrics):
    t0 = fleet_metrics["ts"].quantile(0.7)
    altered = fleet_metrics.copy()
    later = altered["ts"] > t0
    altered.loc[later, "cpu_util"] = 1.0 - altered.loc[later, "cpu_util"]
    before = fitted.predict(fleet_metrics)
    after = fitted.predict(altered)
    past = before["ts"] <= t0
    assert past.sum() > 1000
    pd.testing.assert_frame_equal(before[past], after[after["ts"] <= t0])
    assert not before[~past].reset_index(drop=True).equals(after[after["ts"] > t0].reset_index(drop=True))


def test_an_untrained_network_forecasts_no_change():
    net = RecurrentNet("lstm", len(INPUT_CHANNELS), 16, 2, 3)
    assert torch.equal(net(torch.randn(5, 12, len(INPUT_CHANNELS))), torch.zeros(5, 3))


def test_weighted_l1_is_mae_in_utilisation_units():
    output = torch.tensor([[0.5, 1.0], [2.0, -1.0]])
    change = torch.tensor([[0.0, 0.0], [1.0, 1.0]])
    ones = torch.cat([change, torch.ones(2, 1)], dim=1)
    assert WeightedL1Loss()(output, ones).item() == pytest.approx(nn.L1Loss()(output, change).item())
    scales = torch.cat([change, torch.tensor([[2.0], [0.0]])], dim=1)
    assert WeightedL1Loss()(output, scales).item() == pytest.approx((0.5 + 1.0) * 2 / 4)


def test_kinds_are_registered():
    assert forecaster_class("lstm") is LSTMForecaster
    assert forecaster_class("gru") is GRUForecaster


def test_same_seed_same_model_other_seed_other_model():
    metrics = generate_fleet(2 * 3 * 288, entities=2, seed=5).metrics
    params = {"epochs": 1, "samples_per_epoch": 512, "window": 12, "seasonal_lag": 0}
    a = GRUForecaster(seed=1, **params).fit(metrics).predict(metrics)
    b = GRUForecaster(seed=1, **params).fit(metrics).predict(metrics)
    c = GRUForecaster(seed=2, **params).fit(metrics).predict(metrics)
    pd.testing.assert_frame_equal(a, b)
    assert not np.allclose(a["p50_h12"], c["p50_h12"])


def test_early_stopping_restores_the_best_checkpoint():
    metrics = generate_fleet(2 * 4 * 288, entities=2, seed=2).metrics
    panel, _ = build_panel(metrics, seasonal_lag=0)
    y, ok = panel.targets((1, 12))
    rows = np.flatnonzero(panel.complete(12) & ok)
    train, val = rows[: len(rows) // 2], rows[len(rows) // 2 :]
    torch.manual_seed(0)
    net = RecurrentNet("gru", len(INPUT_CHANNELS), 8, 1, 2)
    targets = torch.from_numpy(y)
    # A learning rate far too high makes the validation loss wander, so the best epoch is not the last.
    with torch_threads():
        log = fit_recurrent(
            net,
            panel,
            targets,
            train,
            val,
            nn.L1Loss(),
            window=12,
            epochs=6,
            batch_size=64,
            lr=0.3,
            patience=6,
            samples_per_epoch=1024,
            seed=0,
            device=torch.device("cpu"),
        )
    losses = [e["val_loss"] for e in log.epochs]
    assert log.best_epoch == int(np.argmin(losses))
    index = torch.as_tensor(val)
    restored = mean_loss(net, [(panel.windows(index, 12), targets[index])], nn.L1Loss())
    assert restored == pytest.approx(min(losses), rel=1e-5)
    if log.best_epoch != len(losses) - 1:
        assert restored < losses[-1]


@pytest.mark.parametrize("steps", [1, 2, 3, 10, 11, 20])
def test_one_cycle_schedule_runs_at_any_number_of_steps(steps):
    # 10 steps at a warm-up share of 0.1 once divided by zero inside OneCycleLR.
    net = nn.Linear(2, 1)
    optimizer = torch.optim.Adam(net.parameters(), lr=0.01)
    scheduler = _one_cycle(optimizer, 0.01, steps)
    rates = []
    for _ in range(steps):
        optimizer.step()
        scheduler.step()
        rates.append(optimizer.param_groups[0]["lr"])
    assert all(np.isfinite(rates))
    assert max(rates) <= 0.01 + 1e-12


def test_patience_stops_training_early():
    metrics = generate_fleet(2 * 4 * 288, entities=2, seed=2).metrics
    model = GRUForecaster(epochs=20, patience=1, lr=0.5, samples_per_epoch=512, window=12, seasonal_lag=0).fit(metrics)
    losses = [e["val_loss"] for e in model.history_]
    assert len(losses) < 20
    assert len(losses) == model.best_epoch_ + 2  # one epoch without improvement, then stop
    assert model.n_val_windows_ > 0


def test_bad_input_is_reported_clearly(split):
    train, _ = split
    with pytest.raises(DataValidationError, match="cpu_util"):
        LSTMForecaster().fit(train.drop(columns="cpu_util"))
    short = train.groupby("entity_id").head(12)  # no origin has a target 12 steps ahead
    with pytest.raises(ValueError, match="consecutive 5-minute slots"):
        LSTMForecaster().fit(short)
    with pytest.raises(RuntimeError, match="not fitted"):
        GRUForecaster().predict(train)
    with pytest.raises(ValueError, match="window"):
        GRUForecaster(window=0).fit(train)


@pytest.mark.gpu
def test_cuda_bf16_training_reduces_the_loss():
    if not torch.cuda.is_available():
        pytest.skip("torch.cuda.is_available() is False: no CUDA device on this machine")
    device = torch.device("cuda")
    torch.manual_seed(0)
    net = RecurrentNet("lstm", 16, 128, 2, 2).to(device)
    x = torch.randn(1024, 48, 16, device=device)
    y = x[:, -12:, :2].mean(dim=1)  # learnable from the window
    optimizer = torch.optim.Adam(net.parameters(), lr=3e-3)
    first = mean_loss(net, [(x, y)], nn.L1Loss(), amp_dtype=torch.bfloat16)
    for _ in range(30):
        train_epoch(net, optimizer, [(x, y)], nn.L1Loss(), amp_dtype=torch.bfloat16)
    last = mean_loss(net, [(x, y)], nn.L1Loss(), amp_dtype=torch.bfloat16)
    assert last < 0.7 * first


@pytest.mark.gpu
def test_forecaster_fits_and_forecasts_on_cuda_like_on_the_cpu(split):
    if not torch.cuda.is_available():
        pytest.skip("torch.cuda.is_available() is False: no CUDA device on this machine")
    train, _ = split
    model = GRUForecaster(device="cuda", **FAST).fit(train)
    on_gpu = model.predict(train)
    model.device = "cpu"
    on_cpu = model.predict(train)
    pd.testing.assert_frame_equal(on_gpu[["entity_id", "ts"]], on_cpu[["entity_id", "ts"]])
    # bf16 autocast on the GPU, float32 on the CPU: the same forecasts to within bf16's precision.
    np.testing.assert_allclose(on_gpu["p50_h12"], on_cpu["p50_h12"], atol=0.02)
