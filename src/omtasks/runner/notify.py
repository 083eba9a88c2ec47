"""Failure notifications of node.conf `[notify]`: a webhook POST and a mail, queued and retried.

A notification is an `outbox` row (kind `notify.webhook` or `notify.mail`)
inserted by the observer in the transaction of the state change, so it exists
exactly when its cause does.  The tick delivers them after the collector
pushes, under its own non-blocking per-node lock and the same wall-clock
budget: due rows oldest first, marked sent in their own transaction right
after a 2xx answer (or the SMTP server's acceptance), else retried after 1,
2, 4, ... minutes, at most 60.  Rows are never dropped.  Delivery is at least
once: each document carries the row's uuid (`id`; the mail's Message-ID) for
a receiver that must not act twice.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, insert, update

from omtasks.db.connect import reading
from omtasks.db.files import create_file, ensure_dir
from omtasks.db.schema import outbox
from omtasks.runner.logs import runner_log
from omtasks.runner.outbox import due_rows, record_failure
from omtasks.timeutil import from_utc_naive, iso, to_utc_naive

WEBHOOK = "notify.webhook"
MAIL = "notify.mail"
KINDS = frozenset({WEBHOOK, MAIL})
#: lines of the output's end a notification carries
OUTPUT_LINES = 20
SMTP_TIMEOUT = 10.0
BATCH = 100


@dataclass
class NotifyReport:
    sent: int = 0
    failed: int = 0
    skipped: str | None = None


def _last_lines(text: str | None) -> str | None:
    if not text:
        return None
    return "\n".join(text.rstrip("\n").splitlines()[-OUTPUT_LINES:])


def _queue(conn: Connection, ctx: Any, service: str, doc: dict[str, Any]) -> None:
    config = ctx.node_config
    now = to_utc_naive(ctx.now)
    targets = []
    if config.notify_webhook:
        targets.append((WEBHOOK, config.notify_webhook))
    if config.notify_mail:
        targets.append((MAIL, list(config.notify_mail)))
    for kind, to in targets:
        row_uuid = str(uuid.uuid4())
        payload = {"to": to, "event": {"id": row_uuid, **doc}}
        conn.execute(insert(outbox).values(
            uuid=row_uuid, node=ctx.node, kind=kind, service=service,
            payload=json.dumps(payload, separators=(",", ":"), ensure_ascii=False),
            created_at=now, attempts=0, next_attempt_at=now))


def queue_run(conn: Connection, ctx: Any, row: Any, event: str) -> None:
    """Queue the notifications of a run that ended (`row` as updated), in the caller's transaction."""
    tz = ctx.tz
    _queue(conn, ctx, row.service, {
        "event": event, "service": row.service, "node": row.node, "rid": row.rid, "action": row.action,
        "run_id": row.id, "trigger": row.trigger, "state": row.state, "exit_code": row.exit_code,
        "reason": row.reason, "scheduled_for": iso(from_utc_naive(row.scheduled_for), tz),
        "finished_at": iso(from_utc_naive(row.ended_at), tz), "output": _last_lines(row.output_tail)})


def queue_missed(conn: Connection, ctx: Any, *, service: str, node: str, rid: str | None, slot: datetime,
                 reason: str) -> None:
    """Queue the notifications of a missed cron slot, in the caller's transaction."""
    _queue(conn, ctx, service, {
        "event": "missed", "service": service, "node": node, "rid": rid, "action": "run", "run_id": None,
        "trigger": "scheduled", "state": "missed", "exit_code": None, "reason": reason,
        "scheduled_for": iso(slot, ctx.tz), "finished_at": None, "output": None})


class _Unreachable(Exception):
    """No answer from the webhook or SMTP server: the other rows of that kind wait for the next delivery."""


def _post(client: Any, url: str, event: dict[str, Any]) -> tuple[bool, str]:
    import httpx

    from omtasks.runner.http import BudgetExhausted, describe

    try:
        resp = client.post(url, content=json.dumps(event, ensure_ascii=False).encode("utf-8"),
                           headers={"Content-Type": "application/json", "Idempotency-Key": event["id"]})
    except (BudgetExhausted, httpx.HTTPError) as exc:
        raise _Unreachable(describe(exc, httpx.URL(url).host)) from None
    return 200 <= resp.status_code < 300, f"HTTP {resp.status_code}"


