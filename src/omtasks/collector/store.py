"""The collector's database: the nodes and viewers it trusts, every push it stored, and what is current.

The collector database is separate from the node database (`om.db`): one
collector serves many nodes, may run on a machine without a runner, and its
schema moves independently of the node schema and its alembic migrations.  It
is versioned by its own `metadata.create_all`, run on first use: every change
so far only adds tables, which `create_all` creates in an older database, and
`open_store` fills the derived tables from the stored pushes when it has just
created them.

Reads never rank the whole push history: ingest keeps, in the same
transaction as each insert, `collector_current` (the latest push per
(service, node, kind)), `collector_tasks` (every task of the current resinfo
pushes, with its last run) and `collector_node_state` (last push, stored
bytes).  Retention deletes the pushes that are no longer current.

Tokens are stored as their SHA-256 only, viewer passwords as scrypt hashes, so
a copy of the database cannot be used to push or to log in.  Every instant is
naive UTC, like the node database.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Boolean,
    Column,
    Connection,
    DateTime,
    Engine,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    bindparam,
    delete,
    func,
    insert,
    inspect,
    select,
    text,
    tuple_,
    update,
)
from sqlalchemy.engine import make_url

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

collector_viewers = Table(
    "collector_viewers",
    metadata,
    Column("name", String, primary_key=True),
    # `scrypt$<n>$<r>$<p>$<salt hex>$<hash hex>`
    Column("password_hash", String, nullable=False),
    Column("created_at", DateTime, nullable=False),
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
    # payload bytes, so pages and quotas never read payloads to size them (NULL in rows of older releases)
    Column("size", Integer),
    Index("ux_pushes_uuid", "uuid", unique=True),
    Index("ix_pushes_latest", "service", "node", "kind", "created_at"),
)

#: the latest push per (service, node, kind); `service` is '' for a node-level push
collector_current = Table(
    "collector_current",
    metadata,
    Column("service", String, primary_key=True),
    Column("node", String, primary_key=True),
    Column("kind", String, primary_key=True),
    Column("push_id", Integer, nullable=False),
    Column("created_at", DateTime, nullable=False),
    Column("received_at", DateTime, nullable=False),
    # status pushes only: what the fleet page shows without parsing payloads
    Column("instance", String),
    Column("frozen", Boolean),
    Index("ix_collector_current_push", "push_id"),
    Index("ix_collector_current_node", "node", "service"),
)

#: the tasks of every current resinfo push, with their last finished run
collector_tasks = Table(
    "collector_tasks",
    metadata,
    Column("node", String, primary_key=True),
    Column("service", String, primary_key=True),
    Column("rid", String, primary_key=True),
    Column("schedule", Text),
    Column("command", Text),
    Column("user", String),
    Column("failing", Boolean, nullable=False),
    Column("state", String),
    Column("exit_code", Integer),
    Column("ended_at", DateTime),
    Column("last_success_at", DateTime),
    # JSON: {"<state>": count} and [{"id", "state", "exit_code", "started_at", "ended_at", "reason"}]
    Column("runs", Text, nullable=False),
    Column("recent", Text, nullable=False),
    Index("ix_collector_tasks_order", "failing", "ended_at"),
    Index("ix_collector_tasks_service", "service", "node"),
)

collector_node_state = Table(
    "collector_node_state",
    metadata,
    Column("node", String, primary_key=True),
    Column("last_push_at", DateTime, nullable=False),
    Column("pushes", Integer, nullable=False),
    Column("stored_bytes", Integer, nullable=False),
)

#: tables derived from `pushes`, rebuilt by `open_store` when it has just created them
DERIVED = ("collector_current", "collector_tasks", "collector_node_state")


@dataclass(frozen=True)
class Push:
    """One validated push body (SPEC 9); `created_at` is aware, `payload_text` the payload as stored, `size` its bytes."""

    uuid: str
    node: str
    service: str | None
    kind: str
    created_at: datetime
    payload: dict[str, Any]
    payload_text: str = field(default="", compare=False)
    size: int = 0
    token_sha256: str = field(default="", compare=False)


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
        inspector = inspect(engine)
        missing = [t for t in DERIVED if not inspector.has_table(t)]
        if inspector.has_table("pushes") and "size" not in {c["name"] for c in inspector.get_columns("pushes")}:
            with engine.begin() as conn:
                conn.exec_driver_sql("ALTER TABLE pushes ADD COLUMN size INTEGER")
        metadata.create_all(engine)
        if missing:
            rebuild_derived(engine)
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


# --- viewers -------------------------------------------------------------------------------------------

#: scrypt cost: about 50 ms and 16 MiB per check; the app caches a verified password (see `viewer_hash`)
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P)
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${salt.hex()}${digest.hex()}"


def check_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        got = hashlib.scrypt(password.encode(), salt=bytes.fromhex(salt), n=int(n), r=int(r), p=int(p),
                             maxmem=64 * 1024 * 1024)
    except (ValueError, UnicodeEncodeError):
        return False
    return hmac.compare_digest(got.hex(), digest)


def add_viewer(engine: Engine, name: str) -> str:
    """Create or replace viewer `name` with a new random password, returned once (only its hash is kept)."""
    password = secrets.token_urlsafe(18)
    with engine.begin() as conn:
        conn.execute(delete(collector_viewers).where(collector_viewers.c.name == name))
        conn.execute(insert(collector_viewers).values(
            name=name, password_hash=hash_password(password), created_at=to_utc_naive(utcnow())))
    return password


def viewer_hash(engine: Engine, name: str) -> str | None:
    """The stored hash of viewer `name`: the app verifies a password once per (hash, password)."""
    with reading(engine) as conn:
        return conn.execute(select(collector_viewers.c.password_hash).where(
            collector_viewers.c.name == name)).scalar()


# --- ingest --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Limits:
    """Per-node bounds checked at ingest (docs/collector.md "Limits")."""

    quota_bytes: int = 1024**3


class QuotaExceeded(Exception):
    pass


def _status_fields(kind: str, payload: dict[str, Any]) -> dict[str, Any]:
    if kind != "status":
        return {"instance": None, "frozen": None}
    instance = payload.get("instance")
    return {"instance": instance if isinstance(instance, str) else None,
            "frozen": bool(payload.get("frozen")) if "frozen" in payload else None}


def _aware(text: Any) -> datetime | None:
    """A payload instant (ISO 8601 with offset) as naive UTC; None when absent or not one."""
    if not isinstance(text, str):
        return None
    try:
        dt = datetime.fromisoformat(text)
        return to_utc_naive(dt) if dt.tzinfo is not None else None
    except (ValueError, OverflowError):
        return None


def _task_rows(node: str, service: str, payload: dict[str, Any]) -> list[dict[str, Any]]:
    """`collector_tasks` rows of a resinfo payload: its resources with a schedule or a run history."""
    rows: dict[str, dict[str, Any]] = {}
    resources = payload.get("resources")
    for res in resources if isinstance(resources, list) else ():
        if not isinstance(res, dict) or not isinstance(res.get("rid"), str) or not res["rid"].startswith("task#"):
            continue
        recent = [r for r in res.get("recent") or () if isinstance(r, dict)] if isinstance(
            res.get("recent"), list) else []
        runs = res.get("runs") if isinstance(res.get("runs"), dict) else {}
        runs = {str(k): v for k, v in runs.items() if isinstance(v, int) and not isinstance(v, bool)}
        last = recent[0] if recent else {}
        exit_code = last.get("exit_code")
        state = last.get("state") if isinstance(last.get("state"), str) else None
        rows[res["rid"]] = {
            "node": node, "service": service, "rid": res["rid"],
            "schedule": res.get("schedule") if isinstance(res.get("schedule"), str) else None,
            "command": res.get("command") if isinstance(res.get("command"), str) else None,
            "user": res.get("user") if isinstance(res.get("user"), str) else None,
            "failing": state == "failed",
            "state": state,
            "exit_code": exit_code if isinstance(exit_code, int) and not isinstance(exit_code, bool) else None,
            "ended_at": _aware(last.get("ended_at")) or _aware(res.get("last_run")),
            "last_success_at": _aware(res.get("last_success")),
            "runs": json.dumps(runs, separators=(",", ":")),
            "recent": json.dumps(recent[:20], separators=(",", ":"), ensure_ascii=False),
        }
    return list(rows.values())


#: ingest's statements, built once: constructing SQLAlchemy statements per push cost more than running them.
#: The ON CONFLICT forms are the same on SQLite (3.35+) and PostgreSQL.
_INSERT_PUSH = text(
    "INSERT INTO pushes (uuid, node, service, kind, created_at, received_at, payload, size) "
    "VALUES (:uuid, :node, :service, :kind, :created_at, :received_at, :payload, :size) "
    "ON CONFLICT (uuid) DO NOTHING RETURNING id"
).bindparams(bindparam("created_at", type_=DateTime), bindparam("received_at", type_=DateTime))
_MAKE_CURRENT = text(
    "INSERT INTO collector_current (service, node, kind, push_id, created_at, received_at, instance, frozen) "
    "VALUES (:service, :node, :kind, :push_id, :created_at, :received_at, :instance, :frozen) "
    "ON CONFLICT (service, node, kind) DO UPDATE SET push_id = excluded.push_id, "
    "created_at = excluded.created_at, received_at = excluded.received_at, instance = excluded.instance, "
    "frozen = excluded.frozen "
    "WHERE excluded.created_at > collector_current.created_at OR (excluded.created_at = "
    "collector_current.created_at AND excluded.push_id > collector_current.push_id) RETURNING push_id"
).bindparams(bindparam("created_at", type_=DateTime), bindparam("received_at", type_=DateTime),
             bindparam("frozen", type_=Boolean))
_NODE_STATE = text(
    "INSERT INTO collector_node_state (node, last_push_at, pushes, stored_bytes) "
    "VALUES (:node, :last_push_at, :pushes, :stored_bytes) "
    "ON CONFLICT (node) DO UPDATE SET last_push_at = excluded.last_push_at, "
    "pushes = collector_node_state.pushes + excluded.pushes, "
    "stored_bytes = collector_node_state.stored_bytes + excluded.stored_bytes"
).bindparams(bindparam("last_push_at", type_=DateTime))


def _make_current(conn: Connection, push_id: int, node: str, service: str, kind: str,
                  created_at: datetime, received_at: datetime, payload: dict[str, Any]) -> bool:
    """Make push `push_id` current for its key unless a push with a greater `created_at` is; True when it is now."""
    made = conn.execute(_MAKE_CURRENT, {
        "service": service, "node": node, "kind": kind, "push_id": push_id, "created_at": created_at,
        "received_at": received_at, **_status_fields(kind, payload)}).first()
    if made is None:
        return False
    if kind == "resinfo" and service:
        t = collector_tasks.c
        conn.execute(delete(collector_tasks).where(t.node == node, t.service == service))
        rows = _task_rows(node, service, payload)
        if rows:
            conn.execute(insert(collector_tasks), rows)
    return True


def store_pushes(engine: Engine, batch: list[Push], limits: Limits) -> list[bool | str | Exception]:
    """Store a batch of pushes in one transaction (group commit); per push:

    True when inserted, False when that uuid was already stored (the unique
    index decides, so racing deliveries of one uuid still store it once),
    "token" when its token no longer belongs to its node, or QuotaExceeded.
    """
    results: list[bool | str | Exception] = []
    now = to_utc_naive(utcnow())
    added: dict[str, list[int]] = {}
    with engine.begin() as conn:
        digests = {p.token_sha256 for p in batch}
        owners = dict(conn.execute(select(collector_nodes.c.token_sha256, collector_nodes.c.name)
                                   .where(collector_nodes.c.token_sha256.in_(digests))).all())
        ns = collector_node_state.c
        used = dict(conn.execute(select(ns.node, ns.stored_bytes).where(ns.node.in_({p.node for p in batch}))).all())
        for p in batch:
            if owners.get(p.token_sha256) != p.node:
                results.append("token")
                continue
            size = p.size
            if used.get(p.node, 0) + size > limits.quota_bytes:
                results.append(QuotaExceeded(
                    f"node '{p.node}' would store more than its quota of {limits.quota_bytes} bytes"))
                continue
            created = to_utc_naive(p.created_at)
            push_id = conn.execute(_INSERT_PUSH, {
                "uuid": p.uuid, "node": p.node, "service": p.service, "kind": p.kind, "created_at": created,
                "received_at": now, "payload": p.payload_text, "size": size}).scalar()
            if push_id is None:
                results.append(False)
                continue
            _make_current(conn, push_id, p.node, p.service or "", p.kind, created, now, p.payload)
            used[p.node] = used.get(p.node, 0) + size
            counts = added.setdefault(p.node, [0, 0])
            counts[0] += 1
            counts[1] += size
            results.append(True)
        if added:
            conn.execute(_NODE_STATE, [{"node": node, "last_push_at": now, "pushes": n, "stored_bytes": size}
                                       for node, (n, size) in added.items()])
    return results


def rebuild_derived(engine: Engine, chunk: int = 2000) -> None:
    """Fill the derived tables from every stored push (a database from before they existed)."""
    with engine.begin() as conn:
        for table in DERIVED:
            conn.execute(delete(metadata.tables[table]))
        p = pushes.c
        rank = func.row_number().over(partition_by=(p.service, p.node, p.kind),
                                      order_by=(p.created_at.desc(), p.id.desc())).label("rank")
        ranked = select(p.id, rank).subquery()
        ids = [r.id for r in conn.execute(select(ranked.c.id).where(ranked.c.rank == 1))]
        for start in range(0, len(ids), chunk):
            for row in conn.execute(select(pushes).where(p.id.in_(ids[start:start + chunk]))):
                _make_current(conn, row.id, row.node, row.service or "", row.kind, row.created_at,
                              row.received_at, json.loads(row.payload))
        for row in conn.execute(select(p.node, func.max(p.received_at), func.count(),
                                       func.coalesce(func.sum(_size(p)), 0)).group_by(p.node)):
            conn.execute(insert(collector_node_state).values(
                node=row[0], last_push_at=row[1], pushes=row[2], stored_bytes=int(row[3])))


def prune(engine: Engine, keep: timedelta, batch: int = 1000) -> int:
    """Delete the pushes received more than `keep` ago that are no longer current, `batch` rows per transaction.

    Short transactions: ingest waits at most one batch for the write lock.
    """
    p, c = pushes.c, collector_current.c
    cutoff = to_utc_naive(utcnow() - keep)
    deleted = 0
    while True:
        with engine.begin() as conn:
            doomed = select(p.id).where(p.received_at < cutoff, ~select(c.push_id).where(
                c.push_id == p.id).exists()).order_by(p.id).limit(batch).subquery()
            sizes = conn.execute(select(p.node, func.count(), func.coalesce(func.sum(_size(p)), 0))
                                 .where(p.id.in_(select(doomed.c.id))).group_by(p.node)).all()
            if not sizes:
                return deleted
            conn.execute(delete(pushes).where(p.id.in_(select(doomed.c.id))))
            ns = collector_node_state.c
            for node, count, size in sizes:
                conn.execute(update(collector_node_state).where(ns.node == node).values(
                    pushes=ns.pushes - count, stored_bytes=ns.stored_bytes - int(size)))
                deleted += count


# --- reads ---------------------------------------------------------------------------------------------

#: the JSON keys of a push document, payload last (it is spliced in as stored text)
def _head(row: Any) -> dict[str, Any]:
    return {
        "uuid": row.uuid, "service": row.service, "node": row.node, "kind": row.kind,
        "created_at": from_utc_naive(row.created_at).isoformat(),
        "received_at": from_utc_naive(row.received_at).isoformat(),
    }


@dataclass
class Plan:
    """One page chosen from sizes alone: push ids in order, their payload bytes, the next cursor (None: last)."""

    ids: list[int]
    nbytes: int
    next_after: str | None


def _plan(conn: Connection, keyed: Any, limit: int, max_bytes: int, cursor: Any) -> Plan:
    """Rows of `keyed` (id, size, cursor columns) up to `limit` rows and `max_bytes` of payload (always one).

    Only sizes are read here, so payloads beyond the page are never loaded.
    """
    chosen, total = [], 0
    for row in conn.execute(keyed.limit(limit + 1)):
        if len(chosen) == limit or (chosen and total + row.size > max_bytes):
            return Plan([r.id for r in chosen], total, cursor(chosen[-1]))
        chosen.append(row)
        total += row.size
    return Plan([r.id for r in chosen], total, None)


def load(engine: Engine, ids: list[int]) -> list[bytes]:
    """A JSON array of the push documents of `ids`, in that order, as parts to join once.

    The stored payload text is spliced in as it is, read as UTF-8 bytes: no
    decoding, parsing or re-encoding of a payload that may be 15 MB.
    """
    p = pushes.c
    with reading(engine) as conn:
        raw = (func.convert_to(p.payload, "UTF8") if conn.dialect.name == "postgresql"
               else func.cast(p.payload, LargeBinary))
        by_id = {r.id: r for r in conn.execute(select(p.id, p.uuid, p.service, p.node, p.kind, p.created_at,
                                                      p.received_at, raw.label("payload")).where(p.id.in_(ids)))}
    parts = [b"["]
    for push_id in ids:
        row = by_id.pop(push_id, None)
        if row is None:  # pruned since the plan
            continue
        head = json.dumps(_head(row), separators=(",", ":"), ensure_ascii=False)
        parts += [b"," if len(parts) > 1 else b"", head[:-1].encode(), b',"payload":', bytes(row.payload), b"}"]
    parts.append(b"]")
    return parts


def _size(p: Any) -> Any:
    return func.coalesce(p.size, func.length(p.payload))


def latest_plan(engine: Engine, *, after: list[str] | None, limit: int, max_bytes: int) -> Plan:
    """One page of `GET /v1/services`: current pushes sorted by (service, node, kind), after key `after`.

    The cursor is the JSON list [service, node, kind] of the page's last element.
    """
    c, p = collector_current.c, pushes.c
    query = (select(c.push_id.label("id"), c.service, c.node, c.kind, _size(p).label("size"))
             .join(pushes, p.id == c.push_id).order_by(c.service, c.node, c.kind))
    if after is not None:
        query = query.where(tuple_(c.service, c.node, c.kind) > tuple_(*after))
    with reading(engine) as conn:
        return _plan(conn, query, limit, max_bytes,
                     lambda r: json.dumps([r.service, r.node, r.kind], separators=(",", ":")))


def pushes_plan(engine: Engine, *, service: str | None, node: str | None, kind: str | None,
                after: int | None, limit: int, max_bytes: int) -> Plan:
    """One page of `GET /v1/pushes`: stored pushes matching the filters in order of arrival, ids after `after`."""
    p = pushes.c
    query = select(p.id, _size(p).label("size")).order_by(p.id)
    for column, value in ((p.service, service), (p.node, node), (p.kind, kind)):
        if value is not None:
            query = query.where(column == value)
    if after is not None:
        query = query.where(p.id > after)
    with reading(engine) as conn:
        return _plan(conn, query, limit, max_bytes, lambda r: str(r.id))


# --- the fleet page and metrics ------------------------------------------------------------------------

def fleet(engine: Engine, *, limit: int) -> dict[str, Any]:
    """What the fleet page shows: counts, then nodes (stalest first), instances and tasks (failing first).

    Each list holds at most `limit` rows, so the page costs the same for any fleet size.
    """
    c, t, ns = collector_current.c, collector_tasks.c, collector_node_state.c
    with reading(engine) as conn:
        counts = {
            "nodes": conn.execute(select(func.count()).select_from(collector_node_state)).scalar(),
            "instances": conn.execute(select(func.count()).where(c.kind == "status", c.service != "")).scalar(),
            "tasks": conn.execute(select(func.count()).select_from(collector_tasks)).scalar(),
            "failing": conn.execute(select(func.count()).where(t.failing.is_(True))).scalar(),
        }
        nodes = conn.execute(select(collector_node_state).order_by(ns.last_push_at, ns.node).limit(limit)).all()
        instances = conn.execute(select(c.service, c.node, c.instance, c.frozen, c.created_at).where(
            c.kind == "status", c.service != "").order_by(c.service, c.node).limit(limit)).all()
        tasks = conn.execute(select(t.node, t.service, t.rid, t.state, t.exit_code, t.ended_at).order_by(
            t.failing.desc(), t.ended_at.desc(), t.service, t.node, t.rid).limit(limit)).all()
    return {"counts": counts, "nodes": nodes, "instances": instances, "tasks": tasks}


def service_view(engine: Engine, service: str, *, limit: int) -> dict[str, Any] | None:
    """One service: its instances per node and its tasks with schedule and recent runs; None when unknown.

    At most `limit` instances and tasks (failing first), with their counts.
    """
    c, t = collector_current.c, collector_tasks.c
    mine = (c.service == service, c.kind == "status")
    with reading(engine) as conn:
        counts = {"instances": conn.execute(select(func.count()).where(*mine)).scalar(),
                  "tasks": conn.execute(select(func.count()).where(t.service == service)).scalar()}
        instances = conn.execute(select(c.node, c.instance, c.frozen, c.created_at).where(*mine)
                                 .order_by(c.node).limit(limit)).all()
        tasks = conn.execute(select(collector_tasks).where(t.service == service).order_by(
            t.failing.desc(), t.rid, t.node).limit(limit)).all()
        known = instances or tasks or conn.execute(select(c.node).where(c.service == service).limit(1)).first()
    if not known:
        return None
    return {"counts": counts, "instances": instances,
            "tasks": [(row, json.loads(row.runs), json.loads(row.recent)) for row in tasks]}


def metric_rows(engine: Engine) -> tuple[list[Any], list[Any]]:
    """Node states and every task row (node, service, rid, exit_code, ended_at, last_success_at, runs)."""
    t = collector_tasks.c
    with reading(engine) as conn:
        nodes = conn.execute(select(collector_node_state).order_by(collector_node_state.c.node)).all()
        tasks = conn.execute(select(t.node, t.service, t.rid, t.exit_code, t.ended_at, t.last_success_at,
                                    t.runs).order_by(t.node, t.service, t.rid)).all()
    return nodes, tasks
