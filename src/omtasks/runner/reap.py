"""Reap runs whose process is gone, here and on dead nodes (SPEC 8.6); expire confirmations (8.7).

After a tick, no run of this node is `scheduled`, `eligible` or `running`
without a live process behind it, apart from eligible runs waiting for a
launch slot.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from omtasks import statemachine as sm
from omtasks.db.runs import LostRace, transition
from omtasks.db.schema import confirmations, nodes, runs
from omtasks.runner.procinfo import is_alive
from omtasks.timeutil import to_utc_naive


def _move(ctx, conn, run_id: int, frm: str, to: str, reason: str) -> bool:
    try:
        with conn.begin_nested():
            transition(conn, run_id, frm, to, reason=reason, actor=f"reaper@{ctx.node}", now=ctx.now)
        return True
    except LostRace:
        return False


def reap_local(ctx, conn) -> int:
    """This node's runs whose worker or `om` process vanished."""
    c = runs.c
    rows = conn.execute(
        select(c.id, c.state, c.trigger, c.pid, c.proc_start, c.boot_id).where(
            c.node == ctx.node,
            c.pid.is_not(None),
            c.state.in_((sm.SCHEDULED, sm.ELIGIBLE, sm.AWAITING, sm.RUNNING)),
        )
    ).fetchall()
    count = 0
    for r in rows:
        manual = r.trigger == "manual"
        if r.state in (sm.SCHEDULED, sm.AWAITING) and not manual:
            continue  # a pending scheduled run has no process of its own yet
        if is_alive(r.pid, r.proc_start, r.boot_id):
            continue
        if r.state == sm.RUNNING:
            count += _move(ctx, conn, r.id, r.state, sm.FAILED, "lost")
        elif manual:
            count += _move(ctx, conn, r.id, r.state, sm.CANCELLED, "lost before start")
        else:
            count += _move(ctx, conn, r.id, r.state, sm.FAILED, "lost")
    return count


def dead_nodes(ctx, conn) -> list[str]:
    limit = to_utc_naive(ctx.now - timedelta(seconds=ctx.node_config.node_dead_after))
    n = nodes.c
    return [r.name for r in conn.execute(select(n.name).where(n.name != ctx.node, n.last_seen_at < limit))]


def reap_dead(ctx, conn) -> int:
    """Runs of dead nodes, with no process check (SPEC 8.6)."""
    dead = dead_nodes(ctx, conn)
    if not dead:
        return 0
    limit = to_utc_naive(ctx.now - timedelta(seconds=ctx.node_config.node_dead_after))
    c = runs.c
    rows = conn.execute(
        select(c.id, c.state, c.pid, c.heartbeat_at).where(
            c.node.in_(dead),
            c.state.in_((sm.RUNNING, sm.AWAITING, sm.ELIGIBLE)),
        )
    ).fetchall()
    count = 0
    for r in rows:
        stale = r.heartbeat_at is None or r.heartbeat_at < limit
        if r.state == sm.AWAITING:
            count += _move(ctx, conn, r.id, r.state, sm.SKIPPED, "node dead")
        elif r.state == sm.ELIGIBLE and r.pid is None:
            count += _move(ctx, conn, r.id, r.state, sm.FAILED, "lost")
        elif stale:
            count += _move(ctx, conn, r.id, r.state, sm.FAILED, "lost")
    return count


def expire_confirmations(ctx, conn) -> int:
    """Pending confirmations past their expiry: run failed (`confirmation expired`), row expired."""
    c = confirmations.c
    rows = conn.execute(
        select(c.run_id).where(c.state == "pending", c.expires_at <= to_utc_naive(ctx.now))
    ).fetchall()
    return sum(_move(ctx, conn, r.run_id, sm.AWAITING, sm.FAILED, "confirmation expired") for r in rows)
