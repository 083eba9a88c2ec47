"""One pass of the runner (SPEC 8.3): lock, heartbeat, reload, reap, expire,
re-check, evaluate and claim, launch.

Cost grows with the due work, not with the number of entries: an entry whose
config, boot time (its `plan_key`) and marker (`plan_marker`) are unchanged and whose stored
next run is still ahead is not evaluated again, and its service file is not
even parsed.
"""

from __future__ import annotations

import os
import time
import traceback
from contextlib import contextmanager
from datetime import datetime, timedelta

from sqlalchemy import and_, delete, insert, not_, or_, select, update

from omtasks import __version__
from omtasks import statemachine as sm
from omtasks.db.connect import reading
from omtasks.db.markers import insert_ignore
from omtasks.db.runs import LostRace, claim, record_missed, transition
from omtasks.db.schema import (
    cluster,
    instances,
    last_runs,
    nodes,
    placements,
    runs,
    schedule_decisions,
    schedule_entries,
    services,
)
from omtasks.locking import flock_wait
from omtasks.paths import ensure_dir
from omtasks.runner import catalog as catalog_mod
from omtasks.runner import procinfo
from omtasks.runner.due import JitterKey, plan
from omtasks.runner.entries import Entry, service_entries
from omtasks.runner.evaluate import FUTURE_MARKER, ServiceState, Verdict, evaluate
from omtasks.runner.launch import spawn_worker
from omtasks.runner.logs import ServiceLog, runner_log
from omtasks.runner.reap import expire_confirmations, reap_dead, reap_local
from omtasks.runner.tick_errors import is_database_error, one_line
from omtasks.runner.worker import gate
from omtasks.timeutil import from_utc_naive, to_utc_naive, zone_name

LOCK_WAIT = 45.0
CLOCK_SLACK = 60  # seconds a tick may be behind the previous one before it is reported
BATCH = 20  # built-in runs one worker carries out in sequence (SPEC 8.5)
# Verdicts that only a config change can alter.
STATIC = frozenset({"unscheduled", "disabled", "service_disabled", "not_here", "config_invalid", "not_configured"})
# Verdicts that wait for a known instant.
TIMED = frozenset({"not_due", "missed", "due"})


@contextmanager
def tick_lock(ctx):
    """The per-node tick lock (SPEC 8.3 step 1); yields False when the wait ran out."""
    if os.environ.get("OM_TICK_LOCK") == "0":
        yield True
        return
    path = ensure_dir(ctx.lock_dir) / f"tick.{ctx.node}.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o640)
    try:
        yield flock_wait(fd, LOCK_WAIT, 0.2)
    finally:
        os.close(fd)


def heartbeat(ctx, conn) -> None:
    values = {"last_seen_at": to_utc_naive(ctx.now), "boot_time": to_utc_naive(procinfo.boot_time()),
              "boot_id": procinfo.boot_id(), "version": __version__}
    if not insert_ignore(conn, nodes, {"name": ctx.node, **values}):
        conn.execute(update(nodes).where(nodes.c.name == ctx.node).values(values))


def plan_suffix(boot: datetime | None) -> str:
    return f"|{boot.isoformat() if boot else '-'}"


