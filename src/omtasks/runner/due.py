"""When is an entry due? The pure core of the runner's evaluation (SPEC 8.2).

No clock, no database: `now`, the marker and the boot time come in, a Plan
comes out.  The tick, `print schedule` and `om schedule check` share it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from omtasks.schedule.jitter import jittered_start


@dataclass(frozen=True, slots=True)
class Plan:
    verdict: str  # "due" | "not_due" | "missed" | "unscheduled"
    scheduled_for: datetime | None  # for due
    next_run: datetime | None  # for not_due and missed: the next start, ~ offset applied
    reason: str | None = None
    slot: datetime | None = None  # the missed cron slot


@dataclass(frozen=True, slots=True)
class JitterKey:
    """Who evaluates: the stable `~` offset depends on it (SPEC 4.4)."""

    node: str
    service: str
    key: str  # rid, or the action for service-level entries


def plan(schedule, now: datetime, marker: datetime | None, *, grace: int, boot: datetime | None,
         who: JitterKey, first_seen: datetime | None = None) -> Plan:
    """The verdict of one entry at `now` given its marker (last attempt)."""
    dialect = schedule.dialect
    if dialect == "none":
        return Plan("unscheduled", None, None, "unscheduled (manual runs only)")
    if dialect == "networker":
        return _networker(schedule, now, marker, grace, who)
    if dialect == "cron":
        return _cron(schedule, now, marker, grace, first_seen)
    return _anacron(schedule, now, marker, grace, boot)


def _offset_start(schedule, t: datetime, who: JitterKey) -> datetime | None:
    if not schedule.probabilistic:
        return None
    return jittered_start(schedule, t, node=who.node, service=who.service, key=who.key)


def _networker(schedule, now: datetime, marker: datetime | None, grace: int, who: JitterKey) -> Plan:
    early = now - timedelta(seconds=grace)
    t = schedule.next_run(early, marker)
    if t is not None and t <= now and schedule.validate(now, None).verdict != "excluded":
        hs = _offset_start(schedule, t, who)
        if hs is None or now >= hs:
            scheduled = t if t > early else now
            if hs is not None:
                scheduled = max(scheduled, hs)
            return Plan("due", scheduled, None)
        return Plan("not_due", None, hs)
    nxt = schedule.next_run(now, marker)
    if nxt is not None:
        hs = _offset_start(schedule, nxt, who)
        if hs is not None:
            nxt = max(nxt, hs)
    return Plan("not_due", None, nxt)


def _cron(schedule, now: datetime, marker: datetime | None, grace: int, first_seen: datetime | None) -> Plan:
    slot = schedule.latest_slot(now)
    # after the marker too: a marker ahead of now (a clock that was ahead) holds every slot before it
    nxt = schedule.first_slot_after(now + timedelta(seconds=1), marker)
    if slot is None or (marker is not None and slot <= marker) or (first_seen is not None and slot < first_seen):
        return Plan("not_due", None, nxt)
    late = int((now - slot).total_seconds())
    if late > grace:
        shown = slot.astimezone(now.tzinfo).strftime("%Y-%m-%d %H:%M:%S")
        return Plan("missed", None, nxt, f"missed slot {shown} (late by {late} s, grace {grace} s)", slot)
    return Plan("due", slot, None)


def _anacron(schedule, now: datetime, marker: datetime | None, grace: int, boot: datetime | None) -> Plan:
    t0 = schedule.earliest(now, marker, boot)
    if now < t0:
        return Plan("not_due", None, t0)
    late = (now - t0).total_seconds()
    return Plan("due", t0 if late <= grace else now, None)
