"""Parsed networker schedules: time ranges and members.

Times of day are seconds since midnight; instants are "naive seconds"
(`date.toordinal() * 86400 + seconds of day`) on the local wall clock, which is
what every rule of the language is defined on.
"""

from __future__ import annotations

from dataclasses import dataclass

from omtasks.schedule.calendar import DateFilter

DAY = 86400


def fmt_tod(tod: int) -> str:
    return f"{tod // 3600:02d}:{tod % 3600 // 60:02d}:{tod % 60:02d}"


def fmt_duration(seconds: int) -> str:
    """1h30m style, largest units first (w d h m s)."""
    out = []
    for unit, size in (("w", 7 * DAY), ("d", DAY), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size:
            out.append(f"{seconds // size}{unit}")
            seconds %= size
    return "".join(out) or "0s"


@dataclass(frozen=True, slots=True)
class TimeRange:
    """One `[~]BEGIN-END[@INTERVAL]` element; both ends included."""

    begin: int
    end: int
    wraps: bool
    interval: int
    explicit_interval: bool
    probabilistic: bool
    whole_day: bool
    spans: tuple[tuple[int, int], ...]
    text: str
    in_range_reason: str

    @classmethod
    def build(
        cls, begin: int, end: int, interval: int | None, tilde: bool, whole_day: bool, text: str
    ) -> TimeRange:
        wraps = begin > end
        length = end - begin + (DAY if wraps else 0)
        spans = ((0, end), (begin, DAY - 1)) if wraps else ((begin, end),)
        every = interval if interval is not None else length + 1
        # SPEC 4.4: `~` only means something for a range run once per window
        probabilistic = tilde and every >= length and length > 2
        reason = f"in time range {fmt_tod(begin)}-{fmt_tod(end)}"
        return cls(begin, end, wraps, every, interval is not None, probabilistic, whole_day, spans, text, reason)

    @property
    def window_length(self) -> int:
        """Seconds of the geometric window [begin, end) used by the `~` offset."""
        return self.end - self.begin + (DAY if self.wraps else 0)

    def covers(self, tod: int) -> bool:
        if self.wraps:
            return tod >= self.begin or tod <= self.end
        return self.begin <= tod <= self.end

    def describe(self) -> str:
        if self.whole_day:
            span = "all day"
        elif (self.end - self.begin) % DAY == 1 and not self.explicit_interval:
            span = fmt_tod(self.begin)
        else:
            span = f"{fmt_tod(self.begin)}-{fmt_tod(self.end)}"
            if self.wraps:
                span += " (over midnight)"
        tilde = "~" if self.probabilistic else ""
        if self.explicit_interval:
            return f"{tilde}{span} every {fmt_duration(self.interval)}"
        return f"{tilde}{span} once per window"


@dataclass(frozen=True, slots=True)
class Member:
    """One expression of a schedule value: include or exclusion."""

    exclude: bool
    ranges: tuple[TimeRange, ...]
    dates: DateFilter
    text: str

    def covers(self, ordinal: int, tod: int) -> bool:
        """Date and time-of-day membership (intervals and `last` play no part)."""
        return self.dates.matches(ordinal) and any(r.covers(tod) for r in self.ranges)

    def day_spans(self, ordinal: int) -> tuple[tuple[int, int], ...]:
        if not self.dates.matches(ordinal):
            return ()
        return tuple(span for r in self.ranges for span in r.spans)
