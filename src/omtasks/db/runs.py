"""The store of runs: creation, transitions, notes, claims and missed slots.

Every state change goes through `transition`: the statemachine check, a
compare-and-set UPDATE, one `run_events` row, the marker effects and the
confirmation row that follows its run, in the caller's transaction (SPEC 7).
Callers pass aware instants; rows hold naive UTC.  `now` is the command's
evaluation instant; `created_at`, `started_at`, `ended_at` and `run_events.at`
are process bookkeeping and use the real clock (SPEC 8.3).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, and_, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from omtasks import statemachine as sm
from omtasks.db.markers import (
    Marker,
    ensure_marker,
    insert_ignore,
    move_marker,
    read_marker,
    slot_key,
)
from omtasks.db.schema import confirmations, placements, run_events, runs, schedule_decisions
from omtasks.timeutil import local_zone, to_utc_naive, utcnow

__all__ = [
    "ClaimResult",
    "LostRace",
    "add_note",
    "admit",
    "claim",
    "create_run",
    "ensure_marker",
    "record_missed",
    "transition",
]

# Run columns a transition may set besides state and reason.
_FIELDS = frozenset(
    {
        "exit_code",
        "started_at",
        "ended_at",
        "output_tail",
        "pid",
        "proc_start",
        "boot_id",
        "heartbeat_at",
        "run_as",
        "command",
        "placement_epoch",
    }
)
# Told of every run that ends and every missed slot, in the transaction that records it: the
# runner installs one per process (runner/observer.py) for outcome lines and notifications.
_observer: Any = None


def set_observer(observer: Any) -> None:
    """Install `observer` (`.ended(conn, run_id, state, reason)`, `.missed(conn, **slot)`); None removes it."""
    global _observer
    _observer = observer


def current_observer() -> Any:
    """The installed observer, None when there is none."""
    return _observer


# `claim(expected_marker=...)` default: claim whatever the marker is (manual --cron runs).
ANY_MARKER = object()
# States counted against max_parallel (SPEC 8.4).
_PARALLEL = sm.LIVE | {sm.AWAITING}


class LostRace(Exception):
    """The compare-and-set found the run no longer in `from_state`: someone else moved it."""

    def __init__(self, run_id: int, from_state: str, to_state: str, actual: str | None) -> None:
        self.run_id = run_id
        self.from_state = from_state
        self.to_state = to_state
        self.actual = actual
        super().__init__(
            f"run {run_id}: lost race moving {from_state} -> {to_state} (state is now {actual or 'gone'})"
        )


@dataclass(frozen=True)
class ClaimResult:
    """What a claim did: `verdict` is `due`, `claimed_elsewhere` or `max_parallel`.

    `run_id` is the run inserted by this claim (None when another claimant won:
    `winner_id`/`winner_state` name its run); `marker` is the attempt marker the
    slot follows; `expires_at` is set when the run awaits confirmation.
    """

    run_id: int | None
    verdict: str
    reason: str
    state: str | None
    slot_key: str
    scheduled_for: datetime
    marker: datetime | None
    expires_at: datetime | None = None
    winner_id: int | None = None
    winner_state: str | None = None


def _naive(value: Any) -> Any:
    return to_utc_naive(value) if isinstance(value, datetime) else value


def _event(
    conn: Connection, run_id: int, frm: str | None, to: str, reason: str | None, actor: str | None
) -> None:
    conn.execute(
        insert(run_events).values(
            run_id=run_id,
            at=to_utc_naive(utcnow()),
            from_state=frm,
            to_state=to,
            reason=reason,
            actor=actor,
        )
    )


def create_run(
    conn: Connection,
    *,
    service: str,
    action: str,
    rid: str | None,
    node: str,
    trigger: str,
    scheduled_for: datetime | None,
    now: datetime,
    reason: str | None,
    actor: str | None,
    scope: str = "",
    requested_by: str | None = None,
    run_as: str | None = None,
    command: str | None = None,
    slot_key: str | None = None,
    placement_epoch: int | None = None,
    pid: int | None = None,
    proc_start: int | None = None,
    boot_id: str | None = None,
) -> int:
    """Insert a `scheduled` run and its creation event; returns the run id.

    `scope` is the entry's marker scope ('' = cluster, else the node): it says
    which marker the run moves and where max_parallel counts it.
    """
    sm.check(None, None, sm.SCHEDULED)
    run_id = conn.execute(
        insert(runs)
        .values(
            service=service,
            action=action,
            rid=rid or None,
            scope=scope,
            node=node,
            trigger=trigger,
            state=sm.SCHEDULED,
            reason=reason,
            slot_key=slot_key,
            scheduled_for=_naive(scheduled_for),
            created_at=to_utc_naive(utcnow()),
            requested_by=requested_by,
            run_as=run_as,
            command=command,
            pid=pid,
            proc_start=proc_start,
            boot_id=boot_id,
            placement_epoch=placement_epoch,
            heartbeat_at=to_utc_naive(now),
        )
        .returning(runs.c.id)
    ).scalar_one()
    _event(conn, run_id, None, sm.SCHEDULED, reason, actor)
    return run_id


def transition(
    conn: Connection,
    run_id: int,
    frm: str,
    to: str,
    *,
    reason: str | None,
    actor: str | None,
    now: datetime,
    expires_at: datetime | None = None,
    **fields: Any,
) -> None:
    """Move a run `frm -> to` (SPEC 7); raises IllegalTransition or LostRace.

    `fields` sets run columns (exit_code, output_tail, pid, ...); `started_at`
    and `ended_at` default to the real clock on entering running / a terminal
    state.  Entering awaiting_confirmation needs `expires_at`, for its
    confirmations row.  `reason` None keeps the run's previous reason.
    """
    sm.check(run_id, frm, to)
    unknown = set(fields) - _FIELDS
    if unknown:
        raise TypeError(f"transition() cannot set run columns {sorted(unknown)}")
    if to == sm.AWAITING and expires_at is None:
        raise ValueError(f"run {run_id}: entering {sm.AWAITING} needs expires_at")
    values: dict[str, Any] = {"state": to}
    if reason is not None:
        values["reason"] = reason
    real = to_utc_naive(utcnow())
    if to == sm.RUNNING:
        values["started_at"] = real
    if to in sm.TERMINAL:
        values["ended_at"] = real
    values.update({k: _naive(v) for k, v in fields.items()})
    c = runs.c
    row = conn.execute(
        update(runs)
        .where(c.id == run_id, c.state == frm)
        .values(values)
        .returning(c.service, c.action, c.rid, c.scope, c.node, c.trigger, c.scheduled_for)
    ).first()
    if row is None:
        actual = conn.execute(select(c.state).where(c.id == run_id)).scalar()
        raise LostRace(run_id, frm, to, actual)
    _event(conn, run_id, frm, to, reason, actor)

    move_attempt, move_success = sm.marker_effect(to, row.trigger)
    if move_attempt and row.scheduled_for is not None:
        move_marker(
            conn,
            row.service,
            row.action,
            row.rid,
            row.scope,
            scheduled_for=row.scheduled_for,
            run_id=run_id,
            success=move_success,
        )
    if to == sm.AWAITING:
        conn.execute(
            insert(confirmations).values(
                run_id=run_id,
                service=row.service,
                rid=row.rid,
                node=row.node,
                requested_at=to_utc_naive(now),
                expires_at=to_utc_naive(expires_at),
                state="pending",
            )
        )
    elif frm == sm.AWAITING:
        _follow_confirmation(conn, run_id, to, reason, actor, now)
    if _observer is not None and to in sm.TERMINAL:
        _observer.ended(conn, run_id, to, reason)


def _follow_confirmation(
    conn: Connection, run_id: int, to: str, reason: str | None, actor: str | None, now: datetime
) -> None:
    """The confirmation row follows its run out of awaiting_confirmation (SPEC 8.7)."""
    values: dict[str, Any] = {"decided_at": to_utc_naive(now)}
    if to == sm.ELIGIBLE:
        values.update(state="confirmed", decided_by=actor)
    elif to == sm.FAILED and reason == "confirmation expired":
        values["state"] = "expired"
    elif to == sm.FAILED:
        values.update(state="refused", decided_by=actor)
    else:
        values["state"] = "cancelled"
    c = confirmations.c
    conn.execute(update(confirmations).where(c.run_id == run_id, c.state == "pending").values(values))


def add_note(conn: Connection, run_id: int, state: str, reason: str, actor: str | None) -> None:
    """A `run_events` row with from_state = to_state: a note, not a transition (SPEC 8.6)."""
    if state not in sm.STATES:
        raise ValueError(f"unknown run state '{state}'")
    _event(conn, run_id, state, state, reason, actor)


def _parallel_count(
    conn: Connection, service: str, action: str, rid: str | None, scope: str, exclude: int | None = None
) -> int:
    c = runs.c
    cond = [
        c.service == service,
        c.action == action,
        c.rid == rid if rid else c.rid.is_(None),
        c.scope == scope,
        c.state.in_(_PARALLEL),
    ]
    if exclude is not None:
        cond.append(c.id != exclude)
    return conn.execute(select(func.count()).select_from(runs).where(and_(*cond))).scalar_one()


def _slot_holder(conn: Connection, key: str) -> tuple[int, str, str] | None:
    c = runs.c
    row = conn.execute(
        select(c.id, c.node, c.state).where(c.slot_key == key, c.state.not_in(sm.RELEASING))
    ).first()
    return (row.id, row.node, row.state) if row is not None else None


def _limit_reason(count: int, max_parallel: int) -> str:
    return f"max parallel runs reached ({count}/{max_parallel})"


def _lock_entry(conn: Connection, service: str, action: str, rid: str | None, scope: str) -> Marker:
    ensure_marker(conn, service, action, rid, scope)
    return read_marker(conn, service, action, rid, scope, lock=True)


def claim(
    engine: Engine,
    *,
    service: str,
    action: str,
    rid: str | None,
    scope: str,
    node: str,
    now: datetime,
    scheduled_for: datetime,
    max_parallel: int,
    confirmation_timeout: int | None,
    actor: str | None,
    trigger: str = "schedule",
    reason: str | None = None,
    requested_by: str | None = None,
    run_as: str | None = None,
    command: str | None = None,
    placement_epoch: int | None = None,
    pid: int | None = None,
    proc_start: int | None = None,
    boot_id: str | None = None,
    expected_marker: datetime | None | object = ANY_MARKER,
    active_only: bool = False,
) -> ClaimResult:
    """Claim the slot that follows the entry's marker, exactly once (SPEC 8.4), in one transaction.

    `expected_marker` is the marker the caller's due decision was based on: when
    the marker moved since (another claimant ran the slot meanwhile), nothing is
    inserted and the result is `claimed_elsewhere`, so a stale evaluation can
    never claim the following slot early.  `active_only` (entries that run on the
    active instance only) re-reads the placement inside the transaction, locked
    against a concurrent switch: a node that lost the placement claims nothing,
    and the run records the epoch it was claimed under.

    The marker row is locked first, so claimants of one entry serialize and the
    loser sees the winner's run; the partial unique index on slot_key is the
    backstop whatever the node or process.  A claimed run leaves as eligible,
    awaiting_confirmation (pending row until now + confirmation_timeout) or,
    when max_parallel is reached, skipped.
    """
    with engine.begin() as conn:
        current = _lock_entry(conn, service, action, rid, scope)
        marker = current.last_attempt_at
        key = slot_key(service, action, rid, scope, marker)
        sf = scheduled_for.replace(microsecond=0)
        if marker is not None and sf <= marker:
            sf = marker.replace(microsecond=0) + timedelta(seconds=1)

        def elsewhere(holder: tuple[int, str, str]) -> ClaimResult:
            return ClaimResult(
                run_id=None,
                verdict="claimed_elsewhere",
                reason=f"run {holder[0]} claimed by {holder[1]}",
                state=None,
                slot_key=key,
                scheduled_for=sf,
                marker=marker,
                winner_id=holder[0],
                winner_state=holder[2],
            )

        if expected_marker is not ANY_MARKER and marker != expected_marker:
            last = conn.execute(select(runs.c.id, runs.c.node, runs.c.state)
                                .where(runs.c.id == current.last_run_id)).first()
            return elsewhere((last.id, last.node, last.state) if last is not None else (0, "?", "?"))
        holder = _slot_holder(conn, key)
        if holder is not None:
            return elsewhere(holder)
        if active_only:
            p = conn.execute(select(placements.c.active_node, placements.c.epoch)
                             .where(placements.c.service == service).with_for_update(read=True)).first()
            if p is None or p.active_node != node:
                active = p.active_node if p is not None and p.active_node else "none"
                return ClaimResult(run_id=None, verdict="requires_unmet", state=None, slot_key=key,
                                   reason=f"requires instance(up): not the active instance (active: {active})",
                                   scheduled_for=sf, marker=marker)
            placement_epoch = p.epoch
        count = _parallel_count(conn, service, action, rid, scope)
        try:
            with conn.begin_nested():
                run_id = create_run(
                    conn,
                    service=service,
                    action=action,
                    rid=rid,
                    scope=scope,
                    node=node,
                    trigger=trigger,
                    scheduled_for=sf,
                    now=now,
                    reason=reason or f"claimed by {node}",
                    actor=actor,
                    requested_by=requested_by,
                    run_as=run_as,
                    command=command,
                    slot_key=key,
                    placement_epoch=placement_epoch,
                    pid=pid,
                    proc_start=proc_start,
                    boot_id=boot_id,
                )
        except IntegrityError:
            holder = _slot_holder(conn, key)
            if holder is None:
                raise
            return elsewhere(holder)

        result = {"run_id": run_id, "slot_key": key, "scheduled_for": sf, "marker": marker}
        if count >= max_parallel:
            why = _limit_reason(count, max_parallel)
            transition(conn, run_id, sm.SCHEDULED, sm.SKIPPED, reason=why, actor=actor, now=now)
            return ClaimResult(verdict="max_parallel", reason=why, state=sm.SKIPPED, **result)
        if confirmation_timeout is not None:
            expires = now + timedelta(seconds=confirmation_timeout)
            transition(
                conn,
                run_id,
                sm.SCHEDULED,
                sm.AWAITING,
                reason=f"confirmation requested until {expires.astimezone(local_zone()).isoformat()}",
                actor=actor,
                now=now,
                expires_at=expires,
            )
            return ClaimResult(
                verdict="due", reason=f"run {run_id} claimed", state=sm.AWAITING, expires_at=expires, **result
            )
        transition(conn, run_id, sm.SCHEDULED, sm.ELIGIBLE, reason=None, actor=actor, now=now)
        return ClaimResult(verdict="due", reason=f"run {run_id} claimed", state=sm.ELIGIBLE, **result)


def admit(
    engine: Engine,
    run_id: int,
    *,
    max_parallel: int,
    now: datetime,
    actor: str | None,
    reason: str | None = None,
) -> bool:
    """Make a scheduled or confirmed manual run eligible under the claim's lock and test (SPEC 8.4).

    Returns False when max_parallel was reached and the run ended skipped.
    """
    with engine.begin() as conn:
        c = runs.c
        run = conn.execute(select(c.service, c.action, c.rid, c.scope).where(c.id == run_id)).one()
        _lock_entry(conn, run.service, run.action, run.rid, run.scope)
        state = conn.execute(select(c.state).where(c.id == run_id)).scalar_one()
        count = _parallel_count(conn, run.service, run.action, run.rid, run.scope, exclude=run_id)
        if count >= max_parallel:
            why = _limit_reason(count, max_parallel)
            transition(conn, run_id, state, sm.SKIPPED, reason=why, actor=actor, now=now)
            return False
        transition(conn, run_id, state, sm.ELIGIBLE, reason=reason, actor=actor, now=now)
        return True


def record_missed(
    conn: Connection,
    *,
    service: str,
    node: str,
    action: str,
    rid: str | None,
    scope: str,
    slot: datetime,
    reason: str,
    now: datetime,
) -> bool:
    """Record a missed cron slot once (SPEC 8.2); True when this call inserted the row."""
    inserted = insert_ignore(
        conn,
        schedule_decisions,
        {
            "at": to_utc_naive(now),
            "service": service,
            "node": node,
            "action": action,
            "rid": rid or "",
            "scope": scope,
            "slot": to_utc_naive(slot),
            "verdict": "missed",
            "reason": reason,
        },
    )
    if inserted and _observer is not None:
        _observer.missed(conn, service=service, node=node, rid=rid, slot=slot, reason=reason)
    return inserted
