"""`om runner tick|daemon|exec|install`: the scheduler side of om (SPEC 8)."""

from __future__ import annotations

import shutil
import sys

import click

CRON_LINE = "* * * * * root {om} runner tick"
SYSTEMD_UNIT = """\
[Unit]
Description=om embedded service task scheduler
After=network-online.target

[Service]
Type=simple
ExecStart={om} runner daemon
ExecReload=/bin/kill -HUP $MAINPID
KillMode=process
Restart=on-failure

[Install]
WantedBy=multi-user.target
"""
SHELL_FUNCTION = """\
# optional: `svc ACTION` shortcuts for every service of this node, e.g. `pgdb run --rid task#0`
for _om_svc in $(om ls --format json 2>/dev/null | python3 -c 'import json,sys; print(" ".join(s["name"] for s in json.load(sys.stdin)))'); do
    eval "$_om_svc() { om $_om_svc \\"\\$@\\"; }"
done
unset _om_svc
"""
LOGROTATE = """\
# /etc/logrotate.d/om: the service logs and runner.log; om reopens a moved file at its next
# line (WatchedFileHandler), so neither copytruncate nor a postrotate signal is needed.
# Per-run logs (var/log/runs/) are not rotated: they go with their runs at retention.
{root}/var/log/*.log {{
    weekly
    rotate 8
    compress
    delaycompress
    missingok
    notifempty
    create 0640 root root
}}
"""


def logrotate_snippet() -> str:
    """The logrotate block of `om runner install --print`, for this OM_ROOT."""
    from omtasks.paths import om_root

    return LOGROTATE.format(root=om_root())


@click.group()
def runner() -> None:
    """The scheduler: cron calls `om runner tick` every minute."""


@runner.command()
@click.option("--now", "now_text", metavar="T", help="evaluation instant (tests; default: the clock)")
@click.option("--wait", is_flag=True, help="return once the workers this tick launched have exited")
@click.option("-v", "--verbose", is_flag=True, help="print one line per verdict change")
def tick(now_text: str | None, wait: bool, verbose: bool) -> int:
    """One pass: reload, reap, expire, evaluate, claim and launch due runs."""
    from omtasks.runner.context import Context
    from omtasks.runner.tick import run_tick

    ctx = Context.create(_checked_now(now_text))
    try:
        return run_tick(ctx, verbose=verbose, wait=wait)
    finally:
        ctx.close()


@runner.command()
def daemon() -> int:
    """Run ticks in a loop with second accuracy; SIGHUP reloads, SIGTERM exits after the pass."""
    from omtasks.runner.daemon import run_daemon

    return run_daemon()


@runner.command("exec")
@click.argument("run_ids", nargs=-1, type=click.IntRange(1, 2**63 - 1), required=True)
def exec_cmd(run_ids: tuple[int, ...]) -> int:
    """(internal) carry out claimed runs; started detached by the tick."""
    from omtasks.runner.context import Context
    from omtasks.runner.worker import exec_runs

    ctx = Context.create()
    try:
        return exec_runs(ctx, list(run_ids))
    finally:
        ctx.close()


@runner.command()
@click.option("--print", "print_", is_flag=True, required=True, help="print the crontab line and systemd unit")
def install(print_: bool) -> None:
    """Print the system crontab line, a systemd unit, an optional shell function and a logrotate snippet."""
    om = shutil.which("om") or f"{sys.executable} -m omtasks"
    click.echo("# /etc/cron.d/om: one line per node")
    click.echo(CRON_LINE.format(om=om))
    click.echo("")
    click.echo("# or /etc/systemd/system/om-runner.service (then: systemctl enable --now om-runner)")
    click.echo(SYSTEMD_UNIT.format(om=om))
    click.echo(SHELL_FUNCTION, nl=False)
    click.echo("")
    click.echo(logrotate_snippet(), nl=False)


def _checked_now(text: str | None) -> str | None:
    if text is None:
        return None
    from omtasks.timeutil import TimeOptionError, local_zone, parse_time_option

    try:
        parse_time_option(text, local_zone())
    except TimeOptionError as exc:
        raise click.BadParameter(str(exc), param_hint="'--now'") from None
    return text
