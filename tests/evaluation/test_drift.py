"""Drift: PSI and KS per feature between a training window and a recent one."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from ml_cloud_optimizer.data.synthetic import generate_fleet
from ml_cloud_optimizer.drift import PSI_MAJOR, PSI_MODERATE, drift_report, psi
from ml_cloud_optimizer.features import FeatureSpec, build_features


def test_psi_is_near_zero_for_one_distribution_and_large_for_a_shift():
    rng = np.random.default_rng(0)
    reference = rng.normal(0, 1, 20_000)
    assert psi(reference, rng.normal(0, 1, 20_000)) < 0.01
    assert PSI_MODERATE < psi(reference, rng.normal(0.4, 1, 20_000)) < PSI_MAJOR + 0.2
    assert psi(reference, rng.normal(2, 1, 20_000)) > PSI_MAJOR
    assert psi(reference, rng.normal(2, 1, 20_000)) == pytest.approx(psi(reference, rng.normal(2, 1, 20_000)), rel=0.1)
    assert np.isnan(psi(reference, [np.nan, np.nan]))


def test_report_flags_the_drifted_feature_first_with_scipy_ks():
    rng = np.random.default_rng(1)
    reference = pd.DataFrame({"steady": rng.uniform(0, 1, 5_000), "moved": rng.uniform(0, 1, 5_000), "entity_id": "a"})
    recent = pd.DataFrame({"steady": rng.uniform(0, 1, 2_000), "moved": rng.uniform(0.5, 1.5, 2_000), "entity_id": "a"})
    report = drift_report(reference, recent)
    assert list(report["feature"]) == ["moved", "steady"]
    moved = report.iloc[0]
    assert moved["severity"] == "major" and report.iloc[1]["severity"] == "stable"
    expected = stats.ks_2samp(reference["moved"], recent["moved"])
    assert moved["ks_stat"] == pytest.approx(expected.statistic)
    assert moved["ks_pvalue"] < 1e-6 and report.iloc[1]["ks_pvalue"] > 1e-3
    with pytest.raises(ValueError, match="missing"):
        drift_report(reference, recent, columns=["nope"])


def test_report_runs_on_feature_rows_of_two_windows():
    metrics = generate_fleet(3_000, entities=2, seed=4).metrics
    features = build_features(metrics, FeatureSpec(windows=("6h",), seasonal_lags=(), scale_window="6h"))
    cut = features["ts"].quantile(0.7)
    report = drift_report(features.loc[features["ts"] < cut], features.loc[features["ts"] >= cut])
    assert "cpu_util_mean_6h" in set(report["feature"]) and "ts" not in set(report["feature"])
    assert report["psi"].dropna().ge(0).all()
    assert set(report["severity"]) <= {"stable", "moderate", "major", "empty"}
