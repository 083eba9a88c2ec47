"""Markers (`last_runs`): an entry's last attempt and success, and the slot they define.

A slot is "the run that follows the current marker" (SPEC 8.4): its key is
built from the marker, and markers only move forward, so no key is computed
twice for different slots.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Table, and_, case, or_, select, update

from omtasks.db.schema import last_runs
from omtasks.timeutil import from_utc_naive


@dataclass(frozen=True)
class Marker:
    last_attempt_at: datetime | None
    last_success_at: datetime | None
    last_run_id: int | None


def insert_ignore(conn: Connection, table: Table, values: dict[str, Any]) -> bool:
    """INSERT ... ON CONFLICT DO NOTHING; True when the row was inserted."""
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    stmt = insert(table).values(**values).on_conflict_do_nothing().returning(*table.primary_key.columns)
    return conn.execute(stmt).first() is not None


def _key(service: str, action: str, rid: str | None, scope: str) -> Any:
    c = last_runs.c
    return and_(c.service == service, c.action == action, c.rid == (rid or ""), c.scope == scope)


def ensure_marker(conn: Connection, service: str, action: str, rid: str | None, scope: str) -> None:
    """Create the entry's marker with null times if missing; concurrent callers all succeed."""
    insert_ignore(
        conn,
        last_runs,
        {"service": service, "action": action, "rid": rid or "", "scope": scope},
    )


def read_marker(
    conn: Connection, service: str, action: str, rid: str | None, scope: str, *, lock: bool = False
) -> Marker:
    """The entry's marker; `lock` holds its row until commit (FOR UPDATE; SQLite's BEGIN IMMEDIATE already does)."""
    c = last_runs.c
    stmt = select(c.last_attempt_at, c.last_success_at, c.last_run_id).where(
        _key(service, action, rid, scope)
    )
    if lock:
        stmt = stmt.with_for_update()
    row = conn.execute(stmt).first()
    if row is None:
        return Marker(None, None, None)
    return Marker(from_utc_naive(row[0]), from_utc_naive(row[1]), row[2])


def move_marker(
    conn: Connection,
    service: str,
    action: str,
    rid: str | None,
    scope: str,
    *,
    scheduled_for: datetime,
    run_id: int,
    success: bool,
) -> None:
    """Forward-only max of the attempt (and success) marker to a naive-UTC `scheduled_for`."""
    ensure_marker(conn, service, action, rid, scope)
    c = last_runs.c
    later = or_(c.last_attempt_at.is_(None), c.last_attempt_at <= scheduled_for)
    values: dict[str, Any] = {
        "last_attempt_at": case((later, scheduled_for), else_=c.last_attempt_at),
        "last_run_id": case((later, run_id), else_=c.last_run_id),
    }
    if success:
        values["last_success_at"] = case(
            (or_(c.last_success_at.is_(None), c.last_success_at < scheduled_for), scheduled_for),
            else_=c.last_success_at,
        )
    conn.execute(update(last_runs).where(_key(service, action, rid, scope)).values(values))


def slot_key(service: str, action: str, rid: str | None, scope: str, marker: datetime | None) -> str:
    """`<service>|<action>|<rid or ->|<scope>|<marker YYYY-MM-DDTHH:MM:SSZ or never>`."""
    stamp = marker.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if marker is not None else "never"
    return f"{service}|{action}|{rid or '-'}|{scope}|{stamp}"
