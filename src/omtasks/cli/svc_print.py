"""`om SVC print config|schedule|status|runs` (SPEC 10)."""

from __future__ import annotations

import click

from omtasks.cli import completion
from omtasks.cli.errors import OmError
from omtasks.cli.service import service_name

format_option = click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text")


@click.group("print")
def print_group() -> None:
    """Print the service's config, schedule table, status or run history."""


def _context():
    from omtasks.runner.context import Context

    return Context.create()


def _config_path(ctx, name: str):
    from omtasks.paths import service_conf_path

    path = service_conf_path(name, ctx.root)
    if not path.exists():
        raise OmError(f"service '{name}' does not exist")
    return path


@print_group.command("config")
@format_option
def print_config(fmt: str) -> None:
    """The file as it is; JSON: {section: {key[@scope]: raw value}}."""
    from omtasks.cli.output import dump_json
    from omtasks.config import load_service
    from omtasks.paths import nodename, om_root, service_conf_path

    name = service_name()
    path = service_conf_path(name, om_root())
    if not path.exists():
        raise OmError(f"service '{name}' does not exist")
    if fmt == "json":
        click.echo(dump_json(load_service(path, nodename()).raw))
    else:
        click.echo(path.read_text(encoding="utf-8", errors="replace"), nl=False)


@print_group.command("schedule")
@format_option
@click.option("--rid", help="only these entries (comma list of rids or actions)", shell_complete=completion.rids)
@click.option("--explain", is_flag=True, help="add the last 10 decisions of each entry")
def print_schedule(fmt: str, rid: str | None, explain: bool) -> None:
    """The schedule table, computed live at now with the tick's code (read-only)."""
    from omtasks.cli.output import dump_json, table
    from omtasks.runner.table import decisions, schedule_rows

    ctx = _context()
    try:
        name = service_name()
        _config_path(ctx, name)
        rows = schedule_rows(ctx, [name], rid)
        history = decisions(ctx, name, rows) if explain else {}
    finally:
        ctx.close()
    if ctx.stale_tick:
        click.echo(f"om: warning: {ctx.stale_tick}", err=True)
    if fmt == "json":
        docs = [r.as_json(ctx.tz) for r in rows]
        if explain:
            for doc, r in zip(docs, rows, strict=True):
                doc["decisions"] = history[(r.action, r.rid or "")]
        click.echo(dump_json(docs))
        return
    click.echo(table(["ACTION", "LAST_RUN", "NEXT_RUN", "CONFIG_PARAMETER", "SCHEDULE", "NOTE"],
                     [r.as_row(ctx.tz) for r in rows]))
    for r in rows if explain else []:
        click.echo(f"\n{r.rid or r.action}:")
        for d in history[(r.action, r.rid or "")] or [{"at": "-", "verdict": "no decision recorded", "reason": None}]:
            click.echo(f"  {d['at']}  {d['verdict']}" + (f": {d['reason']}" if d["reason"] else ""))


@print_group.command("runs")
@format_option
@click.option("--rid", help="only runs of these rids (comma list)", shell_complete=completion.rids)
@click.option("--state", help="only runs in these states (comma list)")
@click.option("--node", help="only runs of this node")
@click.option("--limit", type=click.IntRange(1, 100000), default=20, show_default=True)
def print_runs(fmt: str, rid: str | None, state: str | None, node: str | None, limit: int) -> None:
    """The run history, newest first."""
    from sqlalchemy import select

    from omtasks.cli.output import dump_json, table
    from omtasks.db.schema import runs
    from omtasks.timeutil import from_utc_naive, iso, show

    ctx = _context()
    try:
        name = service_name()
        c = runs.c
        q = select(runs).where(c.service == name).order_by(c.id.desc()).limit(limit)
        if rid:
            q = q.where(c.rid.in_([r.strip() for r in rid.split(",")]))
        if state:
            q = q.where(c.state.in_([s.strip() for s in state.split(",")]))
        if node:
            q = q.where(c.node == node)
        from omtasks.db.connect import reading

        with reading(ctx.engine) as conn:  # a reader never waits for a writer (SQLite WAL)
            rows = conn.execute(q).fetchall()
    finally:
        ctx.close()
    tz = ctx.tz
    if fmt == "json":
        keys = ("id", "service", "action", "rid", "node", "trigger", "state", "reason", "exit_code")
        times = ("scheduled_for", "created_at", "started_at", "ended_at")
        click.echo(dump_json([
            {**{k: getattr(r, k) for k in keys}, **{k: iso(from_utc_naive(getattr(r, k)), tz) for k in times},
             "requested_by": r.requested_by, "run_as": r.run_as, "output_tail": r.output_tail} for r in rows]))
        return
    out = []
    for r in rows:
        duration = None
        if r.started_at and r.ended_at:
            duration = f"{(r.ended_at - r.started_at).total_seconds():.1f}s"
        out.append([str(r.id), r.state, r.action, r.rid, r.node, r.trigger,
                    show(from_utc_naive(r.scheduled_for), tz), show(from_utc_naive(r.started_at), tz),
                    duration, None if r.exit_code is None else str(r.exit_code), r.reason])
    click.echo(table(["ID", "STATE", "ACTION", "RID", "NODE", "TRIGGER", "SCHEDULED", "STARTED", "DURATION",
                      "EXIT", "REASON"], out))


@print_group.command("run")
@click.argument("run_id", type=click.IntRange(1, 2**63 - 1), metavar="ID", shell_complete=completion.run_ids)
@format_option
def print_run(run_id: int, fmt: str) -> None:
    """One run: its fields, every state change with its time and reason, its exit code and output."""
    from omtasks.cli.output import dump_json
    from omtasks.runner.history import render_run, run_document

    ctx = _context()
    try:
        name = service_name()
        doc = run_document(ctx, run_id)
    finally:
        ctx.close()
    if doc is None or doc["service"] != name:
        raise OmError(f"run {run_id} is not a run of service '{name}' (see 'om {name} print runs')")
    click.echo(dump_json(doc) if fmt == "json" else render_run(doc))


@print_group.command("status")
@format_option
def print_status(fmt: str) -> None:
    """Placement, every node's instance and resources, pending confirmations, compliance, outbox."""
    from omtasks.cli.output import dump_json
    from omtasks.runner.status import render_status, service_status

    ctx = _context()
    try:
        name = service_name()
        doc = service_status(ctx, name, _config_path(ctx, name))
    finally:
        ctx.close()
    click.echo(dump_json(doc) if fmt == "json" else render_status(doc))
