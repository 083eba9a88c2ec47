"""`om runner daemon`: the tick in a loop, with second accuracy (SPEC 8.8).

Each pass reads the clock afresh and then sleeps until the earliest stored
next run, confirmation expiry or outbox retry, at most 60 s.  SIGHUP cuts the
sleep short (service configs and node.conf are re-read by every pass); SIGTERM and SIGINT
let the current pass finish, then exit 0, leaving workers running.  A failed
pass is logged to runner.log and to stderr (the journal under systemd).
"""

from __future__ import annotations

import logging
import signal
import sys
import threading

from sqlalchemy import func, select

from omtasks.db.schema import confirmations, schedule_entries
from omtasks.runner.context import Context
from omtasks.runner.logs import RUNNER_LOGGER, runner_log
from omtasks.timeutil import from_utc_naive, read_now

MAX_SLEEP = 60.0


def next_wakeup(ctx) -> float:
    """Seconds until the earliest instant the node waits for, between 1 and 60."""
    with ctx.engine.begin() as conn:
        se = schedule_entries.c
        cands = [conn.execute(select(func.min(se.next_run_at)).where(se.node == ctx.node)).scalar()]
        c = confirmations.c
        cands.append(conn.execute(select(func.min(c.expires_at)).where(c.state == "pending")).scalar())
    now = read_now(ctx.tz)
    waits = [(from_utc_naive(t) - now).total_seconds() for t in cands if t is not None]
    soon = min([w for w in waits if w > 0], default=MAX_SLEEP)
    return max(1.0, min(MAX_SLEEP, soon))


def run_daemon() -> int:
    from omtasks.runner.tick import run_tick

    stop = threading.Event()
    wake = threading.Event()

    def on_term(_signum, _frame) -> None:
        stop.set()
        wake.set()

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    signal.signal(signal.SIGHUP, lambda _s, _f: wake.set())
    # errors also go to stderr: under systemd, the journal shows why passes fail
    to_stderr = logging.StreamHandler(sys.stderr)
    to_stderr.setLevel(logging.ERROR)
    to_stderr.setFormatter(logging.Formatter("om runner daemon: %(message)s"))
    logging.getLogger(RUNNER_LOGGER).addHandler(to_stderr)
    ctx = Context.create()
    runner_log(ctx, "daemon started")
    try:
        while not stop.is_set():
            ctx.now = read_now(ctx.tz)
            try:
                run_tick(ctx)
                delay = next_wakeup(ctx)
            except Exception as exc:  # a failing pass is logged and retried, never fatal
                runner_log(ctx, f"daemon: tick failed: {exc}", logging.ERROR)
                delay = MAX_SLEEP
            wake.wait(timeout=delay)
            wake.clear()
            ctx.__dict__.pop("node_config", None)  # node.conf is re-read by every pass
    finally:
        runner_log(ctx, "daemon stopped")
        ctx.close()
    return 0
