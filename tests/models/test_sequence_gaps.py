"""LSTM/GRU forecasters on histories with holes: padded windows, masked channels, forecasts after a gap.

PlanetLab-like data (separate days, each VM missing some) is where a model that needs a whole
clean window cannot forecast at all; these tests hold the machinery that lets it forecast
from any present slot, and that it still beats persistence there.
"""

import numpy as np
import pandas as pd
import pytest
import torch

from ml_cloud_optimizer.data.synthetic import generate_fleet
from ml_cloud_optimizer.models._torch import fit_recurrent, torch_threads
from ml_cloud_optimizer.models.sequence import NET_INPUTS, ChangeNet, GRUForecaster, LSTMForecaster
from ml_cloud_optimizer.models.windows import INPUT_CHANNELS, build_panel

FAST = {"epochs": 3, "samples_per_epoch": 8192, "seed": 0}
STEP = pd.Timedelta("5min")


def _two_entities(n_a=30, n_b=20):
    rng = np.random.default_rng(3)
    frames = [
        pd.DataFrame(
            {
                "entity_id": name,
                "ts": pd.date_range("2026-01-05", periods=n, freq="5min", tz="UTC"),
                "cpu_util": rng.uniform(0.1, 0.9, n),
            }
        )
        for name, n in (("a", n_a), ("b", n_b))
    ]
    return pd.concat(frames, ignore_index=True)


def _every_other_day(metrics):
    """Keep days 0, 2, 4, ... of each entity: day-long holes like the PlanetLab trace's."""
    day = (metrics["ts"] - metrics["ts"].min()) // pd.Timedelta("1D")
    return metrics.loc[day % 2 == 0].reset_index(drop=True)


def test_a_window_reaching_before_its_entity_is_zero_there_never_the_previous_entity():
    panel, _ = build_panel(_two_entities(), seasonal_lag=0)
    window = 8
    observed = INPUT_CHANNELS.index("observed")
    got = panel.windows(torch.as_tensor([30 + 2, 0, 30 + 19]), window)
    # Entity b's third slot: five steps of padding, then b's first three rows.
    assert torch.equal(got[0, :5], torch.zeros(5, len(INPUT_CHANNELS)))
    assert torch.equal(got[0, 5:], panel.inputs[30:33])
    assert got[0, 5:, observed].eq(1).all()
    # The very first row of the panel: nothing before it, nothing wraps around from the end.
    assert torch.equal(got[1, :7], torch.zeros(7, len(INPUT_CHANNELS)))
    assert torch.equal(got[1, 7], panel.inputs[0])
    # A full window is the rows themselves.
    assert torch.equal(got[2], panel.inputs[30 + 12 : 30 + 20])


def test_seasonal_channel_is_flagged_absent_where_the_day_earlier_slot_was_missing():
    metrics = generate_fleet(3 * 288, entities=1, seed=4).metrics
    missing_ts = metrics["ts"].iloc[100:110]
    gappy = metrics.loc[~metrics["ts"].isin(missing_ts)]
    lag, lead = 288, 12
    panel, _ = build_panel(gappy, seasonal_lag=lag, lead=lead)
    seen = panel.inputs[:, INPUT_CHANNELS.index("seasonal_observed")].numpy()
    seasonal = panel.inputs[:, INPUT_CHANNELS.index("cpu_z_seasonal")].numpy()
    back = lag - lead
    rows = np.arange(len(panel))
    expected = (rows >= back) & panel.observed[np.maximum(rows - back, 0)]
    np.testing.assert_array_equal(seen.astype(bool), expected)
    assert (seasonal[~expected] == 0).all()
    cpu_z = panel.inputs[:, INPUT_CHANNELS.index("cpu_z")].numpy()
    np.testing.assert_allclose(seasonal[expected], cpu_z[rows[expected] - back])


def test_relative_channels_are_differences_from_the_last_step_and_zero_where_unobserved():
    net = ChangeNet("gru", 8, 1, 2)
    torch.manual_seed(0)
    x = torch.randn(3, 6, len(INPUT_CHANNELS))
    x[:, :, INPUT_CHANNELS.index("observed")] = 1.0
    x[0, :2, INPUT_CHANNELS.index("observed")] = 0.0
    x[:, :, INPUT_CHANNELS.index("seasonal_observed")] = 1.0
    seen: list[torch.Tensor] = []
    net.rnn.register_forward_hook(lambda _m, inputs, _o: seen.append(inputs[0]))
    net(x)
    cells = seen[0]
    assert cells.shape == (3, 6, NET_INPUTS)
    cpu_z = x[:, :, INPUT_CHANNELS.index("cpu_z")]
    relative = cells[:, :, len(INPUT_CHANNELS)]
    expected = cpu_z - cpu_z[:, -1:]
    expected[0, :2] = 0.0
    torch.testing.assert_close(relative, expected)
    assert relative[:, -1].eq(0).all()


