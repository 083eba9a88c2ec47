"""`om runner exec RUN_ID...`: a detached worker carrying out claimed runs (SPEC 8.5).

For each run it re-checks the gate (task present, enabled and valid; requires
with live app checks) and then runs the shared pipeline.  It logs only to the
service log.  `eligible -> running` is a compare-and-set, so a second worker for
the same run loses it and goes on.
"""

from __future__ import annotations

from sqlalchemy import select

from omtasks import statemachine as sm
from omtasks.db.runs import LostRace, transition
from omtasks.db.schema import runs
from omtasks.paths import service_conf_path
from omtasks.runner.logs import ServiceLog, runner_log
from omtasks.runner.pipeline import Pipeline
from omtasks.runner.requires import unmet
from omtasks.timeutil import from_utc_naive


def gate(ctx, conn, run, service_cfg, *, live_checks: bool) -> tuple[str, str] | None:
    """(state, reason) that ends a pending run before it starts, or None when it may go on."""
    if service_cfg is None:
        return sm.CANCELLED, "service deleted"
    if not service_cfg.valid:
        return sm.CANCELLED, "config invalid"
    if service_cfg.disable:
        return sm.CANCELLED, "service disabled"
    if run.action == "sync_update":
        sync = service_cfg.syncs.get(run.rid)
        if sync is None:
            return sm.CANCELLED, "sync deleted"
        if sync.disable:
            return sm.CANCELLED, "sync disabled"
        return (sm.CANCELLED, "config invalid") if not sync.valid else None
    if run.action != "run":
        return None  # the other built-in actions have no resource section to check
    task = service_cfg.tasks.get(run.rid)
    if task is None:
        return sm.CANCELLED, "task deleted"
    if task.disable:
        return sm.CANCELLED, "task disabled"
    if not task.valid:
        return sm.CANCELLED, "config invalid"
    probe = app_prober(ctx, service_cfg) if live_checks else None
    why = unmet(conn, service_cfg, task, ctx.node, live_app_status=probe)
    if why is not None:
        return sm.SKIPPED, f"requires not met: {why}"
    return None


def app_prober(ctx, service_cfg):
    """A function re-running an app's check command now (its status is then also recorded)."""
    from omtasks.runner.apps import check_app

    return lambda rid: check_app(ctx, service_cfg, rid)


def load_service_cfg(ctx, name: str):
    from omtasks.config import load_service

    path = service_conf_path(name, ctx.root)
    if not path.exists():
        return None
    return load_service(path, ctx.node, shared_nodes=ctx.shared_nodes)


def exec_runs(ctx, run_ids: list[int]) -> int:
    """Carry out each run in turn; 1 when some run id is unknown."""
    unknown = False
    configs: dict[str, object] = {}
    for run_id in run_ids:
        with ctx.engine.begin() as conn:
            run = conn.execute(select(runs).where(runs.c.id == run_id)).first()
        if run is None:
            runner_log(ctx, f"exec: unknown run {run_id}")
            unknown = True
            continue
        if run.state != sm.ELIGIBLE or run.node != ctx.node:
            runner_log(ctx, f"exec: run {run_id} is {run.state} on {run.node}: not started here")
            continue
        if run.service not in configs:
            configs[run.service] = load_service_cfg(ctx, run.service)
        service_cfg = configs[run.service]
        if service_cfg is not None and run.rid in service_cfg.tasks:
            from omtasks.runner.container import prefetch

            prefetch(service_cfg, [service_cfg.tasks[run.rid]])  # probes outside the gate's transaction
        try:
            with ctx.engine.begin() as conn:
                stop = gate(ctx, conn, run, service_cfg, live_checks=True)
                if stop is not None:
                    transition(conn, run_id, sm.ELIGIBLE, stop[0], reason=stop[1], actor=ctx.actor, now=ctx.now)
        except LostRace:
            continue
        if stop is not None:
            runner_log(ctx, f"run {run_id} {stop[0]}: {stop[1]}")
            continue
        if run.action != "run":
            from omtasks.runner.builtin import execute_builtin

            execute_builtin(ctx, service_cfg, run)
            continue
        log = ServiceLog(ctx, run.service, terminal=False)
        task = service_cfg.tasks[run.rid]
        pipeline = Pipeline(ctx, log, service_cfg, task, run_id, trigger=run.trigger,
                            scheduled_for=from_utc_naive(run.scheduled_for), interactive=False)
        try:
            pipeline.execute()
        except LostRace as exc:
            runner_log(ctx, f"exec: {exc}")
    return 1 if unknown else 0
