"""The tabular forecasters choose their target (level or change) and feature set per dataset, on validation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ml_cloud_optimizer.data.schema import STEP
from ml_cloud_optimizer.features.sets import spec_for
from ml_cloud_optimizer.models import Forecaster
from ml_cloud_optimizer.models.tabular import LightGBMForecaster
from ml_cloud_optimizer.models.tabular_choice import options, validation_split

DAYS, ENTITIES = 4, 6
QUICK = {"n_estimators": 80, "learning_rate": 0.15, "n_jobs": 1, "quantile": False, "refit": False}


def fleet(kind: str, seed: int = 0) -> pd.DataFrame:
    """Entities whose load is a random walk (``walk``: the last value is the best guess of the next)
    or spiky (Laplace) noise around each entity's own level (``revert``: the level is)."""
    rng = np.random.default_rng(seed)
    ts = pd.date_range("2024-05-06", periods=DAYS * 288, freq=STEP, tz="UTC")
    frames = []
    for e in range(ENTITIES):
        if kind == "walk":
            cpu = np.clip(0.5 + np.cumsum(rng.normal(0, 0.015, len(ts))), 0.02, 0.98)
        else:
            cpu = np.clip(rng.uniform(0.2, 0.8) + rng.laplace(0, 0.06, len(ts)), 0, 1)
        frames.append(pd.DataFrame({"entity_id": f"vm-{e}", "ts": ts, "cpu_util": cpu}))
    return pd.concat(frames, ignore_index=True)


@pytest.mark.parametrize(("kind", "expected"), [("walk", "delta"), ("revert", "level")])
def test_the_target_follows_what_the_data_rewards(kind, expected):
    model = LightGBMForecaster(horizons=(12,), feature_set="lags", **QUICK).fit(fleet(kind))
    assert model.target_mode_ == expected
    scores = model.config_scores_
    assert set(scores) == {"delta/lags", "level/lags"}
    other = "level" if expected == "delta" else "delta"
    assert scores[f"{expected}/lags"] < 0.98 * scores[f"{other}/lags"]  # clearly, not by a tie


def test_fixed_choices_are_not_tried_and_auto_tries_every_pair():
    assert options("delta", "rich") == [("delta", "rich")]
    assert options("auto", "auto") == [("delta", "lags"), ("level", "lags"), ("delta", "rich"), ("level", "rich")]
    model = LightGBMForecaster(horizons=(12,), target_mode="level", feature_set="lags", **QUICK).fit(fleet("walk"))
    assert model.config_ == ("level", "lags") and model.config_scores_ == {}
    assert model.feature_columns_ == spec_for("lags").columns


def test_the_choice_reads_only_rows_before_its_validation_cut():
    t = pd.date_range("2024-01-01", periods=1_000, freq=STEP).to_numpy().astype("int64")
    fit, valid = validation_split(t, 0.2, horizon=12)
    assert fit.sum() + valid.sum() < len(t)  # the horizon's gap belongs to neither
    assert t[fit].max() + 12 * STEP.value < t[valid].min()
    assert valid.mean() == pytest.approx(0.2, abs=0.01)


def test_the_chosen_configuration_is_saved_and_served_alike(tmp_path):
    metrics = fleet("revert", seed=2)
    model = LightGBMForecaster(horizons=(1, 12), **QUICK, p90_margin={12: 0.01}).fit(metrics)
    assert len(model.config_scores_) == 4
    loaded = Forecaster.load(model.save(tmp_path / "m"))
    assert loaded.config_ == model.config_ and loaded.get_params()["target_mode"] == model.target_mode_
    assert loaded.feature_columns_ == model.feature_columns_ and loaded.p90_margin == {"12": 0.01}
    pd.testing.assert_frame_equal(loaded.predict(metrics), model.predict(metrics))


def test_a_model_saved_before_the_choice_loads_as_the_change_on_the_rich_set(tmp_path):
    model = LightGBMForecaster(horizons=(12,), target_mode="delta", feature_set="rich", **QUICK)
    model.fit(fleet("walk"))
    directory = model.save(tmp_path / "old")
    meta_path = directory / "metadata.json"
    import json

    meta = json.loads(meta_path.read_text())
    for key in ("feature_set", "config_scores"):
        meta.pop(key)
    meta["params"].pop("feature_set")
    meta["params"]["target_mode"] = "delta"
    meta_path.write_text(json.dumps(meta))
    loaded = Forecaster.load(directory)
    assert loaded.config_ == ("delta", "rich")
    assert np.allclose(loaded.predict(fleet("walk"))["p50_h12"], model.predict(fleet("walk"))["p50_h12"])


def test_unknown_choices_are_refused():
    with pytest.raises(ValueError, match="feature_set 'wide'"):
        LightGBMForecaster(feature_set="wide").fit(fleet("walk"))
    with pytest.raises(ValueError, match="target_mode 'log'"):
        LightGBMForecaster(target_mode="log").fit(fleet("walk"))
