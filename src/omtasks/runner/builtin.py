"""The built-in actions (SPEC 9): status, pushes, compliance, sync, and instance start/stop.

They are runs like tasks: claimed, moved through the same states, recorded.
`status` of a service without apps and the queuing of `push_resinfo` and
`push_config` run no command, so the tick carries them out itself
(`INLINE`); the others go to a worker.
"""

from __future__ import annotations

import os
import shlex
from datetime import datetime

from sqlalchemy import insert, select

from omtasks import statemachine as sm
from omtasks.config.values import split_words
from omtasks.db.runs import transition
from omtasks.db.schema import compliance_results, last_runs, outbox
from omtasks.paths import om_root
from omtasks.runner import execute, procinfo
from omtasks.runner.identity import resolve
from omtasks.runner.instance import refresh_state, run_action
from omtasks.runner.logs import ServiceLog
from omtasks.timeutil import from_utc_naive, iso, to_utc_naive

COMPLIANCE_STATUS = {0: "ok", 1: "nok", 2: "n/a"}
COMPLIANCE_TIMEOUT = 600


def inline(service_cfg, action: str) -> bool:
    """Built-in runs the tick executes itself: no command to run (SPEC 8.5)."""
    if action in ("push_resinfo", "push_config"):
        return True
    return action == "status" and not any(not a.disable for a in service_cfg.apps.values())


def _move(ctx, run_id: int, frm: str, to: str, reason: str | None = None, **fields) -> None:
    with ctx.engine.begin() as conn:
        transition(conn, run_id, frm, to, reason=reason, actor=f"runner@{ctx.node}", now=ctx.now, **fields)


def execute_builtin(ctx, service_cfg, run) -> None:
    """Carry out one eligible built-in run to its terminal state."""
    log = ServiceLog(ctx, service_cfg.name, terminal=False)
    if run.action in ("start", "stop"):
        if run.trigger == "converge" and _placement_moved(ctx, service_cfg.name, run.action):
            _move(ctx, run.id, sm.ELIGIBLE, sm.CANCELLED, "placement changed")
            return
        run_action(ctx, service_cfg, run.action, trigger=run.trigger, log=log.line, run_id=run.id)
        return
    pid, start, boot = procinfo.self_identity()
    _move(ctx, run.id, sm.ELIGIBLE, sm.RUNNING, pid=pid, proc_start=start, boot_id=boot)
    try:
        ok, reason, tail = ACTIONS[run.action](ctx, service_cfg, run, log)
    except Exception as exc:  # an action's failure is the run's failure, never the worker's
        ok, reason, tail = False, f"error: {exc}", None
    _move(ctx, run.id, sm.RUNNING, sm.DONE if ok else sm.FAILED, None if ok else reason,
          output_tail=tail, exit_code=0 if ok else 1)


def _placement_moved(ctx, service: str, action: str) -> bool:
    """A queued convergence run that no longer matches the placement (a switch came in between)."""
    from omtasks.runner.requires import placement

    with ctx.engine.begin() as conn:
        p = placement(conn, service)
    active = p.active_node == ctx.node if p is not None else False
    return active != (action == "start")


def _queue(ctx, kind: str, service: str, payload: dict) -> None:
    if not ctx.node_config.has_collector:
        return
    from omtasks.runner.outbox import queue

    with ctx.engine.begin() as conn:
        queue(conn, ctx, kind, service, payload)


def status_payload(ctx, service_cfg) -> dict:
    from omtasks.db.schema import instances, resource_status

    with ctx.engine.begin() as conn:
        inst = conn.execute(select(instances).where(instances.c.service == service_cfg.name,
                                                    instances.c.node == ctx.node)).first()
        rs = resource_status.c
        resources = [{"rid": r.rid, "status": r.status} for r in conn.execute(
            select(rs.rid, rs.status).where(rs.service == service_cfg.name, rs.node == ctx.node).order_by(rs.rid))]
    return {"instance": inst.state if inst else "undef", "frozen": bool(inst.frozen) if inst else False,
            "resources": resources}


def do_status(ctx, service_cfg, run, log) -> tuple[bool, str | None, str | None]:
    state = refresh_state(ctx, service_cfg)
    _queue(ctx, "status", service_cfg.name, status_payload(ctx, service_cfg))
    return True, None, f"instance {state}"


