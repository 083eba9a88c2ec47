"""`om confirmations list`: pending confirmations of scheduled runs, every service."""

from __future__ import annotations

import click


@click.group()
def confirmations() -> None:
    """Pending confirmations of scheduled runs."""


@confirmations.command("list")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text")
@click.option("--all", "all_", is_flag=True, help="decided ones too")
def list_cmd(fmt: str, all_: bool) -> None:
    """ID RUN SERVICE RID NODE REQUESTED EXPIRES STATE; pending only unless --all."""
    from sqlalchemy import select

    from omtasks.cli.output import dump_json, table
    from omtasks.db.schema import confirmations as table_
    from omtasks.runner.context import Context
    from omtasks.runner.status import confirmation_doc
    from omtasks.timeutil import from_utc_naive, show

    ctx = Context.create()
    try:
        c = table_.c
        q = select(table_).order_by(c.id)
        if not all_:
            q = q.where(c.state == "pending")
        with ctx.engine.begin() as conn:
            rows = conn.execute(q).fetchall()
    finally:
        ctx.close()
    tz = ctx.tz
    if fmt == "json":
        click.echo(dump_json([confirmation_doc(r, tz) for r in rows]))
        return
    click.echo(table(["ID", "RUN", "SERVICE", "RID", "NODE", "REQUESTED", "EXPIRES", "STATE"],
                     [[str(r.id), str(r.run_id), r.service, r.rid, r.node,
                       show(from_utc_naive(r.requested_at), tz), show(from_utc_naive(r.expires_at), tz), r.state]
                      for r in rows]))
