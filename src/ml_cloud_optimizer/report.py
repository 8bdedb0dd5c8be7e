"""`mlco report`: one self-contained HTML file summing up a run, PNG plots embedded.

It reads whatever a run directory holds, each part found by file name anywhere below it
(the newest file wins, as the dashboard does; see ``dashboard.data``):

* ``leaderboard.csv`` (``mlco train``): the table and a bar chart of the one-hour MAE;
* ``*.png`` beside the leaderboard (``mlco train``'s ``plots/``: forecast against actual,
  error by horizon): embedded as they are, under "Forecasts";
* ``forecasts.*`` (``mlco train``'s hold-out forecasts): drawn when no forecast PNG exists;
* ``backtest_summary.csv`` and ``backtest_capacity.csv.gz`` (``mlco backtest``): the table,
  cost and risk per policy, demand against capacity;
* ``recommendations.csv`` (``mlco recommend``): the largest savings and the fleet's cost;
* ``drift.csv`` and ``monitoring.json`` (``mlco train`` / ``mlco monitor``): the most drifted
  features and the retraining verdict.

A part that is missing is named in the report with the command that makes it; the report
itself never fails for a missing part. Images are inlined as base64 so the one file can be
mailed or attached to a pipeline run.
"""

from __future__ import annotations

import base64
import io
import json
import tempfile
from datetime import datetime, timezone
from pathlib import Path

import jinja2
import pandas as pd
from matplotlib.figure import Figure

from ml_cloud_optimizer.dashboard.data import PARTS, find_part, load_part
from ml_cloud_optimizer.horizons import HEADLINE_HORIZON
from ml_cloud_optimizer.optimizer.plots import backtest_summary_figure, capacity_figure, recommendation_figure

__all__ = ["REPORT_FILE", "build_report"]

REPORT_FILE = "report.html"

# PNGs that the report draws itself from the tables; never embedded twice.
_OWN_PNGS = {"backtest_summary.png", "backtest_capacity.png", "recommendations.png"}

_TEMPLATE = jinja2.Template(
    """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>mlco report: {{ run_dir.name }}</title>
<style>
 body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
 h1 { font-size: 1.5em; } h2 { border-bottom: 1px solid #ccc; padding-bottom: .2em; margin-top: 2em; }
 table { border-collapse: collapse; font-size: .85em; margin: .8em 0; }
 th, td { border: 1px solid #ddd; padding: .25em .6em; text-align: right; }
 th { background: #f4f4f4; } td:first-child, th:first-child { text-align: left; }
 img { max-width: 100%; display: block; margin: .8em 0; }
 .missing { color: #a33; } .note { color: #555; font-size: .9em; } .verdict { font-weight: bold; }
</style></head><body>
<h1>ML Cloud Workload Optimizer: run report</h1>
<p class="note">Run directory <code>{{ run_dir }}</code>, report made {{ made }}.</p>
{% for section in sections %}
<h2>{{ section.title }}</h2>
{% if section.missing %}<p class="missing">{{ section.missing }}</p>{% endif %}
{% for text in section.notes %}<p class="note">{{ text }}</p>{% endfor %}
{% for table in section.tables %}{{ table | safe }}{% endfor %}
{% for image in section.images %}
<figure><img alt="{{ image.caption }}" src="data:image/png;base64,{{ image.data }}">
<figcaption class="note">{{ image.caption }}</figcaption></figure>
{% endfor %}
{% endfor %}
</body></html>
""",
    autoescape=True,
)


