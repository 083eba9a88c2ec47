"""Instances, placement and convergence (SPEC 6).

A failover service has one active node (`placements`, with an `epoch` bumped on
every change); each node's runner converges its local instance towards it by
running the apps' stop and start commands as ordinary runs (action `start` /
`stop`, trigger `converge`).  A flex service has an instance on every node and
no placement.
"""

from __future__ import annotations

from sqlalchemy import select, update

from omtasks import statemachine as sm
from omtasks.cli.errors import OmError
from omtasks.db.markers import insert_ignore
from omtasks.db.runs import create_run, transition
from omtasks.db.schema import instances, placements, runs
from omtasks.runner.apps import check_app, record_status, run_app_command, status_of
from omtasks.runner.requires import placement
from omtasks.timeutil import to_utc_naive

UP_LIKE = ("up", "warn")


def aggregate(statuses: list[str]) -> str | None:
    """SPEC 6.1: all up = up, all down = down, otherwise warn; None without a countable app."""
    counted = [s for s in statuses if s != "n/a"]
    if not counted:
        return None
    if all(s == "up" for s in counted):
        return "up"
    if all(s == "down" for s in counted):
        return "down"
    return "warn"


def set_instance(conn, ctx, service: str, *, state: str | None = None, frozen: bool | None = None,
                 node: str | None = None) -> None:
    node = node or ctx.node
    values: dict = {"updated_at": to_utc_naive(ctx.now)}
    if state is not None:
        values["state"] = state
    if frozen is not None:
        values["frozen"] = frozen
    row = {"service": service, "node": node, "state": "down", "frozen": False, **values}
    if not insert_ignore(conn, instances, row):
        c = instances.c
        conn.execute(update(instances).where(c.service == service, c.node == node).values(values))


def local_instance(conn, service: str, node: str):
    c = instances.c
    return conn.execute(select(instances).where(c.service == service, c.node == node)).first()


def locked_placement(conn, service: str, *, create: bool = False):
    """The placement row, locked until commit (PostgreSQL `FOR UPDATE`; SQLite's BEGIN IMMEDIATE already is).

    Commands that read the placement and then move it must hold this lock:
    otherwise two concurrent `start`s on PostgreSQL both see no active node
    and both start (two active instances), and concurrent `switch`es report
    stale states and reuse an epoch.  `create` first inserts an empty row
    (no active node, epoch 0) when there is none, so that the very first
    placement is serialized too; the caller sets it in the same transaction.
    """
    if create:
        insert_ignore(conn, placements, {"service": service, "active_node": None, "epoch": 0})
    return conn.execute(select(placements).where(placements.c.service == service).with_for_update()).first()


def set_placement(conn, ctx, service: str, active: str | None) -> int:
    """Move the placement; returns the new epoch."""
    p = placement(conn, service)
    epoch = (p.epoch if p is not None else 0) + 1
    values = {"active_node": active, "epoch": epoch, "changed_at": to_utc_naive(ctx.now), "changed_by": ctx.actor}
    if p is None:
        conn.execute(placements.insert().values(service=service, **values))
    else:
        conn.execute(update(placements).where(placements.c.service == service).values(values))
    return epoch


def refresh_state(ctx, service_cfg, *, fallback: str | None = None) -> str:
    """Run every enabled app's check, record them and the aggregated instance state."""
    statuses = [check_app(ctx, service_cfg, rid) for rid in sorted(service_cfg.apps)
                if not service_cfg.apps[rid].disable]
    state = aggregate(statuses) or fallback
    if state is None:
        with ctx.engine.begin() as conn:
            row = local_instance(conn, service_cfg.name, ctx.node)
        state = row.state if row is not None else "down"
    with ctx.engine.begin() as conn:
        set_instance(conn, ctx, service_cfg.name, state=state)
    return state


