"""The dashboard's views: each draws one part of a run with Streamlit, or says how to produce it.

A view takes the parts ``data.load_part`` read (name -> frames, None where absent) and lays
them out below the header the app gives it: numbers come from the frames, pictures from
``figures``. ``VIEWS`` maps the sidebar's labels to the views in the order an operator
reads them: how the fleet runs, how well it is forecast, which model won, what to change,
what that would have saved, and whether the model still fits the data.
"""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd
import streamlit as st

from ml_cloud_optimizer.dashboard import data, figures
from ml_cloud_optimizer.data.schema import STEP_SECONDS, Fleet
from ml_cloud_optimizer.drift import PSI_MAJOR, PSI_MODERATE
from ml_cloud_optimizer.horizons import HEADLINE_HORIZON

__all__ = ["VIEWS", "Parts"]

Parts = dict[str, object]

_STEP_HOURS = STEP_SECONDS / 3600.0


def _missing(*names: str, parts: Parts) -> bool:
    """Say why each part among ``names`` cannot be shown (absent or unreadable); True if any cannot."""
    lacking = False
    for name in names:
        part = parts.get(name)
        if part is None:
            st.info(data.missing_note(name), icon=":material/hourglass_empty:")
        elif isinstance(part, data.PartError):
            st.error(str(part), icon=":material/error:")
        else:
            continue
        lacking = True
    return lacking


def _chart(fig) -> None:
    st.plotly_chart(fig, width="stretch", config={"displaylogo": False})


def _champion(board: pd.DataFrame) -> str | None:
    """The model the leaderboard marks as champion, else its first row."""
    if "champion" in board.columns and board["champion"].astype(bool).any():
        return str(board.loc[board["champion"].astype(bool), "model"].iloc[0])
    return str(board["model"].iloc[0]) if len(board) else None


def fleet_view(parts: Parts) -> None:
    if _missing("fleet", parts=parts):
        return
    fleet = parts["fleet"]
    assert isinstance(fleet, Fleet)  # _missing refused None and a PartError
    metrics, entities = fleet.metrics, fleet.entities
    price = metrics["entity_id"].map(entities.set_index("entity_id")["hourly_price"]).to_numpy(dtype="float64")
    days = max((metrics["ts"].max() - metrics["ts"].min()) / pd.Timedelta(days=1), _STEP_HOURS / 24)
    provisioned = price.sum() * _STEP_HOURS / days
    idle = (price * (1 - metrics["cpu_util"].clip(upper=1.0).to_numpy())).sum() * _STEP_HOURS / days

    cols = st.columns(5)
    cols[0].metric("entities", f"{entities['entity_id'].nunique():,}")
    cols[1].metric("samples", f"{len(metrics):,}")
    cols[2].metric("mean CPU", f"{metrics['cpu_util'].mean():.1%}")
    cols[3].metric("provisioned / day", f"${provisioned:,.2f}")
    cols[4].metric("idle / day", f"${idle:,.2f}", f"{idle / provisioned:.0%} of cost", delta_color="off")
    _chart(figures.fleet_utilisation_figure(metrics, entities))
    _chart(figures.fleet_cost_figure(metrics, entities))


def forecast_view(parts: Parts) -> None:
    if _missing("forecasts", parts=parts):
        return
    forecasts: pd.DataFrame = parts["forecasts"]
    horizons = sorted(int(c.split("_h")[1]) for c in forecasts.columns if c.startswith("p50_h"))
    if not horizons:
        st.warning("The forecast file has no p50_h<h> columns.")
        return
    models = sorted(forecasts["model"].astype(str).unique()) if "model" in forecasts.columns else [None]
    left, middle, right = st.columns(3)
    entity = left.selectbox("entity", sorted(forecasts["entity_id"].unique()))
    default = horizons.index(HEADLINE_HORIZON) if HEADLINE_HORIZON in horizons else len(horizons) - 1
    horizon = middle.selectbox("horizon (5-minute steps)", horizons, index=default)
    if horizon is None:  # only with no options, and there is at least one
        return
    board = parts.get("leaderboard")
    champion = _champion(board) if isinstance(board, pd.DataFrame) else None
    model = (
        right.selectbox("model", models, index=models.index(champion) if champion in models else 0)
        if models != [None]
        else None
    )
    fleet = parts.get("fleet")
    if f"y_h{horizon}" not in forecasts.columns and _missing("fleet", parts=parts):
        return
    _chart(
        figures.forecast_figure(
            forecasts, entity, horizon, model=model, metrics=fleet.metrics if isinstance(fleet, Fleet) else None
        )
    )


