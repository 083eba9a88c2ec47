"""`om schedule next|check`: previews of any schedule expression, no database."""

from __future__ import annotations

import json
from datetime import datetime, tzinfo

import click

from omtasks.cli.errors import OmError
from omtasks.schedule import ScheduleSyntaxError, parse_schedule
from omtasks.schedule.preview import check_verdict, upcoming, window_end
from omtasks.timeutil import TimeOptionError, iso, local_zone, parse_time_option, read_now, zone, zone_name

FMT = "%Y-%m-%d %H:%M:%S"
PROBABILISTIC_NOTE = "runners add a stable offset"


def _zone(tz_name: str | None) -> tzinfo:
    if not tz_name:
        return local_zone()
    try:
        return zone(tz_name)
    except TimeOptionError as exc:
        raise click.BadParameter(str(exc), param_hint="'--tz'") from None


def _time(text: str | None, tz: tzinfo, option: str) -> datetime | None:
    if text is None:
        return None
    try:
        return parse_time_option(text, tz)
    except TimeOptionError as exc:
        raise click.BadParameter(str(exc), param_hint=f"'{option}'") from None


def _grace() -> int:
    """runner.grace of node.conf (default 60 s); a preview never fails on node.conf."""
    from omtasks.paths import node_conf_path

    try:
        from omtasks.config import load_node_config

        node, _ = load_node_config(node_conf_path())
        return int(node.grace)
    except (ImportError, OSError):
        return 60


def _line(schedule, t: datetime, tz: tzinfo) -> str:
    text = t.astimezone(tz).strftime(f"{FMT} %a")
    if schedule.probabilistic:
        end = window_end(schedule, t)
        if end is not None:
            text += f"  (~ window until {end:%H:%M:%S}; {PROBABILISTIC_NOTE})"
    return text


def _parse(expr: str):
    try:
        return parse_schedule(expr), None
    except ScheduleSyntaxError as exc:
        return None, exc


def _error_line(exc: ScheduleSyntaxError) -> str:
    return f"{exc} at column {exc.position}" if exc.position else str(exc)


def _detected_dialect(expr: str) -> str:
    words = expr.strip().split()
    if not words or expr.strip() == "@0":
        return "none"
    if words[0] in ("cron", "anacron"):
        return words[0]
    if len(words) == 5 and not expr.strip().startswith("!"):
        return "cron"
    return "networker"


count_option = click.option("--count", type=click.IntRange(1, 1000), default=5, show_default=True,
                            help="how many times to list")
tz_option = click.option("--tz", "tz_name", metavar="ZONE", help="time zone (default: the node's)")
format_option = click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text")


@click.group()
def schedule() -> None:
    """Preview and check schedule expressions (networker, cron, anacron)."""


@schedule.command("next")
@click.argument("expr")
@count_option
@click.option("--from", "from_", metavar="T", help="first instant considered (default: now)")
@click.option("--last", metavar="T", help="the marker: start of the previous run (default: never ran)")
@tz_option
@format_option
def next_cmd(expr: str, count: int, from_: str | None, last: str | None, tz_name: str | None, fmt: str) -> None:
    """List the next start times of EXPR."""
    tz = _zone(tz_name)
    start = _time(from_, tz, "--from") or read_now(tz)
    marker = _time(last, tz, "--last")
    parsed, error = _parse(expr)
    if error is not None:
        raise OmError(_error_line(error), 2)
    times = upcoming(parsed, start, marker, count)
    if fmt == "json":
        doc = {"expression": expr, "dialect": parsed.dialect, "tz": zone_name(tz), "from": iso(start, tz),
               "last": iso(marker, tz), "next": [iso(t, tz) for t in times]}
        click.echo(json.dumps(doc, indent=2))
        return
    if parsed.dialect == "none":
        click.echo("unscheduled (manual runs only)")
    elif not times:
        click.echo("never")
    for t in times:
        click.echo(_line(parsed, t, tz))


@schedule.command("check")
@click.argument("expr")
@click.option("--now", "now_text", metavar="T", help="instant evaluated (default: now)")
@click.option("--last", metavar="T", help="the marker: start of the previous run (default: never ran)")
@tz_option
@count_option
@format_option
def check_cmd(expr: str, now_text: str | None, last: str | None, tz_name: str | None, count: int, fmt: str) -> None:
    """Explain EXPR: its parsed form, the verdict at --now and the next start times."""
    tz = _zone(tz_name)
    now = _time(now_text, tz, "--now") or read_now(tz)
    marker = _time(last, tz, "--last")
    parsed, error = _parse(expr)
    if error is not None:
        if fmt == "json":
            doc = {"expression": expr, "dialect": _detected_dialect(expr), "tz": zone_name(tz),
                   "now": iso(now, tz), "last": iso(marker, tz), "valid": False, "error": _error_line(error),
                   "members": [], "verdict": None, "reason": None, "next": []}
            click.echo(json.dumps(doc, indent=2))
        raise OmError(_error_line(error), 2)
    if parsed.dialect == "none":
        decision_verdict, reason = "not_allowed", "unscheduled (manual runs only)"
    else:
        decision = check_verdict(parsed, now, marker, _grace())
        decision_verdict, reason = decision.verdict, decision.reason
    members = parsed.describe()
    times = upcoming(parsed, now, marker, count)
    if fmt == "json":
        doc = {"expression": expr, "dialect": parsed.dialect, "tz": zone_name(tz), "now": iso(now, tz),
               "last": iso(marker, tz), "valid": True, "error": None, "members": members,
               "verdict": decision_verdict, "reason": reason, "next": [iso(t, tz) for t in times]}
        click.echo(json.dumps(doc, indent=2))
        return
    click.echo(f"expression: {expr}")
    click.echo(f"dialect:    {parsed.dialect}")
    for i, text in enumerate(members, 1):
        label = f"member {i}:" if parsed.dialect == "networker" else "parsed:"
        click.echo(f"{label:<12}{text}")
    if marker is not None:
        click.echo(f"last:       {marker.astimezone(tz).strftime(FMT)}")
    click.echo(f"now:        {now.astimezone(tz).strftime(FMT)} {zone_name(tz)}")
    click.echo(f"verdict:    {decision_verdict}: {reason}")
    if not times:
        click.echo("next:       " + ("unscheduled (manual runs only)" if parsed.dialect == "none" else "never"))
    for i, t in enumerate(times):
        click.echo(("next:       " if i == 0 else " " * 12) + _line(parsed, t, tz))
