"""The database layer: lifecycle here; tables in `schema`, the run store in `runs`.

Importing this package never imports alembic (SPEC 2, 14).
"""

from omtasks.db.lifecycle import (
    HEAD_REVISION,
    DatabaseError,
    DatabaseMissing,
    SchemaBehind,
    current,
    init,
    open_engine,
    upgrade,
)

__all__ = ["HEAD_REVISION", "DatabaseError", "DatabaseMissing", "SchemaBehind", "current", "init", "open_engine",
           "upgrade"]
