"""The pipeline's way in and out of the PostgreSQL warehouse named by ``DATABASE_URL``."""

from __future__ import annotations

import logging
import time
from contextlib import closing

import pandas as pd

from ml_cloud_optimizer.data.schema import Fleet
from ml_cloud_optimizer.warehouse import apply_schema, connect, load_fleet, read_metrics

__all__ = ["load_into_warehouse", "read_from_warehouse"]

_log = logging.getLogger(__name__)


def load_into_warehouse(fleet: Fleet) -> dict:
    """Load ``fleet`` (COPY, one transaction, idempotent) and return the load report as a dict."""
    with closing(connect()) as conn:
        apply_schema(conn)
        report = load_fleet(conn, fleet)
    _log.info(
        "warehouse: %s rows (%s new, %s updated) in %.1f s",
        f"{report.rows:,}",
        f"{report.inserted:,}",
        f"{report.updated:,}",
        report.seconds,
    )
    return {
        "rows": report.rows,
        "inserted": report.inserted,
        "updated": report.updated,
        "unchanged": report.unchanged,
        "seconds": round(report.seconds, 3),
        "first_ts": report.first_ts.isoformat() if report.first_ts is not None else "",
        "last_ts": report.last_ts.isoformat() if report.last_ts is not None else "",
    }


def read_from_warehouse(entity_ids: list[str], start: str, end: str) -> Fleet:
    """Metrics of ``entity_ids`` from ``start`` to ``end`` inclusive, as the warehouse holds them."""
    started = time.perf_counter()
    with closing(connect()) as conn:
        fleet = read_metrics(
            conn, start=pd.Timestamp(start), end=pd.Timestamp(end) + pd.Timedelta(seconds=1), entity_ids=entity_ids
        )
    _log.info(
        "read back %s rows from the warehouse in %.1f s", f"{len(fleet.metrics):,}", time.perf_counter() - started
    )
    return fleet
