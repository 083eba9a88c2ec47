"""One supervisor per node: it starts and watches this node's claimed runs (SPEC 8.5).

A new interpreter per run (importing SQLAlchemy and the config parser) cost
hundreds of milliseconds of CPU; a supervisor pays that once and then carries
out each run in a thread of its own, through the worker's per-run code
(`worker.exec_runs`), so gate, pipeline, process groups, impersonation,
timeouts and output capture are the same as for `om runner exec`.

`max_running` caps concurrency, not throughput: whenever a run ends the
supervisor takes the next eligible runs at once (oldest first, tasks before
built-ins), without waiting for a tick.  Taking a run is a compare-and-set of
its `pid` (NULL -> the supervisor's pid) in one transaction per batch, so the
reaper sees the supervisor behind every run it took: killed at any point, it
leaves runs that the next tick reaps as `lost`, and `eligible -> running`
stays a compare-and-set, so no slot runs twice.

In daemon mode the daemon holds a supervisor in-process.  In tick mode the tick
hands its runs to a detached `om runner supervise` (started only when none is
alive: the holder of `supervisor.<node>.lock`), which exits once idle.
"""

from __future__ import annotations

import copy
import os
import signal
import sys
import threading
import traceback

from sqlalchemy import select, update

from omtasks import statemachine as sm
from omtasks.db.schema import runs
from omtasks.locking import flock_wait
from omtasks.paths import ensure_dir
from omtasks.runner import procinfo
from omtasks.runner.logs import runner_log
from omtasks.timeutil import parse_time_option, read_now

POLL = 1.0  # seconds between looks at the database when nothing woke the supervisor
LOCK_WAIT = 1.0  # how long a starting supervisor waits for the lock before deferring to the holder


def lock_path(ctx):
    return ensure_dir(ctx.lock_dir) / f"supervisor.{ctx.node}.lock"


def now_path(ctx):
    """Where a tick given --now leaves its instant for the supervisor's next runs (tests, SPEC 8.3)."""
    return ensure_dir(ctx.lock_dir) / f"supervisor.{ctx.node}.now"


def try_lock(ctx, wait: float = 0.0) -> int | None:
    """The supervisor lock's fd when this process got it (within `wait` seconds), else None.

    A supervisor waits a little: a tick probing the lock holds it for an instant.
    """
    fd = os.open(lock_path(ctx), os.O_RDWR | os.O_CREAT, 0o640)
    if not flock_wait(fd, wait, 0.02):
        os.close(fd)
        return None
    return fd


def pending_ids(conn, node: str, limit: int | None = None) -> list[int]:
    """Eligible scheduled runs of `node` that no process took yet, in launch order."""
    c = runs.c
    q = (select(c.id).where(c.node == node, c.state == sm.ELIGIBLE, c.pid.is_(None), c.trigger != "manual")
         .order_by((c.action != "run"), c.scheduled_for, c.id))
    if limit is not None:
        q = q.limit(limit)
    return [r.id for r in conn.execute(q)]


def busy_count(conn, node: str) -> int:
    """Scheduled runs of `node` that hold a launch slot (taken or running)."""
    c = runs.c
    return len(conn.execute(select(c.id).where(
        c.node == node, c.trigger != "manual", c.pid.is_not(None),
        c.state.in_((sm.RUNNING, sm.ELIGIBLE)))).fetchall())


class FreshConfigs(dict):
    """Parsed service configs that count as cached only while their file is unchanged."""

    def __init__(self, ctx) -> None:
        super().__init__()
        self.ctx = ctx
        self.stamps: dict[str, tuple | None] = {}
        self.guard = threading.Lock()

    def stamp(self, name: str) -> tuple | None:
        from omtasks.paths import service_conf_path

        try:
            st = service_conf_path(name, self.ctx.root).stat()
        except OSError:
            return None
        return st.st_mtime_ns, st.st_size, st.st_ino

    def __contains__(self, name: object) -> bool:
        with self.guard:
            return super().__contains__(name) and self.stamps.get(name) == self.stamp(name)

    def __setitem__(self, name: str, cfg) -> None:
        with self.guard:
            self.stamps[name] = self.stamp(name)
            super().__setitem__(name, cfg)


