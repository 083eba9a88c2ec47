"""The run state machine of SPEC 7: one table, pure (no database, no clock).

Every module that moves a run asks `check` first, so an illegal move is caught
the same way whether it comes from the runner, a worker or the CLI.
"""

from __future__ import annotations

from collections.abc import Mapping

SCHEDULED = "scheduled"
ELIGIBLE = "eligible"
AWAITING = "awaiting_confirmation"
RUNNING = "running"
DONE = "done"
FAILED = "failed"
SKIPPED = "skipped"
CANCELLED = "cancelled"

STATES: tuple[str, ...] = (SCHEDULED, ELIGIBLE, AWAITING, RUNNING, DONE, FAILED, SKIPPED, CANCELLED)
TERMINAL: frozenset[str] = frozenset({DONE, FAILED, SKIPPED, CANCELLED})
# Live runs, counted by max_parallel; awaiting_confirmation runs are added to that count
# separately (and also block new claims at the gate, SPEC 8.4).
LIVE: frozenset[str] = frozenset({ELIGIBLE, RUNNING})
# Terminal states that give the slot back: their slot_key leaves the partial unique index.
RELEASING: frozenset[str] = frozenset({SKIPPED, CANCELLED})

# None -> scheduled is the creation of a run.
TRANSITIONS: Mapping[str | None, frozenset[str]] = {
    None: frozenset({SCHEDULED}),
    SCHEDULED: frozenset({ELIGIBLE, AWAITING, SKIPPED, CANCELLED}),
    AWAITING: frozenset({ELIGIBLE, FAILED, SKIPPED, CANCELLED}),
    ELIGIBLE: frozenset({RUNNING, SKIPPED, FAILED, CANCELLED}),
    RUNNING: frozenset({DONE, FAILED}),
    DONE: frozenset(),
    FAILED: frozenset(),
    SKIPPED: frozenset(),
    CANCELLED: frozenset(),
}

# Manual runs never move markers (SPEC 7).
MARKER_TRIGGERS: frozenset[str] = frozenset({"schedule", "cron"})


class IllegalTransition(Exception):
    """A move the table does not allow; names the run so the log says which."""

    def __init__(self, run_id: int | None, from_state: str | None, to_state: str) -> None:
        self.run_id = run_id
        self.from_state = from_state
        self.to_state = to_state
        super().__init__(f"run {run_id}: illegal transition {from_state or '(none)'} -> {to_state}")


def allowed(frm: str | None, to: str) -> bool:
    return to in TRANSITIONS.get(frm, frozenset())


def check(run_id: int | None, frm: str | None, to: str) -> None:
    """Raise IllegalTransition unless the table allows `frm -> to`."""
    if not allowed(frm, to):
        raise IllegalTransition(run_id, frm, to)


def marker_effect(to_state: str, trigger: str) -> tuple[bool, bool]:
    """(move last_attempt_at?, move last_success_at?) when a run enters `to_state`.

    Only scheduled runs (`schedule`, `cron`) keep the cadence; skipped and
    cancelled runs leave the markers alone so their slot is still owed.
    """
    if trigger not in MARKER_TRIGGERS:
        return (False, False)
    if to_state == DONE:
        return (True, True)
    if to_state in (RUNNING, FAILED):
        return (True, False)
    return (False, False)