def _mail_text(ctx: Any, event: dict[str, Any], to: list[str]) -> Any:
    from email.message import EmailMessage
    from email.utils import formatdate

    msg = EmailMessage()
    what = event["rid"] or event["action"]
    msg["Subject"] = f"om: {event['service']} {what} {event['event']} on {event['node']}"
    msg["From"] = ctx.node_config.notify_from or f"om@{ctx.node}"
    msg["To"] = ", ".join(to)
    msg["Date"] = formatdate(localtime=True)
    msg["Message-ID"] = f"<{event['id']}@om.{ctx.node}>"
    keys = ("event", "service", "node", "rid", "run_id", "trigger", "state", "exit_code", "reason",
            "scheduled_for", "finished_at")
    body = "\n".join(f"{k}: {'-' if event.get(k) is None else event[k]}" for k in keys)
    if event.get("output"):
        body += "\n\noutput (last lines):\n" + event["output"]
    msg.set_content(body + "\n")
    return msg


def _send_mail(ctx: Any, event: dict[str, Any], to: list[str], remaining: float) -> tuple[bool, str]:
    import smtplib

    host, port = ctx.node_config.notify_smtp
    try:
        with smtplib.SMTP(host, port, timeout=max(0.1, min(SMTP_TIMEOUT, remaining))) as smtp:
            smtp.send_message(_mail_text(ctx, event, to))
    except smtplib.SMTPResponseException as exc:
        return False, f"SMTP {exc.smtp_code}: {exc.smtp_error.decode('utf-8', 'replace')}"
    except smtplib.SMTPRecipientsRefused as exc:
        return False, f"SMTP: recipients refused: {', '.join(exc.recipients)}"
    except (OSError, smtplib.SMTPException) as exc:
        raise _Unreachable(f"SMTP {host}:{port}: {getattr(exc, 'strerror', None) or exc}") from None
    return True, "accepted"


def deliver(ctx: Any, *, budget: float | None = None) -> NotifyReport:
    """Send this node's due notifications, oldest first, within the delivery budget (`collector.budget`)."""
    ensure_dir(ctx.lock_dir)
    lock_path = ctx.lock_dir / f"notify.{ctx.node}.lock"
    create_file(lock_path)
    fd = os.open(lock_path, os.O_RDWR)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return NotifyReport(skipped="locked")
        seconds = float(ctx.node_config.collector_budget) if budget is None else budget
        return _deliver(ctx, time.monotonic() + seconds, seconds)
    finally:
        os.close(fd)


def _deliver(ctx: Any, deadline: float, budget: float) -> NotifyReport:
    from omtasks.runner.http import DeliveryClient

    report = NotifyReport()
    kinds = set(KINDS)
    with reading(ctx.engine) as conn:
        if not due_rows(conn, ctx, 1, KINDS):
            return report  # the common case: no client, no thread
    with DeliveryClient(deadline, budget) as client:
        while kinds:
            with reading(ctx.engine) as conn:
                rows = due_rows(conn, ctx, BATCH, frozenset(kinds))
            if not rows:
                return report
            for row in rows:
                if row.kind not in kinds:
                    continue
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return report
                payload = json.loads(row.payload)
                try:
                    if row.kind == WEBHOOK:
                        ok, detail = _post(client, payload["to"], payload["event"])
                    else:
                        ok, detail = _send_mail(ctx, payload["event"], payload["to"], remaining)
                except _Unreachable as exc:
                    ok, detail = False, str(exc)
                    kinds.discard(row.kind)  # the others of this kind wait for the next delivery
                with ctx.engine.begin() as conn:
                    if ok:
                        conn.execute(update(outbox).where(outbox.c.id == row.id)
                                     .values(sent_at=to_utc_naive(ctx.now)))
                        report.sent += 1
                        continue
                    next_at = record_failure(conn, ctx, row, detail)
                report.failed += 1
                event = payload["event"]
                runner_log(ctx, f"notify: {row.kind[7:]} {row.uuid} ({event['event']} {event['service']} "
                                f"{event['rid'] or event['action']}) failed: {detail}; "
                                f"next attempt {next_at.isoformat()}")
    return report
