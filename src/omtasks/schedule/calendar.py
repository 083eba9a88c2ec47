"""Date filters of the networker language: days, ISO weeks and months.

A date is handled as its proleptic ordinal (`date.toordinal()`), so the search
loops add integers instead of building datetimes.  The Gregorian calendar,
weekdays and ISO weeks all repeat every 400 years (146097 days, a whole number
of weeks), which bounds every search: a filter that matches no day in one cycle
never matches.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

CYCLE_DAYS = 146097


def _days_in_month(year: int, month: int) -> int:
    if month == 2:
        leap = year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
        return 29 if leap else 28
    return 30 if month in (4, 6, 9, 11) else 31


@dataclass(frozen=True, slots=True)
class DayElement:
    """One element of the days field.

    `weekdays` is None for `*` (any weekday), else ISO weekdays 1-7.  `nth`
    is None (no `:N`), or N: with `weekdays` None it is calendar day N (negative
    counts from the month's end); with weekdays it is the N-th such weekday.
    """

    weekdays: frozenset[int] | None
    nth: int | None

    def matches(self, wd: int, day: int, dim: int) -> bool:
        if self.weekdays is not None and wd not in self.weekdays:
            return False
        n = self.nth
        if n is None:
            return True
        if self.weekdays is None:
            return day == n if n > 0 else day == dim + 1 + n
        if n > 0:
            return (day - 1) // 7 + 1 == n
        return -((dim - day) // 7 + 1) == n


@dataclass(frozen=True, slots=True)
class MonthElement:
    """`months` element: a set of months (None = all) with an optional `%P+S` filter."""

    months: frozenset[int] | None
    modulo: int | None = None
    shift: int = 0

    def matches(self, month: int) -> bool:
        if self.months is not None and month not in self.months:
            return False
        return self.modulo is None or (month + self.shift) % self.modulo == 0


@dataclass(eq=False, slots=True)
class DateFilter:
    """The days, weeks and months fields of one expression (None = unrestricted)."""

    days: tuple[DayElement, ...] | None = None
    weeks: frozenset[int] | None = None
    months: tuple[MonthElement, ...] | None = None
    _month_ok: tuple[bool, ...] = field(init=False, repr=False)
    _cache: dict[int, bool] = field(init=False, repr=False, default_factory=dict)

    def __post_init__(self) -> None:
        if self.months is None:
            self._month_ok = (True,) * 13
        else:
            self._month_ok = (False,) + tuple(any(e.matches(m) for e in self.months) for m in range(1, 13))

    @property
    def unrestricted(self) -> bool:
        return self.days is None and self.weeks is None and self.months is None

    @property
    def every_day(self) -> bool:
        """True when the filter matches every date (e.g. `*`, `mon-sun`, weeks `1-53`)."""
        if self.weeks is not None and len(self.weeks) < 53:
            return False
        if not all(self._month_ok[1:]):
            return False
        if self.days is None:
            return True
        weekdays: set[int] = set()
        for e in self.days:
            if e.nth is None:
                weekdays |= set(range(1, 8)) if e.weekdays is None else e.weekdays
        return len(weekdays) == 7

    @property
    def never(self) -> bool:
        """True when the filter matches no date at all (checked over one cycle)."""
        return self.next_match(date(2001, 1, 1).toordinal(), CYCLE_DAYS) is None

    def matches(self, ordinal: int) -> bool:
        hit = self._cache.get(ordinal)
        if hit is None:
            hit = self._compute(ordinal)
            if len(self._cache) > 8192:
                self._cache.clear()
            self._cache[ordinal] = hit
        return hit

    def _compute(self, ordinal: int) -> bool:
        d = date.fromordinal(ordinal)
        if not self._month_ok[d.month]:
            return False
        if self.weeks is not None and d.isocalendar()[1] not in self.weeks:
            return False
        if self.days is None:
            return True
        wd = d.isoweekday()
        dim = _days_in_month(d.year, d.month)
        return any(e.matches(wd, d.day, dim) for e in self.days)

    def next_match(self, ordinal: int, horizon: int = CYCLE_DAYS) -> int | None:
        """First matching ordinal >= `ordinal`, or None within `horizon` days."""
        if self.unrestricted:
            return ordinal
        limit = ordinal + horizon
        o = ordinal
        month_ok = self._month_ok
        while o <= limit:
            if self.matches(o):
                return o
            d = date.fromordinal(o)
            if not month_ok[d.month]:
                # jump to the first day of the next month
                o += _days_in_month(d.year, d.month) - d.day + 1
            elif self.weeks is not None and d.isocalendar()[1] not in self.weeks:
                o += 8 - d.isoweekday()  # next Monday
            else:
                o += 1
        return None