def leaderboard_view(parts: Parts) -> None:
    if _missing("leaderboard", parts=parts):
        return
    board: pd.DataFrame = parts["leaderboard"]
    numeric = [
        c
        for c in board.columns
        if c not in ("model", "rank")
        and not c.startswith("n_")
        and pd.api.types.is_numeric_dtype(board[c])
        and not pd.api.types.is_bool_dtype(board[c])
    ]
    headline = [c for c in numeric if c.lower().startswith("mae")]
    metric = st.selectbox("metric", numeric, index=numeric.index(headline[0]) if headline else 0)
    champion = _champion(board)
    st.caption(f"champion: **{champion}**")
    _chart(figures.leaderboard_figure(board, metric, champion=champion))
    st.dataframe(board, hide_index=True, width="stretch")


def recommendations_view(parts: Parts) -> None:
    if _missing("recommendations", parts=parts):
        return
    recs: pd.DataFrame = parts["recommendations"]
    current, recommended = recs["current_hourly_cost"].sum(), recs["hourly_cost"].sum()
    hours = max(recs["hour"].nunique(), 1)
    cols = st.columns(4)
    cols[0].metric("entities", f"{recs['entity_id'].nunique():,}")
    cols[1].metric("current cost / h", f"${current / hours:,.2f}")
    cols[2].metric("recommended / h", f"${recommended / hours:,.2f}")
    cols[3].metric(
        "saving",
        f"${(current - recommended) / hours:,.2f} / h",
        f"{(current - recommended) / current:.0%}" if current else None,
    )
    _chart(figures.recommendations_figure(recs))
    st.dataframe(recs, hide_index=True, width="stretch", height=320)


def backtest_view(parts: Parts) -> None:
    if _missing("backtest", parts=parts):
        return
    backtest = parts["backtest"]
    assert isinstance(backtest, dict)  # _missing refused None and a PartError
    summary: pd.DataFrame = backtest["summary"]
    capacity: pd.DataFrame | None = backtest["capacity"]
    _chart(figures.backtest_summary_figure(summary))
    st.dataframe(summary, hide_index=True, width="stretch")
    if capacity is None:
        st.caption("No per-step capacities were saved with this backtest.")
        return
    policies = [p for p in summary["policy"].astype(str) if p in capacity.columns]
    entity = st.selectbox("entity", sorted(capacity["entity_id"].unique()))
    _chart(figures.backtest_capacity_figure(capacity, entity, policies))


def drift_view(parts: Parts) -> None:
    if _missing("drift", parts=parts):
        return
    drift: pd.DataFrame = parts["drift"]
    major = int((drift["psi"] > PSI_MAJOR).sum())
    moderate = int(drift["psi"].between(PSI_MODERATE, PSI_MAJOR, inclusive="right").sum())
    cols = st.columns(3)
    cols[0].metric("features", f"{len(drift):,}")
    cols[1].metric(f"major shift (PSI > {PSI_MAJOR})", major)
    cols[2].metric(f"moderate shift (PSI {PSI_MODERATE}–{PSI_MAJOR})", moderate)
    _chart(figures.drift_figure(drift))
    st.dataframe(drift.sort_values("psi", ascending=False), hide_index=True, width="stretch", height=320)


VIEWS: dict[str, Callable[[Parts], None]] = {
    "Fleet overview": fleet_view,
    "Forecast vs actual": forecast_view,
    "Leaderboard": leaderboard_view,
    "Recommendations": recommendations_view,
    "Backtest": backtest_view,
    "Drift": drift_view,
}
