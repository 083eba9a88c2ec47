"""`om db upgrade|current`: the schema revision of the node's database (SPEC 2)."""

from __future__ import annotations

import click


@click.group()
def db() -> None:
    """Database schema: `init` a new one, `upgrade` to this om's head revision, `current` revision."""


@db.command()
def upgrade() -> None:
    """Upgrade the database (SQLite file or shared PostgreSQL) to head."""
    from omtasks.db import upgrade as do_upgrade
    from omtasks.paths import om_root

    before, after = do_upgrade(None, om_root())
    click.echo(f"{before or 'empty'} -> {after} (head)" if before != after else f"{after} (head): nothing to do")


@db.command()
def init() -> None:
    """Create an empty database at head, on purpose (never done silently over lost history)."""
    from omtasks.db import init as do_init
    from omtasks.paths import om_root

    click.echo(f"empty -> {do_init(None, om_root())} (head)")


@db.command()
def current() -> None:
    """Print `<rev> (head)` or `<rev> (behind <head>)`."""
    from omtasks.db import current as do_current
    from omtasks.paths import om_root

    click.echo(do_current(None, om_root()))
