"""What happens when a run ends or a slot is missed: the outcome line and the notifications.

`db.runs` calls the observer inside the transaction that records the change,
so a notification is queued exactly when its cause commits (runner/notify.py
delivers it later, like the collector pushes), and every finished scheduled
run leaves one line in its service log whichever process ended it (worker,
tick, reaper).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select

from omtasks import statemachine as sm
from omtasks.db.schema import runs

_LEVELS = {sm.DONE: "INFO", sm.FAILED: "ERROR"}


def event_of(state: str, reason: str | None) -> str | None:
    """The `[notify] on` event of a run ending in `state` with `reason`; None for skipped/cancelled."""
    if state == sm.DONE:
        return "done"
    if state != sm.FAILED:
        return None
    if reason == "lost":
        return "lost"
    if reason == "confirmation expired":
        return "expired"
    return "failed"


def outcome_line(row: Any) -> str:
    """`outcome: state=failed exit_code=3 duration=1.2s reason=exit code 3`, the line of a finished run."""
    duration = f"{(row.ended_at - row.started_at).total_seconds():.1f}s" if row.started_at and row.ended_at else "-"
    code = "-" if row.exit_code is None else str(row.exit_code)
    where = f" node={row.node}" if row.node else ""
    return (f"outcome: {row.action} state={row.state} exit_code={code} duration={duration}{where}"
            + (f" reason={row.reason}" if row.reason and row.state != sm.DONE else ""))


class RunObserver:
    """Installed by the Context for its process (`db.runs.set_observer`)."""

    def __init__(self, ctx: Any) -> None:
        self.ctx = ctx

    def ended(self, conn: Connection, run_id: int, state: str, reason: str | None) -> None:
        config = self.ctx.node_config
        row = conn.execute(select(runs).where(runs.c.id == run_id)).first()
        if row is None:
            return
        if row.trigger != "manual":
            from omtasks.runner.logs import ServiceLog

            ServiceLog(self.ctx, row.service, terminal=False).line(
                row.rid, _LEVELS.get(row.state, "WARNING"), outcome_line(row), run_id)
        event = event_of(state, row.reason)
        if config.has_notify and event in config.notify_on:
            from omtasks.runner import notify

            notify.queue_run(conn, self.ctx, row, event)

    def missed(self, conn: Connection, *, service: str, node: str, rid: str | None, slot: datetime,
               reason: str) -> None:
        config = self.ctx.node_config
        if config.has_notify and "missed" in config.notify_on:
            from omtasks.runner import notify

            notify.queue_missed(conn, self.ctx, service=service, node=node, rid=rid, slot=slot, reason=reason)
