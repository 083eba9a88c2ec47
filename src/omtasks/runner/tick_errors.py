"""How the tick and `print schedule` report an exception of one service (one line, no traceback)."""

from __future__ import annotations


def is_database_error(exc: BaseException) -> bool:
    """A database failure is transient (locked, unreachable): never a reason to mark a config invalid."""
    return type(exc).__module__.startswith(("sqlalchemy", "sqlite3", "psycopg", "omtasks.db"))


def one_line(exc: BaseException) -> str:
    """`Type: first line of the message`, at most 300 characters."""
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}"[:300] if text else type(exc).__name__
