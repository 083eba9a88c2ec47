"""Evaluation of networker schedules (the conformance surface).

`validate` and `next_run` take aware datetimes, work on naive local wall-clock
seconds in the zone of `now`, and convert the answer back (a wall-clock answer
inside a spring-forward gap moves forward by the gap).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from omtasks.schedule.calendar import CYCLE_DAYS
from omtasks.schedule.decision import Decision
from omtasks.schedule.model import DAY, Member, TimeRange, fmt_duration, fmt_tod
from omtasks.timeutil import from_local_naive

_EPOCH = datetime(1, 1, 1)


def naive_seconds(dt: datetime) -> float:
    """Naive wall-clock datetime -> seconds on the ordinal scale (fractional if needed)."""
    return dt.toordinal() * DAY + dt.hour * 3600 + dt.minute * 60 + dt.second + dt.microsecond / 1e6


def from_seconds(seconds: int) -> datetime:
    return _EPOCH + timedelta(days=seconds // DAY - 1, seconds=seconds % DAY)


def _local(dt: datetime, now: datetime) -> datetime:
    return dt.astimezone(now.tzinfo).replace(tzinfo=None)


@dataclass(frozen=True, slots=True)
class Window:
    """One occurrence of a probabilistic range, restricted to its allowed seconds."""

    start: int  # naive seconds of its first allowed instant (ws)
    length: int  # number of allowed seconds (L)
    pieces: tuple[tuple[int, int], ...]  # allowed [a, b) pieces, naive seconds

    def at(self, offset: int) -> int:
        """Naive seconds `offset` seconds into the occurrence, counting its own seconds only."""
        for a, b in self.pieces:
            if offset < b - a:
                return a + offset
            offset -= b - a
        return self.pieces[-1][1] - 1


class NetworkerSchedule:
    """A parsed networker value: include and exclusion members."""

    dialect = "networker"

    def __init__(self, value: object, members: tuple[Member, ...]) -> None:
        self.value = value
        self.members = members
        self.includes = tuple(m for m in members if not m.exclude)
        self.excludes = tuple(m for m in members if m.exclude)
        self.always_excluded = any(m.dates.unrestricted and _covers_day(m) for m in self.excludes)
        # include ranges hidden entirely by exclusions that match every date (or the same dates)
        # can never run: leaving them out keeps `next` fast on such impossible schedules (no
        # day-by-day scan of a whole cycle)
        self._live = tuple((m, r) for m in self.includes for r in m.ranges
                           if not _hidden(r.spans, self._blanket(m)))
        self.never = self.always_excluded or not self._live

    def _blanket(self, include: Member) -> list[tuple[int, int]]:
        """Seconds of day excluded on every date `include` matches (a sufficient subset)."""
        key = _dates_key(include)
        return _merge(s for m in self.excludes if m.dates.every_day or _dates_key(m) == key
                      for r in m.ranges for s in r.spans)

    @property
    def probabilistic(self) -> bool:
        return any(r.probabilistic for m in self.includes for r in m.ranges)

    # -- conformance operations ------------------------------------------------

    def validate(self, now: datetime, last: datetime | None, *, boot: datetime | None = None,
                 grace: int = 0) -> Decision:
        n = now.replace(tzinfo=None)  # `now` is in the zone it is evaluated in
        ordinal = n.toordinal()
        tod = n.hour * 3600 + n.minute * 60 + n.second
        for i, m in enumerate(self.members, 1):
            if m.exclude and m.covers(ordinal, tod):
                return Decision("excluded", f"excluded by member {i} ({m.text})")
        if not self.includes:
            return Decision("not_allowed", "no include expression: never runs")
        ns = naive_seconds(n)
        ls = naive_seconds(_local(last, now)) if last is not None else None
        waiting: tuple[TimeRange, float] | None = None
        for _, r in self._covering(ordinal, tod):
            if ls is None or ns >= ls + r.interval:
                return Decision("allowed", r.in_range_reason)
            if waiting is None or ls + r.interval < waiting[1]:
                waiting = (r, ls + r.interval)
        if waiting is not None:
            r, due = waiting
            at = from_seconds(math.ceil(due)).strftime("%Y-%m-%d %H:%M:%S")
            return Decision(
                "not_allowed", f"interval {fmt_duration(r.interval)} not elapsed since the last run (until {at})"
            )
        if not any(m.dates.matches(ordinal) for m in self.includes):
            return Decision("not_allowed", "day not allowed by the days, weeks or months fields")
        spans = ", ".join(_span(r) for m in self.includes if m.dates.matches(ordinal) for r in m.ranges)
        return Decision("not_allowed", f"not in time range {spans}")

    def next_run(self, now: datetime, last: datetime | None, *, boot: datetime | None = None) -> datetime | None:
        n = now.replace(tzinfo=None)
        start = math.ceil(naive_seconds(n))
        best = self.next_seconds(start, naive_seconds(_local(last, now)) if last is not None else None)
        if best is None:
            return None
        if best == start and n.microsecond == 0:
            return now  # keep now's own instant (an ambiguous `now` may be its second occurrence)
        t = from_local_naive(from_seconds(best), now.tzinfo)
        if t.astimezone(UTC) < now.astimezone(UTC):
            # `now` is in the second pass of a repeated hour and so is the answer: its first
            # occurrence is already past, the earliest instant >= now is the second one
            t = from_seconds(best).replace(tzinfo=now.tzinfo, fold=1)
        return t

    # -- naive-seconds core (also used by the runner for windows) ---------------

    def next_seconds(self, start: int, last: float | None) -> int | None:
        """Earliest allowed naive second >= start, or None when no instant ever matches.

        Every include range keeps its own earliest covered instant; the smallest
        one wins unless an exclusion covers it, in which case every range still
        inside that excluded stretch moves past it.  Advancing all ranges together
        keeps a range that exclusions always hide from scanning a whole cycle.
        """
        if self.never:
            return None
        heads: list[list] = []
        limit = start
        for m, r in self._live:
            lb = start if last is None else max(start, math.ceil(last + r.interval))
            limit = max(limit, lb)
            heads.append([lb, m, r])
        limit += CYCLE_DAYS * DAY
        heads = [h for h in heads if _advance(h, h[0], limit)]
        while heads:
            t = min(h[0] for h in heads)
            end = self._excluded_until(t, limit)
            if end is None:
                return t
            if end >= limit:
                return None
            heads = [h for h in heads if h[0] > end or _advance(h, end + 1, limit)]
        return None

    def _excluded_until(self, t: int, limit: int) -> int | None:
        """Last second of the contiguous excluded stretch holding `t`, or None if `t` is not excluded."""
        if not self.excludes:
            return None
        ordinal, tod = divmod(t, DAY)
        end = None
        while True:
            spans = sorted(s for m in self.excludes for s in m.day_spans(ordinal))
            reach = None
            for a, b in spans:
                if a <= tod and b >= tod:
                    reach = b if reach is None else max(reach, b)
                elif reach is not None and a <= reach + 1:
                    reach = max(reach, b)
            if reach is None:
                return end
            end = ordinal * DAY + reach
            if reach < DAY - 1 or end > limit:
                return end
            ordinal, tod = ordinal + 1, 0

    # -- probabilistic windows ---------------------------------------------------

    def window_holding(self, t: int) -> Window | None:
        """The `~` window occurrence holding naive second `t` (SPEC 4.4), when the range allowing `t` is one."""
        ordinal, tod = divmod(t, DAY)
        found: Window | None = None
        for m, r in self._covering(ordinal, tod):
            if not r.probabilistic:
                return None
            if found is None:
                found = self._occurrence(m, r, t)
        return found

    def _covering(self, ordinal: int, tod: int) -> Iterator[tuple[Member, TimeRange]]:
        """The include ranges whose date and time of day cover (ordinal, tod)."""
        for m in self.includes:
            if m.dates.matches(ordinal):
                for r in m.ranges:
                    if r.covers(tod):
                        yield m, r

    def _occurrence(self, m: Member, r: TimeRange, t: int) -> Window:
        ordinal, tod = divmod(t, DAY)
        day = ordinal if tod >= r.begin else ordinal - 1
        w0 = day * DAY + r.begin
        w1 = w0 + r.window_length
        pieces: list[tuple[int, int]] = []
        a = w0
        while a < w1:  # split at midnights: each part is checked against its own date
            b = min(w1, (a // DAY + 1) * DAY)
            if m.dates.matches(a // DAY):
                pieces.extend(self._minus_exclusions(a, b))
            a = b
        if not pieces:  # t itself is allowed, so this cannot happen; stay inside the window anyway
            pieces = [(t, t + 1)]
        return Window(pieces[0][0], sum(b - a for a, b in pieces), tuple(pieces))

    def _minus_exclusions(self, a: int, b: int) -> list[tuple[int, int]]:
        ordinal = a // DAY
        holes = sorted(
            (ordinal * DAY + x, ordinal * DAY + y + 1) for m in self.excludes for x, y in m.day_spans(ordinal)
        )
        out, cur = [], a
        for x, y in holes:
            if y <= cur or x >= b:
                continue
            if x > cur:
                out.append((cur, x))
            cur = max(cur, y)
        if cur < b:
            out.append((cur, b))
        return out

    def describe(self) -> list[str]:
        lines = []
        for m in self.members:
            d = m.dates
            days = _field_text(m.text, 1)
            weeks = _field_text(m.text, 2)
            months = _field_text(m.text, 3)
            kind = "exclude" if m.exclude else "include"
            ranges = ", ".join(r.describe() for r in m.ranges)
            never = "; matches no date" if d.never else ""
            lines.append(f"{kind}; ranges {ranges}; days {days}; weeks {weeks}; months {months}{never}")
        return lines


def _covers_day(m: Member) -> bool:
    """True when the member's ranges cover every second of a day."""
    reach = -1
    for a, b in sorted(s for r in m.ranges for s in r.spans):
        if a > reach + 1:
            return False
        reach = max(reach, b)
    return reach >= DAY - 1


