"""Plotly figures of one run: pure functions from frames to ``go.Figure``, free of Streamlit.

Each function takes the frames the dashboard's loader returns (canonical fleet, forecast
frame, leaderboard, recommendations, backtest summary and capacities, drift table) and
aggregates them with pandas before drawing, so a figure holds hundreds of points, not the
run's millions of rows. Keeping them apart from the Streamlit script lets them be built and
checked without a browser.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ml_cloud_optimizer.data.schema import STEP, STEP_SECONDS
from ml_cloud_optimizer.drift import PSI_MAJOR, PSI_MODERATE
from ml_cloud_optimizer.models.base import forecast_column

__all__ = [
    "backtest_capacity_figure",
    "backtest_summary_figure",
    "drift_figure",
    "fleet_cost_figure",
    "fleet_utilisation_figure",
    "forecast_figure",
    "leaderboard_figure",
    "recommendations_figure",
]


_STEP_HOURS = STEP_SECONDS / 3600.0
_LAYOUT = {
    "template": "plotly_white",
    "margin": {"l": 60, "r": 20, "t": 50, "b": 40},
    "legend": {"orientation": "h", "y": -0.15},
}


def _figure(title: str, **layout) -> go.Figure:
    fig = go.Figure()
    fig.update_layout(title=title, **{**_LAYOUT, **layout})
    return fig


def _with_service(metrics: pd.DataFrame, entities: pd.DataFrame) -> pd.DataFrame:
    attrs = entities[["entity_id", "service", "hourly_price"]].astype({"entity_id": "string"})
    return metrics.merge(attrs, on="entity_id", how="left")


def fleet_utilisation_figure(metrics: pd.DataFrame, entities: pd.DataFrame) -> go.Figure:
    """Hourly mean CPU utilisation per service, with the fleet's hourly p10-p90 band behind it."""
    frame = _with_service(metrics[["entity_id", "ts", "cpu_util"]], entities)
    frame["hour"] = frame["ts"].dt.floor("h")
    band = frame.groupby("hour")["cpu_util"].quantile([0.1, 0.9]).unstack() * 100
    by_service = frame.groupby(["service", "hour"], observed=True)["cpu_util"].mean().mul(100).unstack(0)

    fig = _figure("CPU utilisation by service (hourly mean, %)", yaxis_title="CPU %", hovermode="x unified")
    fig.add_trace(go.Scatter(x=band.index, y=band[0.9], line={"width": 0}, showlegend=False, hoverinfo="skip"))
    fig.add_trace(
        go.Scatter(
            x=band.index,
            y=band[0.1],
            fill="tonexty",
            line={"width": 0},
            name="fleet p10-p90",
            fillcolor="rgba(120,120,120,0.18)",
        )
    )
    for service in by_service.columns:
        fig.add_trace(go.Scatter(x=by_service.index, y=by_service[service], mode="lines", name=str(service)))
    return fig


def fleet_cost_figure(metrics: pd.DataFrame, entities: pd.DataFrame) -> go.Figure:
    """Daily cost per service: what is provisioned, split into the part used and the part left idle.

    The used part of an entity's cost in a step is its price times its CPU utilisation, the
    idle part the rest; a step without a sample costs nothing here, as it was not observed.
    """
    frame = _with_service(metrics[["entity_id", "ts", "cpu_util"]], entities)
    step_cost = frame["hourly_price"] * _STEP_HOURS
    frame["used"] = step_cost * frame["cpu_util"].clip(upper=1.0)
    frame["idle"] = step_cost - frame["used"]
    days = max(frame["ts"].dt.floor("D").nunique(), 1)
    per_day = frame.groupby("service", observed=True)[["used", "idle"]].sum() / days
    per_day = per_day.sort_values("idle", ascending=False)

    fig = _figure("Cost per day by service (USD, provisioned = used + idle)", barmode="stack", yaxis_title="USD / day")
    fig.add_trace(go.Bar(x=per_day.index.astype(str), y=per_day["used"], name="used", marker_color="#2a9d8f"))
    fig.add_trace(go.Bar(x=per_day.index.astype(str), y=per_day["idle"], name="idle", marker_color="#e76f51"))
    return fig