def act(ctx, service_cfg, action: str, log) -> bool:
    """Run the apps' `start` (rid order) or `stop` (reverse order) commands; True when all succeeded."""
    from omtasks.config import rid_sort_key

    rids = sorted((r for r, a in service_cfg.apps.items() if not a.disable and a.valid), key=rid_sort_key)
    if action == "stop":
        rids.reverse()
    ok = True
    for rid in rids:
        app = service_cfg.apps[rid]
        command = app.start if action == "start" else app.stop
        if not command:
            continue
        log(rid, "INFO", command)
        result = run_app_command(ctx, service_cfg, app, command, log=log)
        if result is None or result.timed_out or result.exit_code != 0:
            code = "timeout" if result is not None and result.timed_out else (
                f"exit code {result.exit_code}" if result is not None else "impersonation refused")
            log(rid, "ERROR", f"{action} failed: {code}")
            record_status(ctx, service_cfg.name, rid, status_of(result))
            ok = False
            if action == "start":
                break
    fallback = ("up" if ok else "warn") if action == "start" else "down"
    refresh_state(ctx, service_cfg, fallback=fallback)
    return ok


def run_action(ctx, service_cfg, action: str, *, trigger: str, log, run_id: int | None = None) -> bool:
    """Start or stop the local instance as a run (created here unless the worker holds one)."""
    if run_id is None:
        with ctx.engine.begin() as conn:
            run_id = create_run(conn, service=service_cfg.name, action=action, rid=None, node=ctx.node,
                                trigger=trigger, scheduled_for=ctx.now, now=ctx.now, scope=ctx.node,
                                reason=f"{trigger} by {ctx.actor}", actor=ctx.actor, requested_by=ctx.actor,
                                placement_epoch=_epoch(conn, service_cfg.name))
            transition(conn, run_id, sm.SCHEDULED, sm.ELIGIBLE, reason=None, actor=ctx.actor, now=ctx.now)
    from omtasks.runner import procinfo

    pid, start, boot = procinfo.self_identity()
    with ctx.engine.begin() as conn:
        transition(conn, run_id, sm.ELIGIBLE, sm.RUNNING, reason=None, actor=ctx.actor, now=ctx.now,
                   pid=pid, proc_start=start, boot_id=boot)
    ok = act(ctx, service_cfg, action, lambda rid, level, msg: log(rid, level, msg, run_id))
    with ctx.engine.begin() as conn:
        transition(conn, run_id, sm.RUNNING, sm.DONE if ok else sm.FAILED,
                   reason=None if ok else f"{action} failed", actor=ctx.actor, now=ctx.now, exit_code=0 if ok else 1)
    return ok


def _epoch(conn, service: str) -> int | None:
    p = placement(conn, service)
    return p.epoch if p is not None else None


# -- the commands of SPEC 6.2 / 6.3 ---------------------------------------------------------


def _nodes_text(cfg) -> str:
    return f"(nodes: {' '.join(cfg.nodes) or '-'}, drpnodes: {' '.join(cfg.drpnodes) or '-'})"


def start(ctx, cfg, log) -> int:
    with ctx.engine.begin() as conn:
        if cfg.topology == "failover":
            p = locked_placement(conn, cfg.name, create=True)
            active = p.active_node if p is not None else None
            if active not in (None, ctx.node):
                raise OmError(f"{cfg.name} is active on {active}: use 'om {cfg.name} switch --to {ctx.node}'")
            if active is None:
                set_placement(conn, ctx, cfg.name, ctx.node)
    return 0 if run_action(ctx, cfg, "start", trigger="manual", log=log) else 1


def stop(ctx, cfg, log) -> int:
    other = None
    with ctx.engine.begin() as conn:
        if cfg.topology == "failover":
            p = locked_placement(conn, cfg.name)
            active = p.active_node if p is not None else None
            if active == ctx.node:
                set_placement(conn, ctx, cfg.name, None)
            elif active is not None:
                other = active
    ok = run_action(ctx, cfg, "stop", trigger="manual", log=log)
    if other is not None:
        print(f"{cfg.name} is active on {other}: local instance stopped")
    return 0 if ok else 1


