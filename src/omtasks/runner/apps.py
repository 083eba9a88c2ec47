"""`[app#N]` resources: their check, start and stop commands (SPEC 3.4, 6.1).

Check: exit 0 = up, 1 = down, anything else or a timeout = warn; no check =
n/a.  Every check records the status in `resource_status` for this node.
"""

from __future__ import annotations

from sqlalchemy import update

from omtasks.db.markers import insert_ignore
from omtasks.db.schema import resource_status
from omtasks.runner import execute
from omtasks.runner.identity import ImpersonationError, resolve
from omtasks.timeutil import to_utc_naive


def _spec(ctx, service_cfg, app, command: str) -> execute.CommandSpec:
    identity = resolve(app.user, None)
    extra = {"OPENSVC_SVCNAME": service_cfg.name, "OPENSVC_RID": app.rid, "OM_SERVICE": service_cfg.name,
             "OM_RID": app.rid, "OM_NODENAME": ctx.node}
    return execute.CommandSpec(command, identity, None, None, execute.base_environment(identity, extra), app.timeout)


def run_app_command(ctx, service_cfg, app, command: str, log=None) -> execute.Result | None:
    """Run one app command; None when it cannot run as its user."""
    try:
        spec = _spec(ctx, service_cfg, app, command)
    except ImpersonationError as exc:
        if log is not None:
            log(app.rid, "ERROR", str(exc))
        return None
    on_line = (lambda stream, line: log(app.rid, "INFO" if stream == "stdout" else "ERROR", f"| {line}")) \
        if log is not None else None
    return execute.run(spec, on_line=on_line, log_path=None,
                       log=(lambda level, msg: log(app.rid, level, msg)) if log is not None else None)


def status_of(result: execute.Result | None) -> str:
    if result is None or result.timed_out:
        return "warn"
    return {0: "up", 1: "down"}.get(result.exit_code, "warn")


def record_status(ctx, service: str, rid: str, status: str, detail: str | None = None) -> None:
    values = {"status": status, "detail": detail, "updated_at": to_utc_naive(ctx.now)}
    with ctx.engine.begin() as conn:
        c = resource_status.c
        if not insert_ignore(conn, resource_status, {"service": service, "node": ctx.node, "rid": rid, **values}):
            conn.execute(update(resource_status).where(c.service == service, c.node == ctx.node, c.rid == rid)
                         .values(values))


def check_app(ctx, service_cfg, rid: str) -> str:
    """Run the check of `rid` now, record and return its status."""
    app = service_cfg.apps.get(rid)
    if app is None or not app.valid:
        return "invalid"
    if app.disable or not app.check:
        status = "n/a"
    else:
        status = status_of(run_app_command(ctx, service_cfg, app, app.check))
    record_status(ctx, service_cfg.name, rid, status)
    return status

