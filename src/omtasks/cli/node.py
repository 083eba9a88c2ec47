"""`om node print schedule`: every service entry of this node in one table (SPEC 10)."""

from __future__ import annotations

import click

ORDER = {"compliance_auto": 0, "push_config": 1, "push_resinfo": 2}


@click.group()
def node() -> None:
    """This node's view."""


@node.group("print")
def print_group() -> None:
    """Print this node's tables."""


@print_group.command("schedule")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text")
def print_schedule(fmt: str) -> None:
    """SERVICE plus the `print schedule` columns; compliance_auto and push_* rows first."""
    from omtasks.cli.output import dump_json, table
    from omtasks.runner.catalog import service_files
    from omtasks.runner.context import Context
    from omtasks.runner.table import schedule_rows

    ctx = Context.create()
    try:
        rows = schedule_rows(ctx, list(service_files(ctx.root)))
    finally:
        ctx.close()
    rows.sort(key=lambda r: (ORDER.get(r.action, 3), r.service))
    if fmt == "json":
        click.echo(dump_json([r.as_json(ctx.tz) for r in rows]))
        return
    click.echo(table(["SERVICE", "ACTION", "LAST_RUN", "NEXT_RUN", "CONFIG_PARAMETER", "SCHEDULE", "NOTE"],
                     [r.as_row(ctx.tz, with_service=True) for r in rows]))
