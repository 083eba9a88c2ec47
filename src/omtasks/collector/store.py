"""The collector's database: the nodes it trusts and every push it stored.

The collector database is separate from the node database (`om.db`): one
collector serves many nodes, may run on a machine without a runner, and its
schema moves independently of the node schema and its alembic migrations.  It
is versioned by its own `metadata.create_all`, run on first use, which is
enough while it has a single table set (this release); changing these tables
later brings the collector its own migrations.

Tokens are stored as their SHA-256 only, so a copy of the database cannot be
used to push as a node.  Every instant is naive UTC, like the node database.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Column,
    DateTime,
    Engine,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    delete,
    func,
    insert,
    select,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError

from omtasks.db.connect import is_sqlite, make_engine, reading, sqlite_path
from omtasks.db.files import create_file, ensure_dir, secure_file
from omtasks.timeutil import from_utc_naive, to_utc_naive, utcnow

metadata = MetaData()

collector_nodes = Table(
    "collector_nodes",
    metadata,
    Column("name", String, primary_key=True),
    Column("token_sha256", String, nullable=False),
    Column("created_at", DateTime, nullable=False),
    Index("ux_collector_nodes_token", "token_sha256", unique=True),
)

pushes = Table(
    "pushes",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("uuid", String, nullable=False),
    Column("node", String, nullable=False),
    Column("service", String),
    Column("kind", String, nullable=False),
    Column("created_at", DateTime, nullable=False),
    Column("received_at", DateTime, nullable=False),
    Column("payload", Text, nullable=False),
    Index("ux_pushes_uuid", "uuid", unique=True),
    Index("ix_pushes_latest", "service", "node", "kind", "created_at"),
)


@dataclass(frozen=True)
class Push:
    """One validated push body (SPEC 9); `created_at` is aware."""

    uuid: str
    node: str
    service: str | None
    kind: str
    created_at: datetime
    payload: dict[str, Any]


def default_url(root: Path) -> str:
    """`sqlite:///$OM_ROOT/var/collector.db`, beside (never inside) the node database."""
    return f"sqlite:///{root / 'var' / 'collector.db'}"


def open_store(url: str | None, root: Path) -> Engine:
    """An engine on the collector database, its tables created when missing.

    A SQLite file and its directories are created by us first (0640, 0750),
    so their modes never depend on the umask.
    """
    u = make_url(url or default_url(root))
    path = sqlite_path(u) if is_sqlite(u) else None
    if path is not None:
        ensure_dir(Path(path).parent)
        create_file(Path(path))
    engine = make_engine(u)
    try:
        metadata.create_all(engine)
    except BaseException:
        engine.dispose()
        raise
    if path is not None:
        for suffix in ("-wal", "-shm"):
            secure_file(Path(path + suffix))
    return engine


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def add_node(engine: Engine, node: str) -> str:
    """Bind a new random token to `node` and return it; a node added again gets a new token, the old one dies."""
    token = secrets.token_urlsafe(32)
    with engine.begin() as conn:
        conn.execute(delete(collector_nodes).where(collector_nodes.c.name == node))
        conn.execute(insert(collector_nodes).values(
            name=node, token_sha256=token_digest(token), created_at=to_utc_naive(utcnow())))
    return token


def node_for_token(engine: Engine, token: str) -> str | None:
    """The node a bearer token belongs to, None for an unknown token."""
    with reading(engine) as conn:
        return conn.execute(select(collector_nodes.c.name).where(
            collector_nodes.c.token_sha256 == token_digest(token))).scalar()


def store_push(engine: Engine, push: Push) -> bool:
    """Store `push` once per uuid: True when inserted, False when that uuid was already stored.

    The unique index decides, so two deliveries of one uuid racing each other
    still store it once.
    """
    try:
        with engine.begin() as conn:
            if conn.execute(select(pushes.c.id).where(pushes.c.uuid == push.uuid)).first() is not None:
                return False
            conn.execute(insert(pushes).values(
                uuid=push.uuid, node=push.node, service=push.service, kind=push.kind,
                created_at=to_utc_naive(push.created_at), received_at=to_utc_naive(utcnow()),
                payload=json.dumps(push.payload, separators=(",", ":"), ensure_ascii=False)))
    except IntegrityError:
        return False
    return True


def _document(row: Any) -> dict[str, Any]:
    return {
        "uuid": row.uuid, "service": row.service, "node": row.node, "kind": row.kind,
        "created_at": from_utc_naive(row.created_at).isoformat(),
        "received_at": from_utc_naive(row.received_at).isoformat(),
        "payload": json.loads(row.payload),
    }


def _sort_key(doc: dict[str, Any]) -> tuple[str, str, str]:
    return (doc["service"] or "", doc["node"], doc["kind"])


def latest_pushes(engine: Engine) -> list[dict[str, Any]]:
    """One push per (service, node, kind): the greatest `created_at`, whatever the order of arrival.

    Equal `created_at` values are broken by the later arrival (greater id).
    """
    p = pushes.c
    rank = func.row_number().over(
        partition_by=(p.service, p.node, p.kind), order_by=(p.created_at.desc(), p.id.desc())
    ).label("rank")
    ranked = select(pushes, rank).subquery()
    with reading(engine) as conn:
        rows = conn.execute(select(ranked).where(ranked.c.rank == 1)).all()
    return sorted((_document(r) for r in rows), key=_sort_key)


def list_pushes(engine: Engine, *, service: str | None = None, node: str | None = None,
                kind: str | None = None) -> list[dict[str, Any]]:
    """Every stored push matching the filters, in order of arrival (operators and tests)."""
    p = pushes.c
    query = select(pushes).order_by(p.id)
    for column, value in ((p.service, service), (p.node, node), (p.kind, kind)):
        if value is not None:
            query = query.where(column == value)
    with reading(engine) as conn:
        return [_document(r) for r in conn.execute(query)]
