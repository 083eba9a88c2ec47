"""The node side of pushes (SPEC 9, 8.3 step 8): queue rows, deliver them to the collector.

A push is queued as an `outbox` row in the transaction that produced it, so
it exists exactly when its cause does.  Delivery sends due rows oldest first
and marks them sent only on a 2xx answer: sending is at least once, and the
collector stores each uuid once.  Rows are never deleted or dropped; a refused
or failed send is retried after 1, 2, 4, ... minutes, at most 60 apart.

Delivery never delays the tick beyond its budget (30 s of wall clock, node.conf
`collector.budget`): it runs under a non-blocking per-node lock (a second
delivery returns at once), through one pooled httpx client (runner/http.py:
5 s connect and 10 s read timeouts cut to what is left of the budget, and a
watchdog that ends a request in flight when the budget runs out), and
the first failure to reach the collector (no HTTP answer) ends the delivery:
the other due rows are retried on the same backoff instead of each waiting
for its own timeout.  Every decision instant is `ctx.now` (SPEC 8.3 "Clocks");
only the budget is measured on the real clock.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import Connection, func, insert, or_, select, update

from omtasks.collector import KINDS
from omtasks.db.connect import reading
from omtasks.db.files import create_file, ensure_dir
from omtasks.db.schema import outbox
from omtasks.runner.logs import runner_log
from omtasks.timeutil import from_utc_naive, to_utc_naive

MAX_BACKOFF_MINUTES = 60
#: due rows read per query; a delivery rarely gets through more within its budget
BATCH = 100


@dataclass
class DeliveryReport:
    """What one delivery did; `skipped` says why it did nothing (`no collector`, `locked`)."""

    sent: int = 0
    failed: int = 0  # rows whose attempt failed or was refused: attempts + 1, retried later
    left: int = 0  # due rows not tried because the budget ran out
    skipped: str | None = None


class SendFailed(Exception):
    """A send that got no usable HTTP answer: the collector is unreachable for this delivery."""


def backoff(attempts: int) -> timedelta:
    """Delay before the next try after `attempts` failures: 1, 2, 4, ... minutes, at most 60."""
    return timedelta(minutes=min(2 ** min(attempts - 1, 6), MAX_BACKOFF_MINUTES))


def queue(conn: Connection, ctx: Any, kind: str, service: str | None, payload: dict[str, Any]) -> str:
    """Queue a push in the caller's transaction and return its uuid; due at once.

    An unknown kind is a programming error: the collector would refuse it forever.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown push kind {kind!r}")
    push_uuid = str(uuid.uuid4())
    now = to_utc_naive(ctx.now)
    conn.execute(insert(outbox).values(
        uuid=push_uuid, node=ctx.node, kind=kind, service=service,
        payload=json.dumps(payload, separators=(",", ":"), ensure_ascii=False),
        created_at=now, attempts=0, next_attempt_at=now))
    return push_uuid


def pending_counts(conn: Connection, node: str, service: str | None = None) -> tuple[int, str | None]:
    """Unsent rows of `node` (of one service, or all when None) and the last_error of the newest that has one."""
    o = outbox.c
    cond = [o.node == node, o.sent_at.is_(None)]
    if service is not None:
        cond.append(o.service == service)
    count = conn.execute(select(func.count()).select_from(outbox).where(*cond)).scalar_one()
    last_error = conn.execute(select(o.last_error).where(*cond, o.last_error.is_not(None))
                              .order_by(o.id.desc()).limit(1)).scalar()
    return count, last_error


def _one_line(text: str, limit: int = 200) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


