"""Anacron dialect: a period in days, an optional delay, the node's boot time (SPEC 4.6).

Missed periods collapse into one run: the run may start at
`max(due date 00:00, boot time) + delay`, on the wall clock.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from omtasks.schedule import limits
from omtasks.schedule.decision import Decision
from omtasks.schedule.errors import ScheduleSyntaxError
from omtasks.timeutil import from_local_naive


def _digits(text: str) -> bool:
    """ASCII decimal digits only (str.isdigit() also accepts '²', which int() rejects)."""
    return text.isascii() and text.isdigit()


PERIODS = {"@daily": 1, "@weekly": 7, "@monthly": "monthly", "@yearly": "yearly", "@annually": "yearly"}


def parse(value: str, body: str, base: int) -> AnacronSchedule:
    fields = body.split()

    def fail(detail: str, token: str) -> ScheduleSyntaxError:
        found = value.find(token, base)
        return ScheduleSyntaxError(value, detail, token, (found if found >= 0 else base) + 1)

    if not 1 <= len(fields) <= 2:
        raise fail(f"anacron takes a period and an optional delay, got {len(fields)} fields", body)
    ptext = fields[0]
    period: int | str
    if ptext.lower() in PERIODS:
        period = PERIODS[ptext.lower()]
    elif _digits(ptext) and ptext.strip("0"):
        if len(ptext) > limits.MAX_DIGITS or int(ptext) > limits.MAX_ANACRON_PERIOD:
            raise fail(f"anacron period '{ptext}' too long (at most {limits.MAX_ANACRON_PERIOD} days)", ptext)
        period = int(ptext)
    else:
        raise fail(
            "anacron period must be a positive number of days or @daily, @weekly, @monthly, @yearly: "
            f"'{ptext}'", ptext)
    delay = 0
    if len(fields) == 2:
        if not _digits(fields[1]):
            raise fail(f"anacron delay must be a whole number of minutes: '{fields[1]}'", fields[1])
        if len(fields[1]) > limits.MAX_DIGITS or int(fields[1]) > limits.MAX_ANACRON_DELAY:
            raise fail(f"anacron delay '{fields[1]}' too long (at most {limits.MAX_ANACRON_DELAY} minutes)",
                       fields[1])
        delay = int(fields[1])
    return AnacronSchedule(value, period, delay, ptext)


class AnacronSchedule:
    dialect = "anacron"
    probabilistic = False
    never = False

    def __init__(self, value: str, period: int | str, delay: int, period_text: str) -> None:
        self.value = value
        self.period = period
        self.delay = delay
        self.period_text = period_text

    def due_date(self, last: datetime | None, today: date) -> date:
        """The date a run is due after `last` (local dates), today when it never ran."""
        if last is None:
            return today
        d = last.date()
        if self.period == "monthly":
            return date(d.year + d.month // 12, d.month % 12 + 1, 1)
        if self.period == "yearly":
            return date(d.year + 1, 1, 1)
        return d + timedelta(days=int(self.period))

    def start_after(self, due: date, boot: datetime | None, tz) -> datetime:
        """`max(due 00:00, boot) + delay` on the wall clock, as an instant."""
        naive = datetime(due.year, due.month, due.day)
        if boot is not None:
            naive = max(naive, boot.astimezone(tz).replace(tzinfo=None))
        return from_local_naive(naive + timedelta(minutes=self.delay), tz)

    def earliest(self, now: datetime, last: datetime | None, boot: datetime | None) -> datetime:
        tz = now.tzinfo
        local_last = last.astimezone(tz).replace(tzinfo=None) if last is not None else None
        today = now.astimezone(tz).date()
        return self.start_after(self.due_date(local_last, today), boot, tz)

    def validate(self, now: datetime, last: datetime | None, *, boot: datetime | None = None,
                 grace: int = 0) -> Decision:
        t0 = self.earliest(now, last, boot)
        shown = t0.astimezone(now.tzinfo).strftime("%Y-%m-%d %H:%M:%S")
        if now.astimezone(UTC) >= t0.astimezone(UTC):  # instants compare in UTC (fold-aware)
            return Decision("allowed", f"due since {shown}")
        return Decision("not_allowed", f"not due before {shown}")

    def next_run(self, now: datetime, last: datetime | None, *, boot: datetime | None = None) -> datetime:
        t0 = self.earliest(now, last, boot)
        return t0 if t0.astimezone(UTC) > now.astimezone(UTC) else now

    def describe(self) -> list[str]:
        period = self.period_text if isinstance(self.period, str) else f"every {self.period} day(s)"
        return [f"period {period}; delay {self.delay} min; no hour window; missed periods run once"]
