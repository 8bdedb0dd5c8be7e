"""The tabular fit's memory cuts change no number: features in one matrix, rows chosen first, built by blocks.

``_previous_build_features`` is ``build_features`` as it was before (a dict of columns, the
frame reordered, then cut to the observed rows); the new one must give the same frame bit for
bit, and a fit on features built per block of entities the same boosters' forecasts.
"""

import numpy as np
import pandas as pd
import pytest

import ml_cloud_optimizer.features.tabular as tabular
from ml_cloud_optimizer.data.synthetic import generate_fleet
from ml_cloud_optimizer.evaluation.backtest import holdout_cutoff
from ml_cloud_optimizer.features.calendar import CALENDAR_COLUMNS, calendar_features
from ml_cloud_optimizer.features.grid import to_grid
from ml_cloud_optimizer.features.sets import spec_for
from ml_cloud_optimizer.features.tabular import FeatureSpec, build_feature_rows, build_features
from ml_cloud_optimizer.features.targets import make_targets, target_column
from ml_cloud_optimizer.models.tabular import LightGBMForecaster
from ml_cloud_optimizer.models.tabular_choice import training_rows
from ml_cloud_optimizer.pipeline_steps.training import _tabular_window

QUICK = {"n_estimators": 40, "learning_rate": 0.15, "n_jobs": 1, "early_stopping_rounds": 10, "max_train_rows": 2_000}


def _previous_build_features(metrics: pd.DataFrame, spec: FeatureSpec) -> pd.DataFrame:
    used = [spec.target, *dict.fromkeys([*spec.inputs, *spec.rolling_inputs])]
    grid = to_grid(metrics[["entity_id", "ts", *[c for c in used if c in metrics.columns]]], pd.Timedelta(spec.step))
    g, n, t = grid.frame, len(grid.frame), spec.target

    def column(name):
        return g[name].to_numpy(dtype="float64", na_value=np.nan) if name in g.columns else np.full(n, np.nan)

    y = column(t)
    groups = grid.group(pd.Series(y))
    out = {}
    if spec.calendar:
        cal = calendar_features(g["ts"], spec.timezone)
        out.update({c: cal[c].to_numpy() for c in CALENDAR_COLUMNS})
    out[t] = y
    out.update({c: column(c) for c in spec.inputs})
    out.update({f"{t}_lag_{k}": grid.shift(y, k) for k in spec.lags})
    for period in spec.seasonal_lags:
        p = spec.steps(period)
        back = out[f"{t}_lag_{period}"] = grid.shift(y, p)
        for h in spec.horizons:
            ahead = out[f"{t}_lag_{period}_h{h}"] = grid.shift(y, p - h) if p > h else np.full(n, np.nan)
            out[f"{t}_seasonal_delta_{period}_h{h}"] = ahead - back
    for w in spec.windows:
        roll = groups.rolling(spec.steps(w), min_periods=1)
        for stat in ("mean", "std", "min", "max"):
            out[f"{t}_{stat}_{w}"] = getattr(roll, stat)().to_numpy()
        out[f"{t}_dist_{w}"] = y - out[f"{t}_mean_{w}"]
        for c in spec.rolling_inputs:
            values = grid.group(pd.Series(column(c))).rolling(spec.steps(w), min_periods=1).mean()
            out[f"{c}_mean_{w}"] = values.to_numpy()
    for w in spec.median_windows:
        out[f"{t}_median_{w}"] = groups.rolling(spec.steps(w), min_periods=1).median().to_numpy()
        out[f"{t}_dist_median_{w}"] = y - out[f"{t}_median_{w}"]
    for hl in spec.ewm_halflives:
        out[f"{t}_ewm_{hl}"] = groups.ewm(halflife=spec.steps(hl), ignore_na=True).mean().to_numpy()
    if spec.derived:
        scale_roll = groups.rolling(spec.steps(spec.scale_window), min_periods=2)
        scale = out[f"{t}_scale"] = scale_roll.std().to_numpy()
        out[f"{t}_z"] = (y - scale_roll.mean().to_numpy()) / (scale + 1e-3)
        out[f"{t}_delta_1"] = y - grid.shift(y, 1)
        out[f"{t}_delta_12"] = y - grid.shift(y, 12)
        out["cpu_mem_ratio"] = column("cpu_util") / (column("mem_util") + 1e-3)
        out["net_in_out_ratio"] = column("net_in_kbps") / (column("net_out_kbps") + 1.0)
    features = pd.DataFrame(out, index=g.index)[spec.columns]
    features.insert(0, "ts", g["ts"])
    features.insert(0, "entity_id", g["entity_id"])
    return grid.observed_rows(features, metrics.index)


