"""The hold-out evaluation: choose on a validation window, refit, score the hold-out once.

A champion picked on the window it is then reported on looks better than it is: of several
candidates, the luckiest on that window wins. So the time span is cut twice, at global instants:

    |---------------- training span ----------------|---- hold-out ----|
    |------------ fit ------------|--- validation ---|
                                  ^ validation_cutoff ^ holdout_cutoff

1. Validation: every candidate (and each baseline) is fitted on the fit part and scored on the
   validation window, whose actuals come from the training span alone. Everything chosen is
   chosen here: the champion (``leaderboard`` ranks on the ``val_`` columns), the blend of the
   best candidates (``evaluation.blend``) and the p90 conformal margins
   (``evaluation.calibration``). Inside each tabular forecaster the target transform and the
   feature set are chosen the same way, on the last part of the rows it is given
   (``models.tabular_choice``), so they too are fixed before the hold-out is read.
2. Hold-out: every candidate, with its margin, is refitted on the whole training span and
   scored on the hold-out, once. Those are the figures reported; nothing is chosen on them.

References (``references``) are scored like every model but are never champion nor blended:
the benchmark's plain LightGBM on lags of the level is one.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np
import pandas as pd

from ml_cloud_optimizer.evaluation.backtest import (
    VALIDATION,
    Evaluation,
    Window,
    forecast_window,
    holdout_cutoff,
    say,
    score_frame,
    score_window,
    with_baselines,
    with_ratios,
)
from ml_cloud_optimizer.evaluation.blend import BlendChoice, choose_blend
from ml_cloud_optimizer.evaluation.calibration import apply_margin, conformal_margin, fit_margins, unwrap, with_margin
from ml_cloud_optimizer.evaluation.checks import check_evaluable
from ml_cloud_optimizer.features.targets import target_column
from ml_cloud_optimizer.horizons import DEFAULT_HORIZONS
from ml_cloud_optimizer.models.base import Forecaster, forecast_column
from ml_cloud_optimizer.models.blend import BlendForecaster
from ml_cloud_optimizer.resources import DEFAULT_RESOURCE, as_target

__all__ = ["BLEND", "VALIDATED", "evaluate_holdout"]

BLEND = "blend"
# Validation columns of ``Evaluation.scores`` (each prefixed ``val_``).
VALIDATED = ("mae", "n", "p90_cover", "vs_persistence", "vs_seasonal_naive")


def evaluate_holdout(
    models: Mapping[str, Forecaster],
    metrics: pd.DataFrame,
    holdout: float = 0.2,
    horizons: tuple[int, ...] = DEFAULT_HORIZONS,
    progress: Callable[[str], None] | None = None,
    target: str = DEFAULT_RESOURCE,
    validation: float = VALIDATION,
    references: Mapping[str, Forecaster] | None = None,
) -> Evaluation:
    """Choose on a validation window, refit on the training span, score the hold-out (module doc).

    Args:
        models: unfitted forecasters by name (cloned before fitting), or prefitted ones
            (``pipeline_steps.scoring``) that bring their validation forecasts.
        metrics: canonical long metrics.
        holdout: share of the time span, at its end, held out.
        horizons: horizons scored.
        progress: called with one line per step; None logs them (``INFO``).
        target: the resource forecast and scored, ``cpu`` or ``mem``.
        validation: share of the training span, at its end, that choices are made on; 0
            scores the hold-out alone (nothing is chosen: comparing two given models).
        references: forecasters scored beside the candidates, never chosen.

    Raises:
        UserInputError: the data cannot be evaluated so (``evaluation.checks``), before any fit.
    """
    view = as_target(metrics, target)
    check_evaluable(view, holdout, validation, horizons)
    cutoff = holdout_cutoff(view, holdout)
    references = dict(references or {})
    candidates = with_baselines({**models, **references}, horizons)
    eligible = set(candidates) - set(references)
    if not validation:
        window = forecast_window(candidates, view, cutoff, horizons, progress)
        scores = score_window(window, horizons).assign(eligible=lambda s: s["model"].isin(eligible))
        return Evaluation(scores, window.forecasts, window.fitted, cutoff)

    train = view.loc[view["ts"] < cutoff]
    start = holdout_cutoff(train, validation)
    say(progress, f"validation window {start} .. {cutoff}: every choice is made here")
    val = forecast_window(candidates, train, start, horizons, progress, validation=True)
    val_scores = score_window(val, horizons)
    margins = fit_margins(val.forecasts, candidates, horizons)
    notes = [f"p90 margin of {name}: {_shown(m)}" for name, m in margins.items()]
    choice = choose_blend(val, val_scores, eligible, horizons)
    blend_margin: dict[int, float] = {}
    if choice is not None:
        notes.append(choice.note)
        choice = choice if choice.useful else None  # one model by another name: noted, not listed
    if choice is not None:
        val.forecasts[BLEND] = choice.frame
        val_scores = _with_blend(val_scores, val, choice.frame, horizons)
        blend_margin = _blend_margin(choice, horizons)  # after scoring: val_p90_cover is before margins for all
        if choice.eligible:
            eligible.add(BLEND)

    say(progress, f"hold-out from {cutoff}: refitting on the whole training span, scored once")
    calibrated = {name: with_margin(model, margins.get(name)) for name, model in candidates.items()}
    test = forecast_window(calibrated, view, cutoff, horizons, progress)
    test_scores = score_window(test, horizons)
    if choice is not None:
        members = [(m, unwrap(test.fitted[m])) for m in choice.members]
        blend = BlendForecaster.fitted(members, choice.weights, horizons, blend_margin or None)
        test.fitted[BLEND] = blend
        test.timing[BLEND] = tuple(np.nansum([test.timing[m][i] for m in choice.members]) for i in (0, 1))
        test.forecasts[BLEND] = _blend_frame(blend, test, choice.members)
        test_scores = _with_blend(test_scores, test, test.forecasts[BLEND], horizons)
    validated = val_scores[["model", "horizon", *VALIDATED]].rename(columns={c: f"val_{c}" for c in VALIDATED})
    scores = test_scores.merge(validated, on=["model", "horizon"], how="left")
    scores["eligible"] = scores["model"].isin(eligible)
    for note in notes:
        say(progress, note)
    return Evaluation(scores, test.forecasts, test.fitted, cutoff, start, val.forecasts, notes)


def _shown(margin: dict) -> str:
    return ", ".join(f"h{h} {v:+.4f}" for h, v in sorted(margin.items()))


def _blend_margin(choice: BlendChoice, horizons) -> dict[int, float]:
    """The blend's own p90 margin from its cross-fitted validation frame, applied to that frame too."""
    frame, margin = choice.frame, {}
    for h in horizons:
        p90 = forecast_column(h, "p90")
        if p90 in frame:
            rows = frame[f"scored_h{h}"].to_numpy(dtype=bool)
            margin[int(h)] = conformal_margin(frame.loc[rows, target_column(h)], frame.loc[rows, p90])
    apply_margin(frame, margin)
    return margin


