"""Peak classifiers: SMOTE on training rows only, the report against the rule, save/load, the GRU variant."""

import json

import numpy as np
import pandas as pd
import pytest

from ml_cloud_optimizer.data.schema import DataValidationError
from ml_cloud_optimizer.data.synthetic import generate_fleet
from ml_cloud_optimizer.features import peak_labels
from ml_cloud_optimizer.models.peak import (
    BasePeakModel,
    PeakClassifier,
    SequencePeakClassifier,
    choose_threshold,
    recall_at_precision,
)
from ml_cloud_optimizer.models.peak_report import REPORT_COLUMNS, peak_report


@pytest.fixture(scope="module")
def fleet_metrics():
    """Six entities, two weeks, with labelled bursts (``is_peak``) on top of daily and on/off load."""
    metrics = generate_fleet(6 * 14 * 288, entities=6, seed=1).metrics
    assert metrics["is_peak"].any()
    return metrics


@pytest.fixture(scope="module")
def fitted_pair(fleet_metrics):
    plain = PeakClassifier(seed=0).fit(fleet_metrics)
    smote = PeakClassifier(use_smote=True, seed=0).fit(fleet_metrics)
    return plain, smote


def _expected_split(metrics, model):
    """Labelled rows before (minus the label horizon) and after the model's cut-off, computed independently."""
    ts = pd.to_datetime(metrics["ts"], utc=True)
    horizon = pd.Timedelta(minutes=5 * model.horizon)
    train_rows = metrics[ts + horizon < model.split_ts_]
    thresholds = train_rows.groupby("entity_id")["cpu_util"].quantile(model.quantile)
    labels = peak_labels(metrics, model.horizon, threshold=thresholds)
    labelled = labels.notna()
    train = (ts + horizon < model.split_ts_) & labelled
    val = (ts >= model.split_ts_) & labelled
    return labels.fillna(False).astype(bool), train, val


def test_smote_resamples_training_rows_only(fleet_metrics, fitted_pair):
    plain, smote = fitted_pair
    labels, train, val = _expected_split(fleet_metrics, smote)

    # Same split and the same, untouched validation rows for both variants.
    assert smote.split_ts_ == plain.split_ts_
    assert smote.n_validation_rows_ == plain.n_validation_rows_ == int(val.sum())
    assert smote.n_train_rows_ == plain.n_train_rows_ == int(train.sum())
    # Synthetic rows were added to training only: positives grown to match the negatives.
    positives = int(labels[train].sum())
    assert smote.n_train_positives_ == positives
    assert smote.n_train_resampled_ == 2 * (int(train.sum()) - positives)
    assert plain.n_train_resampled_ == plain.n_train_rows_
    # Predictions cover exactly the input rows, none invented.
    proba = smote.predict_proba(fleet_metrics)
    assert len(proba) == len(fleet_metrics)
    assert proba.index.equals(fleet_metrics.index)


def test_save_and_load_give_identical_probabilities(fleet_metrics, fitted_pair, tmp_path):
    for model in fitted_pair:
        directory = model.save(tmp_path / ("smote" if model.use_smote else "plain"))
        loaded = PeakClassifier.load(directory)
        assert isinstance(loaded, PeakClassifier)
        assert loaded.decision_threshold_ == model.decision_threshold_
        pd.testing.assert_frame_equal(loaded.predict(fleet_metrics), model.predict(fleet_metrics))


def test_state_round_trips_through_json_and_load_with_identical_probabilities(fleet_metrics, fitted_pair, tmp_path):
    """``get_state``/``from_state`` is the one way fitted state leaves and enters a model (save/load, the pipeline)."""
    entities = fleet_metrics["entity_id"]
    for model in fitted_pair:
        state = json.loads(json.dumps(model.get_state()))  # as it crosses a task boundary
        assert state == model.get_state() and "decision_threshold" in state and "feature_spec" in state
        rebuilt = PeakClassifier.from_state({**state, "not_a_key": 1})  # unknown keys are ignored
        assert rebuilt.get_state() == state and rebuilt.get_params() == model.get_params() | {"spec": model.spec_}
        pd.testing.assert_series_equal(rebuilt.thresholds_for(entities), model.thresholds_for(entities))
        directory = model.save(tmp_path / ("smote" if model.use_smote else "plain"))
        config = json.loads((directory / "peak.json").read_text())
        assert {k: config[k] for k in state} == state  # peak.json is the state plus the booster's files
        loaded = BasePeakModel.load(directory)
        assert loaded.get_state() == state
        np.testing.assert_array_equal(
            loaded.predict_proba(fleet_metrics)["peak_prob"].to_numpy(),
            model.predict_proba(fleet_metrics)["peak_prob"].to_numpy(),
        )


