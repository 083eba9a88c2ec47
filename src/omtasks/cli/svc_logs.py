"""`om SVC logs` and `om SVC print run ID`: what a service printed and what happened to one run.

The service log (`var/log/<service>.log`) is filtered line by line: its lines
carry the node, the run id and the rid (SPEC 5.6).  `--run ID` prints that
run's own log (`var/log/runs/<service>/<id>.log`, its whole output), or the
stored `output_tail` when the task ran with `log = false` or the file is gone.
`--follow` keeps reading like `tail -F`: a file moved by logrotate is reopened.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import click

from omtasks.cli import completion
from omtasks.cli.errors import OmError
from omtasks.cli.service import service_name

#: `<date> <time>[offset] <node> [run=<id> ]<rid> <LEVEL> <message>`; the rid is empty on action lines
LINE_RE = re.compile(
    r"^(?P<at>\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2},\d{3}(?:[+-]\d{2}:\d{2})?) (?P<node>\S+) "
    r"(?:run=(?P<run>\d+) )?(?P<rid>\S*)\s+(?P<level>DEBUG|INFO|WARNING|ERROR)\s")
FOLLOW_POLL = 0.2


def line_time(at: str) -> datetime:
    """A log line's instant: its offset when written with one, else local time (older lines)."""
    value = datetime.strptime(at[:19], "%Y-%m-%d %H:%M:%S")
    if len(at) > 23:
        return datetime.fromisoformat(f"{at[:10]}T{at[11:19]}{at[23:]}")
    return value.astimezone()


def parse_since(text: str, now: datetime, tz) -> datetime:
    """`--since`: a duration back from now (`90m`, `2h`, `1d`) or a time (`2026-12-01 08:00[+01:00]`)."""
    from omtasks.config.values import parse_duration
    from omtasks.timeutil import TimeOptionError, parse_time_option

    try:
        return now - timedelta(seconds=parse_duration(text))
    except ValueError:
        pass
    try:
        return parse_time_option(text, tz)
    except TimeOptionError:
        raise click.BadParameter(f"'{text}' is neither a duration (30m, 2h, 1d) nor a time "
                                 "(YYYY-MM-DD HH:MM[:SS][+HH:MM])", param_hint="'--since'") from None


class LineFilter:
    """Which service log lines `om SVC logs` prints."""

    def __init__(self, rids: set[str] | None, node: str | None, since: datetime | None) -> None:
        self.rids = rids
        self.node = node
        self.since = since

    def __call__(self, line: str) -> bool:
        if self.rids is None and self.node is None and self.since is None:
            return True
        m = LINE_RE.match(line)
        if m is None:
            return False
        if self.rids is not None and m["rid"] not in self.rids:
            return False
        if self.node is not None and m["node"] != self.node:
            return False
        return self.since is None or line_time(m["at"]) >= self.since


def _lines(path: Path, follow: bool, done=None) -> Iterator[str]:
    """The lines of `path`; with `follow`, then the new ones, reopening a rotated file, until `done()`."""
    handle = None
    inode = None
    pending = ""
    while True:
        if handle is None:
            try:
                handle = open(path, encoding="utf-8", errors="replace")  # noqa: SIM115 - reopened on rotation
                inode = os.fstat(handle.fileno()).st_ino
            except FileNotFoundError:
                if not follow:
                    return
        if handle is not None:
            chunk = handle.read()
            if chunk:
                pending += chunk
                *complete, pending = pending.split("\n")
                yield from complete
                continue
        if not follow:
            if pending:
                yield pending
            return
        if done is not None and done():
            return
        time.sleep(FOLLOW_POLL)
        try:
            if handle is not None and os.stat(path).st_ino != inode:
                handle.close()
                handle = None  # moved by logrotate: read the new file from its start
        except FileNotFoundError:
            pass


def _run_row(ctx, name: str, run_id: int):
    from sqlalchemy import select

    from omtasks.db.connect import reading
    from omtasks.db.schema import runs

    with reading(ctx.engine) as conn:
        row = conn.execute(select(runs).where(runs.c.id == run_id)).first()
    if row is None or row.service != name:
        raise OmError(f"run {run_id} is not a run of service '{name}' (see 'om {name} print runs')")
    return row


@click.command("logs")
@click.option("--run", "run_id", type=click.IntRange(1, 2**63 - 1), metavar="ID",
              shell_complete=completion.run_ids, help="one run's whole output")
@click.option("--rid", shell_complete=completion.rids,
              help="only lines of these rids (comma list)")
@click.option("--node", help="only lines written on this node")
@click.option("--since", metavar="WHEN", help="only lines since a duration ago (2h) or a time")
@click.option("-f", "--follow", is_flag=True, help="keep printing new lines (with --run: until the run ends)")
def logs(run_id: int | None, rid: str | None, node: str | None, since: str | None, follow: bool) -> None:
    """The service log, filtered; or one run's output with --run."""
    from omtasks.paths import log_dir, run_log_path, service_conf_path
    from omtasks.runner.context import Context

    name = service_name()
    ctx = Context.create()
    try:
        if run_id is None and not service_conf_path(name, ctx.root).exists() \
                and not (log_dir(ctx.root) / f"{name}.log").exists():
            raise OmError(f"service '{name}' does not exist")
        keep = LineFilter({r.strip() for r in rid.split(",")} if rid else None, node,
                          parse_since(since, ctx.now, ctx.tz) if since else None)
        if run_id is not None:
            row = _run_row(ctx, name, run_id)
            path = run_log_path(name, run_id, ctx.root)
            if not path.exists() and (not follow or row.state in _terminal()):
                if row.output_tail:
                    click.echo(row.output_tail, nl=not row.output_tail.endswith("\n"))
                return
            source = _lines(path, follow, done=lambda: _run_row(ctx, name, run_id).state in _terminal())
        else:
            source = _lines(log_dir(ctx.root) / f"{name}.log", follow)
        try:
            for line in source:
                if run_id is not None or keep(line):
                    click.echo(line)
        except KeyboardInterrupt:
            return
    finally:
        ctx.close()


def _terminal() -> frozenset[str]:
    from omtasks import statemachine as sm

    return sm.TERMINAL