def test_an_untrained_change_net_is_persistence():
    net = ChangeNet("lstm", 16, 2, 3)
    assert torch.equal(net(torch.randn(4, 10, len(INPUT_CHANNELS))), torch.zeros(4, 3))


@pytest.fixture(scope="module")
def gappy_fleet():
    """Four entities, 16 days, every other day missing; the last 20% of the span held out."""
    metrics = _every_other_day(generate_fleet(4 * 16 * 288, entities=4, seed=7).metrics)
    span = metrics["ts"].max() - metrics["ts"].min()
    cutoff = metrics["ts"].min() + 0.8 * span
    return metrics, cutoff


@pytest.fixture(scope="module")
def gappy_model(gappy_fleet):
    metrics, cutoff = gappy_fleet
    return GRUForecaster(**FAST).fit(metrics[metrics["ts"] < cutoff])


def test_training_uses_windows_with_holes_and_forecasts_every_present_slot(gappy_model, gappy_fleet):
    metrics, cutoff = gappy_fleet
    train = metrics[metrics["ts"] < cutoff]
    panel, _ = build_panel(train, gappy_model.scaler_, seasonal_lag=gappy_model.seasonal_lag)
    clean = int((panel.complete(gappy_model.window) & panel.targets(gappy_model.horizons)[1]).sum())
    assert gappy_model.n_train_windows_ + gappy_model.n_val_windows_ > clean
    forecasts = gappy_model.predict(metrics)
    assert len(forecasts) == len(metrics)  # min_history is one present slot
    assert forecasts[["p50_h1", "p50_h12"]].notna().all().all()


def test_beats_persistence_after_day_long_gaps(gappy_model, gappy_fleet):
    metrics, cutoff = gappy_fleet
    forecasts = gappy_model.predict(metrics)
    actual = metrics.set_index(["entity_id", "ts"])["cpu_util"]
    f = forecasts[forecasts["ts"] >= cutoff]
    index = pd.MultiIndex.from_arrays
    target = actual.reindex(index([f["entity_id"], f["ts"] + 12 * STEP])).to_numpy()
    last = actual.reindex(index([f["entity_id"], f["ts"]])).to_numpy()
    ok = ~np.isnan(target)
    assert ok.sum() > 500
    model = np.abs(f["p50_h12"].to_numpy()[ok] - target[ok]).mean()
    persistence = np.abs(last[ok] - target[ok]).mean()
    assert model < 0.97 * persistence, f"MAE {model:.4f} vs persistence {persistence:.4f}"
    # The first hour of each day follows a day-long hole: padded windows, yet no worse than persistence.
    first_hour = (f["ts"].dt.hour == 0).to_numpy() & ok
    assert first_hour.sum() > 30
    early = np.abs(f["p50_h12"].to_numpy()[first_hour] - target[first_hour]).mean()
    assert early < 1.05 * np.abs(last[first_hour] - target[first_hour]).mean()


def test_short_history_gives_a_forecast_from_a_padded_window():
    metrics = generate_fleet(2 * 4 * 288, entities=2, seed=2).metrics
    model = LSTMForecaster(epochs=1, samples_per_epoch=512, window=24, seasonal_lag=0).fit(metrics)
    assert model.min_history == 1 and model.full_history == 24
    recent = metrics.groupby("entity_id").tail(3)
    forecasts = model.predict(recent)
    assert len(forecasts) == 6 and forecasts["p50_h12"].between(0, 1.5).all()


def test_one_cycle_schedule_warms_up_then_decays_to_near_zero():
    metrics = generate_fleet(2 * 4 * 288, entities=2, seed=2).metrics
    panel, _ = build_panel(metrics, seasonal_lag=0)
    y, ok = panel.targets((1, 12))
    rows = np.flatnonzero(ok)
    net = ChangeNet("gru", 8, 1, 2)
    with torch_threads(1):
        log = fit_recurrent(
            net,
            panel,
            torch.from_numpy(np.column_stack([y, np.ones(len(y))]).astype(np.float32)),
            rows[:2000],
            rows[2000:],
            lambda out, t: (out - t[:, :-1]).abs().mean(),
            window=12,
            epochs=4,
            batch_size=64,
            lr=0.01,
            patience=4,
            samples_per_epoch=512,
            seed=0,
            device=torch.device("cpu"),
            schedule="one_cycle",
        )
    rates = [e["lr"] for e in log.epochs]
    assert len(rates) == 4
    assert max(rates) == pytest.approx(0.01, rel=0.5) and rates[-1] < 1e-4
    with pytest.raises(ValueError, match="schedule"):
        LSTMForecaster(schedule="step").fit(metrics)
