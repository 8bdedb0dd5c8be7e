"""The PostgreSQL OLAP warehouse: embedded server, schema, COPY loader, named queries, optimizer runs.

Typical use::

    from ml_cloud_optimizer.warehouse import apply_schema, connect, load_fleet, read_hourly

    conn = connect()              # DATABASE_URL, or mlco's own embedded server
    apply_schema(conn)            # sql/0N_*.sql, idempotent
    report = load_fleet(conn, fleet)
    hourly = read_hourly(conn, start="2013-08-05", end="2013-08-12")
"""

from ml_cloud_optimizer.warehouse.loader import (
    LoadReport,
    encode_metrics_copy,
    iter_metrics_copy,
    load_fleet,
    refresh_aggregates,
)
from ml_cloud_optimizer.warehouse.optimizer_runs import read_recommendations, store_run, stored_accuracy
from ml_cloud_optimizer.warehouse.queries import (
    HOURLY_COLUMNS,
    NamedQuery,
    QueryError,
    load_queries,
    read_hourly,
    read_metrics,
    run_query,
)
from ml_cloud_optimizer.warehouse.schema import apply_schema, has_schema, schema_files, sql_dir
from ml_cloud_optimizer.warehouse.server import (
    connect,
    create_database,
    database_url,
    drop_database,
    start_embedded,
    stop_embedded,
    transaction,
    with_database,
)

__all__ = [
    "HOURLY_COLUMNS",
    "LoadReport",
    "NamedQuery",
    "QueryError",
    "apply_schema",
    "connect",
    "create_database",
    "database_url",
    "drop_database",
    "encode_metrics_copy",
    "has_schema",
    "iter_metrics_copy",
    "load_fleet",
    "load_queries",
    "read_hourly",
    "read_metrics",
    "read_recommendations",
    "refresh_aggregates",
    "run_query",
    "schema_files",
    "sql_dir",
    "start_embedded",
    "stop_embedded",
    "store_run",
    "stored_accuracy",
    "transaction",
    "with_database",
]
