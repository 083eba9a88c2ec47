"""Engine construction: the SQLite settings of SPEC 2 and serialized claims.

SQLite transactions start with BEGIN IMMEDIATE (the pysqlite recipe: the
driver's own BEGIN is disabled and SQLAlchemy's `begin` event emits ours), so
two claimants never both read a marker and then both write: the second waits
for the write lock, up to the busy timeout, and reads the winner's rows.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import URL, make_url

BUSY_TIMEOUT_S = 10
READ_ONLY = "om_read_only"

_SQLITE_PRAGMAS = (
    f"PRAGMA busy_timeout = {BUSY_TIMEOUT_S * 1000}",
    "PRAGMA journal_mode = WAL",
    "PRAGMA foreign_keys = ON",
    "PRAGMA synchronous = NORMAL",
)


def is_sqlite(url: URL) -> bool:
    return url.get_backend_name() == "sqlite"


def sqlite_path(url: URL) -> str | None:
    """The database file of a SQLite URL, None for an in-memory database."""
    db = url.database
    if not db or db == ":memory:" or db.startswith("file::memory:"):
        return None
    return db


def make_engine(url: str | URL) -> Engine:
    """An engine for `url`; SQLite connections get the pragmas and BEGIN IMMEDIATE."""
    url = make_url(url)
    if not is_sqlite(url):
        return create_engine(url)
    engine = create_engine(url, connect_args={"timeout": BUSY_TIMEOUT_S})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            for pragma in _SQLITE_PRAGMAS:
                cursor.execute(pragma)
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        deferred = conn.get_execution_options().get(READ_ONLY, False)
        conn.exec_driver_sql("BEGIN" if deferred else "BEGIN IMMEDIATE")

    return engine


@contextmanager
def reading(engine: Engine) -> Iterator[Connection]:
    """A read transaction: plain (deferred) BEGIN on SQLite, so readers never wait for writers.

    For reads that span several statements (an evaluation, a report) while
    claims run on other connections; never write through it.
    """
    with engine.connect().execution_options(**{READ_ONLY: True}) as conn, conn.begin():
        yield conn
