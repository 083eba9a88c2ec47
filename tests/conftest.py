"""Shared fixtures: a private OM_ROOT per test, and the databases (SPEC 14).

PostgreSQL tests use OM_TEST_PG_URL (default: the local server); when it is
unreachable they are skipped with the reason, except under OM_CI=1 where that
is a failure.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

PG_DEFAULT = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


@pytest.fixture(autouse=True)
def om_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own OM_ROOT; no test inherits a database URL or a clock."""
    root = tmp_path / "omroot"
    monkeypatch.setenv("OM_ROOT", str(root))
    for name in ("OM_DB_URL", "OM_NOW"):
        monkeypatch.delenv(name, raising=False)
    return root


@pytest.fixture(scope="session")
def pg_database() -> Iterator[Callable[[], str]]:
    """A factory of fresh, empty PostgreSQL databases, all dropped at the end of the session."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    admin_url = make_url(os.environ.get("OM_TEST_PG_URL", PG_DEFAULT))
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:  # any driver or network error means "unreachable"
        admin.dispose()
        reason = f"PostgreSQL unreachable at {admin_url.render_as_string(hide_password=True)}: {exc}"
        if os.environ.get("OM_CI") == "1":
            pytest.fail(f"OM_CI=1: {reason}")
        pytest.skip(reason)
    created: list[str] = []

    def new_database() -> str:
        name = f"om_test_{os.getpid()}_{uuid.uuid4().hex[:8]}"
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        created.append(name)
        return admin_url.set(database=name).render_as_string(hide_password=False)

    yield new_database
    with admin.connect() as conn:
        for name in created:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(scope="session")
def pg_url(pg_database: Callable[[], str]) -> str:
    """One fresh PostgreSQL database for the whole session."""
    return pg_database()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.pg)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database URL on each dialect, fresh for every test."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'test.db'}"
    return request.getfixturevalue("pg_database")()
