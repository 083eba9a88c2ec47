"""The run state machine table (SPEC 7): properties and the marker rule."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from omtasks import statemachine as sm

SPEC_TABLE = {
    (None, "scheduled"),
    ("scheduled", "eligible"),
    ("scheduled", "awaiting_confirmation"),
    ("scheduled", "skipped"),
    ("scheduled", "cancelled"),
    ("awaiting_confirmation", "eligible"),
    ("awaiting_confirmation", "failed"),
    ("awaiting_confirmation", "skipped"),
    ("awaiting_confirmation", "cancelled"),
    ("eligible", "running"),
    ("eligible", "skipped"),
    ("eligible", "failed"),
    ("eligible", "cancelled"),
    ("running", "done"),
    ("running", "failed"),
}


def test_table_is_spec_7() -> None:
    pairs = {(frm, to) for frm, tos in sm.TRANSITIONS.items() for to in tos}
    assert pairs == SPEC_TABLE
    assert set(sm.STATES) == {s for pair in SPEC_TABLE for s in pair if s is not None}
    assert sm.TERMINAL == {"done", "failed", "skipped", "cancelled"}
    assert sm.LIVE == {"eligible", "running"}


@pytest.mark.parametrize("frm", [None, *sm.STATES])
@pytest.mark.parametrize("to", sm.STATES)
def test_check_matches_table(frm: str | None, to: str) -> None:
    if (frm, to) in SPEC_TABLE:
        sm.check(7, frm, to)
    else:
        with pytest.raises(sm.IllegalTransition) as info:
            sm.check(7, frm, to)
        assert (info.value.run_id, info.value.from_state, info.value.to_state) == (7, frm, to)
        assert str(info.value) == f"run 7: illegal transition {frm or '(none)'} -> {to}"


@given(st.lists(st.integers(min_value=0, max_value=10), max_size=20))
def test_random_walks_stay_legal(choices: list[int]) -> None:
    state: str | None = None
    seen = []
    for choice in choices:
        options = sorted(sm.TRANSITIONS[state])
        if not options:
            assert state in sm.TERMINAL
            break
        nxt = options[choice % len(options)]
        sm.check(1, state, nxt)
        state = nxt
        seen.append(state)
    assert all(s in sm.STATES for s in seen)


@given(st.sampled_from(sorted(sm.TERMINAL)), st.sampled_from(sm.STATES))
def test_terminal_states_have_no_exit(terminal: str, to: str) -> None:
    assert not sm.TRANSITIONS[terminal]
    with pytest.raises(sm.IllegalTransition):
        sm.check(1, terminal, to)


@given(st.sampled_from(sorted(set(sm.STATES) - sm.TERMINAL)))
def test_every_live_state_reaches_a_terminal_one(start: str) -> None:
    frontier, seen = [start], {start}
    while frontier:
        for nxt in sm.TRANSITIONS[frontier.pop()]:
            if nxt not in seen:
                seen.add(nxt)
                frontier.append(nxt)
    assert seen & sm.TERMINAL


@given(st.sampled_from(sm.STATES), st.sampled_from(["schedule", "cron", "manual", "converge"]))
def test_marker_effect(to: str, trigger: str) -> None:
    attempt, success = sm.marker_effect(to, trigger)
    if trigger in ("manual", "converge"):
        assert (attempt, success) == (False, False)
    else:
        assert attempt == (to in ("running", "failed", "done"))
        assert success == (to == "done")
    assert attempt or not success
