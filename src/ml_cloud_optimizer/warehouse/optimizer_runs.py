"""Optimizer runs in the warehouse: store forecasts and recommendations, read them back, score them.

An optimizer run (``mlco recommend``, the batch pipeline's ``score_fleet``) is one row of
``optimizer_runs`` with its forecasts and recommendations, written in one transaction with
COPY. Recommendations carry CPU and memory (GiB) and their costs priced apart; the prices a run
used are named in its ``params`` (``prices``: a file, or the built-in list-price defaults). The
frames are built by ``ml_cloud_optimizer.optimizer``; this module only moves them in and out of
PostgreSQL, so the optimizer (and the model server that rounds with it) never imports the
database driver.

Example::

    from ml_cloud_optimizer.optimizer.capacity import forecasts_long, recommend
    from ml_cloud_optimizer.warehouse.optimizer_runs import read_recommendations, store_run

    recs = recommend(forecasts, fleet.entities, target_utilization=0.7)
    run_id = store_run(conn, recs, forecasts_long(forecasts), model="lightgbm", source="warehouse")
    latest = read_recommendations(conn)
"""

from __future__ import annotations

import io
import json

import pandas as pd

from ml_cloud_optimizer.data.schema import RECOMMENDATION_COLUMNS
from ml_cloud_optimizer.warehouse.server import transaction

__all__ = ["FORECAST_COLUMNS", "read_recommendations", "store_run", "stored_accuracy"]

# The long forecast layout of the ``forecasts`` table (``optimizer.capacity.forecasts_long``).
FORECAST_COLUMNS = ["entity_id", "origin_ts", "horizon", "target_ts", "p50", "p90"]


def _copy_frame(cur, table: str, frame: pd.DataFrame) -> None:
    """COPY ``frame`` into ``table`` (columns by name) from an in-memory CSV; NaN becomes NULL."""
    buffer = io.StringIO()
    frame.to_csv(buffer, index=False, header=False, na_rep="", date_format="%Y-%m-%dT%H:%M:%S%z")
    buffer.seek(0)
    columns = ", ".join(frame.columns)
    cur.copy_expert(f"COPY {table} ({columns}) FROM STDIN WITH (FORMAT csv)", buffer)


def _require(frame: pd.DataFrame, columns: list[str], what: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{what} lack columns {', '.join(missing)}")


def store_run(
    conn,
    recommendations: pd.DataFrame,
    forecasts: pd.DataFrame | None = None,
    *,
    model: str,
    source: str,
    params: dict | None = None,
) -> int:
    """Write one optimizer run (its forecasts and recommendations) in one transaction; return its ``run_id``.

    Both go in with COPY; a row that breaks a table's checks rolls the whole run back.

    Args:
        conn: psycopg2 connection to a warehouse holding the schema.
        recommendations: ``RECOMMENDATION_COLUMNS`` rows (``optimizer.capacity.recommend``).
        forecasts: the long layout ``FORECAST_COLUMNS`` (``optimizer.capacity.forecasts_long``);
            None or empty stores none.
        model, source: how the run names its model and its input.
        params: JSON-ready settings of the run (target utilization, granularity, the prices used
            as ``optimizer.prices.Prices.params`` gives them...).
    """
    _require(recommendations, RECOMMENDATION_COLUMNS, "recommendations")
    if forecasts is not None:
        _require(forecasts, FORECAST_COLUMNS, "forecasts (use optimizer.capacity.forecasts_long)")
    with transaction(conn), conn.cursor() as cur:
        cur.execute(
            "INSERT INTO optimizer_runs (model, source, params) VALUES (%s, %s, %s) RETURNING run_id",
            (model, source, json.dumps(params or {}, default=str)),
        )
        (run_id,) = cur.fetchone()
        if forecasts is not None and len(forecasts):
            _copy_frame(cur, "forecasts", forecasts[FORECAST_COLUMNS].assign(run_id=run_id))
        _copy_frame(cur, "recommendations", recommendations[RECOMMENDATION_COLUMNS].assign(run_id=run_id))
    return int(run_id)


def read_recommendations(conn, run_id: int | None = None) -> pd.DataFrame:
    """The recommendations of ``run_id`` (default: the latest run), in ``RECOMMENDATION_COLUMNS``."""
    with transaction(conn), conn.cursor() as cur:
        if run_id is None:
            cur.execute("SELECT max(run_id) FROM optimizer_runs")
            (run_id,) = cur.fetchone()
            if run_id is None:
                return pd.DataFrame(columns=RECOMMENDATION_COLUMNS)
        cur.execute(
            f"SELECT {', '.join(RECOMMENDATION_COLUMNS)} FROM recommendations"
            " WHERE run_id = %s ORDER BY entity_id, hour",
            (run_id,),
        )
        frame = pd.DataFrame.from_records(cur.fetchall(), columns=RECOMMENDATION_COLUMNS)
    frame["hour"] = pd.to_datetime(frame["hour"], utc=True)
    return frame.astype({c: "float64" for c in RECOMMENDATION_COLUMNS[2:] if c != "replicas"})


def stored_accuracy(conn, start: pd.Timestamp, end: pd.Timestamp | None = None) -> pd.DataFrame:
    """MAE and p90 coverage per horizon of the warehouse's stored forecasts whose target is in [start, end).

    Reads the ``forecast_errors`` view (stored forecasts joined to the metrics loaded since).
    Columns ``source`` ("warehouse"), ``window`` ("recent"), ``horizon``, ``n``, ``mae`` and
    ``p90_coverage``, as ``optimizer.monitoring.ACCURACY_COLUMNS``; empty when no stored
    forecast has an actual yet.
    """
    query = (
        "SELECT horizon, count(*), avg(abs(error)), avg(covered::int) FILTER (WHERE p90 IS NOT NULL)"
        " FROM forecast_errors WHERE target_ts >= %s AND (%s::timestamptz IS NULL OR target_ts < %s)"
        " GROUP BY horizon ORDER BY horizon"
    )
    with transaction(conn), conn.cursor() as cur:
        cur.execute(query, (start, end, end))
        records = cur.fetchall()
    frame = pd.DataFrame.from_records(records, columns=["horizon", "n", "mae", "p90_coverage"])
    frame.insert(0, "window", "recent")
    frame.insert(0, "source", "warehouse")
    return frame.astype({"horizon": "int64", "n": "int64", "mae": "float64", "p90_coverage": "float64"})
