"""The warehouse's DDL: the numbered files in ``sql/``, applied in order, idempotently.

``sql/`` sits at the repository root, beside ``src/``, where people read and review it. It is
found through ``$MLCO_SQL_DIR`` when set (an installed package or a container image points
it at its copy), else at the repository root above this package. Files named
``NN_*_queries.sql`` hold named OLAP queries (see ``warehouse.queries``), not DDL, and are
not applied.
"""

from __future__ import annotations

import os
from pathlib import Path

from ml_cloud_optimizer.warehouse.server import transaction

__all__ = ["apply_schema", "has_schema", "schema_files", "sql_dir"]

# pg_advisory_xact_lock key: two processes applying the schema at once take turns instead of
# racing on CREATE ... IF NOT EXISTS, which is not safe against a concurrent creator.
_SCHEMA_LOCK_KEY = 0x6D6C636F


def sql_dir() -> Path:
    """The directory holding the numbered ``.sql`` files (``$MLCO_SQL_DIR`` or ``<repo>/sql``)."""
    configured = os.environ.get("MLCO_SQL_DIR")
    path = Path(configured) if configured else Path(__file__).resolve().parents[3] / "sql"
    if not path.is_dir():
        raise FileNotFoundError(f"no warehouse sql directory at {path}; set MLCO_SQL_DIR to the repository's sql/")
    return path


def schema_files(directory: Path | None = None) -> list[Path]:
    """The DDL files in apply order: ``NN_*.sql`` by name, leaving out ``*_queries.sql``."""
    directory = directory if directory is not None else sql_dir()
    return sorted(p for p in directory.glob("[0-9]*.sql") if not p.stem.endswith("_queries"))


def apply_schema(conn, directory: Path | None = None) -> list[str]:
    """Run every DDL file in one transaction and return their names.

    Each file is idempotent, so applying to a warehouse that already has the schema changes
    nothing; a failing file rolls back all of them.
    """
    files = schema_files(directory)
    with transaction(conn), conn.cursor() as cur:
        cur.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK_KEY,))
        for path in files:
            cur.execute(path.read_text())
    return [p.name for p in files]


def has_schema(conn) -> bool:
    """Whether the warehouse tables exist in this database."""
    with conn.cursor() as cur:
        cur.execute("SELECT to_regclass('metrics') IS NOT NULL AND to_regclass('metrics_hourly') IS NOT NULL")
        (present,) = cur.fetchone()
    return bool(present)