#: runs of each task described in a resinfo push, newest first (the collector's service page)
RECENT_RUNS = 5


def _task_history(ctx, service: str) -> dict[str, dict]:
    """Per task rid on this node: its `RECENT_RUNS` last finished runs, run counts by state, last success.

    The collector's fleet page and metrics show them (docs/collector.md); runs
    without an end are left out of `recent`, so a running task shows its last outcome.
    """
    from sqlalchemy import func

    from omtasks.db.schema import runs

    r = runs.c
    mine = (r.service == service, r.node == ctx.node, r.action == "run", r.rid.is_not(None))
    out: dict[str, dict] = {}
    with ctx.engine.begin() as conn:
        for rid, state, count in conn.execute(select(r.rid, r.state, func.count()).where(*mine)
                                              .group_by(r.rid, r.state)):
            out.setdefault(rid, {"runs": {}, "recent": [], "last_success": None})["runs"][state] = count
        rank = func.row_number().over(partition_by=r.rid, order_by=(r.ended_at.desc(), r.id.desc())).label("n")
        ended = select(r.rid, r.id, r.state, r.exit_code, r.started_at, r.ended_at, r.reason, rank).where(
            *mine, r.ended_at.is_not(None), r.state.in_(sm.TERMINAL)).subquery()
        for row in conn.execute(select(ended).where(ended.c.n <= RECENT_RUNS).order_by(ended.c.rid, ended.c.n)):
            out[row.rid]["recent"].append({
                "id": row.id, "state": row.state, "exit_code": row.exit_code, "reason": row.reason,
                "started_at": iso(from_utc_naive(row.started_at), ctx.tz) if row.started_at else None,
                "ended_at": iso(from_utc_naive(row.ended_at), ctx.tz)})
        for rid, at in conn.execute(select(r.rid, func.max(r.ended_at)).where(*mine, r.state == sm.DONE)
                                    .group_by(r.rid)):
            out[rid]["last_success"] = iso(from_utc_naive(at), ctx.tz)
    return out


def do_resinfo(ctx, service_cfg, run, log) -> tuple[bool, str | None, str | None]:
    with ctx.engine.begin() as conn:
        lr = last_runs.c
        markers = {r.rid: from_utc_naive(r.last_attempt_at) for r in conn.execute(
            select(lr.rid, lr.last_attempt_at).where(lr.service == service_cfg.name, lr.action == "run",
                                                     lr.scope.in_(("", ctx.node))))}
    from omtasks.config import rid_sort_key

    tasks = service_cfg.tasks
    history = _task_history(ctx, service_cfg.name)
    resources = [{"rid": rid, "command": tasks[rid].command, "user": tasks[rid].user,
                  "schedule": tasks[rid].schedule, "last_run": iso(markers.get(rid), ctx.tz),
                  **history.get(rid, {"runs": {}, "recent": [], "last_success": None})}
                 for rid in service_cfg.sorted_task_rids()]
    resources += [{"rid": rid, "command": a.start, "user": a.user, "schedule": None, "last_run": None}
                  for rid, a in sorted(service_cfg.apps.items(), key=lambda item: rid_sort_key(item[0]))]
    _queue(ctx, "resinfo", service_cfg.name, {"resources": resources})
    return True, None, None


def do_config(ctx, service_cfg, run, log) -> tuple[bool, str | None, str | None]:
    """Queue the config text only when its checksum differs from the last one queued."""
    import json

    with ctx.engine.begin() as conn:
        o = outbox.c
        last = conn.execute(select(o.payload).where(o.service == service_cfg.name, o.node == ctx.node,
                                                    o.kind == "config").order_by(o.id.desc()).limit(1)).scalar()
    if last is not None and json.loads(last).get("checksum") == service_cfg.checksum:
        return True, None, "config unchanged"
    _queue(ctx, "config", service_cfg.name, {"checksum": service_cfg.checksum, "text": service_cfg.text})
    return True, None, None


def module_path(name: str, root=None):
    return (root or om_root()) / "compliance" / "modules" / name


