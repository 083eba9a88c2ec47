"""The schedule engine: networker, cron and anacron dialects (SPEC 4).

Pure and time-injected: no clock, no database.  `parse_schedule` detects the
dialect and returns an object with `dialect`, `validate(now, last, *, boot=None,
grace=0)` and `next_run(now, last, *, boot=None)`.
"""

from __future__ import annotations

import json
import re
from datetime import datetime

from omtasks.schedule.decision import Decision
from omtasks.schedule import limits
from omtasks.schedule.errors import ScheduleSyntaxError
from omtasks.schedule.networker import NetworkerSchedule
from omtasks.schedule.nwparse import parse_member

__all__ = [
    "Decision",
    "NetworkerSchedule",
    "ScheduleSyntaxError",
    "Unscheduled",
    "parse_schedule",
]

_FIELDS_RE = re.compile(r"\S+")


class Unscheduled:
    """Empty, `@0` or `[]`: manual runs only."""

    dialect = "none"
    never = True
    probabilistic = False

    def __init__(self, value: object) -> None:
        self.value = value

    def validate(self, now: datetime, last: datetime | None, *, boot: datetime | None = None,
                 grace: int = 0) -> Decision:
        return Decision("not_allowed", "unscheduled (manual runs only)")

    def next_run(self, now: datetime, last: datetime | None, *, boot: datetime | None = None) -> None:
        return None

    def describe(self) -> list[str]:
        return []


def parse_schedule(value: str | list[str]) -> NetworkerSchedule | Unscheduled:
    """Parse a schedule value of any dialect (detection order of SPEC 4.1)."""
    if isinstance(value, list | tuple):
        return _parse_list(value, list(value), json.dumps(list(value)))
    if not isinstance(value, str):
        raise ScheduleSyntaxError(value, f"a schedule is a string or a list of strings, not {type(value).__name__}")
    if len(value) > limits.MAX_CHARS:
        raise ScheduleSyntaxError(value, f"longer than {limits.MAX_CHARS} characters ({len(value)})")
    text = value.strip()
    if text in ("", "@0"):
        return Unscheduled(value)
    head = text.split(None, 1)[0]
    if head in ("cron", "anacron") and len(text) > len(head):
        from omtasks.schedule import cron, anacron  # noqa: I001 - keep croniter off the networker path

        module = cron if head == "cron" else anacron
        return module.parse(value, text[len(head):].strip(), value.find(text) + len(head) + 1)
    if text.startswith("["):
        deep = limits.nesting_depth(text, limits.MAX_NESTING)
        if deep is not None:
            raise ScheduleSyntaxError(value, f"brackets nested deeper than {limits.MAX_NESTING} levels",
                                      text[deep], value.find(text) + deep + 1)
        try:
            members = json.loads(text)
        except ValueError as exc:
            raise ScheduleSyntaxError(value, f"invalid JSON list: {exc.msg}", "[", value.find("[") + 1) from None
        if not isinstance(members, list):
            raise ScheduleSyntaxError(value, "a JSON schedule must be a list of strings", text, 1)
        return _parse_list(value, members, value)
    fields = _FIELDS_RE.findall(text)
    if len(fields) == 5 and not text.startswith("!"):
        from omtasks.schedule import cron

        return cron.parse(value, text, value.find(text))
    return NetworkerSchedule(value, (parse_member(value, text, value.find(text)),))


def _parse_list(value: object, members: list, shown: str) -> NetworkerSchedule | Unscheduled:
    if not members:
        return Unscheduled(value)
    if len(members) > limits.MAX_MEMBERS:
        raise ScheduleSyntaxError(value, f"more than {limits.MAX_MEMBERS} list members ({len(members)})")
    parsed = []
    cursor = 0
    for i, member in enumerate(members, 1):
        if not isinstance(member, str):
            token = json.dumps(member)
            found = shown.find(token, cursor)
            raise ScheduleSyntaxError(value, f"list member {i} is not a string: {token}", token,
                                      found + 1 if found >= 0 else shown.find("[") + 1)
        found = shown.find(member, cursor) if member else -1
        base = found if found >= 0 else 0
        cursor = found + len(member) if found >= 0 else cursor
        stripped = member.strip()
        if not stripped:
            raise ScheduleSyntaxError(value, f"list member {i} is empty", member, base + 1)
        if stripped.split(None, 1)[0] in ("cron", "anacron"):
            raise ScheduleSyntaxError(value, "cron and anacron schedules cannot be list members", stripped, base + 1)
        parsed.append(parse_member(value, member, base))
    return NetworkerSchedule(value, tuple(parsed))