class _Target:
    """The parsed collector URL; ValueError for anything but http(s)://host[:port][/prefix]."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https"):
            raise ValueError("scheme must be http or https")
        if not parts.hostname:
            raise ValueError("no host")
        _ = parts.port  # ValueError when out of range or not a number
        self.host = parts.hostname
        self.url = url.rstrip("/") + "/v1/push"


def _send(client: Any, target: _Target, token: str, body: bytes) -> tuple[int, str]:
    """POST one push; (status, one-line detail) for any HTTP answer, SendFailed when there is none."""
    import httpx

    from omtasks.runner.http import BudgetExhausted, describe

    try:
        resp = client.post(target.url, content=body, headers={
            "Authorization": f"Bearer {token}", "Content-Type": "application/json"})
        text = resp.content[: 64 * 1024].decode("utf-8", "replace")
    except (BudgetExhausted, httpx.HTTPError) as exc:
        raise SendFailed(_one_line(describe(exc, target.host))) from None
    try:
        detail = json.loads(text).get("error") or ""
    except (ValueError, AttributeError):
        detail = text
    return resp.status_code, _one_line(str(detail))


def _due_where(ctx: Any, kinds: frozenset[str] = KINDS) -> tuple[Any, ...]:
    """This node's unsent rows of `kinds` whose next attempt has come (a row without one is due).

    The collector's kinds by default; notifications (runner/notify.py) share the table with their own kinds.
    """
    o = outbox.c
    return (o.node == ctx.node, o.sent_at.is_(None), o.kind.in_(sorted(kinds)),
            or_(o.next_attempt_at.is_(None), o.next_attempt_at <= to_utc_naive(ctx.now)))


def due_rows(conn: Connection, ctx: Any, limit: int, kinds: frozenset[str] = KINDS) -> list[Any]:
    """Up to `limit` due rows of `kinds`, oldest first."""
    o = outbox.c
    return conn.execute(select(outbox).where(*_due_where(ctx, kinds)).order_by(o.created_at, o.id)
                        .limit(limit)).all()


def record_failure(conn: Connection, ctx: Any, row: Any, reason: str) -> datetime:
    """Record a failed try of `row`; returns its next attempt (aware)."""
    attempts = row.attempts + 1
    next_at = ctx.now + backoff(attempts)
    conn.execute(update(outbox).where(outbox.c.id == row.id).values(
        attempts=attempts, last_error=reason, next_attempt_at=to_utc_naive(next_at)))
    return next_at


def _defer_due(ctx: Any, reason: str) -> int:
    """Give every due row the failure `reason` (the collector cannot be reached now); their count."""
    count = 0
    with ctx.engine.begin() as conn:
        while rows := due_rows(conn, ctx, BATCH):
            for row in rows:
                record_failure(conn, ctx, row, reason)
            count += len(rows)
    return count


def _body(ctx: Any, row: Any) -> bytes:
    return json.dumps({
        "uuid": row.uuid, "node": ctx.node, "service": row.service, "kind": row.kind,
        "created_at": from_utc_naive(row.created_at).isoformat(), "payload": json.loads(row.payload),
    }, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def deliver(ctx: Any, *, budget: float | None = None) -> DeliveryReport:
    """Send this node's due rows to the collector, oldest first, for at most `budget` seconds.

    Does nothing without `collector.url` and `collector.token`, and returns at
    once when another process of this node is delivering.
    """
    config = ctx.node_config
    if not (config.collector_url and config.collector_token):
        return DeliveryReport(skipped="no collector")
    ensure_dir(ctx.lock_dir)
    lock_path = ctx.lock_dir / f"outbox.{ctx.node}.lock"
    create_file(lock_path)
    fd = os.open(lock_path, os.O_RDWR)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return DeliveryReport(skipped="locked")
        return _deliver(ctx, config.collector_url, config.collector_token,
                        float(config.collector_budget) if budget is None else budget)
    finally:
        os.close(fd)


def _deliver(ctx: Any, url: str, token: str, budget: float) -> DeliveryReport:
    report = DeliveryReport()
    try:
        target = _Target(url)
    except ValueError as exc:
        report.failed = _defer_due(ctx, _one_line(f"bad collector url: {exc}"))
        if report.failed:
            runner_log(ctx, _one_line(f"outbox: bad collector.url '{url}': {exc}; {report.failed} push(es) kept"))
        return report
    from omtasks.runner.http import DeliveryClient

    deadline = time.monotonic() + budget
    config = ctx.node_config
    with DeliveryClient(deadline, budget, config.collector_ca or config.collector_verify) as client:
        return _deliver_rows(ctx, client, target, url, token, deadline, report)


def _deliver_rows(ctx: Any, client: Any, target: _Target, url: str, token: str, deadline: float,
                  report: DeliveryReport) -> DeliveryReport:
    while True:
        with reading(ctx.engine) as conn:
            rows = due_rows(conn, ctx, BATCH)
        if not rows:
            return report
        for row in rows:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                with reading(ctx.engine) as conn:
                    report.left = conn.execute(
                        select(func.count()).select_from(outbox).where(*_due_where(ctx))).scalar_one()
                return report
            try:
                status, detail = _send(client, target, token, _body(ctx, row))
            except SendFailed as exc:
                with ctx.engine.begin() as conn:
                    next_at = record_failure(conn, ctx, row, str(exc))
                others = _defer_due(ctx, str(exc))
                report.failed += 1 + others
                more = f"; {others} more push(es) deferred" if others else ""
                runner_log(ctx, f"outbox: push {row.uuid} ({row.kind} {row.service or '-'}) to {url} failed: "
                                f"{exc}{more}; next attempt {next_at.isoformat()}")
                return report
            if 200 <= status < 300:
                with ctx.engine.begin() as conn:
                    conn.execute(update(outbox).where(outbox.c.id == row.id).values(sent_at=to_utc_naive(ctx.now)))
                report.sent += 1
                continue
            reason = f"HTTP {status}: {detail}" if detail else f"HTTP {status}"
            with ctx.engine.begin() as conn:
                next_at = record_failure(conn, ctx, row, reason)
            report.failed += 1
            runner_log(ctx, f"outbox: push {row.uuid} ({row.kind} {row.service or '-'}) refused: "
                            f"{reason}; next attempt {next_at.isoformat()}")
