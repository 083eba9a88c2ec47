"""`om runner daemon`: the tick in a loop, and the node's supervisor in-process (SPEC 8.8).

Each pass reads the clock afresh and then sleeps until the earliest stored
next run or confirmation expiry (to the millisecond, at most 60 s), so a run
starts within tens of milliseconds of its due second.  The daemon's own
supervisor (runner/supervisor.py) starts the claimed runs in threads and
refills a slot as soon as a run ends.  SIGHUP cuts the sleep short (service
configs and node.conf are re-read by every pass); SIGTERM and SIGINT let the
current pass finish, stop starting runs, wait for the runs in flight, then
exit 0.  A failed pass is logged to runner.log and to stderr (the journal
under systemd).
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from datetime import datetime

from sqlalchemy import func, select

from omtasks.db.schema import confirmations, schedule_entries
from omtasks.runner.context import Context
from omtasks.runner.logs import RUNNER_LOGGER, runner_log
from omtasks.timeutil import from_utc_naive, read_now

MARGIN = 0.002  # seconds past the due instant, so that the pass reads a clock at or after it

MAX_SLEEP = 60.0


def next_wakeup(ctx) -> float:
    """Seconds until the earliest instant the node waits for (just past it), at most 60."""
    with ctx.engine.begin() as conn:
        se = schedule_entries.c
        cands = [conn.execute(select(func.min(se.next_run_at)).where(se.node == ctx.node)).scalar()]
        c = confirmations.c
        cands.append(conn.execute(select(func.min(c.expires_at)).where(c.state == "pending")).scalar())
    now = datetime.now(ctx.tz)
    waits = [(from_utc_naive(t) - now).total_seconds() for t in cands if t is not None]
    soon = min([w for w in waits if w > 0], default=MAX_SLEEP)
    return min(MAX_SLEEP, soon + MARGIN)


def run_daemon() -> int:
    from omtasks.runner.supervisor import POLL, LOCK_WAIT, Supervisor, try_lock
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
    lock = try_lock(ctx, LOCK_WAIT)  # a detached supervisor still busy keeps it until it is idle
    if lock is not None:
        os.ftruncate(lock, 0)
        os.write(lock, f"{os.getpid()}\n".encode())
    sup = Supervisor(ctx)
    signal.signal(signal.SIGUSR1, lambda _s, _f: sup.wake.set())

    def supervise() -> None:
        while not sup.stop.is_set():
            sup.cycle(POLL)

    thread = threading.Thread(target=supervise, name="supervisor", daemon=True)
    thread.start()
    try:
        while not stop.is_set():
            ctx.now = read_now(ctx.tz)
            try:
                run_tick(ctx, supervisor=sup)
                delay = next_wakeup(ctx)
            except Exception as exc:  # a failing pass is logged and retried, never fatal
                runner_log(ctx, f"daemon: tick failed: {exc}", logging.ERROR)
                delay = MAX_SLEEP
            wake.wait(timeout=delay)
            wake.clear()
            ctx.__dict__.pop("node_config", None)  # node.conf is re-read by every pass
    finally:
        sup.stop.set()
        sup.wake.set()
        thread.join()
        sup.drain()
        runner_log(ctx, "daemon stopped")
        if lock is not None:
            os.close(lock)
        ctx.close()
    return 0
