"""Cron dialect: our own strict parser, croniter for slots, the DST mapping of SPEC 4.5.

croniter iterates naive local wall-clock minutes; each slot is then mapped to an
instant: a slot inside a spring-forward gap becomes the first instant after the
gap (all gap slots of a night collapse into one), and a repeated wall-clock time
is its first occurrence only.
"""

from __future__ import annotations

import heapq
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, tzinfo

from croniter import CroniterBadDateError, croniter

from omtasks.schedule import limits
from omtasks.schedule.decision import Decision
from omtasks.schedule.errors import ScheduleSyntaxError
from omtasks.timeutil import from_local_naive, in_gap


def _digits(text: str) -> bool:
    """ASCII decimal digits only (str.isdigit() also accepts '²', which int() rejects)."""
    return text.isascii() and text.isdigit()


ALIASES = {
    "@hourly": "0 * * * *",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@weekly": "0 0 * * 0",
    "@monthly": "0 0 1 * *",
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
}
_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
# name, low, high, names (index + offset = value)
FIELDS = (
    ("minute", 0, 59, None, 0),
    ("hour", 0, 23, None, 0),
    ("day-of-month", 1, 31, None, 0),
    ("month", 1, 12, _MONTHS, 1),
    ("day-of-week", 0, 7, _DAYS, 0),
)
_ELEMENT_RE = re.compile(r"^(?:(\*)|([A-Za-z]+|\d+)(?:-([A-Za-z]+|\d+))?)(?:/(\d+))?$", re.ASCII)
_UNSUPPORTED = re.compile(r"[#?]|(?<![A-Za-z])\d*[LWH]\d*(?![A-Za-z])", re.ASCII)
_NEAR = timedelta(hours=3)


def _value(token: str, field: tuple, fail) -> int:
    name, low, high, names, offset = field
    if _digits(token):
        if len(token) > limits.MAX_DIGITS:
            raise fail(f"value '{token}' out of range {low}-{high} in {name} field", token)
        n = int(token)
        if not low <= n <= high:
            raise fail(f"value {n} out of range {low}-{high} in {name} field", token)
        return n
    if names and token.lower() in names:
        return names.index(token.lower()) + offset
    raise fail(f"invalid token '{token}' in {name} field", token)


def _check_field(text: str, field: tuple, fail) -> None:
    for element in text.split(","):
        bad = _UNSUPPORTED.search(element)
        if bad:
            token = bad.group(0).strip("0123456789") or bad.group(0)
            raise fail(f"unsupported token '{token}'", element)
        m = _ELEMENT_RE.match(element)
        if not m:
            raise fail(f"invalid token '{element}' in {field[0]} field", element or text)
        star, a, b, step = m.groups()
        if step is not None and not step.strip("0"):
            raise fail(f"step 0 in '{element}'", element)
        span = field[2] - field[1] + 1
        if step is not None and (len(step) > limits.MAX_DIGITS or int(step) > span):
            raise fail(f"step {step} out of range 1-{span} in {field[0]} field", element)
        if star:
            continue
        if step is not None and b is None:
            raise fail(f"a step needs '*' or a range: '{element}'", element)
        lo = _value(a, field, fail)
        if b is not None and _value(b, field, fail) < lo:
            raise fail(f"reversed range '{element}' in {field[0]} field", element)


def parse(value: str, body: str, base: int) -> CronSchedule:
    """Parse the cron expression `body`, found at offset `base` of `value`."""
    found_body = value.find(body, base) if body else -1
    start = found_body if found_body >= 0 else base

    def fail(detail: str, token: str, at: int = start) -> ScheduleSyntaxError:
        # search the token from the start of its own field, so a repeated token is located right
        found = value.find(token, at) if token else -1
        return ScheduleSyntaxError(value, f"bad cron expression '{body}': {detail}{hint}", token,
                                   (found if found >= 0 else at) + 1)

    spans = [(m.group(0), start + m.start()) for m in re.finditer(r"\S+", body)]
    fields = [text for text, _ in spans]
    hint = ""
    if len(fields) == 1 and fields[0].startswith("@"):
        alias = fields[0].lower()
        if alias not in ALIASES:
            raise fail(f"unsupported alias '{fields[0]}'", fields[0])
        return CronSchedule(value, ALIASES[alias], body)
    if fields and ":" in fields[0]:
        hint = " (a networker expression has at most 4 fields)"
    if len(fields) != 5:
        if len(fields) > 5:
            raise fail(f"expected 5 fields, got {len(fields)}", fields[5], spans[5][1])
        raise fail(f"expected 5 fields, got {len(fields)}", body)
    for (text, at), field in zip(spans, FIELDS, strict=True):
        _check_field(text, field, lambda detail, token, at=at: fail(detail, token, at))
    return CronSchedule(value, " ".join(_normalize(text, field) for text, field in zip(fields, FIELDS, strict=True)),
                        body)


def _normalize(text: str, field: tuple) -> str:
    """Rewrite single-value ranges `a-a[/n]` as `a`: croniter reads them as `*`."""
    out = []
    for element in text.split(","):
        star, a, b, _ = _ELEMENT_RE.match(element).groups()
        if not star and b is not None and _value(a, field, None) == _value(b, field, None):
            element = a
        out.append(element)
    return ",".join(out)


