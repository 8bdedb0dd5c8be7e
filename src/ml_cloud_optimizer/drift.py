"""Feature drift between the training window and a recent window: PSI and the two-sample KS test.

PSI (population stability index) bins each feature on the training window's quantiles and
compares the share of rows per bin; by the usual reading, below 0.1 is stable, 0.1 to 0.25 a
moderate shift and above 0.25 a major one. The KS statistic is the largest gap between the
two empirical distributions, with scipy's p-value beside it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats

__all__ = ["PSI_MAJOR", "PSI_MODERATE", "drift_report", "psi"]

PSI_MODERATE = 0.1
PSI_MAJOR = 0.25
_FLOOR = 1e-4  # share given to an empty bin, so the log stays finite


def psi(reference, recent, bins: int = 10) -> float:
    """Population stability index of ``recent`` against ``reference`` (NaNs dropped).

    Bin edges are the reference's quantiles, so each bin holds about ``1/bins`` of it; values
    outside the reference's range fall in the outer bins. NaN when either side is empty.
    """
    ref = np.asarray(reference, dtype="float64")
    new = np.asarray(recent, dtype="float64")
    ref, new = ref[~np.isnan(ref)], new[~np.isnan(new)]
    if not len(ref) or not len(new):
        return float("nan")
    edges = np.unique(np.quantile(ref, np.linspace(0, 1, bins + 1)[1:-1]))
    ref_share = np.bincount(np.searchsorted(edges, ref, side="right"), minlength=len(edges) + 1) / len(ref)
    new_share = np.bincount(np.searchsorted(edges, new, side="right"), minlength=len(edges) + 1) / len(new)
    ref_share, new_share = np.fmax(ref_share, _FLOOR), np.fmax(new_share, _FLOOR)
    return float(np.sum((new_share - ref_share) * np.log(new_share / ref_share)))


def drift_report(
    reference: pd.DataFrame,
    recent: pd.DataFrame,
    columns: Sequence[str] | None = None,
    bins: int = 10,
) -> pd.DataFrame:
    """PSI and KS per feature, worst first.

    Args:
        reference: feature rows of the training window (e.g. ``build_features`` output).
        recent: feature rows of the recent window.
        columns: features to compare; default every numeric column present in both.
        bins: PSI bins.

    Returns:
        Columns ``feature``, ``psi``, ``ks_stat``, ``ks_pvalue``, ``severity`` ("stable",
        "moderate", "major"; "empty" where a side has no values), ``n_reference``, ``n_recent``.
    """
    if columns is None:
        columns = [
            c
            for c in reference.columns
            if c in recent.columns
            and pd.api.types.is_numeric_dtype(reference[c])
            and not pd.api.types.is_bool_dtype(reference[c])
        ]
    missing = [c for c in columns if c not in reference.columns or c not in recent.columns]
    if missing:
        raise ValueError(f"drift: columns missing from a window: {', '.join(missing)}")
    rows = []
    for col in columns:
        ref = reference[col].to_numpy(dtype="float64", na_value=np.nan)
        new = recent[col].to_numpy(dtype="float64", na_value=np.nan)
        ref, new = ref[~np.isnan(ref)], new[~np.isnan(new)]
        if len(ref) and len(new):
            ks = stats.ks_2samp(ref, new)
            value = psi(ref, new, bins)
            severity = "major" if value > PSI_MAJOR else "moderate" if value > PSI_MODERATE else "stable"
            ks_stat, ks_p = float(ks.statistic), float(ks.pvalue)
        else:
            value, ks_stat, ks_p, severity = float("nan"), float("nan"), float("nan"), "empty"
        rows.append(
            {
                "feature": col,
                "psi": value,
                "ks_stat": ks_stat,
                "ks_pvalue": ks_p,
                "severity": severity,
                "n_reference": len(ref),
                "n_recent": len(new),
            }
        )
    report = pd.DataFrame(
        rows, columns=["feature", "psi", "ks_stat", "ks_pvalue", "severity", "n_reference", "n_recent"]
    )
    return report.sort_values("psi", ascending=False, na_position="last").reset_index(drop=True)
