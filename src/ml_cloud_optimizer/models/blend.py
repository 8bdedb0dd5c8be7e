"""A weighted mean of fitted forecasters: the champion when a blend beats every single model on validation.

Forecast errors of a tree model on lags and of one on the change often differ in sign, so their
mean can beat both. Evaluation (``evaluation.blend``) picks the members and their weights on the
validation window only; this class is what it hands over: it fits its members, forecasts with
each and combines the frames row by row, per horizon with that horizon's weights. A blend is
saved as one directory with each member's own directory inside (``members/<i>-<name>/``), so
``Forecaster.load`` and serving's history path treat it like any model.

The p90 forecast is the weighted mean of the members' p90 plus ``p90_margin``, a conformal
margin fitted on validation, kept at or above the p50 and clipped. A member without a p90 (the
recurrent models, persistence) stands in with its p50; the margin, fitted on the blended values,
is then what makes the p90 cover. Without a margin such a blend forecasts no p90, since its
blended p90 would understate the upper quantile.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd
from sklearn.base import clone

from ml_cloud_optimizer.horizons import DEFAULT_HORIZONS
from ml_cloud_optimizer.models.base import Forecaster, clip_forecast, forecast_column, register_forecaster

__all__ = ["BlendForecaster"]

_KEYS = ["entity_id", "ts"]


@register_forecaster
class BlendForecaster(Forecaster):
    """Weighted mean of its members' forecasts, per horizon.

    Args:
        estimators: ``[(name, forecaster), ...]``; fitted ones are refitted (as clones) by ``fit``.
        weights: per horizon, one weight per member (``{12: [0.6, 0.4]}``; keys may be text).
        horizons: the horizons forecast; each needs weights.
        p90_margin: added to the blended p90 per horizon, or None.

    Fitted state: ``estimators_``, the fitted members (set by ``fit``, ``load`` and ``fitted``).
    """

    kind: ClassVar[str] = "blend"
    has_quantiles: ClassVar[bool] = True
    MEMBERS: ClassVar[str] = "members"

    def __init__(
        self,
        estimators: list | None = None,
        weights: dict | None = None,
        horizons: tuple[int, ...] = DEFAULT_HORIZONS,
        p90_margin: dict | None = None,
    ):
        self.estimators = estimators
        self.weights = weights
        self.horizons = horizons
        self.p90_margin = p90_margin

    @classmethod
    def fitted(cls, members: list[tuple[str, Forecaster]], weights: dict, horizons, p90_margin=None) -> BlendForecaster:
        """A blend of members that are already fitted, without fitting them again."""
        blend = cls(estimators=list(members), weights=weights, horizons=tuple(horizons), p90_margin=p90_margin)
        blend.estimators_ = list(members)
        return blend

    def _members(self) -> list[tuple[str, Forecaster]]:
        return getattr(self, "estimators_", None) or list(self.estimators or [])

    def _weights(self, horizon: int) -> np.ndarray:
        weights = self.weights or {}
        found = weights.get(horizon, weights.get(str(horizon)))
        if found is None or len(found) != len(self._members()):
            raise ValueError(f"blend: no weights for horizon {horizon} matching its {len(self._members())} members")
        return np.asarray(found, dtype="float64")

    def _margin(self, horizon: int) -> float:
        margin = self.p90_margin or {}
        return float(margin.get(horizon, margin.get(str(horizon), 0.0)))

    @property
    def min_history(self) -> int:
        return max((int(m.min_history) for _, m in self._members()), default=1)

    @property
    def full_history(self) -> int:
        return max((int(getattr(m, "full_history", m.min_history)) for _, m in self._members()), default=1)

    @property
    def quantile(self) -> bool:
        """Whether the blend has a p90 (read by ``ModelBundle.quantiles``): a margin, or a p90 in every member."""
        return self.p90_margin is not None or all(
            m.has_quantiles and getattr(m, "quantile", True) for _, m in self._members()
        )

    def fit(self, metrics: pd.DataFrame, entities: pd.DataFrame | None = None) -> BlendForecaster:
        if not self.estimators:
            raise ValueError("blend: no member forecasters")
        for h in self.horizons:
            self._weights(h)  # every horizon has weights, before any member is fitted
        self.estimators_ = [(name, clone(model).fit(metrics, entities)) for name, model in self.estimators]
        return self

    def combine(self, frames: list[pd.DataFrame]) -> pd.DataFrame:
        """The blended frame of members' forecast frames (one per member, in order) over their common origins."""
        merged = frames[0][_KEYS].copy()
        for i, frame in enumerate(frames):
            cols = [c for c in frame.columns if c not in _KEYS]
            merged = merged.merge(frame[[*_KEYS, *cols]].rename(columns={c: f"{c}#{i}" for c in cols}), on=_KEYS)
        out = merged[_KEYS].copy()
        for h in self.horizons:
            w = self._weights(h)
            p50 = forecast_column(h)
            out[p50] = sum(w[i] * merged[f"{p50}#{i}"].to_numpy(dtype="float64") for i in range(len(frames)))
            p90 = forecast_column(h, "p90")
            upper = [f"{p90}#{i}" if f"{p90}#{i}" in merged else f"{p50}#{i}" for i in range(len(frames))]
            if self.p90_margin is not None or all(c.startswith(p90) for c in upper):
                blended = sum(w[i] * merged[c].to_numpy(dtype="float64") for i, c in enumerate(upper))
                out[p90] = np.fmax(clip_forecast(blended + self._margin(h)), out[p50].to_numpy())
        return out

    def predict(self, metrics: pd.DataFrame) -> pd.DataFrame:
        frames = [model.predict(metrics) for _, model in self._members()]
        return self.combine(frames).sort_values(_KEYS, kind="stable").reset_index(drop=True)

    def predict_last(self, metrics: pd.DataFrame, features: pd.DataFrame | None = None) -> pd.DataFrame:
        frames = [model.predict_last(metrics) for _, model in self._members()]
        return self.combine(frames).sort_values(_KEYS, kind="stable").reset_index(drop=True)

    def _save(self, directory: Path) -> dict:
        names = []
        for i, (name, model) in enumerate(self._members()):
            names.append(f"{i}-{name}")
            model.save(directory / self.MEMBERS / names[-1])
        return {
            "members": names,
            "blend_weights": {str(h): [float(x) for x in self._weights(h)] for h in self.horizons},
            "p90_margin": None if self.p90_margin is None else {str(h): self._margin(h) for h in self.horizons},
        }

    @classmethod
    def _load(cls, directory: Path, metadata: dict) -> BlendForecaster:
        members = []
        for entry in metadata["members"]:
            name = entry.split("-", 1)[1]
            members.append((name, Forecaster.load(directory / cls.MEMBERS / entry)))
        return cls.fitted(members, metadata["blend_weights"], tuple(metadata["horizons"]), metadata.get("p90_margin"))