def _png(fig: Figure) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _png_file(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode("ascii")


def _table(frame: pd.DataFrame, columns: list[str] | None = None, rows: int = 30) -> str:
    shown = frame[[c for c in columns if c in frame.columns]] if columns else frame
    return shown.head(rows).to_html(index=False, border=0, float_format=lambda x: f"{x:.4g}", na_rep="")


def _section(title: str, part: str | None = None) -> dict:
    missing = ""
    if part is not None:
        spec = PARTS[part]
        missing = f"No {spec.files[0]} in this run: `{spec.made_by}` writes it."
    return {"title": title, "missing": missing, "notes": [], "tables": [], "images": []}


def _leaderboard_figure(board: pd.DataFrame, metric: str) -> Figure:
    fig = Figure(figsize=(8, 0.4 * len(board) + 1.2))
    ax = fig.subplots()
    shown = board.dropna(subset=[metric]).iloc[::-1]
    colours = [
        "#2ca02c" if c else ("#7f7f7f" if k in ("persistence", "seasonal_naive") else "#1f77b4")
        for c, k in zip(shown.get("champion", [False] * len(shown)), shown.get("kind", shown["model"]), strict=True)
    ]
    ax.barh(shown["model"].astype(str), shown[metric], color=colours)
    ax.set_xlabel(metric)
    ax.set_title("hold-out error per model (green: champion, grey: baselines)", fontsize=10)
    fig.tight_layout()
    return fig


def _leaderboard_section(run_dir: Path) -> dict:
    board = load_part(run_dir, "leaderboard")
    section = _section("Leaderboard", None if board is not None else "leaderboard")
    if board is None:
        return section
    metric = (
        f"mae_h{HEADLINE_HORIZON}"
        if f"mae_h{HEADLINE_HORIZON}" in board.columns
        else next((c for c in board.columns if c.startswith("mae")), None)
    )
    if "champion" in board.columns and board["champion"].astype(bool).any():
        section["notes"].append(f"Champion: {board.loc[board['champion'].astype(bool), 'model'].iloc[0]}.")
    columns = [
        "rank",
        "model",
        "kind",
        metric,
        f"vs_persistence_h{HEADLINE_HORIZON}",
        f"vs_seasonal_naive_h{HEADLINE_HORIZON}",
        f"mase_h{HEADLINE_HORIZON}",
        "fit_s",
        "champion",
    ]
    section["tables"].append(_table(board, [c for c in columns if c]))
    if metric is not None:
        section["images"].append({"caption": f"{metric} per model", "data": _png(_leaderboard_figure(board, metric))})
    return section


def _forecast_section(run_dir: Path) -> dict:
    # Only the training run's own plots: a whole $MLCO_HOME also holds MLflow's artifact copies.
    board = find_part(run_dir, "leaderboard")
    pngs: list[Path] = []
    section = _section("Forecasts")
    if board is not None:
        base = board.parent
        pngs = sorted(p for p in base.rglob("*.png") if p.name not in _OWN_PNGS)
        for path in pngs:
            section["images"].append({"caption": str(path.relative_to(base)), "data": _png_file(path)})
    if pngs:
        return section
    forecasts = load_part(run_dir, "forecasts")
    if forecasts is None:
        section["missing"] = "No forecast plots or forecast file in this run: `mlco train` writes them."
        return section
    from ml_cloud_optimizer.evaluation.plots import plot_forecasts

    if "model" in forecasts.columns:
        forecasts = forecasts[forecasts["model"] == forecasts["model"].iloc[0]]
    with tempfile.TemporaryDirectory() as tmp:
        path = plot_forecasts(forecasts, Path(tmp) / "forecasts.png")
        section["images"].append({"caption": "hold-out forecast against actual", "data": _png_file(path)})
    return section


def _backtest_section(run_dir: Path) -> dict:
    backtest = load_part(run_dir, "backtest")
    section = _section("Autoscaling backtest", None if backtest is not None else "backtest")
    if backtest is None:
        return section
    summary = backtest["summary"]
    summary_path = find_part(run_dir, "backtest")
    assert summary_path is not None  # load_part found it
    params_path = summary_path.with_name("backtest_params.json")
    if params_path.is_file():
        params = json.loads(params_path.read_text())
        section["notes"].append(
            "Replay "
            + ", ".join(f"{k}: {v}" for k, v in sorted(params.items()))
            + ". Demand = cpu_util x vCPUs per 5-minute step; capacity in cores, rounded up to the granularity."
        )
    rows = summary.set_index("policy")
    if {"forecast", "vpa", "static"} <= set(rows.index):
        cost, under = rows["core_hours"], rows["underprovisioned_share"]
        section["notes"].append(
            f"Forecast-driven against VPA-style: core-hours x{cost['forecast'] / cost['vpa']:.3f},"
            f" under-provisioned share {under['forecast']:.4f} against {under['vpa']:.4f};"
            f" against static: core-hours x{cost['forecast'] / cost['static']:.3f}."
        )
    section["tables"].append(_table(summary))
    section["images"].append({"caption": "cost and risk per policy", "data": _png(backtest_summary_figure(summary))})
    if backtest["capacity"] is not None:
        figure = capacity_figure(backtest["capacity"])
        section["images"].append({"caption": "demand against capacity, busiest entities", "data": _png(figure)})
    return section


def _recommendation_section(run_dir: Path) -> dict:
    recs = load_part(run_dir, "recommendations")
    section = _section("Capacity recommendations", None if recs is not None else "recommendations")
    if recs is None:
        return section
    latest = recs.sort_values("hour").groupby("entity_id").tail(1)
    current, recommended = latest["current_hourly_cost"].sum(), latest["hourly_cost"].sum()
    section["notes"].append(
        f"Latest hour, {len(latest)} entities: current ${current:.2f}/h, recommended ${recommended:.2f}/h"
        f" ({(current - recommended) / current:.1%} saving)."
        if current
        else "No current cost recorded."
    )
    section["tables"].append(_table(latest.sort_values("hourly_saving", ascending=False), rows=20))
    section["images"].append({"caption": "current against recommended", "data": _png(recommendation_figure(recs))})
    return section


def _monitoring_section(run_dir: Path) -> dict:
    drift = load_part(run_dir, "drift")
    verdict = sorted(run_dir.rglob("monitoring.json"), key=lambda p: p.stat().st_mtime)
    section = _section("Monitoring", None if drift is not None or verdict else "drift")
    if verdict:
        status = json.loads(verdict[-1].read_text())
        reasons = "; ".join(status.get("reasons", [])) or "no threshold crossed"
        section["notes"].append(f"Retrain: {'yes' if status.get('retrain') else 'no'} ({reasons}).")
    if drift is not None and "psi" in drift.columns:
        section["tables"].append(_table(drift.sort_values("psi", ascending=False), rows=15))
    return section


def build_report(run_dir: str | Path, out: str | Path | None = None) -> Path:
    """Write the HTML report of ``run_dir`` to ``out`` (default ``run_dir/report.html``) and return its path."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"no run directory at {run_dir}")
    sections = [
        _leaderboard_section(run_dir),
        _forecast_section(run_dir),
        _backtest_section(run_dir),
        _recommendation_section(run_dir),
        _monitoring_section(run_dir),
    ]
    html = _TEMPLATE.render(
        run_dir=run_dir.resolve(), made=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), sections=sections
    )
    out = Path(out) if out is not None else run_dir / REPORT_FILE
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(html, encoding="utf-8")
    return out
