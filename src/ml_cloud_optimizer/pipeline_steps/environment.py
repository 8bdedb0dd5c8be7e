"""What a pipeline step needs from its surroundings: the warehouse and the MLflow store.

On a cluster the database URL comes from a Secret and the tracking server is a pipeline
parameter. A local run (``mlco run``) starts the embedded PostgreSQL and leaves the tracking
parameter empty, which means mlco's local store under ``$MLCO_HOME`` (see ``tracking``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path

from ml_cloud_optimizer.warehouse.schema import apply_schema
from ml_cloud_optimizer.warehouse.server import connect, embedded_url, pgdata_dir, start_embedded, stop_embedded

__all__ = ["ensure_warehouse", "local_tracking_uri", "local_warehouse", "use_tracking_uri"]


def ensure_warehouse(home: Path) -> str:
    """``DATABASE_URL`` if set, else the embedded server under ``home`` (started if needed), with the schema."""
    url = os.environ.get("DATABASE_URL") or start_embedded(pgdata_dir(home))
    with closing(connect(url)) as conn:
        apply_schema(conn)
    return url


@contextmanager
def local_warehouse(home: Path) -> Iterator[str]:
    """``ensure_warehouse(home)`` for the block; an embedded server started here is stopped after it.

    Its data stay in ``home/pgdata``, and the next ``mlco db`` command starts it again.
    """
    started_here = not os.environ.get("DATABASE_URL") and embedded_url(pgdata_dir(home)) is None
    try:
        yield ensure_warehouse(home)
    finally:
        if started_here:
            stop_embedded(pgdata_dir(home))


def local_tracking_uri() -> str:
    """The tracking parameter of a local run: ``MLFLOW_TRACKING_URI`` if set, else "" (the local store)."""
    return os.environ.get("MLFLOW_TRACKING_URI", "")


def use_tracking_uri(uri: str) -> None:
    """Point MLflow at ``uri`` for this process; "" keeps the default (``MLFLOW_TRACKING_URI`` or the local store).

    Setting the variable, not only the client's URI, also tells ``tracking`` that a server owns
    the artifact location, so nothing is written to the pod's own disk.
    """
    if uri:
        os.environ["MLFLOW_TRACKING_URI"] = uri
