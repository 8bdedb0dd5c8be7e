"""Forecasts from ready-made feature rows, straight from a tabular champion's boosters.

``TabularForecaster.predict_features`` takes a DataFrame and spends several milliseconds
per call on frame bookkeeping (and rebuilds its ``FeatureSpec`` on each property access):
more than the boosters themselves take for a request of one row, and ten times what a
plain model server spends on the whole request. This adapter holds the spec and the
boosters once and runs them on the request's matrix, delegating each prediction and the
target transform to the forecaster's own methods, so the numbers are the forecaster's,
bit for bit (the serving tests compare the two on the same rows).

It belongs in the core as a public ``TabularForecaster.predict_matrix``; until then it is
the one place where serving reaches into the forecaster's protected helpers.
"""

from __future__ import annotations

import numpy as np

from ml_cloud_optimizer.data.schema import UTIL_MAX
from ml_cloud_optimizer.models.base import forecast_column
from ml_cloud_optimizer.models.tabular import TabularForecaster

__all__ = ["FeatureRowForecaster"]


class FeatureRowForecaster:
    """``p50_h{h}`` (and ``p90_h{h}``) per horizon for a ``(rows, n_features)`` matrix in ``columns`` order.

    Args:
        forecaster: a fitted (or loaded) ``TabularForecaster``.
    """

    def __init__(self, forecaster: TabularForecaster):
        self.forecaster = forecaster
        spec = forecaster.feature_spec
        self.columns: list[str] = spec.columns
        self.target_index = self.columns.index(spec.target)
        self.horizons = tuple(int(h) for h in forecaster.horizons)
        self.boosters = dict(forecaster.boosters_)

    def predict(self, features: np.ndarray, horizons: tuple[int, ...] | None = None,
                quantiles: tuple[str, ...] = ("p50", "p90")) -> dict[str, np.ndarray]:
        """Forecast columns for each row; rows must carry the current value of the target.

        Only the boosters of ``horizons`` (default: all) and ``quantiles`` run: a client that
        asks for one forecast pays for one booster. p50 always runs, as p90 is kept above it.
        The boosters see float32, as ``predict_features`` gives them; the current value the
        forecast starts from stays float64.
        """
        design = np.ascontiguousarray(features, dtype=np.float32)
        anchor = np.asarray(features[:, self.target_index], dtype="float64")
        quantiles = ("p50", *(q for q in quantiles if q != "p50"))
        out: dict[str, np.ndarray] = {}
        for h in horizons or self.horizons:
            for quantile in quantiles:
                name = forecast_column(h, quantile)
                if name in self.boosters:
                    z = self.forecaster._predict_booster(self.boosters[name], design)
                    out[name] = np.clip(self.forecaster._from_target(z, anchor), 0.0, UTIL_MAX)
            p50, p90 = forecast_column(h, "p50"), forecast_column(h, "p90")
            if p90 in out:
                out[p90] = np.fmax(out[p90], out[p50])
        return out
