"""The pipeline steps as plain functions: the split, the three-step peak classifier, scoring fitted models."""

from __future__ import annotations

import logging
import sys

import numpy as np
import pandas as pd
import pytest

from ml_cloud_optimizer.data.synthetic import generate_fleet
from ml_cloud_optimizer.evaluation import evaluate_holdout, holdout_cutoff
from ml_cloud_optimizer.models.baselines import PersistenceForecaster, SeasonalNaiveForecaster
from ml_cloud_optimizer.models.peak import BasePeakModel, PeakClassifier
from ml_cloud_optimizer.pipeline_steps import artifacts, peak_training, run_log, split
from ml_cloud_optimizer.pipeline_steps.scoring import compare_on_holdout


@pytest.fixture
def step_log(caplog):
    """The steps' log records, whatever an earlier test left the ``ml_cloud_optimizer`` logger configured to."""
    logger = logging.getLogger("ml_cloud_optimizer")
    logger.addHandler(caplog.handler)
    caplog.set_level(logging.INFO, logger="ml_cloud_optimizer")
    yield caplog
    logger.removeHandler(caplog.handler)


@pytest.fixture(scope="module")
def fleet():
    return generate_fleet(8_000, entities=2, seed=3)


@pytest.fixture(scope="module")
def train(fleet):
    train_fleet, _ = split.split_by_time(fleet, 0.2)
    return train_fleet


def test_split_is_the_evaluation_cutoff_and_leaks_nothing(fleet):
    train_fleet, cutoff = split.split_by_time(fleet, 0.25)
    assert pd.Timestamp(cutoff) == holdout_cutoff(fleet.metrics, 0.25)
    assert train_fleet.metrics["ts"].max() < pd.Timestamp(cutoff)
    later = fleet.metrics["ts"] >= pd.Timestamp(cutoff)
    assert len(train_fleet.metrics) == int((~later).sum()) and later.any()


def test_fleet_artifacts_round_trip(fleet, tmp_path):
    summary = artifacts.save_fleet(fleet, tmp_path / "fleet")
    back = artifacts.load_fleet(tmp_path / "fleet")
    pd.testing.assert_frame_equal(back.metrics, fleet.metrics)
    assert artifacts.load_entity_ids(tmp_path / "fleet") == list(fleet.entities["entity_id"])
    assert summary["rows"] == len(fleet.metrics) and summary["entities"] == 2