def forecast_figure(
    forecasts: pd.DataFrame,
    entity_id: str,
    horizon: int,
    *,
    model: str | None = None,
    metrics: pd.DataFrame | None = None,
) -> go.Figure:
    """Actual CPU of one entity against the forecast made ``horizon`` steps earlier (p50, and p90 if present).

    A forecast row is drawn at the time it forecasts (origin + horizon x 5 min), so the gap
    between the lines is the forecast error at that moment. The actual comes from the
    evaluation's ``y_h{h}`` column beside the forecast, else from ``metrics``.
    """
    fc = forecasts[forecasts["entity_id"].astype(str) == str(entity_id)]
    if model is not None and "model" in fc.columns:
        fc = fc[fc["model"].astype(str) == str(model)]
    fc = fc.sort_values("ts")
    target_ts = pd.to_datetime(fc["ts"], utc=True) + horizon * STEP
    actual_col = f"y_h{horizon}"
    if actual_col in fc.columns:
        actual_ts, actual = target_ts, fc[actual_col]
    elif metrics is not None:
        rows = metrics[
            (metrics["entity_id"].astype(str) == str(entity_id))
            & metrics["ts"].between(target_ts.min(), target_ts.max())
        ]
        actual_ts, actual = rows["ts"], rows["cpu_util"]
    else:
        raise ValueError(f"forecasts have no {actual_col} column and no metrics were given for the actuals")

    label = f"{model} " if model else ""
    fig = _figure(
        f"{entity_id}: actual CPU against the {label}forecast {_horizon_text(horizon)} ahead",
        yaxis_title="CPU %",
        hovermode="x unified",
    )
    p90 = forecast_column(horizon, "p90")
    if p90 in fc.columns and fc[p90].notna().any():
        fig.add_trace(
            go.Scatter(
                x=target_ts,
                y=fc[p90] * 100,
                mode="lines",
                name="forecast p90",
                line={"color": "#f4a261", "dash": "dot"},
            )
        )
    fig.add_trace(go.Scatter(x=actual_ts, y=actual * 100, mode="lines", name="actual", line={"color": "#264653"}))
    fig.add_trace(
        go.Scatter(
            x=target_ts,
            y=fc[forecast_column(horizon)] * 100,
            mode="lines",
            name="forecast p50",
            line={"color": "#e76f51"},
        )
    )
    return fig


def _horizon_text(horizon: int) -> str:
    minutes = horizon * STEP_SECONDS // 60
    return f"{minutes // 60} h" if minutes % 60 == 0 else f"{minutes} min"


def leaderboard_figure(
    leaderboard: pd.DataFrame, metric: str, *, champion: str | None = None, reference: str = "persistence"
) -> go.Figure:
    """One bar per model for ``metric`` (lower is better), the champion highlighted, the reference as a line."""
    board = leaderboard[["model", metric]].dropna().sort_values(metric)
    colours = ["#e9c46a" if m == champion else ("#8d99ae" if m == reference else "#2a9d8f") for m in board["model"]]
    fig = _figure(f"Leaderboard: {metric} on the hold-out (lower is better)", yaxis_title=metric, showlegend=False)
    fig.add_trace(
        go.Bar(
            x=board["model"].astype(str),
            y=board[metric],
            marker_color=colours,
            text=board[metric].map(lambda v: f"{v:.4g}"),
            textposition="outside",
        )
    )
    ref = board.loc[board["model"] == reference, metric]
    if len(ref):
        fig.add_hline(
            y=float(ref.iloc[0]),
            line_dash="dash",
            line_color="#8d99ae",
            annotation_text=reference,
            annotation_position="top left",
        )
    return fig


