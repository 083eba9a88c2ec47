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

from omtasks.db.connect import BUSY_TIMEOUT_S, READ_ONLY, is_sqlite, make_engine, sqlite_path
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


class DatabaseMissing(DatabaseError):
    """A SQLite file deleted or emptied while its history is still around: never silently recreated."""


def history_left(db: Path, root: Path) -> list[str]:
    """What shows that `db` held history: its -wal file, backups of its upgrades, run logs."""
    found = []
    wal = Path(f"{db}-wal")
    if wal.exists():
        found.append(str(wal))
    found.extend(str(p) for p in sorted(db.parent.glob(f"{db.name}.bak-*")))
    runs = root / "var" / "log" / "runs"
    try:
        if any(runs.iterdir()):
            found.append(f"{runs}/")
    except OSError:
        pass
    return found


def _check_not_lost(u: URL, root: Path) -> None:
    """SPEC 2 + docs/security.md: a missing or empty SQLite file next to its history is an error."""
    path = sqlite_path(u) if is_sqlite(u) else None
    if path is None:
        return
    db = Path(path)
    try:
        empty = db.stat().st_size == 0
        state = "empty"
    except FileNotFoundError:
        empty, state = True, "missing"
    if not empty:
        return
    left = history_left(db, root)
    if not left:
        return  # a new node: the database is created
    backups = [p for p in left if ".bak-" in p]
    restore = f"restore it from {backups[-1]} (the backup of the last upgrade) or from your backups" if backups \
        else "restore it from your backups"
    raise DatabaseMissing(f"database {db} is {state} but {left[0]} exists: {restore}, "
                          "or run 'om db init' to start an empty database on purpose")


def init(url: str | None, root: Path) -> str:
    """`om db init`: create the database at head on purpose; an orphan -wal/-shm is moved aside first."""
    u = resolve_url(url, root)
    path = sqlite_path(u) if is_sqlite(u) else None
    if path is not None:
        db = Path(path)
        if db.exists() and db.stat().st_size > 0:
            raise DatabaseError(f"database {db} already exists")
        stamp = time.strftime("%Y%m%d%H%M%S")
        for suffix in ("-wal", "-shm"):
            orphan = Path(f"{db}{suffix}")
            if orphan.exists():  # SQLite would replay an old WAL into the new file
                orphan.rename(f"{orphan}.orphaned-{stamp}")
    engine = _engine(u, root)
    try:
        rev = read_revision(engine)
        if rev is not None:
            raise DatabaseError(f"database already at revision {rev}")
        _migrate(engine, u, root)
    finally:
        engine.dispose()
    return HEAD_REVISION


def open_engine(url: str | None = None, *, root: Path) -> Engine:
    """An engine on a database at head: created when missing, SQLite upgraded when behind.

    A SQLite file that is missing or empty while its history is still there
    (a -wal file, upgrade backups, run logs) is DatabaseMissing, not a new database.
    """
    u = resolve_url(url, root)
    _check_not_lost(u, root)
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
    _check_not_lost(u, root)
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
    # a deferred BEGIN on SQLite: reading the revision never waits for a writer
    with engine.connect().execution_options(**{READ_ONLY: True}) as conn:
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
