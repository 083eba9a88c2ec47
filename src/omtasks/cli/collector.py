"""`om collector serve|add-node`: the collector server and its node tokens (SPEC 9).

The collector has its own database (`--db`, default `$OM_ROOT/var/collector.db`)
and never opens the node's: Starlette, uvicorn and SQLAlchemy are imported only
inside the commands.
"""

from __future__ import annotations

import os

import click

DB_HELP = "collector database, any SQLAlchemy URL (default: sqlite:///$OM_ROOT/var/collector.db)"


def _listen(_ctx: click.Context, _param: click.Parameter, value: str) -> tuple[str, int]:
    """`HOST:PORT`, `[IPV6]:PORT`, or `:PORT` for every address."""
    host, colon, port = value.rpartition(":")
    if not colon or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise click.BadParameter(f"'{value}' is not HOST:PORT with a port from 1 to 65535")
    host = host.removeprefix("[").removesuffix("]") or "0.0.0.0"
    return host, int(port)


def _open(db_url: str | None):
    from omtasks.collector.store import open_store
    from omtasks.paths import om_root

    # nothing the collector creates (database, WAL files) may be world-readable (SPEC 2)
    os.umask(0o027)
    return open_store(db_url, om_root())


@click.group()
def collector() -> None:
    """The collector server: stores the pushes of every node."""


@collector.command()
@click.option("--listen", default="127.0.0.1:8180", show_default=True, metavar="HOST:PORT",
              callback=_listen, help="address to listen on")
@click.option("--db", "db_url", metavar="URL", help=DB_HELP)
def serve(listen: tuple[str, int], db_url: str | None) -> None:
    """Serve POST /v1/push and GET /v1/services until SIGTERM."""
    from omtasks.collector.app import serve as run

    run(_open(db_url), *listen)


@collector.command("add-node")
@click.argument("node")
@click.option("--db", "db_url", metavar="URL", help=DB_HELP)
def add_node(node: str, db_url: str | None) -> None:
    """Print a new token bound to NODE (adding NODE again replaces its token)."""
    from omtasks.collector.store import add_node as bind
    from omtasks.config.values import is_node_name

    if not is_node_name(node):
        raise click.BadParameter(f"'{node}' is not a node name", param_hint="NODE")
    engine = _open(db_url)
    try:
        click.echo(bind(engine, node))
    finally:
        engine.dispose()
