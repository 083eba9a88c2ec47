"""Is the runner alive?  The node heartbeat, the last tick's record and the stale-tick warning.

The heartbeat is `nodes.last_seen_at`, the evaluation instant of the node's
last tick (written first thing in every pass).  Each pass also leaves
`var/run/tick.<node>.json` (its real start and duration), so `om node print
status` can say how long ticks take.  A node whose last tick is older than
twice the tick interval (cron's minute, the daemon's longest sleep) has no
working runner: `print schedule` then says so instead of promising that the
next tick claims the due entries.
"""

from __future__ import annotations

import json
import os
from datetime import datetime
from typing import Any

from sqlalchemy import select

from omtasks.db.schema import nodes
from omtasks.timeutil import from_utc_naive

#: seconds between ticks: the system cron's minute, and `om runner daemon`'s longest sleep
TICK_INTERVAL = 60


def record_tick(ctx: Any, started: datetime, duration: float) -> None:
    """Write `var/run/tick.<node>.json` atomically: the real start of the pass and its duration."""
    from omtasks.paths import ensure_dir

    path = ensure_dir(ctx.lock_dir) / f"tick.{ctx.node}.json"
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps({"started_at": started.isoformat(), "duration": round(duration, 3),
                                   "now": ctx.now.isoformat()}))
        os.replace(tmp, path)
    except OSError:
        pass  # liveness bookkeeping never fails a tick


def read_tick(ctx: Any) -> dict[str, Any] | None:
    """The last pass's record, None when there is none (or it cannot be read)."""
    try:
        return json.loads((ctx.lock_dir / f"tick.{ctx.node}.json").read_text())
    except (OSError, ValueError):
        return None


def heartbeat(conn: Any, node: str) -> datetime | None:
    """The evaluation instant of `node`'s last tick (aware), None when it never ticked."""
    return from_utc_naive(conn.execute(select(nodes.c.last_seen_at).where(nodes.c.name == node)).scalar())


def _ago(seconds: float) -> str:
    minutes = int(seconds // 60)
    if minutes < 120:
        return f"{minutes} min ago"
    hours = minutes // 60
    return f"{hours} h ago" if hours < 48 else f"{hours // 24} days ago"


def stale_tick(ctx: Any, conn: Any) -> str | None:
    """A warning when this node's last tick is older than twice TICK_INTERVAL (or never happened); else None."""
    last = heartbeat(conn, ctx.node)
    if last is None:
        return f"no runner tick recorded on {ctx.node} yet: due entries wait for one (see 'om runner install --print')"
    age = (ctx.now - last).total_seconds()
    if age <= 2 * TICK_INTERVAL:
        return None
    return (f"the last runner tick on {ctx.node} was at {last.astimezone(ctx.tz):%Y-%m-%d %H:%M:%S} "
            f"({_ago(age)}, more than twice the {TICK_INTERVAL}s interval): is cron or 'om runner daemon' "
            "running? due entries wait for the next tick")


def node_status(ctx: Any) -> dict[str, Any]:
    """The document of `om node print status`."""
    from sqlalchemy import func

    from omtasks import statemachine as sm
    from omtasks.db.connect import reading
    from omtasks.db.lifecycle import resolve_url
    from omtasks.db.schema import runs
    from omtasks.runner.outbox import pending_counts
    from omtasks.timeutil import iso, read_now

    real_now = read_now(ctx.tz) if not ctx.explicit_now else ctx.now
    with reading(ctx.engine) as conn:
        last = heartbeat(conn, ctx.node)
        c = runs.c
        running = conn.execute(select(func.count()).select_from(runs).where(
            c.node == ctx.node, c.state == sm.RUNNING)).scalar_one()
        eligible = conn.execute(select(func.count()).select_from(runs).where(
            c.node == ctx.node, c.state == sm.ELIGIBLE)).scalar_one()
        backlog, last_error = pending_counts(conn, ctx.node)
        warning = stale_tick(ctx, conn)
    tick = read_tick(ctx)
    return {
        "node": ctx.node,
        "last_tick": iso(last, ctx.tz),
        "last_tick_duration": tick["duration"] if tick else None,
        "last_tick_started_at": tick["started_at"] if tick else None,
        "lag": None if last is None else round((real_now - last).total_seconds(), 3),
        "workers_running": running, "runs_eligible": eligible,
        "outbox": {"pending": backlog, "last_error": last_error},
        "database": resolve_url(None, ctx.root).render_as_string(hide_password=True),
        "max_running": int(ctx.node_config.max_running),
        "warning": warning,
    }


def render_node_status(doc: dict[str, Any]) -> str:
    duration = doc["last_tick_duration"]
    lag = "-" if doc["lag"] is None else f"{doc['lag']:.0f}s behind the clock"
    lines = [
        f"node:        {doc['node']}",
        f"last tick:   {doc['last_tick'] or 'never'}"
        + (f" (took {duration:.3f}s)" if duration is not None else ""),
        f"lag:         {lag}",
        f"workers:     {doc['workers_running']} running, {doc['runs_eligible']} eligible (max_running "
        f"{doc['max_running']})",
        f"outbox:      {doc['outbox']['pending']} pending"
        + (f", last error: {doc['outbox']['last_error']}" if doc["outbox"]["last_error"] else ""),
        f"database:    {doc['database']}",
    ]
    if doc["warning"]:
        lines.append(f"warning:     {doc['warning']}")
    return "\n".join(lines)