class Supervisor:
    """Takes this node's eligible runs up to `max_running` and runs each in a thread."""

    def __init__(self, ctx) -> None:
        self.ctx = ctx
        self.wake = threading.Event()
        self.stop = threading.Event()
        self.active: dict[int, threading.Thread] = {}
        self.guard = threading.Lock()
        self.pid, self.proc_start, self.boot_id = procinfo.self_identity()
        self.configs = FreshConfigs(ctx)

    def fill(self) -> int:
        """Take and start as many eligible runs as free slots allow; how many were started."""
        if self.stop.is_set():
            return 0
        ctx = self.ctx
        cap = int(ctx.node_config.max_running)
        if self.running() >= cap:
            return 0  # no slot can be free: spare the database a write transaction
        c = runs.c
        with ctx.engine.begin() as conn:
            free = cap - busy_count(conn, ctx.node)
            if free <= 0:
                return 0
            ids = pending_ids(conn, ctx.node, free)
            taken = []
            for run_id in ids:
                hit = conn.execute(update(runs).where(c.id == run_id, c.state == sm.ELIGIBLE, c.pid.is_(None))
                                   .values(pid=self.pid, proc_start=self.proc_start, boot_id=self.boot_id))
                if hit.rowcount:
                    taken.append(run_id)
        for run_id in taken:
            thread = threading.Thread(target=self._run, args=(run_id,), name=f"run-{run_id}", daemon=True)
            with self.guard:
                self.active[run_id] = thread
            thread.start()
        return len(taken)

    def run_context(self):
        """The run's own context: the shared engine and node.conf, its own `now` (SPEC 8.3 clocks)."""
        ctx = copy.copy(self.ctx)
        if ctx.explicit_now:
            try:
                ctx.now = parse_time_option(now_path(ctx).read_text().strip(), ctx.tz)
            except (OSError, ValueError):
                pass  # keep the instant this supervisor was started with
        else:
            ctx.now = read_now(ctx.tz)
        return ctx

    def _run(self, run_id: int) -> None:
        from omtasks.runner.worker import exec_runs

        try:
            exec_runs(self.run_context(), [run_id], self.configs)
        except Exception:  # one run's failure must not end the others
            runner_log(self.ctx, f"supervisor: run {run_id} failed:\n{traceback.format_exc()}")
        finally:
            with self.guard:
                self.active.pop(run_id, None)
            self.wake.set()

    def running(self) -> int:
        with self.guard:
            return len(self.active)

    def cycle(self, timeout: float) -> int:
        """Refill, then sleep until a run ends, a tick pokes, or `timeout`; runs started."""
        started = 0
        try:
            started = self.fill()
        except Exception as exc:  # a busy database: try again at the next wake-up
            runner_log(self.ctx, f"supervisor: cannot take runs: {exc}")
        self.wake.wait(timeout=timeout)
        self.wake.clear()
        return started

    def drain(self) -> None:
        """Stop taking runs and wait for the ones in flight (SIGTERM)."""
        self.stop.set()
        while True:
            with self.guard:
                threads = list(self.active.values())
            if not threads:
                return
            for t in threads:
                t.join()


def has_pending(ctx) -> bool:
    with ctx.engine.begin() as conn:
        return bool(pending_ids(conn, ctx.node, 1))


def serve(ctx) -> int:
    """`om runner supervise`: run this node's eligible runs until there are none left, then exit."""
    fd = try_lock(ctx, LOCK_WAIT)
    if fd is None:
        return 0  # another supervisor is alive for this node
    sup = Supervisor(ctx)
    signal.signal(signal.SIGUSR1, lambda _s, _f: sup.wake.set())
    signal.signal(signal.SIGTERM, lambda _s, _f: (sup.stop.set(), sup.wake.set()))
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        while True:
            started = sup.cycle(POLL)
            if sup.stop.is_set():
                sup.drain()
                return 0
            if started or sup.running():
                continue
            # idle: let go of the lock first, then look once more, so that a run a
            # tick handed over meanwhile is either seen here or finds no supervisor
            os.close(fd)
            fd = None
            if not has_pending(ctx):
                return 0
            fd = try_lock(ctx, LOCK_WAIT)
            if fd is None:
                return 0  # a new supervisor took over
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
    finally:
        if fd is not None:
            os.close(fd)


def hand_over(ctx) -> int | None:
    """Make sure a supervisor will see this node's eligible runs: poke the live one or start one; its pid."""
    if ctx.explicit_now:
        now_path(ctx).write_text(ctx.now.isoformat())
    fd = try_lock(ctx)
    if fd is None:
        try:
            pid = int(lock_path(ctx).read_text().split()[0])
            os.kill(pid, signal.SIGUSR1)
            return pid
        except (OSError, ValueError, IndexError):
            return None  # it is exiting: it looks for pending runs once more after letting go
    os.close(fd)
    return spawn_supervisor(ctx)


def spawn_supervisor(ctx) -> int | None:
    """Start `om runner supervise` detached; its pid, or None."""
    from omtasks.runner.execute import CommandError, spawn_detached

    env = dict(os.environ)
    env.update(OM_ROOT=str(ctx.root), OM_NODENAME=ctx.node)
    if ctx.explicit_now:
        env["OM_NOW"] = ctx.now.isoformat()
    argv = [sys.executable, "-m", "omtasks", "runner", "supervise"]
    try:
        return spawn_detached(argv, log_path=str(ensure_dir(ctx.log_dir) / "runner.log"), env=env)
    except CommandError as exc:
        runner_log(ctx, f"cannot start the supervisor: {exc}")
        return None


def live_pid(ctx) -> int | None:
    """The pid of this node's live supervisor, or None (the lock is free)."""
    fd = try_lock(ctx)
    if fd is not None:
        os.close(fd)
        return None
    try:
        return int(lock_path(ctx).read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
