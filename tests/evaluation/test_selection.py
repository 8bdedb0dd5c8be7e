"""Choosing on validation, reporting on the hold-out: no hold-out row is fitted or chosen on; blends; p90 margins."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd
import pytest

from ml_cloud_optimizer.data.schema import STEP
from ml_cloud_optimizer.data.synthetic import generate_fleet
from ml_cloud_optimizer.evaluation import BLEND, evaluate_holdout, leaderboard, validation_cutoff
from ml_cloud_optimizer.evaluation.blend import fit_weights, simplex
from ml_cloud_optimizer.evaluation.calibration import conformal_margin
from ml_cloud_optimizer.features.targets import make_targets, target_column
from ml_cloud_optimizer.models import Forecaster
from ml_cloud_optimizer.models.base import forecast_column
from ml_cloud_optimizer.models.blend import BlendForecaster
from ml_cloud_optimizer.models.tabular import LightGBMForecaster

H = (1, 12)


class Oracle(Forecaster):
    """Reads the future it is handed (a test device): the actual plus deterministic noise per row.

    ``noise_before`` applies to origins before ``switch``, ``noise_after`` from it on; ``seed``
    makes two oracles err independently. Every fit records the last timestamp it was given.
    """

    kind: ClassVar[str] = "oracle"
    fits: ClassVar[list[pd.Timestamp]] = []

    def __init__(self, noise_before=0.0, noise_after=0.0, switch=None, seed=0, horizons=H):
        self.noise_before, self.noise_after, self.switch, self.seed, self.horizons = (
            noise_before,
            noise_after,
            switch,
            seed,
            horizons,
        )

    @property
    def min_history(self) -> int:
        return 1

    def fit(self, metrics, entities=None):
        Oracle.fits.append(metrics["ts"].max())
        return self

    def predict(self, metrics):
        out = make_targets(metrics, self.horizons)
        keys = pd.util.hash_pandas_object(out[["entity_id", "ts"]], index=False).to_numpy()
        z = np.random.default_rng(self.seed).normal(size=1024)[(keys + np.uint64(self.seed)) % np.uint64(1024)]
        late = (out["ts"] >= self.switch).to_numpy() if self.switch is not None else np.zeros(len(out), bool)
        scale = np.where(late, self.noise_after, self.noise_before)
        for h in self.horizons:
            out[forecast_column(h)] = out.pop(target_column(h)) + scale * z
        return out

    def _save(self, directory: Path) -> dict:
        return {}

    @classmethod
    def _load(cls, directory, metadata):
        raise NotImplementedError


@pytest.fixture(scope="module")
def metrics() -> pd.DataFrame:
    return generate_fleet(6_000, entities=3, seed=11).metrics


def test_validation_window_fits_and_reads_nothing_of_the_hold_out(metrics):
    Oracle.fits.clear()
    evaluation = evaluate_holdout({"oracle": Oracle(0.01)}, metrics, holdout=0.25, horizons=H)
    start, cutoff = evaluation.validation_cutoff, evaluation.cutoff
    assert start == validation_cutoff(metrics, 0.25) and start < cutoff
    assert Oracle.fits == [Oracle.fits[0], Oracle.fits[1]] and Oracle.fits[0] < start <= Oracle.fits[1] < cutoff
    for frame in evaluation.validation_forecasts.values():
        assert frame["ts"].min() >= start and frame["ts"].max() < cutoff
        for h in H:  # an actual in the hold-out is not known to the validation window
            reaches = (frame["ts"] + h * STEP >= cutoff).to_numpy()
            assert reaches.any() and frame.loc[reaches, target_column(h)].isna().all()
    assert evaluation.forecasts["oracle"]["ts"].min() >= cutoff


def test_the_champion_is_chosen_on_validation_and_reported_on_the_hold_out(metrics):
    cutoff = evaluate_holdout({}, metrics, holdout=0.25, validation=0).cutoff
    models = {"early": Oracle(0.0, 0.2, switch=cutoff), "late": Oracle(0.2, 0.0, switch=cutoff, seed=1)}
    board = leaderboard(evaluate_holdout(models, metrics, holdout=0.25, horizons=H).scores).set_index("model")
    assert board.loc["early", "champion"]
    assert board.loc["early", "val_mae_h12"] < board.loc["late", "val_mae_h12"]
    assert board.loc["early", "mae_h12"] > board.loc["late", "mae_h12"]  # worse on the hold-out, and shown so
    assert board.loc["early", "rank"] == 1
    hindsight = leaderboard(evaluate_holdout(models, metrics, holdout=0.25, horizons=H, validation=0).scores)
    assert hindsight.loc[hindsight["champion"], "model"].item() == "late"  # what choosing on the hold-out did


def test_references_are_scored_but_never_chosen(metrics):
    evaluation = evaluate_holdout({}, metrics, holdout=0.25, horizons=H, references={"ref": Oracle(0.0)})
    board = leaderboard(evaluation.scores).set_index("model")
    assert board.loc["ref", "val_mae_h12"] == 0 and not board.loc["ref", "eligible"]
    assert board.loc["ref", "rank"] == 1 and not board.loc["ref", "champion"]
    champion = board.loc[board["champion"]].iloc[0]
    assert champion["eligible"] and champion["val_mae_h12"] == board.loc[board["eligible"], "val_mae_h12"].min()


def test_a_blend_of_independent_errors_wins_validation_and_forecasts_alike(metrics):
    models = {"a": Oracle(0.05, 0.05, seed=1), "b": Oracle(0.05, 0.05, seed=2)}
    evaluation = evaluate_holdout(models, metrics, holdout=0.25, horizons=H)
    board = leaderboard(evaluation.scores).set_index("model")
    assert board.loc[BLEND, "champion"] and board.loc[BLEND, "eligible"]
    assert board.loc[BLEND, "val_mae_h12"] < 0.85 * min(board.loc["a", "val_mae_h12"], board.loc["b", "val_mae_h12"])
    assert board.loc[BLEND, "mae_h12"] < 0.85 * min(board.loc["a", "mae_h12"], board.loc["b", "mae_h12"])
    blend = evaluation.models[BLEND]
    assert isinstance(blend, BlendForecaster)
    weights = dict(zip([name for name, _ in blend.estimators_], blend.weights[12], strict=True))
    assert sum(weights.values()) == pytest.approx(1) and min(weights["a"], weights["b"]) >= 0.3  # equals share
    assert any(note.startswith("blend (a ") or note.startswith("blend (b ") for note in evaluation.notes)
    # The blend forecasts as evaluation scored it, before and after a save.
    frame = evaluation.forecasts[BLEND]
    rows = frame["scored_h12"].to_numpy()
    direct = blend.predict(metrics).merge(frame.loc[rows, ["entity_id", "ts"]], on=["entity_id", "ts"])
    assert np.allclose(direct["p50_h12"], frame.loc[rows, "p50_h12"])


def test_a_blend_that_is_one_model_gets_no_row(metrics):
    evaluation = evaluate_holdout({"good": Oracle(0.001)}, metrics, holdout=0.25, horizons=H)
    assert BLEND not in set(evaluation.scores["model"])
    assert any("does not beat" in note for note in evaluation.notes)


def test_blend_weights_come_from_the_simplex():
    grid = simplex(3, 0.5)
    assert sorted(map(tuple, grid)) == sorted(
        [(0, 0, 1), (0, 0.5, 0.5), (0, 1, 0), (0.5, 0, 0.5), (0.5, 0.5, 0), (1, 0, 0)]
    )
    rng = np.random.default_rng(0)
    y = rng.normal(size=2_000)
    good, bad = y + rng.normal(0, 0.1, 2_000), y + rng.normal(0, 1.0, 2_000)
    assert list(fit_weights(np.column_stack([bad, good]), y)) == [0.0, 1.0]


def test_conformal_margin_gives_the_coverage_asked_on_new_rows():
    rng = np.random.default_rng(3)
    actual, later = rng.normal(0, 1, 4_000), rng.normal(0, 1, 4_000)
    p90 = np.full(4_000, 0.5)  # covers about 69%: too low
    margin = conformal_margin(actual, p90)
    assert np.mean(actual <= p90) < 0.75
    assert abs(np.mean(later <= p90 + margin) - 0.9) < 0.02
    assert conformal_margin(actual[:10], p90[:10]) == 0.0  # too few rows: no margin


def test_tabular_p90_margin_is_fitted_on_validation_and_kept_by_the_hold_out_model(metrics):
    model = LightGBMForecaster(
        features={"windows": ("6h",), "seasonal_lags": (), "scale_window": "6h", "rolling_inputs": ()},
        target_mode="delta",
        feature_set="lags",
        n_estimators=30,
        n_jobs=1,
    )
    evaluation = evaluate_holdout({"lightgbm": model}, metrics, holdout=0.25, horizons=H)
    fitted = evaluation.models["lightgbm"]
    assert set(fitted.p90_margin) == {1, 12} and model.p90_margin is None  # the template is left alone
    note = next(n for n in evaluation.notes if n.startswith("p90 margin of lightgbm"))
    assert f"h12 {fitted.p90_margin[12]:+.4f}" in note
    row = evaluation.scores.set_index(["model", "horizon"]).loc[("lightgbm", 12)]
    assert 0 < row["val_p90_cover"] <= 1 and 0 < row["p90_cover"] <= 1
    raw = fitted.set_params(p90_margin=None).predict(metrics)
    shifted = fitted.set_params(p90_margin={12: 0.05}).predict(metrics)
    assert (shifted["p90_h12"] >= raw["p90_h12"] - 1e-12).all() and (shifted["p90_h12"] > raw["p90_h12"]).mean() > 0.5