def run_module(ctx, service_cfg, module: str, action: str, log) -> tuple[str, str]:
    """Run `<module> check|fix`; returns (status, output tail)."""
    path = module_path(module, ctx.root)
    if not os.access(path, os.X_OK):
        log(None, "ERROR", f"compliance module {module}: not found or not executable: {path}")
        return "nok", f"module not found: {path}"
    identity = resolve(None, None)
    env = execute.base_environment(identity, {"OM_SERVICE": service_cfg.name, "OM_NODENAME": ctx.node,
                                              "OPENSVC_SVCNAME": service_cfg.name})
    spec = execute.CommandSpec(shlex.join([str(path), action]), identity, None, None, env, COMPLIANCE_TIMEOUT)
    result = execute.run(spec, on_line=None, log_path=None, log=lambda level, msg: log(None, level, msg))
    return COMPLIANCE_STATUS.get(result.exit_code, "nok"), result.tail


def compliance(ctx, service_cfg, modules: list[str], action: str, log) -> list[dict]:
    """Run the modules, store their results and push them; returns the results."""
    results = []
    for module in modules:
        status, tail = run_module(ctx, service_cfg, module, action, log)
        at: datetime = ctx.now
        with ctx.engine.begin() as conn:
            conn.execute(insert(compliance_results).values(
                service=service_cfg.name, node=ctx.node, module=module, action=action, status=status,
                output_tail=tail[-4096:] if tail else None, at=to_utc_naive(at)))
        results.append({"module": module, "action": action, "status": status, "at": iso(at, ctx.tz)})
    _queue(ctx, "compliance", service_cfg.name, {"results": results})
    return results


def compliance_exit(results: list[dict]) -> int:
    """0 all ok (or ok and n/a), 1 any nok, 2 all n/a (SPEC 9)."""
    statuses = {r["status"] for r in results}
    if "nok" in statuses:
        return 1
    if statuses == {"n/a"}:
        return 2
    return 0


def do_compliance(ctx, service_cfg, run, log) -> tuple[bool, str | None, str | None]:
    results = compliance(ctx, service_cfg, service_cfg.defaults.comp_modules, "check", log.line)
    summary = " ".join(f"{r['module']}:{r['status']}" for r in results)
    return True, None, summary


def sync_argv(service_cfg, sync, node: str, transport: str) -> list[str]:
    """`rsync <options> <src...> <host>:<dst>` or, for local:<prefix>, `... <prefix><dst>` (SPEC 9)."""
    kind, _, where = transport.partition(":")
    dest = f"{where}{sync.dst}" if kind == "local" else f"{where}:{sync.dst}"
    return ["rsync", *split_words(sync.options), "--stats", *sync.src, dest]


def sync(ctx, service_cfg, rid: str, log, run_id: int | None = None) -> tuple[bool, str | None, str | None]:
    from omtasks.runner.entries import sync_targets

    s = service_cfg.syncs[rid]
    identity = resolve(None, None)
    tails = []
    for node in sync_targets(service_cfg, s, ctx.node):
        argv = sync_argv(service_cfg, s, node, ctx.node_config.transport_for(node))
        log(rid, "INFO", shlex.join(argv), run_id)
        spec = execute.CommandSpec(shlex.join(argv), identity, None, None,
                                   execute.base_environment(identity, {"OM_SERVICE": service_cfg.name}), s.timeout)
        result = execute.run(spec, on_line=lambda stream, line: log(rid, "INFO" if stream == "stdout" else "ERROR",
                                                                    f"| {line}", run_id),
                             log_path=None, log=lambda level, msg: log(rid, level, msg, run_id))
        tails.append(f"{node}: {result.tail.strip()}")
        if result.timed_out or result.exit_code != 0:
            return False, "timeout" if result.timed_out else f"exit code {result.exit_code}", "\n".join(tails)[-4096:]
    return True, None, "\n".join(tails)[-4096:]


def do_sync(ctx, service_cfg, run, log) -> tuple[bool, str | None, str | None]:
    return sync(ctx, service_cfg, run.rid, log.line, run.id)


ACTIONS = {
    "status": do_status,
    "push_resinfo": do_resinfo,
    "push_config": do_config,
    "compliance_auto": do_compliance,
    "sync_update": do_sync,
}
