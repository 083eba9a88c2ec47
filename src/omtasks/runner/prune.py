"""Retention (SPEC 3.7, SHOULD): once a day, forget history older than `runner.retention`.

Ages count from `scheduled_for`, an instant of the same clock as `now` (SPEC 8.3).
Terminal runs of tasks and syncs are kept `runner.retention` (default 400 days),
those of the other built-in actions 30 days; their events and confirmation rows
go with them (ON DELETE CASCADE).  Decisions, compliance results and sent outbox
rows older than the retention go too.  Markers are never pruned.  The per-run
log files of the pruned runs are deleted after the transaction commits (a file
left behind by a crash is only disk space, a row without its file is not lost).
"""

from __future__ import annotations

import os
from datetime import timedelta

from sqlalchemy import and_, delete, or_, select

from omtasks import statemachine as sm
from omtasks.db.schema import compliance_results, outbox, runs, schedule_decisions
from omtasks.paths import ensure_dir, run_log_path
from omtasks.timeutil import to_utc_naive

BUILTIN_RETENTION = timedelta(days=30)
EVERY = timedelta(days=1)
CHUNK = 500  # ids per DELETE, well under the bound-parameter limits of SQLite and PostgreSQL


def due(ctx) -> bool:
    """True at most once a day per node (a stamp file's mtime, in `now` time)."""
    stamp = ensure_dir(ctx.lock_dir) / f"prune.{ctx.node}.stamp"
    now = ctx.now.timestamp()
    try:
        if now - stamp.stat().st_mtime < EVERY.total_seconds():
            return False
    except FileNotFoundError:
        stamp.touch(mode=0o640)
    os.utime(stamp, (now, now))
    return True


def prune(ctx) -> int:
    """Delete what is older than the retention; returns the number of runs removed."""
    keep = to_utc_naive(ctx.now - timedelta(seconds=ctx.node_config.retention))
    keep_builtin = to_utc_naive(ctx.now - BUILTIN_RETENTION)
    c = runs.c
    old = and_(c.state.in_(sm.TERMINAL),
               or_(c.scheduled_for < keep,
                   and_(c.action.not_in(("run", "sync_update")), c.scheduled_for < keep_builtin)))
    with ctx.engine.begin() as conn:
        gone = [(r.id, r.service) for r in conn.execute(select(c.id, c.service).where(old))]
        ids = [i for i, _ in gone]
        removed = sum(conn.execute(delete(runs).where(c.id.in_(ids[at:at + CHUNK]))).rowcount
                      for at in range(0, len(ids), CHUNK))
        conn.execute(delete(schedule_decisions).where(schedule_decisions.c.at < keep))
        conn.execute(delete(compliance_results).where(compliance_results.c.at < keep))
        conn.execute(delete(outbox).where(outbox.c.sent_at.is_not(None), outbox.c.sent_at < keep_builtin))
    for run_id, service in gone:
        run_log_path(service, run_id, ctx.root).unlink(missing_ok=True)
    return removed
