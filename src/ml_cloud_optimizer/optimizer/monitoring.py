"""Is the model in service still fit? Feature drift, forecast against actual, and a retraining verdict.

Two windows are compared: a *reference* window (what the model is known to handle, e.g. the
week before) and the *recent* window (the last day by default). Three signals:

* feature drift: PSI and KS between the windows (``ml_cloud_optimizer.drift``) of each raw
  metric the model's features are built from (its ``FeatureSpec``'s target and inputs);
* accuracy: the model's forecasts recomputed over both windows against what happened, MAE
  and p90 coverage per horizon; and, given ``stored``, the forecasts stored by earlier
  ``mlco recommend`` runs against the metrics loaded since (for instance
  ``warehouse.optimizer_runs.stored_accuracy`` over the ``forecast_errors`` view);
* the verdict: retrain when the target or too many inputs drifted, the recent MAE grew past
  a ratio of the reference MAE, or p90 stopped covering the actuals (``RetrainThresholds``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ml_cloud_optimizer.drift import PSI_MAJOR, drift_report
from ml_cloud_optimizer.features import (
    FeatureSpec,
    build_features,
    make_targets,
    target_column,
)
from ml_cloud_optimizer.models.base import Forecaster, forecast_column

__all__ = [
    "ACCURACY_COLUMNS",
    "MonitoringReport",
    "RetrainThresholds",
    "forecast_accuracy",
    "monitor",
]

ACCURACY_COLUMNS = ["source", "window", "horizon", "n", "mae", "p90_coverage"]


@dataclass(frozen=True)
class RetrainThresholds:
    """When monitoring asks for retraining.

    Attributes:
        major_drift_share: share of inputs whose PSI is above ``PSI_MAJOR`` (0.25); the
            target (``cpu_util``) drifting that far is reason enough on its own.
        mae_ratio: recent MAE over the reference window's MAE, at the longest horizon.
        min_coverage: least share of actuals at or below the p90 forecast (nominal 0.9).
    """

    major_drift_share: float = 0.2
    mae_ratio: float = 1.3
    min_coverage: float = 0.8


@dataclass
class MonitoringReport:
    """What ``monitor`` found: the drift table, accuracy per window and horizon, and the verdict."""

    drift: pd.DataFrame
    accuracy: pd.DataFrame
    retrain: bool
    reasons: list[str]
    thresholds: RetrainThresholds = field(default_factory=RetrainThresholds)
    windows: dict[str, str] = field(default_factory=dict)

    def describe(self) -> str:
        """A few lines for the terminal: worst features, accuracy, verdict."""
        worst = self.drift.head(5)[["feature", "psi", "severity"]].to_string(index=False, float_format="{:.3f}".format)
        accuracy = self.accuracy.to_string(index=False, float_format="{:.4f}".format)
        verdict = "RETRAIN: " + "; ".join(self.reasons) if self.retrain else "no retraining needed"
        return f"most drifted features:\n{worst}\naccuracy:\n{accuracy}\n{verdict}"

    def save(self, directory: str | Path) -> list[Path]:
        """Write ``drift.csv``, ``monitoring_accuracy.csv`` and ``monitoring.json`` (the verdict) into ``directory``."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        paths = [directory / "drift.csv", directory / "monitoring_accuracy.csv", directory / "monitoring.json"]
        self.drift.to_csv(paths[0], index=False)
        self.accuracy.to_csv(paths[1], index=False)
        verdict = {
            "retrain": self.retrain,
            "reasons": self.reasons,
            "thresholds": asdict(self.thresholds),
            "windows": self.windows,
        }
        paths[2].write_text(json.dumps(verdict, indent=2) + "\n")
        return paths


def _horizons(forecasts: pd.DataFrame) -> list[int]:
    return sorted(int(c.split("_h")[1]) for c in forecasts.columns if c.startswith("p50_h"))


def forecast_accuracy(
    forecasts: pd.DataFrame, metrics: pd.DataFrame, windows: dict[str, tuple[pd.Timestamp, pd.Timestamp]]
) -> pd.DataFrame:
    """MAE and p90 coverage per window (by origin time, [start, end)) and horizon, against ``metrics``."""
    horizons = _horizons(forecasts)
    actual = make_targets(metrics, horizons)
    joined = forecasts.merge(actual, on=["entity_id", "ts"], how="inner")
    rows = []
    for name, (start, end) in windows.items():
        inside = joined[(joined["ts"] >= start) & (joined["ts"] < end)]
        for h in horizons:
            y = inside[target_column(h)].to_numpy(dtype="float64", na_value=np.nan)
            p50 = inside[forecast_column(h)].to_numpy(dtype="float64", na_value=np.nan)
            known = ~np.isnan(y) & ~np.isnan(p50)
            p90_col = forecast_column(h, "p90")
            coverage = float("nan")
            if p90_col in inside.columns and known.any():
                coverage = float(np.mean(y[known] <= inside[p90_col].to_numpy(dtype="float64")[known]))
            rows.append(
                {
                    "source": "model",
                    "window": name,
                    "horizon": h,
                    "n": int(known.sum()),
                    "mae": float(np.mean(np.abs(y[known] - p50[known]))) if known.any() else float("nan"),
                    "p90_coverage": coverage,
                }
            )
    return pd.DataFrame(rows, columns=ACCURACY_COLUMNS)


