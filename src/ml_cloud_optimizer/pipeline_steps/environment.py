"""Local stand-ins for what a cluster provides a pipeline run: the warehouse and the MLflow store."""

from __future__ import annotations

import os
from contextlib import closing
from pathlib import Path

from ml_cloud_optimizer.warehouse.schema import apply_schema
from ml_cloud_optimizer.warehouse.server import connect, pgdata_dir, start_embedded

__all__ = ["ensure_warehouse"]


def ensure_warehouse(home: Path) -> str:
    """``DATABASE_URL`` if set, else the embedded server under ``home`` (started if needed), with the schema."""
    url = os.environ.get("DATABASE_URL") or start_embedded(pgdata_dir(home))
    with closing(connect(url)) as conn:
        apply_schema(conn)
    return url