class Tick:
    def __init__(self, ctx, *, verbose: bool = False) -> None:
        self.ctx = ctx
        self.verbose = verbose
        self.boot = procinfo.boot_time()
        self.launched: list[int] = []
        self.clock_back = False

    def run(self) -> None:
        ctx = self.ctx
        engine = ctx.engine
        self.report_node_conf()
        with engine.begin() as conn:
            self.check_clock(conn)
            heartbeat(ctx, conn)
            self.check_cluster(conn)
            ctx.shared_nodes = catalog_mod.node_count(conn)
            self.catalog = catalog_mod.reload(ctx, conn)
            self.cancel_removed(conn)
            if ctx.shared_nodes > 1:
                self.warn_copies(conn)
        with engine.begin() as conn:
            reap_local(ctx, conn)
            reap_dead(ctx, conn)
            expire_confirmations(ctx, conn)
        self.recheck()
        self.converge()
        self.evaluate_all()
        self.launch()

    # -- step 1: node.conf, the cluster's zone and config copies --------------------------

    def report_node_conf(self) -> None:
        """Log bad node.conf values to runner.log once per version of the file (SPEC 3.7)."""
        ctx = self.ctx
        problems = ctx.node_problems
        stamp = ensure_dir(ctx.lock_dir) / f"nodeconf.{ctx.node}.reported"
        text = "\n".join(str(p) for p in problems)
        previous = stamp.read_text() if stamp.exists() else ""
        if text != previous:
            for p in problems:
                runner_log(ctx, str(p))
            stamp.write_text(text)

    def check_clock(self, conn) -> None:
        """A clock behind this node's previous tick: say so, and evaluate every entry this once.

        The entries a tick from the future ran keep a marker ahead of now; each
        then gets its note (and its runner.log line) instead of waiting quietly.
        """
        previous = conn.execute(select(nodes.c.last_seen_at).where(nodes.c.name == self.ctx.node)).scalar()
        previous = from_utc_naive(previous)
        if previous is not None and previous > self.ctx.now + timedelta(seconds=CLOCK_SLACK):
            self.clock_back = True
            shown = previous.astimezone(self.ctx.tz).strftime("%Y-%m-%d %H:%M:%S")
            runner_log(self.ctx, f"clock behind the previous tick of this node ({shown}): "
                                 "entries whose last run is in the future wait for it")

    def check_cluster(self, conn) -> None:
        """Record the cluster's zone (first node) and warn when this node's differs (SPEC 2)."""
        mine = zone_name(self.ctx.tz)
        row = conn.execute(select(cluster.c.tz).where(cluster.c.id == 1)).first()
        if row is None:
            insert_ignore(conn, cluster, {"id": 1, "tz": mine})
        elif row.tz != mine:
            self.ctx.tz_mismatch = f"time zone {mine} differs from the cluster's {row.tz}"
            runner_log(self.ctx, self.ctx.tz_mismatch)

    def warn_copies(self, conn) -> None:
        """Config copies that differ between nodes: a slot may then run twice (SPEC 2)."""
        sc = services.c
        sums: dict[str, set] = {}
        for r in conn.execute(select(sc.name, sc.checksum).where(sc.name.in_(list(self.catalog.files)))):
            sums.setdefault(r.name, set()).add(r.checksum)
        for name, values in sums.items():
            if len(values) > 1:
                runner_log(self.ctx, f"{name}: the config file differs between nodes; a slot may run twice")

    # -- step 5: converge failover instances ---------------------------------------------

    def converge(self) -> None:
        """Start or stop this node's instances towards their placement (SPEC 6.2)."""
        from omtasks.runner.instance import UP_LIKE, convergence_action, queue_convergence
        from omtasks.runner.reap import dead_nodes

        ctx = self.ctx
        with ctx.engine.begin() as conn:
            active = {r.service: r.active_node for r in conn.execute(select(placements))
                      if r.active_node is not None}
            states = {r.service: (r.state, r.frozen) for r in conn.execute(
                select(instances).where(instances.c.node == ctx.node))}
            dead = set(dead_nodes(ctx, conn))
            for name, node in active.items():
                if name not in self.catalog.files:
                    continue
                state, frozen = states.get(name, ("down", False))
                if frozen or (node != ctx.node and state not in UP_LIKE) or (node == ctx.node and state == "up"):
                    continue  # nothing to converge: skip parsing the file
                try:
                    action = convergence_action(conn, ctx, self.catalog.config(name), dead)
                    if action is not None:
                        queue_convergence(conn, ctx, self.catalog.config(name), action)
                except Exception:
                    runner_log(ctx, f"{name}: convergence failed:\n{traceback.format_exc()}")

    # -- step 2/4: removed services and pending runs ---------------------------------

    def cancel_removed(self, conn) -> None:
        if not self.catalog.removed:
            return
        c = runs.c
        rows = conn.execute(select(c.id, c.state).where(
            c.service.in_(self.catalog.removed), c.node == self.ctx.node,
            c.state.in_((sm.SCHEDULED, sm.ELIGIBLE, sm.AWAITING)))).fetchall()
        for r in rows:
            self._move(conn, r.id, r.state, sm.CANCELLED, "service deleted")
        conn.execute(delete(schedule_entries).where(schedule_entries.c.service.in_(self.catalog.removed),
                                                    schedule_entries.c.node == self.ctx.node))

    def _move(self, conn, run_id: int, frm: str, to: str, reason: str) -> None:
        try:
            with conn.begin_nested():
                transition(conn, run_id, frm, to, reason=reason, actor=f"runner@{self.ctx.node}", now=self.ctx.now)
        except LostRace:
            pass

    def recheck(self) -> None:
        """This node's pending scheduled runs: task gone, disabled or invalid, or requires unmet."""
        ctx = self.ctx
        c = runs.c
        pending = (c.node == ctx.node, c.trigger != "manual", c.action == "run",
                   c.state.in_((sm.SCHEDULED, sm.ELIGIBLE, sm.AWAITING)))
        self.prefetch_probes(pending)
        with ctx.engine.begin() as conn:
            rows = conn.execute(select(runs).where(*pending)).fetchall()
            for r in rows:
                if r.service not in self.catalog.files:
                    stop = (sm.CANCELLED, "service deleted")
                elif r.state == sm.AWAITING and not self.catalog.config(r.service).valid:
                    continue  # SPEC 12: a whole-service error keeps pending confirmations (they still expire)
                else:
                    stop = gate(ctx, conn, r, self.catalog.config(r.service), live_checks=False)
                if stop is not None:
                    self._move(conn, r.id, r.state, *stop)

    def prefetch_probes(self, pending) -> None:
        """Container/fs states the pending runs' requirements name, probed before the re-check transaction."""
        from omtasks.runner.container import prefetch

        with reading(self.ctx.engine) as conn:
            rows = conn.execute(select(runs.c.service, runs.c.rid).where(*pending)).fetchall()
        for r in rows:
            if r.service in self.catalog.files:
                cfg = self.catalog.config(r.service)
                task = cfg.tasks.get(r.rid)
                if task is not None and any(q.target in cfg.ignored for q in task.run_requires):
                    prefetch(cfg, [task])

    # -- step 6: evaluate and claim ----------------------------------------------------

    def evaluate_all(self) -> None:
        ctx = self.ctx
        se = schedule_entries.c
        with reading(ctx.engine) as conn:
            restless = self.restless(conn)
            stored: dict[str, dict] = {}
            names = set(restless) | self.catalog.changed
            if self.clock_back:
                names |= set(self.catalog.files)
            for row in conn.execute(select(schedule_entries).where(se.node == ctx.node, se.service.in_(names))):
                stored.setdefault(row.service, {})[(row.action, row.rid)] = row
            known = {r.service for r in conn.execute(select(se.service).where(se.node == ctx.node).distinct())}
        for name in self.catalog.files:
            if name not in names and name in known:
                continue
            try:
                self.evaluate_service(name, stored.get(name, {}))
            except Exception as exc:
                if is_database_error(exc):  # transient: the next tick tries again
                    runner_log(ctx, f"{name}: evaluation failed, service skipped this tick: {one_line(exc)}")
                    continue
                # one service's bug or hostile value never stops the others: it is config_invalid
                runner_log(ctx, f"{name}: config invalid: evaluation failed: {one_line(exc)}")
                self.invalidate(name, stored.get(name, {}), f"evaluation failed: {one_line(exc)}")

    def restless(self, conn) -> set[str]:
        """Services with an entry whose stored verdict may no longer hold (one query, SPEC 14).

        An entry is quiet when it was planned from the current config and boot
        time (`plan_key`) and the current marker (`plan_marker`), and its verdict
        is static, or waits for a next run that has not come.
        """
        se, sv, lr = schedule_entries.c, services.c, last_runs.c
        same_marker = or_(and_(lr.last_attempt_at.is_(None), se.plan_marker.is_(None)),
                          lr.last_attempt_at == se.plan_marker)
        waiting = and_(se.verdict.in_(TIMED), or_(se.next_run_at.is_(None), se.next_run_at > to_utc_naive(self.ctx.now)),
                       same_marker)
        quiet = and_(se.plan_key == sv.checksum + plan_suffix(self.boot), or_(se.verdict.in_(STATIC), waiting))
        q = (select(se.service).distinct()
             .select_from(schedule_entries.join(services, and_(sv.name == se.service, sv.node == se.node))
                          .outerjoin(last_runs, and_(lr.service == se.service, lr.action == se.action,
                                                     lr.rid == se.rid, lr.scope == se.scope)))
             .where(se.node == self.ctx.node, not_(quiet)))
        return {r.service for r in conn.execute(q)}

    def evaluate_service(self, name: str, rows: dict) -> None:
        ctx = self.ctx
        cfg = self.catalog.config(name)
        entries = service_entries(cfg, ctx.node, ctx.node_config)
        if not cfg.valid and not entries:
            if self.verbose and name in self.catalog.changed:
                print(f"{name}: config_invalid ({cfg.first_error()})")
            self.invalidate(name, rows, cfg.first_error())
            return
        results = []
        with reading(ctx.engine) as conn:
            state = ServiceState(conn, name, ctx.node)
            for entry in entries:
                row = rows.get((entry.action, entry.rid or ""))
                first_seen = from_utc_naive(row.created_at) if row is not None else ctx.now
                verdict = evaluate(ctx, entry, cfg, state, boot=self.boot, first_seen=first_seen,
                                   previous=row.verdict if row is not None else None,
                                   previous_next=from_utc_naive(row.next_run_at) if row is not None else None)
                results.append((entry, row, verdict, state.marker(entry).last_attempt_at))
        stored = []
        for entry, row, verdict, marker in results:
            if verdict.verdict == "due":
                verdict = self.claim(entry, cfg, verdict, marker)
            stored.append((entry, row, verdict, marker))
        seen = {(e.action, e.rid or "") for e in entries}
        with ctx.engine.begin() as conn:
            for entry, row, verdict, marker in stored:
                self.store(conn, entry, cfg, verdict, row, marker)
            for action, rid in (k for k in rows if k not in seen):
                conn.execute(delete(schedule_entries).where(
                    schedule_entries.c.service == name, schedule_entries.c.node == ctx.node,
                    schedule_entries.c.action == action, schedule_entries.c.rid == rid))

    def next_after_claim(self, entry: Entry, marker: datetime) -> datetime | None:
        """The entry's next run once its claimed run has moved the marker to `marker`."""
        ctx = self.ctx
        p = plan(entry.schedule, ctx.now, marker, grace=ctx.grace, boot=self.boot,
                 who=JitterKey(ctx.node, entry.service, entry.jitter_key))
        return ctx.now if p.verdict == "due" else p.next_run

    def claim(self, entry: Entry, cfg, verdict: Verdict, marker: datetime | None) -> Verdict:
        """Claim the due slot; `marker` is the one the verdict was computed from."""
        ctx = self.ctx
        task = entry.task
        timeout = task.confirmation_timeout if task is not None and task.confirmation else None
        result = claim(ctx.engine, service=entry.service, action=entry.action, rid=entry.rid, scope=entry.scope,
                       node=ctx.node, now=ctx.now, scheduled_for=verdict.scheduled_for,
                       max_parallel=entry.max_parallel, confirmation_timeout=timeout, actor=f"runner@{ctx.node}",
                       run_as=task.user if task is not None else None,
                       command=task.command if task is not None else None,
                       placement_epoch=self.epoch(entry.service), expected_marker=marker,
                       active_only=entry.active_only)
        if result.run_id is not None and result.state == sm.AWAITING:
            until = result.expires_at.astimezone(ctx.tz).strftime("%Y-%m-%d %H:%M:%S")
            ServiceLog(ctx, entry.service, terminal=False).line(
                entry.rid, "WARNING",
                f"run {result.run_id} awaits confirmation until {until}: "
                f"om {entry.service} confirm --run {result.run_id} --yes", result.run_id)
        if result.verdict == "due":
            return Verdict("due", f"run {result.run_id} claimed", scheduled_for=result.scheduled_for,
                           run_id=result.run_id)
        return Verdict(result.verdict, result.reason, run_id=result.run_id or result.winner_id)

    def epoch(self, service: str) -> int | None:
        from omtasks.runner.requires import placement

        with self.ctx.engine.begin() as conn:
            p = placement(conn, service)
        return p.epoch if p is not None else None

    def store(self, conn, entry: Entry, cfg, verdict: Verdict, row, marker: datetime | None) -> None:
        """Record the verdict; a decision row when it changed; the missed cron slot once."""
        ctx = self.ctx
        if verdict.verdict == "due" and verdict.scheduled_for is not None:
            # plan ahead as if the claimed run started (it moves the marker to its
            # scheduled_for): if it does, the entry stays quiet until its next run
            marker = verdict.scheduled_for
            verdict.next_run = self.next_after_claim(entry, marker)
        values = {
            "config_parameter": entry.config_parameter, "definition": entry.definition, "dialect": entry.dialect,
            "scope": entry.scope, "next_run_at": to_utc_naive(verdict.next_run) if verdict.next_run else None,
            "verdict": verdict.verdict, "reason": verdict.note, "evaluated_at": to_utc_naive(ctx.now),
            "plan_key": cfg.checksum + plan_suffix(self.boot), "plan_marker": to_utc_naive(marker) if marker else None,
        }
        if verdict.verdict == "missed" and verdict.slot is not None:
            record_missed(conn, service=entry.service, node=ctx.node, action=entry.action, rid=entry.rid,
                          scope=entry.scope, slot=verdict.slot, reason=verdict.note, now=ctx.now)
        elif row is None or row.verdict != verdict.verdict or row.reason != verdict.note:
            conn.execute(insert(schedule_decisions).values(
                at=to_utc_naive(ctx.now), service=entry.service, node=ctx.node, action=entry.action,
                rid=entry.rid or "", scope=entry.scope, verdict=verdict.verdict, reason=verdict.note,
                run_id=verdict.run_id))
        if verdict.note and verdict.note.startswith(FUTURE_MARKER) and (row is None or row.reason != verdict.note):
            runner_log(ctx, f"{entry.service} {entry.rid or entry.action}: {verdict.note}")
        if self.verbose and (row is None or row.verdict != verdict.verdict):
            print(f"{entry.service} {entry.rid or entry.action}: {verdict.verdict}"
                  + (f" ({verdict.note})" if verdict.note else ""))
        se = schedule_entries.c
        if row is None:
            conn.execute(insert(schedule_entries).values(
                service=entry.service, node=ctx.node, action=entry.action, rid=entry.rid or "",
                created_at=to_utc_naive(ctx.now), **values))
        elif any(getattr(row, k) != v for k, v in values.items() if k != "evaluated_at"):
            # evaluated_at alone is not worth a write: it moves only with a change
            conn.execute(update(schedule_entries).where(
                se.service == entry.service, se.node == ctx.node, se.action == entry.action,
                se.rid == (entry.rid or "")).values(values))

    def invalidate(self, name: str, rows: dict, reason: str | None) -> None:
        """A file that cannot be parsed keeps its recorded entries, as config_invalid (SPEC 8.1)."""
        se = schedule_entries.c
        with self.ctx.engine.begin() as conn:
            conn.execute(update(schedule_entries).where(se.service == name, se.node == self.ctx.node).values(
                verdict="config_invalid", reason=f"config invalid: {reason}", next_run_at=None,
                plan_key=f"{self.catalog.checksum(name)}{plan_suffix(self.boot)}",
                evaluated_at=to_utc_naive(self.ctx.now)))

    # -- step 7: launch ----------------------------------------------------------------

    def launch(self) -> None:
        """Start this node's eligible runs, oldest first, tasks before built-ins, up to node.max_running.

        Built-in runs without a command run here; the other built-ins share
        workers, up to BATCH runs each.
        """
        from omtasks.runner.builtin import execute_builtin, inline

        ctx = self.ctx
        c = runs.c
        with ctx.engine.begin() as conn:
            pending = conn.execute(
                select(runs).where(c.node == ctx.node, c.state == sm.ELIGIBLE, c.pid.is_(None),
                                   c.trigger != "manual")
                .order_by((c.action != "run"), c.scheduled_for, c.id)).fetchall()
            if not pending:
                return
            busy = {r.pid for r in conn.execute(select(c.pid).where(
                c.node == ctx.node, c.trigger != "manual", c.pid.is_not(None),
                c.state.in_((sm.RUNNING, sm.ELIGIBLE))))}
        workers: list[list] = []
        for r in pending:
            if r.action == "run":
                workers.append([r])
                continue
            if r.service not in self.catalog.files:
                continue  # cancelled by the next tick's re-check
            cfg = self.catalog.config(r.service)
            if r.action not in ("start", "stop") and inline(cfg, r.action):
                try:
                    execute_builtin(ctx, cfg, r)
                except LostRace:
                    pass
            elif workers and workers[-1][0].action != "run" and len(workers[-1]) < BATCH:
                workers[-1].append(r)
            else:
                workers.append([r])
        cap = int(ctx.node_config.max_running)
        free = max(0, cap - len(busy))
        for group in workers[:free]:
            self.spawn([r.id for r in group])
        waiting = [r for group in workers[free:] for r in group]
        if waiting:
            note = f"waiting for a launch slot ({cap}/{cap} running)"
            se = schedule_entries.c
            with ctx.engine.begin() as conn:
                for r in waiting:
                    conn.execute(update(schedule_entries).where(
                        se.service == r.service, se.node == ctx.node, se.action == r.action,
                        se.rid == (r.rid or "")).values(verdict="node_cap", reason=note, plan_key=None))

    def spawn(self, run_ids: list[int]) -> None:
        pid = spawn_worker(self.ctx, run_ids)
        if pid is not None:
            self.launched.append(pid)

    def wait(self) -> None:
        """--wait: return once every worker this tick launched has exited."""
        while any(procinfo.is_alive(pid, None, None) for pid in self.launched):
            time.sleep(0.1)


def run_tick(ctx, *, verbose: bool = False, wait: bool = False) -> int:
    from omtasks.timeutil import read_now

    with tick_lock(ctx) as held:
        if not held:
            runner_log(ctx, "tick skipped: previous tick still running")
            return 0
        if not ctx.explicit_now:
            ctx.now = read_now(ctx.tz)
        from omtasks.runner.liveness import record_tick
        from omtasks.timeutil import utcnow

        started, clock = utcnow(), time.monotonic()
        tick = Tick(ctx, verbose=verbose)
        tick.run()
        record_tick(ctx, started, time.monotonic() - clock)
    from omtasks.runner import prune

    if prune.due(ctx):
        prune.prune(ctx)
    from omtasks.runner import notify
    from omtasks.runner.outbox import deliver

    if ctx.node_config.has_collector:
        # after the tick lock: a hanging collector delays neither claims nor the next tick (SPEC 8.3)
        deliver(ctx)
    if ctx.node_config.has_notify:
        notify.deliver(ctx)
    if wait:
        tick.wait()
        if ctx.node_config.has_collector:
            deliver(ctx)  # what the workers queued reaches the collector before --wait returns
        if ctx.node_config.has_notify:
            notify.deliver(ctx)
    return 0
