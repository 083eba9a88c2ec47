"""`om ls`: the services known on this node, with their placement, local instance and config health."""

from __future__ import annotations

import contextlib

import click

from omtasks.cli.output import FORMATS, dump_json, table

HEADERS = ["NAME", "TOPOLOGY", "ACTIVE_NODE", "LOCAL_STATE", "FROZEN", "CONFIG"]


def config_health(cfg, other_checksums: set[str]) -> str:
    """`invalid` on any error; `warnings` on warnings, or when another node holds a different copy (SPEC 2)."""
    if cfg.errors:
        return "invalid"
    if cfg.warnings or other_checksums - {cfg.checksum}:
        return "warnings"
    return "ok"


@click.command("ls")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="text", show_default=True)
def ls(fmt: str) -> None:
    """List the services whose file is in this node's etc/ (parsed now, not from the last tick)."""
    from sqlalchemy import select

    from omtasks.cli.svc_config import database_errors
    from omtasks.config import load_service
    from omtasks.db.schema import instances, placements
    from omtasks.db.schema import services as services_table
    from omtasks.runner.catalog import node_count, service_files
    from omtasks.runner.context import Context

    ctx = Context.create()
    files = service_files(ctx.root)
    from omtasks.db.connect import reading

    with database_errors(), contextlib.closing(ctx), reading(ctx.engine) as conn:
        shared = node_count(conn)
        p = placements.c
        active = {service: node for service, node in conn.execute(select(p.service, p.active_node))}
        i = instances.c
        local = {
            r.service: r for r in conn.execute(select(i.service, i.state, i.frozen).where(i.node == ctx.node))
        }
        s = services_table.c
        copies: dict[str, set[str]] = {}
        for name, checksum in conn.execute(select(s.name, s.checksum).where(s.node != ctx.node)):
            if checksum:
                copies.setdefault(name, set()).add(checksum)
    items = []
    for name, path in files.items():
        cfg = load_service(path, ctx.node, shared_nodes=shared)
        instance = local.get(name)
        items.append(
            {
                "name": name,
                "topology": cfg.topology,
                "active_node": active.get(name),
                "local_state": instance.state if instance else None,
                "frozen": bool(instance.frozen) if instance else None,
                "config": config_health(cfg, copies.get(name, set())),
            }
        )
        if cfg.errors:  # what is wrong, so a directory or a dangling symlink named *.conf says so
            items[-1]["problem"] = cfg.first_error()
            items[-1]["unread"] = cfg.unread
    if fmt == "json":
        for item in items:
            item.pop("unread", None)
        click.echo(dump_json(items))
        return
    rows = [
        [
            item["name"],
            item["topology"],
            item["active_node"],
            item["local_state"],
            None if item["frozen"] is None else ("yes" if item["frozen"] else "no"),
            f"invalid: {item['unread']}" if item.get("unread") else item["config"],
        ]
        for item in items
    ]
    click.echo(table(HEADERS, rows))
