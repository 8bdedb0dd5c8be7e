"""Fixtures more than one area uses: a real PostgreSQL warehouse per test, and the package logger restored.

Each area keeps its own fixtures in its folder's ``conftest.py`` or its test modules.

``warehouse_url`` is one server for the whole session: ``DATABASE_URL`` when set, else an
embedded PostgreSQL in a temporary directory, stopped and removed when the session ends.
``warehouse`` gives each test a fresh database on it (``mlco_test_<pid>_<n>``) with the
schema applied, as an open psycopg2 connection, and drops the database afterwards.
"""

from __future__ import annotations

import itertools
import logging
import os
from contextlib import closing

import pytest

from ml_cloud_optimizer import logs
from ml_cloud_optimizer.warehouse import apply_schema, connect, create_database, drop_database
from ml_cloud_optimizer.warehouse.server import temporary_server

_database_numbers = itertools.count()


@pytest.fixture(scope="session")
def warehouse_url() -> str:
    """URL of the session's PostgreSQL server: ``DATABASE_URL``, else a fresh embedded one."""
    with temporary_server() as url:
        yield url


@pytest.fixture
def warehouse_dsn(warehouse_url) -> str:
    """DSN of a fresh database holding the warehouse schema, dropped after the test."""
    name = f"mlco_test_{os.getpid()}_{next(_database_numbers)}"
    dsn = create_database(warehouse_url, name)
    try:
        with closing(connect(dsn)) as conn:
            apply_schema(conn)
        yield dsn
    finally:
        drop_database(warehouse_url, name)


@pytest.fixture
def warehouse(warehouse_dsn):
    """An open psycopg2 connection to a fresh warehouse database (see ``warehouse_dsn``)."""
    with closing(connect(warehouse_dsn)) as conn:
        yield conn


@pytest.fixture
def restore_logging():
    """The package logger, left as the test found it (``mlco``'s ``main`` configures it)."""
    logger = logging.getLogger(logs.LOGGER)
    mine = [h for h in logger.handlers if _ours_or_null(h)]
    level, propagate = logger.level, logger.propagate
    yield logger
    for handler in [h for h in logger.handlers if _ours_or_null(h)]:
        logger.removeHandler(handler)
    for handler in mine:
        logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = propagate


def _ours_or_null(handler: logging.Handler) -> bool:  # pytest attaches its own handlers too: leave those alone
    return getattr(handler, "_mlco", False) or isinstance(handler, logging.NullHandler)