class CronSchedule:
    """A cron expression evaluated on naive wall-clock minutes."""

    dialect = "cron"
    probabilistic = False
    never = False

    def __init__(self, value: str, expr: str, text: str) -> None:
        self.value = value
        self.expr = expr
        self.text = text
        fields = expr.split()
        if not fields[2].startswith("*") and not fields[4].startswith("*"):
            # SPEC 4.5 (Vixie cron): both day fields restricted, either matches.  Computed here
            # as the union of a day-of-month and a day-of-week schedule, because croniter's own
            # reading of the rule depends on how it expands the fields (`0,*`, `1,*/3 ... 0-6`)
            self._exprs = (" ".join([*fields[:4], "*"]), " ".join([*fields[:2], "*", *fields[3:]]))
        else:  # a field starting with `*` counts as unrestricted: both must match
            self._exprs = (expr,)
        self._croniters: list[croniter] | None = None

    def _iter(self, start: datetime, backwards: bool) -> Iterator[datetime]:
        # One croniter per expression (building one costs ~250 us); the position
        # is kept by _walk so that interleaved generators cannot disturb each other.
        if self._croniters is None:
            self._croniters = [croniter(e, start, day_or=False, max_years_between_matches=30) for e in self._exprs]
        if len(self._croniters) == 1:
            yield from _walk(self._croniters[0], start, backwards)
            return
        previous = None
        for t in heapq.merge(*(_walk(it, start, backwards) for it in self._croniters), reverse=backwards):
            if t != previous:
                previous = t
                yield t

    def _mapped(self, naive: Iterator[datetime], tz: tzinfo) -> Iterator[datetime]:
        previous = None
        for slot in naive:
            if in_gap(slot, tz):
                slot = _gap_end(slot, tz)
            instant = from_local_naive(slot, tz)
            if instant != previous:
                previous = instant
                yield instant

    def slots_from(self, start: datetime) -> Iterator[datetime]:
        """Slot instants >= start, ascending."""
        tz = start.tzinfo
        local = start.astimezone(tz).replace(tzinfo=None)
        near = _transition_near(start, tz)
        begin = local - (_NEAR if near else timedelta(seconds=1))
        floor = start.astimezone(UTC)  # SPEC 4.5: instants compare in UTC (fold-aware)
        for instant in self._mapped(self._iter(begin, False), tz):
            if instant.astimezone(UTC) >= floor:
                yield instant

    def slots_until(self, end: datetime) -> Iterator[datetime]:
        """Slot instants <= end, descending."""
        tz = end.tzinfo
        local = end.astimezone(tz).replace(tzinfo=None)
        near = _transition_near(end, tz)
        begin = local + (_NEAR if near else timedelta(seconds=1))
        ceiling = end.astimezone(UTC)
        for instant in self._mapped(self._iter(begin, True), tz):
            if instant.astimezone(UTC) <= ceiling:
                yield instant

    def latest_slot(self, now: datetime) -> datetime | None:
        return next(self.slots_until(now), None)

    def lower_bound(self, start: datetime, last: datetime | None) -> datetime:
        """max(start, last + 1 s), computed in UTC and expressed in start's zone."""
        if last is None:
            return start
        after_last = last.astimezone(UTC) + timedelta(seconds=1)
        return start if start.astimezone(UTC) >= after_last else after_last.astimezone(start.tzinfo)

    def first_slot_after(self, start: datetime, last: datetime | None) -> datetime | None:
        return next(self.slots_from(self.lower_bound(start, last)), None)

    def validate(self, now: datetime, last: datetime | None, *, boot: datetime | None = None,
                 grace: int = 0) -> Decision:
        slot = self.latest_slot(now)
        if slot is None or (last is not None and slot.astimezone(UTC) <= last.astimezone(UTC)):
            nxt = self.first_slot_after(now, last)
            when = _show(nxt, now) if nxt else "never"
            return Decision("not_allowed", f"no slot since the last run; next slot {when}")
        late = (now.astimezone(UTC) - slot.astimezone(UTC)).total_seconds()
        if late > grace:
            return Decision("not_allowed", f"slot {_show(slot, now)} is late by {int(late)} s (grace {grace} s)")
        return Decision("allowed", f"slot {_show(slot, now)}")

    def next_run(self, now: datetime, last: datetime | None, *, boot: datetime | None = None) -> datetime | None:
        return self.first_slot_after(now, last)

    def describe(self) -> list[str]:
        parts = "; ".join(f"{f[0]} {v}" for f, v in zip(FIELDS, self.expr.split(), strict=True))
        return [parts]


def _walk(it: croniter, start: datetime, backwards: bool) -> Iterator[datetime]:
    """Naive slots after (before) `start`; the position lives here, not in the shared croniter."""
    cur = start
    try:
        while True:
            it.set_current(cur, force=True)
            cur = it.get_prev(datetime) if backwards else it.get_next(datetime)
            yield cur
    except CroniterBadDateError:
        return


def _gap_end(naive: datetime, tz: tzinfo) -> datetime:
    """First whole wall-clock minute after the gap holding `naive`."""
    probe = naive.replace(second=0, microsecond=0)
    while in_gap(probe, tz):
        probe += timedelta(minutes=1)
    return probe


def _transition_near(instant: datetime, tz: tzinfo) -> bool:
    utc = instant.astimezone(UTC)
    return (utc - _NEAR).astimezone(tz).utcoffset() != (utc + _NEAR).astimezone(tz).utcoffset()


def _show(instant: datetime, now: datetime) -> str:
    return instant.astimezone(now.tzinfo).strftime("%Y-%m-%d %H:%M:%S")
