"""An entry's verdict at `now` (SPEC 8.2), read-only: shared by the tick and `print schedule`.

The first verdict that applies wins, in the order of SPEC 8.2.  Nothing here
writes: the tick claims the `due` ones, `print schedule` only shows them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select

from omtasks import statemachine as sm
from omtasks.db.schema import last_runs, runs
from omtasks.runner.due import JitterKey, plan
from omtasks.runner.entries import Entry
from omtasks.runner.requires import sync_refusal, unmet
from omtasks.timeutil import from_utc_naive

# Verdicts under which an expiring cron slot is dropped, not recorded as missed (SPEC 8.2).
HOLDING = frozenset({"requires_unmet", "max_parallel", "awaiting_confirmation", "disabled",
                     "service_disabled", "config_invalid"})
LIVE_STATES = (sm.SCHEDULED, sm.ELIGIBLE, sm.AWAITING, sm.RUNNING)
#: how the note of an entry whose marker is ahead of now starts (a clock that was ahead, SPEC 8.3)
FUTURE_MARKER = "last run recorded in the future"
# a marker this far ahead is a clock problem worth a note; less is the skew of nodes or a --now test tick
FUTURE_SLACK = timedelta(minutes=5)


@dataclass
class Verdict:
    verdict: str
    note: str | None
    next_run: datetime | None = None
    scheduled_for: datetime | None = None
    slot: datetime | None = None
    run_id: int | None = None


@dataclass
class Marker:
    last_attempt_at: datetime | None = None
    last_success_at: datetime | None = None


class ServiceState:
    """What the evaluation of one service's entries reads, loaded in two queries."""

    def __init__(self, conn, service: str, node: str) -> None:
        self.conn = conn
        lr = last_runs.c
        self.markers = {
            (r.action, r.rid, r.scope): Marker(from_utc_naive(r.last_attempt_at), from_utc_naive(r.last_success_at))
            for r in conn.execute(select(last_runs).where(lr.service == service, lr.scope.in_(("", node))))
        }
        c = runs.c
        self.live = conn.execute(
            select(c.id, c.action, c.rid, c.scope, c.node, c.state, c.trigger, c.scheduled_for, c.pid)
            .where(c.service == service, c.state.in_(LIVE_STATES))
        ).fetchall()

    def marker(self, entry: Entry) -> Marker:
        return self.markers.get((entry.action, entry.rid or "", entry.scope), Marker())

    def live_runs(self, entry: Entry) -> list:
        return [r for r in self.live
                if r.action == entry.action and (r.rid or "") == (entry.rid or "") and r.scope == entry.scope]


def evaluate(ctx, entry: Entry, service_cfg, state: ServiceState, *, boot: datetime | None,
             first_seen: datetime | None = None, previous: str | None = None,
             previous_next: datetime | None = None) -> Verdict:
    """The verdict of `entry` at ctx.now; `previous` is the verdict stored by the last tick.

    `previous_next` is the next run that tick stored: when it is already past a
    late cron slot, that tick saw the slot come and go (it was dropped under a
    holding verdict), so the slot is not `missed` now either (SPEC 8.2).
    """
    if entry.static_verdict is not None:
        return Verdict(entry.static_verdict, entry.static_reason)
    if ctx.tz_mismatch and entry.scope == "":
        return Verdict("config_invalid", ctx.tz_mismatch)
    live = state.live_runs(entry)
    for r in live:
        if r.state == sm.AWAITING:
            exp = _expiry(state.conn, r.id)
            until = exp.astimezone(ctx.tz).strftime("%H:%M:%S") if exp else "?"
            return Verdict("awaiting_confirmation", f"awaiting confirmation (run {r.id}, until {until})",
                           next_run=from_utc_naive(r.scheduled_for), run_id=r.id)
    if entry.task is not None:
        why = unmet(state.conn, service_cfg, entry.task, ctx.node)
        if why is not None:
            return Verdict("requires_unmet", why)
    elif entry.action == "sync_update":
        why = sync_refusal(state.conn, service_cfg, ctx.node)
        if why is not None:
            return Verdict("requires_unmet", why)
    marker = state.marker(entry)
    p = plan(entry.schedule, ctx.now, marker.last_attempt_at, grace=ctx.grace, boot=boot,
             who=JitterKey(ctx.node, entry.service, entry.jitter_key), first_seen=first_seen)
    busy = [r for r in live if r.state in (sm.ELIGIBLE, sm.RUNNING)]
    for r in busy:
        if r.state == sm.ELIGIBLE and r.pid is None and r.node == ctx.node and r.trigger != "manual":
            cap = ctx.node_config.max_running
            return Verdict("node_cap", f"waiting for a launch slot ({cap}/{cap} running)",
                           next_run=from_utc_naive(r.scheduled_for), run_id=r.id)
    if len(busy) >= entry.max_parallel:
        nxt = p.next_run if p.verdict != "due" else p.scheduled_for
        return Verdict("max_parallel", f"max parallel runs reached ({len(busy)}/{entry.max_parallel})",
                       next_run=nxt)
    if p.verdict == "missed":
        dropped = previous != "missed" and previous_next is not None and p.slot is not None \
            and previous_next > p.slot
        if previous in HOLDING or dropped:
            return Verdict("not_due", None, next_run=p.next_run)
        return Verdict("missed", p.reason, next_run=p.next_run, slot=p.slot)
    if p.verdict == "due":
        return Verdict("due", None, scheduled_for=p.scheduled_for)
    last = marker.last_attempt_at
    if last is not None and last > ctx.now + FUTURE_SLACK:
        shown = last.astimezone(ctx.tz).strftime("%Y-%m-%d %H:%M:%S")
        return Verdict("not_due", f"{FUTURE_MARKER} ({shown}; was the clock ahead?): the next run waits for it",
                       next_run=p.next_run)
    return Verdict("not_due", None, next_run=p.next_run)


def _expiry(conn, run_id: int) -> datetime | None:
    from omtasks.db.schema import confirmations

    c = confirmations.c
    return from_utc_naive(conn.execute(select(c.expires_at).where(c.run_id == run_id)).scalar())
