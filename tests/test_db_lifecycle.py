"""Database lifecycle (SPEC 2): creation at head, automatic SQLite upgrade, SchemaBehind."""

from __future__ import annotations

import multiprocessing
import os
import shutil
import sqlite3
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from sqlalchemy import inspect, text

from omtasks.db import (
    HEAD_REVISION,
    DatabaseError,
    SchemaBehind,
    current,
    lifecycle,
    migrate,
    open_engine,
    upgrade,
)

NEXT_REVISION = textwrap.dedent(
    '''
    """Test-only revision: one more column.

    Revision ID: 0002
    Revises: 0001
    """

    import sqlalchemy as sa
    from alembic import op

    revision = "0002"
    down_revision = "0001"
    branch_labels = None
    depends_on = None


    def upgrade() -> None:
        op.add_column("nodes", sa.Column("extra", sa.String))


    def downgrade() -> None:
        op.drop_column("nodes", "extra")
    '''
)

REAL_SCRIPTS = migrate.SCRIPT_LOCATION


def _open_at_0001(url: str | None, root: Path) -> None:
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(lifecycle, "HEAD_REVISION", "0001")
        mp.setattr(migrate, "SCRIPT_LOCATION", REAL_SCRIPTS)
        open_engine(url, root=root).dispose()


@pytest.fixture
def next_head(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """Pretend this om ships revision 0002, so the real database is one revision behind."""
    scripts = tmp_path / "migrations"
    shutil.copytree(migrate.SCRIPT_LOCATION, scripts, ignore=shutil.ignore_patterns("__pycache__"))
    (scripts / "versions" / "0002_test.py").write_text(NEXT_REVISION)
    monkeypatch.setattr(migrate, "SCRIPT_LOCATION", scripts)
    monkeypatch.setattr(lifecycle, "HEAD_REVISION", "0002")
    return "0002"


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_default_database_is_created_at_head_with_private_modes(om_root: Path) -> None:
    engine = open_engine(root=om_root)
    try:
        db = om_root / "var" / "om.db"
        assert engine.url.database == str(db)
        for d in (om_root, om_root / "var", om_root / "var" / "log", om_root / "var" / "run"):
            assert _mode(d) == 0o750, d
        with engine.connect() as conn:
            assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
            assert conn.execute(text("PRAGMA busy_timeout")).scalar() == 10000
            assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1
            assert conn.execute(text("PRAGMA synchronous")).scalar() == 1  # NORMAL
            for suffix in ("", "-wal", "-shm"):
                assert _mode(Path(f"{db}{suffix}")) == 0o640, suffix
        assert current(None, om_root) == f"{HEAD_REVISION} (head)"
    finally:
        engine.dispose()


def test_om_db_url_wins_over_the_default(
    om_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = tmp_path / "elsewhere" / "x.db"
    monkeypatch.setenv("OM_DB_URL", f"sqlite:///{other}")
    open_engine(root=om_root).dispose()
    assert other.exists() and not (om_root / "var" / "om.db").exists()


def test_current_creates_nothing(om_root: Path) -> None:
    assert current(None, om_root) == f"none (behind {HEAD_REVISION})"
    assert not om_root.exists()


def test_up_to_date_open_does_not_import_alembic(db_url: str, om_root: Path) -> None:
    open_engine(db_url, root=om_root).dispose()
    probe = (
        "import sys; from pathlib import Path; from omtasks.db import open_engine; "
        f"open_engine({db_url!r}, root=Path({str(om_root)!r})).dispose(); "
        "assert 'alembic' not in sys.modules, 'alembic imported'"
    )
    subprocess.run([sys.executable, "-c", probe], check=True)


def test_sqlite_behind_head_is_upgraded_after_a_backup(om_root: Path, next_head: str) -> None:
    db = om_root / "var" / "om.db"
    _open_at_0001(None, om_root)
    with sqlite3.connect(db) as conn:
        conn.execute("INSERT INTO nodes (name) VALUES ('n1')")
    engine = open_engine(root=om_root)
    try:
        assert "extra" in {c["name"] for c in inspect(engine).get_columns("nodes")}
        assert current(None, om_root) == "0002 (head)"
    finally:
        engine.dispose()
    backup = db.with_name("om.db.bak-0001")
    assert _mode(backup) == 0o640
    with sqlite3.connect(backup) as old:
        assert old.execute("SELECT version_num FROM alembic_version").fetchall() == [("0001",)]
        assert old.execute("SELECT name FROM nodes").fetchall() == [("n1",)]


def test_shared_database_behind_head_refuses(pg_database, om_root: Path, next_head: str) -> None:
    url = pg_database()
    _open_at_0001(url, om_root)
    with pytest.raises(SchemaBehind) as info:
        open_engine(url, root=om_root)
    assert str(info.value) == "database schema is at revision 0001, this om needs 0002: run 'om db upgrade'"
    assert current(url, om_root) == "0001 (behind 0002)"
    assert upgrade(url, om_root) == ("0001", "0002")
    assert current(url, om_root) == "0002 (head)"
    open_engine(url, root=om_root).dispose()


def test_database_ahead_of_this_om_refuses(db_url: str, om_root: Path) -> None:
    engine = open_engine(db_url, root=om_root)
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    engine.dispose()
    with pytest.raises(DatabaseError, match="revision 9999, newer than this om"):
        open_engine(db_url, root=om_root)
    assert current(db_url, om_root) == f"9999 (ahead of {HEAD_REVISION})"


def _open_and_report(url: str, root: str, queue: multiprocessing.Queue) -> None:
    try:
        open_engine(url, root=Path(root)).dispose()
        queue.put("ok")
    except Exception as exc:  # reported to the parent, which fails the test
        queue.put(repr(exc))


def test_concurrent_first_opens_create_once(db_url: str, om_root: Path) -> None:
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_open_and_report, args=(db_url, str(om_root), queue)) for _ in range(6)]
    for p in procs:
        p.start()
    results = [queue.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    assert results == ["ok"] * len(procs)
    assert current(db_url, om_root) == f"{HEAD_REVISION} (head)"
    if db_url.startswith("sqlite"):
        assert not [p for p in os.listdir(om_root / "var") if ".bak-" in p]