def recommendations_figure(recommendations: pd.DataFrame, *, top: int = 15) -> go.Figure:
    """Per entity over the recommended hours: current cost against recommended cost, the largest savings first."""
    per_entity = recommendations.groupby("entity_id", observed=True)[["current_hourly_cost", "hourly_cost"]].sum()
    per_entity["saving"] = per_entity["current_hourly_cost"] - per_entity["hourly_cost"]
    shown = per_entity.sort_values("saving", ascending=False).head(top)
    hours = recommendations["hour"].nunique() if "hour" in recommendations else 1
    fig = _figure(
        f"Cost over the {hours} recommended hours: current against recommended (top {len(shown)} savings)",
        barmode="group",
        yaxis_title="USD",
    )
    x = shown.index.astype(str)
    fig.add_trace(go.Bar(x=x, y=shown["current_hourly_cost"], name="current", marker_color="#8d99ae"))
    fig.add_trace(go.Bar(x=x, y=shown["hourly_cost"], name="recommended", marker_color="#2a9d8f"))
    return fig


def backtest_summary_figure(summary: pd.DataFrame) -> go.Figure:
    """Each policy's provisioned core-hours (cost) beside its share of under-provisioned steps (risk)."""
    fig = make_subplots(rows=1, cols=2, subplot_titles=("provisioned core-hours", "under-provisioned share of steps"))
    policies = summary["policy"].astype(str)
    palette = ["#264653", "#2a9d8f", "#e9c46a", "#f4a261", "#e76f51", "#8d99ae"]
    colours = [palette[i % len(palette)] for i in range(len(policies))]
    fig.add_trace(go.Bar(x=policies, y=summary["core_hours"], marker_color=colours, showlegend=False), row=1, col=1)
    fig.add_trace(
        go.Bar(x=policies, y=summary["underprovisioned_share"] * 100, marker_color=colours, showlegend=False),
        row=1,
        col=2,
    )
    fig.update_yaxes(title_text="core-hours", row=1, col=1)
    fig.update_yaxes(title_text="% of steps", row=1, col=2)
    fig.update_layout(title="Autoscaling backtest: cost against risk per policy", **{**_LAYOUT, "margin": {"t": 90}})
    return fig


def backtest_capacity_figure(capacity: pd.DataFrame, entity_id: str, policies: list[str]) -> go.Figure:
    """One entity's demand over the replay window against the capacity each policy provisioned."""
    frame = capacity[capacity["entity_id"].astype(str) == str(entity_id)].sort_values("ts")
    fig = _figure(
        f"{entity_id}: demand against provisioned capacity (cores)", yaxis_title="cores", hovermode="x unified"
    )
    fig.add_trace(
        go.Scatter(
            x=frame["ts"], y=frame["demand_cores"], mode="lines", name="demand", line={"color": "#264653", "width": 1.5}
        )
    )
    for policy in policies:
        fig.add_trace(
            go.Scatter(x=frame["ts"], y=frame[policy], mode="lines", name=policy, line={"shape": "hv", "width": 1.2})
        )
    return fig


def drift_figure(drift: pd.DataFrame, *, top: int = 25) -> go.Figure:
    """PSI per feature between the training window and the recent one, against the moderate and major lines."""
    shown = drift.dropna(subset=["psi"]).sort_values("psi", ascending=False).head(top).iloc[::-1]
    colours = np.select([shown["psi"] > PSI_MAJOR, shown["psi"] > PSI_MODERATE], ["#e76f51", "#e9c46a"], "#2a9d8f")
    fig = _figure(
        f"Feature drift: PSI, training window against recent window (top {len(shown)})",
        xaxis_title="PSI",
        showlegend=False,
        height=max(320, 22 * len(shown) + 120),
    )
    fig.add_trace(go.Bar(x=shown["psi"], y=shown["feature"].astype(str), orientation="h", marker_color=colours))
    for level, colour in ((PSI_MODERATE, "#e9c46a"), (PSI_MAJOR, "#e76f51")):
        fig.add_vline(x=level, line_dash="dash", line_color=colour)
    return fig