def _blend_frame(blend: BlendForecaster, window: Window, members: list[str]) -> pd.DataFrame:
    """The blend's hold-out frame on the window's rows, from its members' frames (as ``predict`` combines them)."""
    keys = ["entity_id", "ts"]
    frames = [window.forecasts[m] for m in members]
    frames = [f[keys + [c for c in f.columns if c.startswith(("p50_h", "p90_h"))]] for f in frames]
    combined = blend.combine(frames)
    frame = window.actual.merge(combined, on=keys, how="left")
    for h in blend.horizons:
        frame[f"scored_h{h}"] = window.forecasts[members[0]][f"scored_h{h}"].to_numpy()
    return frame


def _with_blend(scores: pd.DataFrame, window: Window, frame: pd.DataFrame, horizons) -> pd.DataFrame:
    """``scores`` with the blend's rows, scored on the rows its members were (where it has a forecast)."""
    rows = []
    timing = window.timing.get(BLEND, (np.nan, np.nan))
    for h in horizons:
        col, y_col = forecast_column(h), target_column(h)
        known = frame[y_col].notna().to_numpy()
        mask = frame[f"scored_h{h}"].to_numpy(dtype=bool) & frame[col].notna().to_numpy()
        rows.append(
            {
                "model": BLEND,
                "kind": BlendForecaster.kind,
                "horizon": h,
                **score_frame(frame, h, mask, window.scale),
                "coverage": float(mask.sum() / known.sum()) if known.any() else 0.0,
                "fit_s": timing[0],
                "predict_s": timing[1],
            }
        )
    return with_ratios(pd.concat([scores, pd.DataFrame(rows)], ignore_index=True))
