"""`om node print schedule|status|metrics`: this node's timers, runner liveness and metrics (SPEC 10)."""

from __future__ import annotations

from datetime import datetime

import click


@click.group()
def node() -> None:
    """This node's view."""


@node.group("print")
def print_group() -> None:
    """Print this node's tables."""


def span(seconds: float) -> str:
    """A compact duration like systemctl list-timers' LEFT/PASSED: `45s`, `4min3s`, `2h5min`, `3d4h`."""
    s = int(abs(seconds))
    d, rest = divmod(s, 86400)
    h, rest = divmod(rest, 3600)
    m, sec = divmod(rest, 60)
    if d:
        return f"{d}d{h}h" if h else f"{d}d"
    if h:
        return f"{h}h{m}min" if m else f"{h}h"
    if m:
        return f"{m}min{sec}s" if sec else f"{m}min"
    return f"{sec}s"


def _left(next_run: datetime | None, now: datetime) -> str | None:
    if next_run is None:
        return None
    seconds = (next_run - now).total_seconds()
    return f"overdue {span(seconds)}" if seconds < 0 else span(seconds)


@print_group.command("schedule")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text")
def print_schedule(fmt: str) -> None:
    """Every entry of every service, soonest first, with LEFT and PASSED like `systemctl list-timers`."""
    from omtasks.cli.output import dump_json, table
    from omtasks.runner.catalog import service_files
    from omtasks.runner.context import Context
    from omtasks.runner.table import schedule_rows
    from omtasks.timeutil import show

    ctx = Context.create()
    try:
        rows = schedule_rows(ctx, list(service_files(ctx.root)))
    finally:
        ctx.close()
    never = datetime.max.replace(tzinfo=ctx.now.tzinfo)
    rows.sort(key=lambda r: (r.next_run or never, r.service, r.rid or r.action))
    if ctx.stale_tick:
        click.echo(f"om: warning: {ctx.stale_tick}", err=True)
    now = ctx.now
    if fmt == "json":
        docs = []
        for r in rows:
            doc = r.as_json(ctx.tz)
            doc["left_seconds"] = None if r.next_run is None else (r.next_run - now).total_seconds()
            doc["passed_seconds"] = None if r.last_run is None else (now - r.last_run).total_seconds()
            docs.append(doc)
        click.echo(dump_json(docs))
        return
    click.echo(table(
        ["NEXT", "LEFT", "LAST", "PASSED", "SERVICE", "ACTION", "RID", "SCHEDULE", "NOTE"],
        [[show(r.next_run, ctx.tz), _left(r.next_run, now), show(r.last_run, ctx.tz),
          None if r.last_run is None else f"{span((now - r.last_run).total_seconds())} ago", r.service, r.action,
          r.rid, r.definition or None, r.note] for r in rows]))


@print_group.command("status")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text")
def print_status(fmt: str) -> None:
    """The runner's heartbeat: last tick, its duration, lag, workers, outbox backlog, database."""
    from omtasks.cli.output import dump_json
    from omtasks.runner.context import Context
    from omtasks.runner.liveness import node_status, render_node_status

    ctx = Context.create()
    try:
        doc = node_status(ctx)
    finally:
        ctx.close()
    click.echo(dump_json(doc) if fmt == "json" else render_node_status(doc))


@print_group.command("metrics")
def print_metrics() -> None:
    """This node's metrics in the Prometheus text format, for node_exporter's textfile collector."""
    from omtasks.metrics import node_metrics_text
    from omtasks.runner.context import Context

    ctx = Context.create()
    try:
        click.echo(node_metrics_text(ctx), nl=False)
    finally:
        ctx.close()