@pytest.fixture(scope="module")
def metrics() -> pd.DataFrame:
    """A generated fleet (its dropped samples leave gaps) in shuffled row order with a non-default index."""
    frame = generate_fleet(24_000, entities=6, seed=3).metrics
    return frame.sample(frac=1.0, random_state=1).set_axis(np.arange(len(frame)) * 3 + 7)


def _assert_same(ours: pd.DataFrame, reference: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(ours, reference, check_exact=True)
    values = [c for c in reference.columns if c not in ("entity_id", "ts")]
    assert (ours[values].dtypes == "float64").all()
    np.testing.assert_array_equal(ours[values].to_numpy().view("int64"), reference[values].to_numpy().view("int64"))


@pytest.mark.parametrize("name", ["rich", "lags"])
def test_build_features_gives_the_previous_frame_bit_for_bit(metrics, name):
    spec = spec_for(name)
    reference = _previous_build_features(metrics, spec)
    _assert_same(build_features(metrics, spec), reference)
    rows = np.sort(np.random.default_rng(0).choice(len(metrics), 3_000, replace=False))
    _assert_same(build_features(metrics, spec, rows=rows), reference.iloc[rows])


def test_features_built_by_blocks_of_entities_are_the_rows_of_the_whole_frame(metrics):
    spec = FeatureSpec()
    rows = np.sort(np.random.default_rng(1).choice(len(metrics), 2_500, replace=False))
    reference = _previous_build_features(metrics, spec).iloc[rows]
    for block_rows in (1, 5_000, 9_000):  # one entity a block; several; one or two
        _assert_same(build_feature_rows(metrics, spec, rows, block_rows=block_rows), reference)


def test_the_rows_chosen_before_the_features_are_the_ones_chosen_on_them(metrics):
    model, spec = LightGBMForecaster(**QUICK), FeatureSpec()
    picked = training_rows(model, metrics, spec)
    whole = _previous_build_features(metrics, spec)
    anchor = whole[spec.target].to_numpy()
    targets = make_targets(metrics, model.horizons)
    design = model._design(build_feature_rows(metrics, spec, picked.positions, block_rows=4_000))
    full = whole[spec.columns].to_numpy(dtype="float32")
    for h in model.horizons:
        y = targets[target_column(h)].to_numpy(dtype="float64", na_value=np.nan)
        rows = model._training_rows(y, anchor, whole["ts"])
        assert len(rows) == QUICK["max_train_rows"]
        np.testing.assert_array_equal(picked.positions[picked.rows[h]], rows)
        np.testing.assert_array_equal(picked.y[h][picked.rows[h]], y[rows])
        np.testing.assert_array_equal(design[picked.rows[h]], full[rows])


def test_a_fit_on_features_built_by_blocks_forecasts_as_one_on_the_whole_frame(metrics, monkeypatch):
    whole = LightGBMForecaster(**QUICK).fit(metrics)
    monkeypatch.setattr(tabular, "BLOCK_ROWS", 3_000)
    blocks = LightGBMForecaster(**QUICK).fit(metrics)
    assert blocks.config_ == whole.config_ and blocks.config_scores_ == whole.config_scores_
    assert blocks.rounds_ == whole.rounds_
    pd.testing.assert_frame_equal(blocks.predict(metrics), whole.predict(metrics), check_exact=True)


def test_validation_forecasts_by_blocks_are_the_window_predict_gives(metrics, monkeypatch):
    model = LightGBMForecaster(**QUICK).fit(metrics)
    cutoff = holdout_cutoff(metrics, 0.3)
    reference = model.predict(metrics)
    reference = reference.loc[reference["ts"] >= cutoff].reset_index(drop=True)
    for block_rows in (100_000, 3_000):
        monkeypatch.setattr(tabular, "BLOCK_ROWS", block_rows)
        ours = _tabular_window(model, metrics, cutoff)
        pd.testing.assert_frame_equal(ours, reference, check_exact=True)


def test_peak_rows_by_blocks_are_the_whole_frames_and_so_are_the_pipelines(metrics, monkeypatch):
    from ml_cloud_optimizer.models.peak import PeakClassifier
    from ml_cloud_optimizer.pipeline_steps.peak_training import peak_training_rows

    model = PeakClassifier(seed=0)
    model.label_split(metrics)
    positions = np.sort(np.random.default_rng(2).choice(len(metrics), 5_000, replace=False))
    reference = model.feature_rows(metrics).iloc[positions]
    whole_rows, whole_state = peak_training_rows(metrics)
    monkeypatch.setattr(tabular, "BLOCK_ROWS", 3_000)
    pd.testing.assert_frame_equal(model.feature_rows_at(metrics, positions), reference, check_exact=True)
    block_rows, block_state = peak_training_rows(metrics)
    pd.testing.assert_frame_equal(block_rows, whole_rows, check_exact=True)
    assert block_state == whole_state