def test_rows_written_in_row_groups_read_back_as_they_were(train, tmp_path, monkeypatch):
    import pyarrow.parquet as pq

    rows, state = peak_training.peak_training_rows(train.metrics, seed=0)
    artifacts.save_rows(rows, tmp_path / "whole", state)
    monkeypatch.setattr(artifacts, "WRITE_ROWS", 1_000)
    artifacts.save_rows(rows, tmp_path / "groups", state)
    assert pq.ParquetFile(tmp_path / "groups" / "rows.parquet").metadata.num_row_groups == -(-len(rows) // 1_000) > 1
    for name in ("whole", "groups"):
        back, back_state = artifacts.load_rows(tmp_path / name)
        pd.testing.assert_frame_equal(back, rows, check_exact=True)
        assert back_state == state


def test_smote_step_leaves_validation_rows_alone(train):
    rows, _ = peak_training.peak_training_rows(train.metrics, seed=0)
    balanced, fill, counts = peak_training.balance_peak_rows(rows, seed=0)
    validation_before = rows.loc[rows["part"] == "validation"].reset_index(drop=True)
    validation_after = balanced.loc[balanced["part"] == "validation"].drop(columns="synthetic").reset_index(drop=True)
    pd.testing.assert_frame_equal(validation_after, validation_before)
    synthetic = balanced.loc[balanced["synthetic"]]
    assert (synthetic["part"] == "fit").all() and synthetic["label"].all()
    assert synthetic["entity_id"].isna().all()  # made up between neighbours, they belong to no entity
    fit = balanced.loc[balanced["part"] == "fit"]
    assert fit["label"].sum() == (~fit["label"]).sum() == counts["balanced_peaks"]
    assert counts["synthetic_rows"] == len(synthetic) and set(fill) == set(rows.columns) - {
        "entity_id",
        "ts",
        "label",
        "part",
    }


@pytest.mark.parametrize("majority_cap", [None, 600], ids=["whole", "majority capped"])
def test_three_steps_give_lightgbm_the_problem_peak_classifier_would(train, fleet, tmp_path, monkeypatch, majority_cap):
    # LightGBM picks row- or column-wise histograms by timing them, so two fits of the same data
    # may differ in the last bits; what the steps control is the problem handed to it: compare that.
    import lightgbm

    problems = []
    real_fit = lightgbm.LGBMClassifier.fit

    def recording_fit(self, X, y, **kwargs):
        X_val, y_val = (kwargs["eval_X"][0], kwargs["eval_y"][0]) if "eval_X" in kwargs else kwargs["eval_set"][0]
        settings = {k: v for k, v in self.get_params().items() if k != "n_jobs"}  # n_jobs follows the load
        problems.append((settings, X.to_numpy(), np.asarray(y), X_val.to_numpy(), np.asarray(y_val)))
        return real_fit(self, X, y, **kwargs)

    monkeypatch.setattr(lightgbm.LGBMClassifier, "fit", recording_fit)
    reference = PeakClassifier(use_smote=True, majority_cap=majority_cap, seed=0).fit(train.metrics)
    rows, state = peak_training.peak_training_rows(train.metrics, seed=0, majority_cap=majority_cap)
    artifacts.save_rows(rows, tmp_path / "rows", state)  # through the artifacts, as the pipeline does
    rows, state = artifacts.load_rows(tmp_path / "rows")
    balanced, fill, counts = peak_training.balance_peak_rows(rows, seed=0, majority_cap=state["params"]["majority_cap"])
    assert (counts["majority_dropped"] > 0) == (majority_cap is not None)
    state = {**state, "fill_values": fill, "n_train_rows": counts["fit_rows"]}  # what the smote component keeps
    artifacts.save_rows(balanced, tmp_path / "balanced", state)
    model = peak_training.fit_peak_classifier(*artifacts.load_rows(tmp_path / "balanced"))

    (theirs, ours) = problems
    assert ours[0] == theirs[0]  # the same LightGBM settings
    for a, b in zip(ours[1:], theirs[1:], strict=True):
        np.testing.assert_array_equal(a, b)  # the same resampled training rows, labels and validation rows
    assert model.feature_columns_ == reference.feature_columns_
    for ours_, theirs_ in ((model.fill_values_, reference.fill_values_), (model.thresholds_, reference.thresholds_)):
        pd.testing.assert_series_equal(
            ours_.sort_index(), theirs_.sort_index(), check_names=False, check_index_type=False
        )
    assert model.split_ts_ == reference.split_ts_
    assert model.n_train_rows_ == reference.n_train_rows_ == counts["fit_rows"]
    assert model.n_train_resampled_ == reference.n_train_resampled_

    model.save(tmp_path / "model")
    loaded = BasePeakModel.load(tmp_path / "model")
    np.testing.assert_array_equal(
        loaded.predict_proba(fleet.metrics)["peak_prob"].to_numpy(),
        model.predict_proba(fleet.metrics)["peak_prob"].to_numpy(),
    )
    summary = peak_training.peak_summary(model)
    assert summary["kind"] == "peak-lightgbm" and 0 <= summary["validation_pr_auc"] <= 1


def test_comparing_fitted_models_scores_them_on_the_same_rows(fleet, train):
    persistence = PersistenceForecaster().fit(train.metrics)
    seasonal = SeasonalNaiveForecaster().fit(train.metrics)
    ours, theirs = compare_on_holdout(persistence, seasonal, fleet, holdout_fraction=0.2, horizons=[1, 12])
    reference = evaluate_holdout({}, fleet.metrics, holdout=0.2).scores.set_index(["model", "horizon"])["mae"]
    assert ours == pytest.approx(reference[("persistence", 12)])
    assert theirs == pytest.approx(reference[("seasonal_naive", 12)])


def test_status_record_never_fails_the_run(monkeypatch, step_log):
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    run_id = run_log.record_pipeline_status(
        state="FAILED",
        job="job-1",
        task="exit-handler-1",
        error_message="boom",
        tracking_uri=f"http://127.0.0.1:{port}",
    )
    assert run_id is None
    warning = [r.getMessage() for r in step_log.records if r.levelno == logging.WARNING]
    assert len(warning) == 1 and "could not record the status" in warning[0] and '"error_message": "boom"' in warning[0]


def test_steps_report_on_stdout_as_mlco_lines(fleet, capsys):
    """Each step's line reaches stdout as ``[mlco] ...``: ``mlco run``'s progress display shows only those."""
    from ml_cloud_optimizer import logs

    logger = logging.getLogger(logs.LOGGER)
    before = [h for h in logger.handlers if getattr(h, "_mlco", False)]
    level, propagate = logger.level, logger.propagate
    try:
        logs.configure(stream=sys.stdout)  # what importing pipeline_steps does in a task's process
        split.split_by_time(fleet, 0.2)
    finally:
        logs.reset()
        for handler in before:
            logger.addHandler(handler)
        logger.setLevel(level)
        logger.propagate = propagate
    out = capsys.readouterr().out.splitlines()
    assert any(line.startswith("[mlco] split at ") and "rows to train" in line for line in out)


def test_training_forecasts_its_validation_window_from_a_fit_before_it(fleet, train, tmp_path):
    from ml_cloud_optimizer.evaluation import validation_cutoff
    from ml_cloud_optimizer.pipeline_steps import training

    model = training.train_forecaster("persistence", train, horizons=[1, 12])
    frame = model.validation_forecasts_
    start, cutoff = validation_cutoff(fleet.metrics, 0.2), holdout_cutoff(fleet.metrics, 0.2)
    assert frame["ts"].min() == start and frame["ts"].max() < cutoff
    training.save_model(model, tmp_path / "model")
    pd.testing.assert_frame_equal(training.load_validation(tmp_path / "model"), frame)
    assert training.load_validation(tmp_path) is None


def test_scoring_chooses_on_the_validation_forecasts_the_training_tasks_made(fleet, train):
    from ml_cloud_optimizer.pipeline_steps import training
    from ml_cloud_optimizer.pipeline_steps.scoring import PrefittedForecaster

    fitted = training.train_forecaster("persistence", train, horizons=[1, 12])
    with_window = PrefittedForecaster(fitted, fitted.validation_forecasts_)
    without = PrefittedForecaster(PersistenceForecaster().fit(train.metrics))
    evaluation = evaluate_holdout({"trained": with_window, "bare": without}, fleet.metrics, holdout=0.2)
    scores = evaluation.scores.set_index(["model", "horizon"])
    # The training task's forecasts are persistence's: scored on validation exactly as the baseline's own.
    assert scores.loc[("trained", 12), "val_mae"] == pytest.approx(scores.loc[("persistence", 12), "val_mae"])
    assert np.isnan(scores.loc[("bare", 12), "val_mae"])  # no validation forecasts: never chosen
    assert scores.loc[("bare", 12), "mae"] == pytest.approx(scores.loc[("persistence", 12), "mae"])
