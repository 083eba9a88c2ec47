"""`om collector serve|add-node|add-viewer`: the collector server, its node tokens and viewers (SPEC 9).

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


#: the longest node or viewer name accepted (also the collector's bound on service names)
MAX_NAME = 255


def _open(db_url: str | None):
    from omtasks.cli.errors import OmError
    from omtasks.collector.store import open_store
    from omtasks.paths import om_root

    # nothing the collector creates (database, WAL files) may be world-readable (SPEC 2)
    os.umask(0o027)
    try:
        return open_store(db_url, om_root())
    except PermissionError as exc:
        raise OmError(f"permission denied: {exc.filename or exc} (run as root or set OM_ROOT)") from None
    except OSError as exc:
        raise OmError(f"cannot open the collector database: {exc.strerror or exc}: {exc.filename}") from None


def _name(value: str, what: str, param: str) -> None:
    from omtasks.config.values import is_node_name

    if len(value) > MAX_NAME:
        raise click.BadParameter(f"'{value[:40]}...' is not a {what}: longer than {MAX_NAME} characters",
                                 param_hint=param)
    if not is_node_name(value):
        raise click.BadParameter(f"'{value}' is not a {what} (letters, digits, '.', '-', '_')", param_hint=param)


@click.group()
def collector() -> None:
    """The collector server: stores the pushes of every node."""


@collector.command()
@click.option("--listen", default="127.0.0.1:8180", show_default=True, metavar="HOST:PORT",
              callback=_listen, help="address to listen on")
@click.option("--db", "db_url", metavar="URL", help=DB_HELP)
@click.option("--max-push-mib", type=click.IntRange(1, 1024), default=16, show_default=True,
              help="largest push body, MiB")
@click.option("--quota-mib", type=click.IntRange(1, 1024**3), default=1024, show_default=True,
              help="payload MiB stored per node; pushes beyond it are refused (413)")
@click.option("--retention-days", type=click.IntRange(1, 36500), default=7, show_default=True,
              help="days a push that is no longer current is kept")
def serve(listen: tuple[str, int], db_url: str | None, max_push_mib: int, quota_mib: int,
          retention_days: int) -> None:
    """Serve the push API, the fleet page and /metrics until SIGTERM."""
    from datetime import timedelta

    from omtasks.collector.app import Settings
    from omtasks.collector.app import serve as run

    run(_open(db_url), *listen, Settings(max_push_bytes=max_push_mib * 1024**2, quota_bytes=quota_mib * 1024**2,
                                         retention=timedelta(days=retention_days)))


@collector.command("add-node")
@click.argument("node")
@click.option("--db", "db_url", metavar="URL", help=DB_HELP)
def add_node(node: str, db_url: str | None) -> None:
    """Print a new token bound to NODE (adding NODE again replaces its token)."""
    from omtasks.collector.store import add_node as bind

    _name(node, "node name", "NODE")
    engine = _open(db_url)
    try:
        click.echo(bind(engine, node))
    finally:
        engine.dispose()


@collector.command("add-viewer")
@click.argument("name")
@click.option("--db", "db_url", metavar="URL", help=DB_HELP)
def add_viewer(name: str, db_url: str | None) -> None:
    """Print a new password for viewer NAME, for the fleet page and /metrics (adding NAME again replaces it)."""
    from omtasks.collector.store import add_viewer as create

    _name(name, "viewer name", "NAME")
    engine = _open(db_url)
    try:
        click.echo(create(engine, name))
    finally:
        engine.dispose()


@collector.command()
@click.option("--db", "db_url", metavar="URL", help=DB_HELP)
@click.option("--retention-days", type=click.IntRange(1, 36500), default=7, show_default=True,
              help="days a push that is no longer current is kept")
def prune(db_url: str | None, retention_days: int) -> None:
    """Delete now what `serve` deletes every minute: old pushes that are no longer current."""
    from datetime import timedelta

    from omtasks.collector.store import prune as delete_old

    engine = _open(db_url)
    try:
        deleted = delete_old(engine, timedelta(days=retention_days))
    finally:
        engine.dispose()
    click.echo(f"deleted {deleted} push(es) received more than {retention_days} day(s) ago that are no longer current")
