"""`om SVC compliance check|fix` and `om SVC sync` (SPEC 9)."""

from __future__ import annotations

import click

from omtasks.cli.errors import OmError
from omtasks.cli.svc_instance import _prepare


@click.group()
def compliance() -> None:
    """Run the service's compliance modules ($OM_ROOT/compliance/modules/<name>)."""


def _compliance(action: str, module: str | None) -> int:
    from omtasks.cli.output import table
    from omtasks.runner.builtin import compliance as run_compliance
    from omtasks.runner.builtin import compliance_exit
    from omtasks.runner.logs import ServiceLog

    ctx, cfg = _prepare()
    try:
        modules = cfg.defaults.comp_modules
        if module:
            if module not in modules:
                raise OmError(f"module '{module}' is not in {cfg.name}'s comp_modules ({' '.join(modules) or '-'})")
            modules = [module]
        if not modules:
            raise OmError(f"no compliance modules for {cfg.name} (set DEFAULT.comp_modules)")
        results = run_compliance(ctx, cfg, modules, action, ServiceLog(ctx, cfg.name, terminal=True).line)
    finally:
        ctx.close()
    click.echo(table(["MODULE", "STATUS"], [[r["module"], r["status"]] for r in results]))
    return compliance_exit(results)


@compliance.command()
@click.option("--module", help="only this module")
def check(module: str | None) -> int:
    """`<module> check`: exit 0 compliant, 1 not compliant, 2 not applicable."""
    return _compliance("check", module)


@compliance.command()
@click.option("--module", help="only this module")
def fix(module: str | None) -> int:
    """`<module> fix`: exit 0 compliant, 1 not compliant, 2 not applicable."""
    return _compliance("fix", module)


@click.command()
@click.option("--rid", help="comma list of sync rids (default: every sync)")
def sync(rid: str | None) -> int:
    """Copy the sync resources' src to their target nodes now, from the active instance."""
    from omtasks import statemachine as sm
    from omtasks.config import rid_sort_key
    from omtasks.db.runs import create_run, transition
    from omtasks.runner.builtin import sync as do_sync
    from omtasks.runner.entries import sync_targets
    from omtasks.runner.logs import ServiceLog
    from omtasks.runner.manual import node_refusal
    from omtasks.runner.requires import sync_refusal

    ctx, cfg = _prepare()
    try:
        log = ServiceLog(ctx, cfg.name, terminal=True)
        if cfg.disable:
            log.line(None, "INFO", "service disabled")
            return 0
        refusal = node_refusal(cfg, ctx.node)
        if refusal:
            raise OmError(refusal)
        wanted = [r.strip() for r in rid.split(",")] if rid else sorted(cfg.syncs, key=rid_sort_key)
        unknown = [r for r in wanted if r not in cfg.syncs]
        if unknown or not wanted:
            raise OmError(f"no sync resource match {', '.join(unknown) or 'the service'}")
        # an invalid sync is not runnable (SPEC 12): its dst or options could send the copy anywhere
        broken = [p for r in wanted if not cfg.syncs[r].disable for p in cfg.syncs[r].errors]
        if broken:
            for problem in broken:
                click.echo(str(problem), err=True)
            raise OmError("the selected syncs have config errors: nothing run")
        with ctx.engine.begin() as conn:
            refusal = sync_refusal(conn, cfg, ctx.node)
        if refusal:
            raise OmError(refusal)
        for r in wanted:
            if cfg.syncs[r].disable:
                log.line(r, "INFO", f"{r} disabled")
                continue
            if not sync_targets(cfg, cfg.syncs[r], ctx.node):
                log.line(r, "INFO", "no sync target")
                continue
            with ctx.engine.begin() as conn:
                run_id = create_run(conn, service=cfg.name, action="sync_update", rid=r, node=ctx.node,
                                    trigger="manual", scheduled_for=ctx.now, now=ctx.now, scope=ctx.node,
                                    reason=f"manual by {ctx.actor}", actor=ctx.actor, requested_by=ctx.actor)
                transition(conn, run_id, sm.SCHEDULED, sm.ELIGIBLE, reason=None, actor=ctx.actor, now=ctx.now)
                transition(conn, run_id, sm.ELIGIBLE, sm.RUNNING, reason=None, actor=ctx.actor, now=ctx.now)
            ok, reason, tail = do_sync(ctx, cfg, r, log.line, run_id)
            with ctx.engine.begin() as conn:
                transition(conn, run_id, sm.RUNNING, sm.DONE if ok else sm.FAILED, reason=reason,
                           actor=ctx.actor, now=ctx.now, output_tail=tail, exit_code=0 if ok else 1)
            if not ok:
                log.line(None, "ERROR", f"'sync' action stopped on execution error: {r} {reason}")
                return 1
        return 0
    finally:
        ctx.close()
