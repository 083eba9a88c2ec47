"""The `om` command line.

`om <command> ...` for the node-wide commands and `om <service> <action> ...`
for everything about one service.  Subcommand modules are imported only when
used, so `om --help` and `om schedule ...` never pay for SQLAlchemy.
"""

from __future__ import annotations

import importlib
import sys

import click

from omtasks import __version__
from omtasks.cli.errors import OmError

# command word -> "module:attribute" of its click command
COMMANDS = {
    "ls": ("omtasks.cli.services:ls", "list the services known on this node"),
    "schedule": ("omtasks.cli.schedule:schedule", "preview and check schedule expressions"),
    "runner": ("omtasks.cli.runner:runner", "the scheduler: tick, daemon, install"),
    "confirmations": ("omtasks.cli.confirmations:confirmations", "pending confirmations of scheduled runs"),
    "node": ("omtasks.cli.node:node", "this node's schedule table"),
    "db": ("omtasks.cli.db:db", "database schema: upgrade, current"),
    "collector": ("omtasks.cli.collector:collector", "the collector server"),
}
SERVICE_GROUP = "omtasks.cli.service:service"


def _load(target: str) -> click.Command:
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


class RootGroup(click.Group):
    """Resolves reserved words to their commands and any other word to a service."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in COMMANDS:
            try:
                return _load(COMMANDS[name][0])
            except ModuleNotFoundError as exc:
                if exc.name and exc.name.startswith("omtasks.cli."):
                    return None
                raise
        ctx.meta["om.service"] = name
        return _load(SERVICE_GROUP)

    def shell_complete(self, ctx: click.Context, incomplete: str) -> list:
        """The commands, then the services of this node (`om pg<TAB>`)."""
        from omtasks.cli.completion import services

        return [*super().shell_complete(ctx, incomplete), *services(incomplete)]

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, help_) for name, (_, help_) in COMMANDS.items()]
        rows.append(("SVC ACTION", "act on one service: run, print, set, confirm, start, switch, ..."))
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=RootGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="om")
def cli() -> None:
    """om: the embedded service task scheduler.

    \b
    Examples:
      om schedule next "02:00 sat:last" --count 6
      om pgdb run --rid task#backup
      om runner tick
    """


def main(argv: list[str] | None = None) -> None:
    """Entry point: `om: <message>` on stderr and the error's exit code for expected failures."""
    try:
        rv = cli.main(args=argv, prog_name="om", standalone_mode=False)
    except OmError as exc:
        if exc.message:
            click.echo(f"om: {exc.message}", err=True)
        sys.exit(exc.code)
    except click.exceptions.Abort:
        click.echo("om: aborted", err=True)
        sys.exit(1)
    except click.UsageError as exc:
        # one line, naming the option or argument (SPEC 10, 12); `--help` shows the usage
        hint = f" (see '{exc.ctx.command_path} --help')" if exc.ctx else ""
        click.echo(f"om: {exc.format_message()}{hint}", err=True)
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        click.echo(f"om: {exc.format_message()}", err=True)
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except Exception as exc:
        # database unreachable, locked past the busy timeout, or behind; a file om cannot write:
        # one line, exit 1 (SPEC 12), never a traceback
        message = failure_line(exc)
        if message is None:
            raise
        click.echo(f"om: {message}", err=True)
        sys.exit(1)
    sys.exit(rv if isinstance(rv, int) else 0)


#: SQLite's words for a full disk, a read-only file and a file it may not open
_SQLITE_WORDS = (
    ("database or disk is full", "no space left on device"),
    ("attempt to write a readonly database", "read-only database: cannot write"),
    ("unable to open database file", "cannot open the database file"),
)


def failure_line(exc: BaseException) -> str | None:
    """The `om: ...` line of an expected failure (database, file system), None for a bug."""
    import errno
    import os

    module = type(exc).__module__
    if module == "omtasks.timeutil":  # OM_NOW that does not parse or is out of range
        return f"OM_NOW: {exc}" if os.environ.get("OM_NOW") else str(exc)
    if isinstance(exc, OSError):
        where = f": {exc.filename}" if exc.filename else ""
        if exc.errno in (errno.EACCES, errno.EPERM):
            return f"permission denied{where} (run as root or set OM_ROOT)"
        if exc.errno == errno.ENOSPC:
            return f"no space left on device{where}"
        if exc.errno == errno.EROFS:
            return f"read-only file system{where}"
        return f"{exc.strerror or exc}{where}"
    if module.startswith(("sqlalchemy", "omtasks.db", "sqlite3", "psycopg")):
        detail = str(getattr(exc, "orig", None) or exc)
        first = detail.splitlines()[0] if detail else type(exc).__name__
        for words, plain in _SQLITE_WORDS:
            if words in first:
                return _sqlite_line(plain)
        return first
    return None


def _sqlite_line(plain: str) -> str:
    """Name the SQLite file, and say why it cannot be written when the file system tells."""
    import os

    from omtasks.paths import om_root

    if os.environ.get("OM_DB_URL", "sqlite:").startswith("sqlite:") is False:
        return plain
    path = f"{om_root()}/var/om.db"
    folder = os.path.dirname(path)
    if plain.startswith("no space"):
        return f"{plain}: {path}"
    try:
        if os.statvfs(folder).f_flag & os.ST_RDONLY:
            return f"read-only file system: {path}"
    except OSError:
        pass
    if not os.access(folder, os.W_OK | os.X_OK) or (os.path.exists(path) and not os.access(path, os.R_OK | os.W_OK)):
        return f"permission denied: {path} (run as root or set OM_ROOT)"
    return f"{plain}: {path}"