def switch(ctx, cfg, to: str) -> str:
    if cfg.topology != "failover":
        raise OmError("switch is only for failover services")
    if to not in cfg.nodes and to not in cfg.drpnodes:
        raise OmError(f"{to} is not a node of {cfg.name} {_nodes_text(cfg)}")
    with ctx.engine.begin() as conn:
        p = locked_placement(conn, cfg.name, create=True)
        current = p.active_node if p is not None else None
        if current == to:
            return f"{cfg.name} is already active on {to}"
        epoch = set_placement(conn, ctx, cfg.name, to)
        frozen = conn.execute(select(instances.c.node).where(instances.c.service == cfg.name,
                                                            instances.c.frozen.is_(True))).first()
    line = f"{cfg.name}: placement {current or '-'} -> {to} (epoch {epoch}); instances converge on the next runner ticks"
    return line + (" (frozen: converges after thaw)" if frozen else "")


def freeze(ctx, cfg, frozen: bool) -> None:
    with ctx.engine.begin() as conn:
        set_instance(conn, ctx, cfg.name, frozen=frozen)


# -- convergence (a tick step) ----------------------------------------------------------------


def convergence_action(conn, ctx, cfg, dead: set[str]) -> str | None:
    """`start`, `stop` or None for this node's instance of a failover service (SPEC 6.2)."""
    if cfg.topology != "failover" or not cfg.is_node_of_service(ctx.node):
        return None
    # Lock this node's instance row until the caller's transaction (which queues the run) commits, so that
    # concurrent ticks of this node (OM_TICK_LOCK=0, PostgreSQL) never queue two start/stop runs for it.
    # Only ticks of the same node contend; a missing row is created `down` (what a missing row means).
    insert_ignore(conn, instances, {"service": cfg.name, "node": ctx.node, "state": "down", "frozen": False,
                                    "updated_at": to_utc_naive(ctx.now)})
    mine = conn.execute(select(instances).where(instances.c.service == cfg.name, instances.c.node == ctx.node)
                        .with_for_update()).first()
    if mine is not None and mine.frozen:
        return None
    p = placement(conn, cfg.name)
    if p is None or p.active_node is None:
        return None
    state = mine.state if mine is not None else "down"
    c = runs.c
    live = conn.execute(select(c.id).where(c.service == cfg.name, c.node == ctx.node, c.action.in_(("start", "stop")),
                                           c.state.in_((sm.SCHEDULED, sm.ELIGIBLE, sm.RUNNING)))).first()
    if live is not None:
        return None
    if p.active_node != ctx.node:
        return "stop" if state in UP_LIKE else None
    if state == "up":
        return None
    others = conn.execute(select(instances.c.node, instances.c.state).where(
        instances.c.service == cfg.name, instances.c.node != ctx.node)).fetchall()
    if any(o.state == "up" and o.node not in dead for o in others):
        return None
    last = conn.execute(select(c.state, c.trigger, c.placement_epoch).where(
        c.service == cfg.name, c.node == ctx.node, c.action == "start").order_by(c.id.desc()).limit(1)).first()
    if last is not None and last.trigger == "converge" and last.state == sm.FAILED and last.placement_epoch == p.epoch:
        return None  # a failed convergence start waits for a placement change or `om SVC start`
    return "start"


def queue_convergence(conn, ctx, cfg, action: str) -> int:
    run_id = create_run(conn, service=cfg.name, action=action, rid=None, node=ctx.node, trigger="converge",
                        scheduled_for=ctx.now, now=ctx.now, scope=ctx.node, reason=f"converge: {action}",
                        actor=f"runner@{ctx.node}", placement_epoch=_epoch(conn, cfg.name))
    transition(conn, run_id, sm.SCHEDULED, sm.ELIGIBLE, reason=None, actor=f"runner@{ctx.node}", now=ctx.now)
    return run_id
