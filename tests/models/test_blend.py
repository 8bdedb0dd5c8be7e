"""A blend forecasts the weighted mean of its members, refits as a whole, and saves and serves like any model."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone

from ml_cloud_optimizer.data.synthetic import generate_fleet
from ml_cloud_optimizer.models import Forecaster
from ml_cloud_optimizer.models.baselines import PersistenceForecaster
from ml_cloud_optimizer.models.blend import BlendForecaster
from ml_cloud_optimizer.models.bundle import ModelBundle
from ml_cloud_optimizer.models.tabular import LightGBMForecaster

WEIGHTS = {1: [0.5, 0.5], 12: [0.7, 0.3]}


@pytest.fixture(scope="module")
def metrics() -> pd.DataFrame:
    return generate_fleet(4_000, entities=2, seed=6).metrics


@pytest.fixture(scope="module")
def blend(metrics) -> BlendForecaster:
    tree = LightGBMForecaster(target_mode="delta", feature_set="lags", n_estimators=30, n_jobs=1)
    return BlendForecaster([("lightgbm", tree), ("persistence", PersistenceForecaster())], WEIGHTS).fit(metrics)


def test_the_forecast_is_the_weighted_mean_of_the_members(blend, metrics):
    out = blend.predict(metrics)
    tree, last = (m.predict(metrics).set_index(["entity_id", "ts"]) for _, m in blend.estimators_)
    joined = out.set_index(["entity_id", "ts"])
    assert len(joined) == len(tree.index.intersection(last.index))
    assert np.allclose(
        joined["p50_h12"], 0.7 * tree.loc[joined.index, "p50_h12"] + 0.3 * last.loc[joined.index, "p50_h12"]
    )
    assert np.allclose(
        joined["p50_h1"], 0.5 * tree.loc[joined.index, "p50_h1"] + 0.5 * last.loc[joined.index, "p50_h1"]
    )
    assert "p90_h12" not in out  # persistence has no p90, so neither has the blend
    assert not blend.quantile


def test_clone_refits_every_member_and_leaves_the_template_alone(blend, metrics):
    again = clone(blend).fit(metrics.loc[metrics["ts"] < metrics["ts"].quantile(0.6)])
    assert again.estimators_[0][1] is not blend.estimators_[0][1]
    assert again.min_history == blend.min_history == max(m.min_history for _, m in blend.estimators_)
    with pytest.raises(ValueError, match="no weights for horizon 12"):
        BlendForecaster(blend.estimators, {1: [1.0, 0.0]}).fit(metrics)
    with pytest.raises(ValueError, match="no member"):
        BlendForecaster([], WEIGHTS).fit(metrics)


def test_a_saved_blend_loads_and_serves_the_same_forecasts(blend, metrics, tmp_path):
    directory = ModelBundle(blend, metadata={"source": "test"}).save(tmp_path / "blend")
    assert (directory / "members" / "0-lightgbm" / "metadata.json").is_file()
    loaded = Forecaster.load(directory)
    assert isinstance(loaded, BlendForecaster) and loaded.weights == {"1": [0.5, 0.5], "12": [0.7, 0.3]}
    pd.testing.assert_frame_equal(loaded.predict(metrics), blend.predict(metrics))
    served = ModelBundle.load(directory).predict(metrics)
    assert len(served) == metrics["entity_id"].nunique()
    last = blend.predict(metrics).sort_values("ts").groupby("entity_id").tail(1).set_index("entity_id")
    assert np.allclose(served.set_index("entity_id").loc[last.index, "p50_h12"], last["p50_h12"])


def test_p90_is_blended_with_its_margin_when_every_member_has_one(metrics):
    def tree(seed):
        return LightGBMForecaster(target_mode="level", feature_set="lags", n_estimators=20, n_jobs=1, random_state=seed)

    both = BlendForecaster([("a", tree(0)), ("b", tree(1))], WEIGHTS, p90_margin={12: 0.02}).fit(metrics)
    out = both.predict(metrics).set_index(["entity_id", "ts"])
    a, b = (m.predict(metrics).set_index(["entity_id", "ts"]).loc[out.index] for _, m in both.estimators_)
    expected = np.clip(0.7 * a["p90_h12"] + 0.3 * b["p90_h12"] + 0.02, 0, None)
    assert np.allclose(out["p90_h12"], np.fmax(np.minimum(expected, 1.5), out["p50_h12"]))
    assert (out["p90_h12"] >= out["p50_h12"]).all() and both.quantile


def test_a_member_without_p90_stands_in_with_its_p50_once_a_margin_is_fitted(blend, metrics):
    # persistence has no p90: without a margin the blend forecasts none (above); with one, it does
    calibrated = BlendForecaster.fitted(blend.estimators_, WEIGHTS, blend.horizons, {1: 0.01, 12: 0.03})
    out = calibrated.predict(metrics).set_index(["entity_id", "ts"])
    tree, last = (m.predict(metrics).set_index(["entity_id", "ts"]).loc[out.index] for _, m in blend.estimators_)
    expected = np.clip(0.7 * tree["p90_h12"] + 0.3 * last["p50_h12"] + 0.03, 0, 1.5)
    assert np.allclose(out["p90_h12"], np.fmax(expected, out["p50_h12"]))
    assert (out["p90_h12"] >= out["p50_h12"]).all() and calibrated.quantile
