"""Database lifecycle (SPEC 2): open, create at head, upgrade, report the revision.

The common case, an up-to-date database, costs one plain SELECT on
`alembic_version`; alembic is imported only to create or upgrade.  Revision ids
are zero-padded numbers, so "behind" and "ahead" compare as strings.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Engine, text
from sqlalchemy.engine import URL, make_url

from omtasks.db.connect import BUSY_TIMEOUT_S, is_sqlite, make_engine, sqlite_path
from omtasks.db.files import create_file, ensure_dir, secure_file
from omtasks.locking import flock_wait

HEAD_REVISION = "0001"

# pg_advisory_lock key of schema creation and upgrades ("omdb").
_PG_LOCK_KEY = 0x6F6D6462
_LOCK_POLL_S = 0.05


class DatabaseError(Exception):
    """A database state om refuses to work with; the CLI prints `om: <message>`, exit 1."""


class SchemaBehind(DatabaseError):
    """A shared (non-SQLite) database older than this om: only `om db upgrade` may move it."""

    def __init__(self, revision: str, head: str) -> None:
        self.revision = revision
        self.head = head
        super().__init__(
            f"database schema is at revision {revision}, this om needs {head}: run 'om db upgrade'"
        )


def resolve_url(url: str | None, root: Path) -> URL:
    """`url`, else $OM_DB_URL, else the node's SQLite file under `root`."""
    return make_url(url or os.environ.get("OM_DB_URL") or f"sqlite:///{root}/var/om.db")


def open_engine(url: str | None = None, *, root: Path) -> Engine:
    """An engine on a database at head: created when missing, SQLite upgraded when behind."""
    u = resolve_url(url, root)
    engine = _engine(u, root)
    try:
        rev = read_revision(engine)
        if rev != HEAD_REVISION:
            if rev is not None and (rev > HEAD_REVISION or not is_sqlite(u)):
                _refuse(rev)
            _migrate(engine, u, root)
    except BaseException:
        engine.dispose()
        raise
    return engine


def upgrade(url: str | None, root: Path) -> tuple[str | None, str]:
    """`om db upgrade`: bring any database to head; returns (revision before, head)."""
    u = resolve_url(url, root)
    engine = _engine(u, root)
    try:
        before = read_revision(engine)
        if before is not None and before > HEAD_REVISION:
            _refuse(before)
        _migrate(engine, u, root)
        return before, HEAD_REVISION
    finally:
        engine.dispose()


def current(url: str | None, root: Path) -> str:
    """`om db current`: `<rev> (head)`, `<rev> (behind <head>)`; creates nothing."""
    u = resolve_url(url, root)
    path = sqlite_path(u) if is_sqlite(u) else None
    rev = None
    if path is None or Path(path).exists():
        engine = make_engine(u)
        try:
            rev = read_revision(engine)
        finally:
            engine.dispose()
    if rev == HEAD_REVISION:
        return f"{rev} (head)"
    if rev is not None and rev > HEAD_REVISION:
        return f"{rev} (ahead of {HEAD_REVISION})"
    return f"{rev or 'none'} (behind {HEAD_REVISION})"


def read_revision(engine: Engine) -> str | None:
    """The revision stamped in `alembic_version`, None for an empty database."""
    with engine.connect() as conn:
        if not conn.dialect.has_table(conn, "alembic_version"):
            return None
        return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()


def _refuse(rev: str) -> None:
    if rev > HEAD_REVISION:
        raise DatabaseError(
            f"database schema is at revision {rev}, newer than this om ({HEAD_REVISION}): upgrade om"
        )
    raise SchemaBehind(rev, HEAD_REVISION)


def _engine(u: URL, root: Path) -> Engine:
    """Create $OM_ROOT's directories and the SQLite file (0640) before SQLite would (umask)."""
    for d in (root, root / "var", root / "var" / "log", root / "var" / "run"):
        ensure_dir(d)
    path = sqlite_path(u) if is_sqlite(u) else None
    if path is not None:
        ensure_dir(Path(path).parent)
        create_file(Path(path))
    return make_engine(u)


def _migrate(engine: Engine, u: URL, root: Path) -> None:
    """Create or upgrade under the exclusive lock, re-reading the revision once it is held."""
    path = sqlite_path(u) if is_sqlite(u) else None
    lock = _file_lock(root / "var" / "run" / "db.lock") if is_sqlite(u) else _pg_lock(engine)
    with lock:
        rev = read_revision(engine)
        if rev == HEAD_REVISION:
            return
        from omtasks.db import migrate

        if rev is not None and path is not None:
            migrate.backup(Path(path), rev)
        migrate.upgrade_to_head(engine)
    if path is not None:
        for suffix in ("-wal", "-shm"):
            secure_file(Path(path + suffix))


@contextmanager
def _file_lock(lock_path: Path) -> Iterator[None]:
    create_file(lock_path)
    fd = os.open(lock_path, os.O_RDWR)
    try:
        if not flock_wait(fd, BUSY_TIMEOUT_S, _LOCK_POLL_S):
            raise DatabaseError(f"database locked: {lock_path} held for {BUSY_TIMEOUT_S} s")
        yield
    finally:
        os.close(fd)


@contextmanager
def _pg_lock(engine: Engine) -> Iterator[None]:
    """A session advisory lock held on its own connection while another one migrates."""
    with engine.connect() as conn:
        conn = conn.execution_options(isolation_level="AUTOCOMMIT")
        deadline = time.monotonic() + BUSY_TIMEOUT_S
        while not conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": _PG_LOCK_KEY}).scalar():
            if time.monotonic() >= deadline:
                raise DatabaseError(f"database locked: schema migration held for {BUSY_TIMEOUT_S} s")
            time.sleep(_LOCK_POLL_S)
        try:
            yield
        finally:
            conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _PG_LOCK_KEY})
