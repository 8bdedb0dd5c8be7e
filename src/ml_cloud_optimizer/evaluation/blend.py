"""A blend of the best candidates, its members and weights chosen on the validation window only.

Two good forecasters rarely err alike (a model of the change and one of the level miss on
opposite sides of a burst), so their weighted mean can beat both. Whether it does on a given
fleet is an empirical question, answered on validation without touching the hold-out:

1. members: the ``MAX_MEMBERS`` eligible models with the lowest validation MAE at the headline
   horizon, among those scored on the common rows;
2. weights, per horizon: the point of a simplex grid (steps of ``GRID_STEP``) with the lowest
   MAE over the validation rows;
3. the blend's own validation score is cross-fitted: the window is cut in two halves in time,
   and the weights fitted on each half forecast the other. Weights never score the rows they
   were fitted on, so the blend is compared with single models on equal terms;
4. the blend may become champion only when that cross-fitted MAE beats the best single model's
   by more than the leaderboard's tie tolerance, and no one member takes all the weight.

The weights used afterwards are those fitted on the whole window.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import product

import numpy as np
import pandas as pd

from ml_cloud_optimizer.evaluation.backtest import MIN_COVERAGE, Window
from ml_cloud_optimizer.evaluation.leaderboard import TIE_TOLERANCE
from ml_cloud_optimizer.features.targets import target_column
from ml_cloud_optimizer.horizons import HEADLINE_HORIZON
from ml_cloud_optimizer.models.base import clip_forecast, forecast_column

__all__ = ["GRID_STEP", "MAX_MEMBERS", "BlendChoice", "choose_blend", "fit_weights", "simplex"]

GRID_STEP = 0.1
MAX_MEMBERS = 3


@dataclass
class BlendChoice:
    """The blend found on validation.

    Attributes:
        members: model names, best first.
        weights: per horizon, the members' weights fitted on the whole validation window.
        frame: the cross-fitted validation frame (the rows of the window's frames, in order).
        eligible: whether it beat the best single model (rule 4 of the module doc).
        note: one line saying what was found.
        useful: whether it is a blend at all (at the headline horizon no member takes all the
            weight); a blend that is one model is reported in ``note`` only.
    """

    members: list[str]
    weights: dict[int, list[float]]
    frame: pd.DataFrame
    eligible: bool
    note: str
    useful: bool = True


def simplex(k: int, step: float = GRID_STEP) -> np.ndarray:
    """Every weight vector of ``k`` non-negative multiples of ``step`` summing to one, one per row."""
    n = round(1 / step)
    points = [p for p in product(range(n + 1), repeat=k - 1) if sum(p) <= n]
    return np.array([[*p, n - sum(p)] for p in points], dtype="float64") / n


def fit_weights(forecasts: np.ndarray, actual: np.ndarray, step: float = GRID_STEP) -> np.ndarray:
    """The simplex point whose weighted mean of ``forecasts`` (rows x members) has the lowest MAE against ``actual``."""
    grid = simplex(forecasts.shape[1], step)
    errors = np.abs(forecasts @ grid.T - actual[:, None]).mean(axis=0)
    return grid[int(np.argmin(errors))]


def _weighted_p90(frames: list[pd.DataFrame], horizon: int, rows: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """The members' p90 blended, a member without one standing in with its p50 (``models.blend``)."""
    p50, p90 = forecast_column(horizon), forecast_column(horizon, "p90")
    stacked = np.column_stack([f.loc[rows, p90 if p90 in f else p50].to_numpy(dtype="float64") for f in frames])
    return stacked @ weights


def choose_blend(window: Window, scores: pd.DataFrame, eligible: set[str], horizons) -> BlendChoice | None:
    """The blend of the best eligible models on ``window`` (the validation window), or None with fewer than two."""
    head = HEADLINE_HORIZON if HEADLINE_HORIZON in horizons else max(horizons)
    at = scores.loc[(scores["horizon"] == head) & scores["model"].isin(eligible) & scores["mae"].notna()]
    at = at.loc[at["coverage"] >= MIN_COVERAGE].sort_values("mae", kind="stable")
    members = list(at["model"].head(MAX_MEMBERS))
    if len(members) < 2:
        return None
    frames = [window.forecasts[m] for m in members]
    frame = window.actual.copy()
    weights: dict[int, list[float]] = {}
    for h in horizons:
        p50, p90, y_col = forecast_column(h), forecast_column(h, "p90"), target_column(h)
        rows = frames[0][f"scored_h{h}"].to_numpy(dtype=bool).copy()
        for f in frames:
            rows &= f[p50].notna().to_numpy()
        index = np.flatnonzero(rows)
        stacked = np.column_stack([f.loc[rows, p50].to_numpy(dtype="float64") for f in frames])
        actual = frame.loc[rows, y_col].to_numpy(dtype="float64")
        weights[int(h)] = [float(w) for w in fit_weights(stacked, actual)]
        ts = frame.loc[rows, "ts"]
        first = (ts < ts.sort_values().iloc[len(ts) // 2]).to_numpy()
        frame[p50], frame[f"scored_h{h}"] = np.nan, rows
        frame[p90] = np.nan  # fitted a margin on validation (``evaluation.holdout``) whatever the members
        for fit_half, use_half in ((first, ~first), (~first, first)):
            if not fit_half.any() or not use_half.any():
                continue
            w = fit_weights(stacked[fit_half], actual[fit_half])
            target = index[use_half]
            frame.loc[target, p50] = stacked[use_half] @ w
            q = _weighted_p90(frames, h, target, w)
            frame.loc[target, p90] = np.fmax(clip_forecast(q), frame.loc[target, p50].to_numpy())
    y_col, p50 = target_column(head), forecast_column(head)
    rows = frame[f"scored_h{head}"].to_numpy(dtype=bool) & frame[p50].notna().to_numpy()
    blended = float(np.mean(np.abs(frame.loc[rows, p50] - frame.loc[rows, y_col])))
    best = float(at["mae"].iloc[0])
    useful = max(weights[int(head)]) < 1.0
    eligible_blend = useful and blended < best * (1 - TIE_TOLERANCE)
    shown = ", ".join(f"{m} {w:.1f}" for m, w in zip(members, weights[int(head)], strict=True))
    verdict = "beats" if eligible_blend else "does not beat"
    note = (
        f"blend ({shown}): cross-fitted validation MAE {blended:.5g} {verdict} the best single model"
        f" ({members[0]}, {best:.5g})"
    )
    return BlendChoice(members, weights, frame, eligible_blend, note, useful)
