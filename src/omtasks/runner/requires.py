"""`run_requires` conditions evaluated against the recorded state (SPEC 5.5, 6.4).

`instance` on a failover service is `up` only on the active node whose
instance is up; a rid is its recorded status on this node.  A message is
returned for the first condition that does not hold, None when all do.
"""

from __future__ import annotations

from sqlalchemy import select

from omtasks.db.schema import instances, placements, resource_status, runs

TERMINAL_RESULTS = ("done", "failed")


def placement(conn, service: str):
    return conn.execute(select(placements).where(placements.c.service == service)).first()


def instance_state(conn, service: str, node: str) -> str:
    row = conn.execute(
        select(instances.c.state).where(instances.c.service == service, instances.c.node == node)
    ).first()
    return row.state if row is not None else "undef"


def _failover_instance(conn, service: str, node: str) -> tuple[str, str | None]:
    """(state, why) of `instance` on a failover service."""
    p = placement(conn, service)
    active = p.active_node if p is not None else None
    if active != node:
        return "down", f"not the active instance (active: {active or 'none'})"
    state = instance_state(conn, service, node)
    return ("up", None) if state == "up" else ("down", f"the active instance is {state}")


def task_status(conn, service_cfg, task, node: str, requirements_met: bool = True) -> str:
    """SPEC 6.4: `n/a` without `check = last_run`, else the mapping of the latest finished run here."""
    if task.check != "last_run" or not requirements_met:
        return "n/a"
    c = runs.c
    row = conn.execute(
        select(c.state, c.exit_code)
        .where(c.service == service_cfg.name, c.rid == task.rid, c.node == node, c.state.in_(TERMINAL_RESULTS))
        .order_by(c.ended_at.desc(), c.id.desc())
        .limit(1)
    ).first()
    if row is None:
        return "n/a"
    if row.exit_code is None:
        return "down"
    return task.status_for(row.exit_code)


def resource_state(conn, service_cfg, rid: str, node: str) -> str:
    if rid in service_cfg.tasks:
        task = service_cfg.tasks[rid]
        if not task.valid:
            return "invalid"
        return task_status(conn, service_cfg, task, node)
    if rid in service_cfg.syncs:
        c = runs.c
        row = conn.execute(
            select(c.state).where(c.service == service_cfg.name, c.rid == rid, c.state.in_(TERMINAL_RESULTS))
            .order_by(c.id.desc()).limit(1)
        ).first()
        return "undef" if row is None else ("up" if row.state == "done" else "down")
    app = service_cfg.apps.get(rid)
    if app is None or not app.valid:
        return "invalid"
    s = resource_status.c
    row = conn.execute(
        select(s.status).where(s.service == service_cfg.name, s.node == node, s.rid == rid)
    ).first()
    return row.status if row is not None else "undef"


def unmet(conn, service_cfg, task, node: str, live_app_status=None) -> str | None:
    """The message of the first unmet requirement of `task`, or None.

    `live_app_status(rid)` (the worker) re-runs an app's check instead of
    reading its recorded status.
    """
    for req in task.run_requires:
        states = " or ".join(req.states)
        if req.target == "instance":
            if service_cfg.topology == "failover":
                state, why = _failover_instance(conn, service_cfg.name, node)
            else:
                state = instance_state(conn, service_cfg.name, node)
                why = f"instance is {state}"
            if state not in req.states:
                return f"requires {req}: {why}"
            continue
        if req.target in service_cfg.ignored:  # container#, fs#: observed, never started (runner/container.py)
            from omtasks.runner.container import observed

            state, why = observed(service_cfg, req.target)
            if state not in req.states:
                return f"requires on resource {req.target} in state {states}, current state {state}" + (
                    f" ({why})" if why else "")
            continue
        if live_app_status is not None and req.target in service_cfg.apps:
            state = live_app_status(req.target)
        else:
            state = resource_state(conn, service_cfg, req.target, node)
        if state == "invalid":
            return f"requires on resource {req.target}: {req.target} invalid"
        if state not in req.states:
            return f"requires on resource {req.target} in state {states}, current state {state}"
    return None


def sync_refusal(conn, service_cfg, node: str) -> str | None:
    """Syncs run from the active instance only (SPEC 9); None when this node may sync."""
    if service_cfg.topology != "failover":
        return None
    p = placement(conn, service_cfg.name)
    active = p.active_node if p is not None else None
    if active == node:
        return None
    return f"sync runs from the active instance only (active: {active or 'none'})"
