"""The run store: transitions, markers, confirmations, claims and missed slots (SPEC 7, 8.4, 8.7)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, select

from omtasks.db import open_engine
from omtasks.db.markers import read_marker
from omtasks.db.runs import (
    LostRace,
    add_note,
    admit,
    claim,
    create_run,
    ensure_marker,
    record_missed,
    transition,
)
from omtasks.db.schema import confirmations, placements, run_events, runs, schedule_decisions
from omtasks.statemachine import IllegalTransition

T0 = datetime(2026, 11, 28, 2, 0, tzinfo=UTC)
ENTRY = {"service": "pgdb", "action": "run", "rid": "task#0", "scope": ""}


@pytest.fixture
def engine(db_url: str, om_root: Path) -> Iterator[Engine]:
    eng = open_engine(db_url, root=om_root)
    yield eng
    eng.dispose()


def _claim(engine: Engine, now: datetime = T0, **kw) -> object:
    args = {
        **ENTRY,
        "node": "n1",
        "now": now,
        "scheduled_for": now,
        "max_parallel": 1,
        "confirmation_timeout": None,
        "actor": "runner@n1",
        **kw,
    }
    return claim(engine, **args)


def _finish(engine: Engine, run_id: int, to: str = "done", now: datetime = T0) -> None:
    with engine.begin() as conn:
        transition(conn, run_id, "eligible", "running", reason=None, actor="worker@n1", now=now)
        transition(conn, run_id, "running", to, reason=None, actor="worker@n1", now=now, exit_code=0)


def _marker(engine: Engine, scope: str = "") -> tuple[datetime | None, datetime | None]:
    with engine.connect() as conn:
        m = read_marker(conn, "pgdb", "run", "task#0", scope)
    return m.last_attempt_at, m.last_success_at


def _manual(engine: Engine, **kw) -> int:
    with engine.begin() as conn:
        return create_run(
            conn,
            service="pgdb",
            action="run",
            rid="task#0",
            node="n1",
            trigger=kw.pop("trigger", "manual"),
            scheduled_for=T0,
            now=T0,
            reason="manual by alice@n1",
            actor="alice@n1",
            requested_by="alice@n1",
            **kw,
        )


def test_claim_moves_to_eligible_and_markers_follow_done(engine: Engine) -> None:
    r = _claim(engine)
    assert (r.verdict, r.state, r.reason, r.marker) == ("due", "eligible", f"run {r.run_id} claimed", None)
    assert r.slot_key == "pgdb|run|task#0||never"
    with engine.connect() as conn:
        events = conn.execute(
            select(run_events.c.from_state, run_events.c.to_state, run_events.c.reason).where(
                run_events.c.run_id == r.run_id
            )
        ).all()
    assert [tuple(e) for e in events] == [
        (None, "scheduled", "claimed by n1"),
        ("scheduled", "eligible", None),
    ]
    assert _marker(engine) == (None, None)
    _finish(engine, r.run_id)
    assert _marker(engine) == (T0, T0)
    with engine.connect() as conn:
        row = conn.execute(select(runs).where(runs.c.id == r.run_id)).one()
    assert row.state == "done" and row.exit_code == 0 and row.started_at and row.ended_at
    assert row.heartbeat_at == T0.replace(tzinfo=None)


def test_second_claim_of_a_slot_is_claimed_elsewhere(engine: Engine) -> None:
    first = _claim(engine)
    second = _claim(engine, node="n2", actor="runner@n2")
    assert (second.run_id, second.verdict) == (None, "claimed_elsewhere")
    assert second.reason == f"run {first.run_id} claimed by n1"
    assert (second.winner_id, second.winner_state) == (first.run_id, "eligible")


def test_stale_evaluation_cannot_claim_the_next_slot(engine: Engine) -> None:
    """A tick that decided 'due' on marker M loses when the marker moved before its claim (SPEC 8.4)."""
    first = _claim(engine, expected_marker=None)
    _finish(engine, first.run_id)  # the slot ran: the marker is now T0
    stale = _claim(engine, node="n2", actor="runner@n2", expected_marker=None)
    assert (stale.run_id, stale.verdict) == (None, "claimed_elsewhere")
    assert stale.reason == f"run {first.run_id} claimed by n1"
    with engine.connect() as conn:
        assert conn.execute(select(runs.c.id)).all() == [(first.run_id,)]
    fresh = _claim(engine, now=T0 + timedelta(minutes=1), expected_marker=T0)
    assert fresh.verdict == "due" and fresh.marker == T0


def test_active_only_claim_rereads_the_placement(engine: Engine) -> None:
    """A node that lost the placement before its claim committed claims nothing (SPEC 8.4 'on the active node')."""
    lost = _claim(engine, active_only=True)
    assert (lost.run_id, lost.verdict) == (None, "requires_unmet")
    assert lost.reason == "requires instance(up): not the active instance (active: none)"
    with engine.begin() as conn:
        conn.execute(placements.insert().values(service="pgdb", active_node="n2", epoch=7))
    assert _claim(engine, active_only=True).reason.endswith("(active: n2)")
    won = _claim(engine, node="n2", actor="runner@n2", active_only=True)
    assert won.verdict == "due"
    with engine.connect() as conn:
        assert conn.execute(select(runs.c.node, runs.c.placement_epoch)).all() == [("n2", 7)]


def test_next_slot_follows_the_marker_and_is_strictly_later(engine: Engine) -> None:
    first = _claim(engine)
    _finish(engine, first.run_id, "failed")
    assert _marker(engine) == (T0, None)
    again = _claim(engine, now=T0 - timedelta(minutes=5))
    assert again.marker == T0
    assert again.slot_key == "pgdb|run|task#0||2026-11-28T02:00:00Z"
    assert again.scheduled_for == T0 + timedelta(seconds=1)


def test_max_parallel_reached_ends_skipped_and_releases_the_slot(engine: Engine) -> None:
    manual = _manual(engine)
    with engine.begin() as conn:
        transition(conn, manual, "scheduled", "eligible", reason=None, actor="alice@n1", now=T0)
    r = _claim(engine)
    assert (r.verdict, r.state, r.reason) == ("max_parallel", "skipped", "max parallel runs reached (1/1)")
    r2 = _claim(engine, max_parallel=2)
    assert (r2.verdict, r2.slot_key) == ("due", r.slot_key)


def test_claim_with_confirmation_awaits_and_row_follows(engine: Engine) -> None:
    r = _claim(engine, confirmation_timeout=3600)
    assert r.state == "awaiting_confirmation" and r.expires_at == T0 + timedelta(hours=1)
    with engine.begin() as conn:
        transition(
            conn,
            r.run_id,
            "awaiting_confirmation",
            "eligible",
            reason="confirmed by alice@n1",
            actor="alice@n1",
            now=T0 + timedelta(minutes=1),
        )
        row = conn.execute(select(confirmations).where(confirmations.c.run_id == r.run_id)).one()
    assert (row.state, row.decided_by) == ("confirmed", "alice@n1")
    assert (row.requested_at, row.expires_at) == (
        T0.replace(tzinfo=None),
        (T0 + timedelta(hours=1)).replace(tzinfo=None),
    )
    assert row.decided_at == (T0 + timedelta(minutes=1)).replace(tzinfo=None)


@pytest.mark.parametrize(
    ("to", "reason", "expected", "moves"),
    [
        ("failed", "confirmation expired", "expired", True),
        ("failed", "confirmation refused", "refused", True),
        ("skipped", "node dead", "cancelled", False),
        ("cancelled", "task disabled", "cancelled", False),
    ],
)
def test_confirmation_follows_its_run_out(
    engine: Engine, to: str, reason: str, expected: str, moves: bool
) -> None:
    r = _claim(engine, confirmation_timeout=60)
    with engine.begin() as conn:
        transition(conn, r.run_id, "awaiting_confirmation", to, reason=reason, actor="runner@n1", now=T0)
        state = conn.execute(select(confirmations.c.state).where(confirmations.c.run_id == r.run_id)).scalar()
        assert conn.execute(select(runs.c.reason).where(runs.c.id == r.run_id)).scalar() == reason
    assert state == expected
    assert _marker(engine) == ((T0, None) if moves else (None, None))


def test_manual_runs_never_move_markers(engine: Engine) -> None:
    run_id = _manual(engine)
    with engine.begin() as conn:
        ensure_marker(conn, "pgdb", "run", "task#0", "")
        transition(conn, run_id, "scheduled", "eligible", reason=None, actor="alice@n1", now=T0)
    _finish(engine, run_id)
    assert _marker(engine) == (None, None)


def test_markers_only_move_forward(engine: Engine) -> None:
    late, early = _manual(engine, trigger="cron"), None
    with engine.begin() as conn:
        early = create_run(
            conn,
            service="pgdb",
            action="run",
            rid="task#0",
            node="n1",
            trigger="cron",
            scheduled_for=T0 - timedelta(hours=1),
            now=T0,
            reason=None,
            actor="x",
        )
        for run_id in (late, early):
            transition(conn, run_id, "scheduled", "eligible", reason=None, actor="x", now=T0)
    _finish(engine, late)
    _finish(engine, early)
    assert _marker(engine) == (T0, T0)


def test_illegal_transition_changes_nothing(engine: Engine) -> None:
    r = _claim(engine)
    with engine.begin() as conn, pytest.raises(IllegalTransition) as info:
        transition(conn, r.run_id, "eligible", "done", reason=None, actor="x", now=T0)
    assert str(info.value) == f"run {r.run_id}: illegal transition eligible -> done"
    with engine.connect() as conn:
        assert conn.execute(select(runs.c.state).where(runs.c.id == r.run_id)).scalar() == "eligible"


def test_lost_race_is_raised(engine: Engine) -> None:
    r = _claim(engine)
    with engine.begin() as conn:
        transition(conn, r.run_id, "eligible", "running", reason=None, actor="w1", now=T0)
    with engine.begin() as conn, pytest.raises(LostRace) as info:
        transition(conn, r.run_id, "eligible", "running", reason=None, actor="w2", now=T0)
    assert info.value.actual == "running"
    assert str(info.value) == f"run {r.run_id}: lost race moving eligible -> running (state is now running)"


def test_reaped_run_gets_a_note(engine: Engine) -> None:
    r = _claim(engine)
    with engine.begin() as conn:
        transition(conn, r.run_id, "eligible", "running", reason=None, actor="w", now=T0)
        transition(conn, r.run_id, "running", "failed", reason="lost", actor="runner@n2", now=T0)
        add_note(conn, r.run_id, "failed", "finished after being reaped: exit code 0", "worker@n1")
        last = conn.execute(
            select(run_events.c.from_state, run_events.c.to_state, run_events.c.reason)
            .where(run_events.c.run_id == r.run_id)
            .order_by(run_events.c.id.desc())
        ).first()
        state, reason = conn.execute(select(runs.c.state, runs.c.reason).where(runs.c.id == r.run_id)).one()
    assert tuple(last) == ("failed", "failed", "finished after being reaped: exit code 0")
    assert (state, reason) == ("failed", "lost")


def test_transition_rejects_unknown_fields_and_missing_expiry(engine: Engine) -> None:
    run_id = _manual(engine)
    with engine.begin() as conn:
        with pytest.raises(TypeError):
            transition(conn, run_id, "scheduled", "eligible", reason=None, actor="x", now=T0, state="done")
        with pytest.raises(ValueError, match="expires_at"):
            transition(conn, run_id, "scheduled", "awaiting_confirmation", reason=None, actor="x", now=T0)


def test_admit_tests_max_parallel_in_the_runs_scope(engine: Engine) -> None:
    node_scoped = _claim(engine, scope="n1")
    assert node_scoped.state == "eligible"
    first = _manual(engine, scope="")
    assert admit(engine, first, max_parallel=1, now=T0, actor="alice@n1") is True
    second = _manual(engine, scope="")
    assert admit(engine, second, max_parallel=1, now=T0, actor="alice@n1") is False
    with engine.connect() as conn:
        assert conn.execute(select(runs.c.state, runs.c.reason).where(runs.c.id == second)).one() == (
            "skipped",
            "max parallel runs reached (1/1)",
        )


def test_record_missed_once(engine: Engine) -> None:
    slot = T0 + timedelta(minutes=30)
    args = {
        **ENTRY,
        "node": "n1",
        "slot": slot,
        "reason": "missed slot 2026-11-28 03:30:00 (late by 900 s, grace 60 s)",
    }
    with engine.begin() as conn:
        assert record_missed(conn, now=T0, **args) is True
        assert record_missed(conn, now=T0 + timedelta(minutes=1), **{**args, "node": "n2"}) is False
        rows = conn.execute(select(schedule_decisions.c.verdict, schedule_decisions.c.slot)).all()
    assert [tuple(r) for r in rows] == [("missed", slot.replace(tzinfo=None))]


def test_partial_unique_index_keeps_one_live_run_per_slot(engine: Engine) -> None:
    from sqlalchemy.exc import IntegrityError

    def run(conn, state: str) -> None:
        run_id = create_run(
            conn,
            service="pgdb",
            action="run",
            rid="task#0",
            node="n1",
            trigger="schedule",
            scheduled_for=T0,
            now=T0,
            reason=None,
            actor="x",
            slot_key="k",
        )
        if state != "scheduled":
            transition(conn, run_id, "scheduled", state, reason=None, actor="x", now=T0)

    with engine.begin() as conn:
        run(conn, "skipped")
        run(conn, "cancelled")
        run(conn, "scheduled")
    with pytest.raises(IntegrityError), engine.begin() as conn:
        run(conn, "scheduled")


def test_unique_index_is_the_backstop_of_a_claim(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    from omtasks.db import runs as store

    first = _claim(engine)
    real = store._slot_holder
    calls = []

    def blind_once(conn, key):
        calls.append(key)
        return None if len(calls) == 1 else real(conn, key)

    monkeypatch.setattr(store, "_slot_holder", blind_once)
    second = _claim(engine, node="n2")
    assert (second.verdict, second.winner_id, second.reason) == (
        "claimed_elsewhere",
        first.run_id,
        f"run {first.run_id} claimed by n1",
    )
    with engine.connect() as conn:
        assert conn.execute(select(runs.c.id)).scalars().all() == [first.run_id]
