"""What `om schedule next` and `om schedule check` show (SPEC 10), pure.

Each listed instant after the first is computed with the marker set to the
previous instant, i.e. as a runner that ran at each of them would see it.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from omtasks.schedule.decision import Decision
from omtasks.schedule.networker import NetworkerSchedule, from_seconds, naive_seconds
from omtasks.timeutil import to_local_naive


def upcoming(schedule, start: datetime, last: datetime | None, count: int) -> list[datetime]:
    """The first `count` run starts at or after `start` for a runner whose marker is `last`.

    The list stops early at the end of the calendar (year 9999): a long interval
    listed many times cannot overflow a date.
    """
    out: list[datetime] = []
    try:
        _upcoming(schedule, start, last, count, out)
    except (OverflowError, ValueError):
        pass  # the next start would be past year 9999
    return out


def _upcoming(schedule, start: datetime, last: datetime | None, count: int, out: list[datetime]) -> None:
    if schedule.dialect == "networker":
        t = schedule.next_run(start, last)
        while t is not None and len(out) < count:
            out.append(t)
            t = schedule.next_run(t, t)
    elif schedule.dialect == "cron":
        for slot in schedule.slots_from(schedule.lower_bound(start, last)):
            out.append(slot)
            if len(out) >= count:
                break
    elif schedule.dialect == "anacron":
        tz = start.tzinfo
        today = start.astimezone(tz).date()
        local_last = to_local_naive(last, tz) if last is not None else None
        first = schedule.start_after(schedule.due_date(local_last, today), None, tz)
        t = first if first.astimezone(UTC) > start.astimezone(UTC) else start
        while len(out) < count:
            out.append(t)
            t = schedule.start_after(schedule.due_date(to_local_naive(t, tz), today), None, tz)


def check_verdict(schedule, now: datetime, last: datetime | None, grace: int) -> Decision:
    """The runner's view at `now`: networker `next(now - grace, L) <= now` and not excluded."""
    if schedule.dialect != "networker":
        return schedule.validate(now, last, grace=grace)
    decision = schedule.validate(now, last)
    if decision.verdict != "not_allowed" or schedule.never:
        return decision
    t = schedule.next_run(now - timedelta(seconds=grace), last)
    if t is not None and t <= now:
        shown = t.astimezone(now.tzinfo).strftime("%H:%M:%S")
        return Decision("allowed", f"allowed at {shown}, within the grace of {grace} s")
    return decision


def window_end(schedule: NetworkerSchedule, t: datetime) -> datetime | None:
    """End (exclusive, naive local) of the `~` window holding `t`, for the preview note."""
    window = schedule.window_holding(int(naive_seconds(to_local_naive(t, t.tzinfo))))
    if window is None:
        return None
    return from_seconds(window.pieces[-1][1])
