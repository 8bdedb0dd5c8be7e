"""Pure frame -> frame transforms shared by training and serving: grid, features, targets.

Example:
    >>> spec = FeatureSpec()
    >>> X = build_features(fleet.metrics, spec)        # entity_id, ts, *spec.columns
    >>> y = targets.make_targets(fleet.metrics, (1, 12))  # entity_id, ts, y_h1, y_h12
"""

from ml_cloud_optimizer.features import targets
from ml_cloud_optimizer.features.calendar import CALENDAR_COLUMNS, calendar_features
from ml_cloud_optimizer.features.grid import Grid, regularize, to_grid
from ml_cloud_optimizer.features.tabular import FeatureSpec, build_features, from_hourly
from ml_cloud_optimizer.features.targets import make_targets, peak_labels, target_column

__all__ = [
    "CALENDAR_COLUMNS",
    "FeatureSpec",
    "Grid",
    "build_features",
    "calendar_features",
    "from_hourly",
    "make_targets",
    "peak_labels",
    "regularize",
    "target_column",
    "targets",
    "to_grid",
]
