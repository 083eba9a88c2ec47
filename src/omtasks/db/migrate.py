"""The alembic side of the lifecycle, imported only when a schema must change.

Importing alembic costs more than a whole quiet tick, so `omtasks.db.lifecycle`
reaches this module only to create or upgrade a database.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine

from omtasks.db.files import create_file

SCRIPT_LOCATION = Path(__file__).resolve().parent.parent / "migrations"


def alembic_config(connection: Connection | None = None) -> Config:
    """A Config built in code: the installed package carries no alembic.ini."""
    cfg = Config()
    cfg.set_main_option("script_location", str(SCRIPT_LOCATION))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def head() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def upgrade_to_head(engine: Engine) -> None:
    """Apply every missing revision in one transaction: all or nothing."""
    with engine.begin() as conn:
        command.upgrade(alembic_config(conn), "head")


def backup(db_path: Path, revision: str) -> Path:
    """Copy a live SQLite database to `<db>.bak-<rev>` with the online backup API."""
    target = db_path.with_name(f"{db_path.name}.bak-{revision}")
    create_file(target)
    src = sqlite3.connect(db_path)
    try:
        dst = sqlite3.connect(target)
        try:
            src.backup(dst)
        finally:
            dst.close()
    finally:
        src.close()
    return target