def test_unknown_entities_get_probabilities_from_the_pooled_threshold(fleet_metrics, fitted_pair):
    plain, _ = fitted_pair
    renamed = fleet_metrics.assign(entity_id=fleet_metrics["entity_id"].astype(str) + "-new")
    proba = plain.predict_proba(renamed)["peak_prob"]
    assert proba.between(0, 1).all() and proba.std() > 0


def test_report_compares_smote_no_smote_and_the_rule():
    # Twelve entities over the generator's default three weeks: enough peaks in the test window
    # for PR-AUC to separate the models from the rule.
    metrics = generate_fleet(12 * 21 * 288, entities=12, seed=0).metrics
    report = peak_report(metrics, holdout=0.2, seed=0)
    assert list(report.columns) == REPORT_COLUMNS
    assert list(report["model"]) == ["rule", "lightgbm", "lightgbm_smote"]
    assert report["rows"].nunique() == 1 and report["positives"].nunique() == 1  # one test set for all
    scores = report[["pr_auc", "roc_auc", "f1", "precision", "recall", "balanced_accuracy", "recall_at_precision"]]
    assert scores.notna().all().all() and ((scores >= 0) & (scores <= 1)).all().all()
    rule = report.set_index("model").loc["rule"]
    for name in ("lightgbm", "lightgbm_smote"):
        row = report.set_index("model").loc[name]
        assert row["pr_auc"] > rule["pr_auc"] + 0.01, report.to_string()
        assert row["pr_auc"] > 2 * row["positives"] / row["rows"]  # far above a random ranking


def test_sequence_variant_with_focal_loss(fleet_metrics, tmp_path):
    model = SequencePeakClassifier(epochs=2, samples_per_epoch=4096, seed=0).fit(fleet_metrics)
    proba = model.predict_proba(fleet_metrics)
    assert proba["peak_prob"].between(0, 1).all()
    assert len(proba) < len(fleet_metrics)  # rows without min_history behind them get no score
    assert model.validation_pr_auc_ > 0.3
    loaded = BasePeakModel.load(model.save(tmp_path / "gru"))
    assert isinstance(loaded, SequencePeakClassifier)
    assert loaded.get_state() == model.get_state()
    pd.testing.assert_frame_equal(loaded.predict_proba(fleet_metrics), proba)


def test_threshold_choice_on_validation_scores():
    rng = np.random.default_rng(0)
    y = rng.random(2000) < 0.1
    score = np.where(y, rng.normal(0.7, 0.15, 2000), rng.normal(0.3, 0.15, 2000))
    cut = choose_threshold(y, score, "precision", min_precision=0.9)
    assert (y[score >= cut]).mean() >= 0.9
    f1_cut = choose_threshold(y, score, "f1")
    assert 0.3 < f1_cut < 0.8
    assert recall_at_precision(y, score, 0.9) == pytest.approx(y[score >= cut].sum() / y.sum())
    assert choose_threshold(np.zeros(10, bool), np.linspace(0, 1, 10)) == 0.5
    with pytest.raises(ValueError, match="decision"):
        choose_threshold(y, score, "accuracy")


def test_bad_input_is_reported_clearly(fleet_metrics):
    with pytest.raises(DataValidationError, match="cpu_util"):
        PeakClassifier().fit(fleet_metrics.drop(columns="cpu_util"))
    with pytest.raises(RuntimeError, match="not fitted"):
        PeakClassifier().predict_proba(fleet_metrics)
    with pytest.raises(FileNotFoundError, match=r"peak\.json"):
        BasePeakModel.load("/nonexistent/peak-model")