def _merge(spans) -> list[tuple[int, int]]:
    """Union of [a, b] second-of-day spans, as sorted disjoint spans."""
    out: list[tuple[int, int]] = []
    for a, b in sorted(spans):
        if out and a <= out[-1][1] + 1:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


def _dates_key(m: Member) -> tuple:
    return (m.dates.days, m.dates.weeks, m.dates.months)


def _hidden(spans, blanket: list[tuple[int, int]]) -> bool:
    return all(any(x <= a and b <= y for x, y in blanket) for a, b in spans)


def _advance(head: list, lb: int, limit: int) -> bool:
    """Move a [t, member, range] head to its first covered instant >= lb; False when none."""
    t = _first_covered(head[1], head[2], lb, limit)
    if t is None:
        return False
    head[0] = t
    return True


def _first_covered(m: Member, r: TimeRange, lb: int, limit: int) -> int | None:
    ordinal, tod = divmod(lb, DAY)
    last_day = limit // DAY
    while ordinal <= last_day:
        match = m.dates.next_match(ordinal, last_day - ordinal)
        if match is None:
            return None
        if match != ordinal:
            ordinal, tod = match, 0
        for a, b in r.spans:
            if b >= tod:
                return ordinal * DAY + max(a, tod)
        ordinal, tod = ordinal + 1, 0
    return None


def _span(r: TimeRange) -> str:
    return f"{fmt_tod(r.begin)}-{fmt_tod(r.end)}"


def _field_text(text: str, index: int) -> str:
    fields = text.lstrip("!").split()
    return fields[index] if len(fields) > index else "*"
