"""Figures of the backtest and the recommendations, drawn from the frames those steps save.

They take the saved frames (``backtest_summary.csv``, ``backtest_capacity.csv.gz``,
``recommendations.csv``) rather than live objects, so ``mlco report`` can redraw them from a
finished run. Figures are built with ``matplotlib.figure.Figure`` directly: no pyplot state,
no display backend, safe in servers and pipeline steps.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

__all__ = ["backtest_summary_figure", "capacity_figure", "recommendation_figure", "save_figure"]

_POLICY_COLOURS = {
    "static": "#7f7f7f",
    "reactive_hpa": "#1f77b4",
    "vpa": "#ff7f0e",
    "forecast": "#2ca02c",
    "hybrid": "#d62728",
    "forecast_1h": "#98df8a",
    "hybrid_1h": "#ff9896",
    "forecast_persistence": "#9467bd",
}
_OTHER_COLOURS = ("#8c564b", "#e377c2", "#17becf", "#bcbd22")


def _colours(policies: list[str]) -> list[str]:
    """One stable colour per policy: the known ones fixed, others from a spare palette."""
    spare = iter(_OTHER_COLOURS * (len(policies) // len(_OTHER_COLOURS) + 1))
    return [_POLICY_COLOURS.get(p) or next(spare) for p in policies]


def save_figure(fig: Figure, path: str | Path, dpi: int = 110) -> Path:
    """Write ``fig`` as PNG and return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, format="png", bbox_inches="tight")
    return path


def backtest_summary_figure(summary: pd.DataFrame) -> Figure:
    """Core-hours, share of time under-provisioned and (when the replay charged changes) churn per policy."""
    churn = "changes_per_workload_day" in summary.columns
    fig = Figure(figsize=(13.5 if churn else 9, 3.6))
    axes = fig.subplots(1, 3 if churn else 2)
    cost_ax, under_ax = axes[0], axes[1]
    policies = summary["policy"].tolist()
    colours = _colours(policies)
    cost_ax.bar(policies, summary["core_hours"], color=colours)
    cost_ax.axhline(summary["demand_core_hours"].iloc[0], color="black", lw=1, ls="--", label="demand")
    cost_ax.set_ylabel("provisioned core-hours")
    cost_ax.set_title("cost (replay window)")
    cost_ax.legend(loc="upper right", fontsize=8)
    under_ax.bar(policies, 100 * summary["underprovisioned_share"], color=colours)
    under_ax.set_ylabel("% of entity-steps")
    under_ax.set_title("under-provisioned (demand > serving)")
    if churn:
        axes[2].bar(policies, summary["changes_per_workload_day"], color=colours)
        axes[2].set_ylabel("changes per workload-day")
        axes[2].set_title("churn (each change charged)")
    for ax in axes:
        ax.tick_params(axis="x", labelrotation=30)
    fig.tight_layout()
    return fig


def capacity_figure(capacity: pd.DataFrame, entities: list[str] | None = None, days: float = 3.0) -> Figure:
    """Demand against each policy's capacity for a few entities over the first ``days`` of the replay.

    Args:
        capacity: long frame ``entity_id``, ``ts``, ``demand_cores`` and one column per policy.
        entities: which entities to draw; default the three with the most demand.
        days: length of the window drawn.
    """
    if entities is None:
        entities = capacity.groupby("entity_id")["demand_cores"].sum().nlargest(3).index.tolist()
    policies = [c for c in capacity.columns if c not in ("entity_id", "ts", "demand_cores")]
    ts = pd.to_datetime(capacity["ts"], utc=True)
    window = capacity[ts < ts.min() + pd.Timedelta(days=days)]
    fig = Figure(figsize=(10, 2.6 * max(len(entities), 1)))
    axes = np.atleast_1d(fig.subplots(max(len(entities), 1), 1, sharex=True))
    for ax, entity in zip(axes, entities, strict=False):  # one empty axis when there are no entities
        rows = window[window["entity_id"] == entity]
        when = pd.to_datetime(rows["ts"], utc=True)
        ax.fill_between(when, rows["demand_cores"], color="black", alpha=0.15, step="post", label="demand")
        for policy, colour in zip(policies, _colours(policies), strict=True):
            ax.step(when, rows[policy], where="post", lw=1.2, color=colour, label=policy)
        ax.set_ylabel("cores")
        ax.set_title(str(entity), fontsize=10)
    axes[0].legend(loc="lower left", bbox_to_anchor=(0, 1.12), fontsize=8, ncol=len(policies) + 1, frameon=False)
    fig.tight_layout()
    return fig


def recommendation_figure(recommendations: pd.DataFrame, top: int = 15) -> Figure:
    """Current vCPUs against the recommended request per entity (its busiest hour), and fleet cost per hour."""
    fig = Figure(figsize=(10, 4))
    cores_ax, cost_ax = fig.subplots(1, 2, gridspec_kw={"width_ratios": [3, 2]})
    per_entity = (
        recommendations.groupby("entity_id")
        .agg(current=("current_cores", "max"), request=("request_cores", "max"))
        .nlargest(top, "current")
    )
    x = np.arange(len(per_entity))
    cores_ax.bar(x - 0.2, per_entity["current"], width=0.4, color="#7f7f7f", label="current vCPUs")
    cores_ax.bar(x + 0.2, per_entity["request"], width=0.4, color="#2ca02c", label="recommended (peak hour)")
    cores_ax.set_xticks(x, per_entity.index, rotation=60, fontsize=7)
    cores_ax.set_ylabel("cores")
    cores_ax.legend(fontsize=8)
    hourly = recommendations.groupby("hour")[["current_hourly_cost", "hourly_cost"]].sum()
    hours = pd.to_datetime(hourly.index, utc=True)
    cost_ax.step(hours, hourly["current_hourly_cost"], where="post", color="#7f7f7f", label="current")
    cost_ax.step(hours, hourly["hourly_cost"], where="post", color="#2ca02c", label="recommended")
    cost_ax.set_ylabel("fleet USD per hour")
    cost_ax.tick_params(axis="x", labelrotation=30, labelsize=7)
    cost_ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