def monitor(
    metrics: pd.DataFrame,
    model: Forecaster,
    *,
    stored: Callable[[pd.Timestamp], pd.DataFrame] | None = None,
    recent: pd.Timedelta = pd.Timedelta(hours=24),
    reference: pd.Timedelta = pd.Timedelta(days=7),
    thresholds: RetrainThresholds = RetrainThresholds(),
) -> MonitoringReport:
    """Compare the last ``recent`` of ``metrics`` with the ``reference`` span before it; see the module doc.

    Args:
        metrics: canonical metrics covering both windows (plus the model's history before them).
        model: the fitted forecaster in service.
        stored: optional; called with the recent window's start, returns the accuracy of
            forecasts stored elsewhere whose target falls in it, in ``ACCURACY_COLUMNS`` with
            ``source`` other than "model" (e.g. ``partial(stored_accuracy, conn)`` from
            ``warehouse.optimizer_runs``).
        recent, reference: window lengths.
        thresholds: when to ask for retraining.
    """
    if metrics.empty:
        raise ValueError("monitoring needs metrics; none were given")
    last = metrics["ts"].max()
    recent_start = last - recent
    reference_start = recent_start - reference
    windows = {"reference": (reference_start, recent_start), "recent": (recent_start, last + pd.Timedelta(seconds=1))}
    spec = getattr(model, "feature_spec", None) or FeatureSpec()
    features = build_features(metrics, spec)
    in_reference = (features["ts"] >= reference_start) & (features["ts"] < recent_start)
    in_recent = features["ts"] >= recent_start
    if not in_reference.any() or not in_recent.any():
        raise ValueError(
            f"monitoring needs rows in both windows: reference [{reference_start}, {recent_start})"
            f" has {int(in_reference.sum())}, recent has {int(in_recent.sum())}"
        )
    # Drift is judged on the raw metrics the features are computed from. Rolling aggregates
    # move slowly by construction: a day holds a handful of independent values of a 7-day
    # mean, so their PSI reads as drift on perfectly steady data. Calendar columns follow the clock.
    columns = [c for c in (spec.target, *spec.inputs) if c in features.columns]
    drift = drift_report(features.loc[in_reference], features.loc[in_recent], columns=columns)

    forecasts = model.predict(metrics)
    accuracy = forecast_accuracy(forecasts, metrics, windows)
    if stored is not None:
        accuracy = pd.concat([accuracy, stored(recent_start)[ACCURACY_COLUMNS]], ignore_index=True)

    reasons = []
    judged = drift[drift["severity"] != "empty"]
    major = judged[judged["psi"] > PSI_MAJOR]
    if spec.target in set(major["feature"]):
        value = major.set_index("feature").loc[spec.target, "psi"]
        reasons.append(f"the forecast target {spec.target} drifted (PSI {value:.2f} > {PSI_MAJOR})")
    elif len(judged) and len(major) / len(judged) > thresholds.major_drift_share:
        reasons.append(
            f"{len(major)} of {len(judged)} inputs drifted (PSI > {PSI_MAJOR}), worst {major['feature'].iloc[0]}"
            f" at {major['psi'].iloc[0]:.2f}"
        )
    headline = max(_horizons(forecasts))
    by_window = accuracy[accuracy["horizon"] == headline].set_index(["source", "window"])
    base = by_window["mae"].get(("model", "reference"), np.nan)
    for source in ("model", "warehouse"):
        now = by_window["mae"].get((source, "recent"), np.nan)
        if np.isfinite(base) and base > 0 and np.isfinite(now) and now > thresholds.mae_ratio * base:
            reasons.append(f"{source} MAE at h{headline} rose to {now:.4f}, x{now / base:.2f} the reference {base:.4f}")
        coverage = by_window["p90_coverage"].get((source, "recent"), np.nan)
        if np.isfinite(coverage) and coverage < thresholds.min_coverage:
            reasons.append(f"{source} p90 covers only {coverage:.0%} of actuals at h{headline}")
    return MonitoringReport(
        drift=drift,
        accuracy=accuracy,
        retrain=bool(reasons),
        reasons=reasons,
        thresholds=thresholds,
        windows={name: f"[{start}, {end})" for name, (start, end) in windows.items()},
    )
