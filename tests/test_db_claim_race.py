"""Exactly once per slot (SPEC 8.4): 8 processes with their own connections race on the same slots.

Short variant by default (8 claimants x 20 rounds); OM_LONG_TESTS=1 runs 200 rounds.
"""

from __future__ import annotations

import multiprocessing
import os
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import func, select

from omtasks.db import open_engine
from omtasks.db.markers import read_marker
from omtasks.db.runs import claim, transition
from omtasks.db.schema import runs

CLAIMANTS = 8
ROUNDS = 200 if os.environ.get("OM_LONG_TESTS") == "1" else 20
T0 = datetime(2026, 11, 28, 2, 0, tzinfo=UTC)
ENTRY = {"service": "pgdb", "action": "run", "rid": "task#0", "scope": ""}


def _race(url: str, root: str, node: str, barrier, queue, synchronized: bool) -> None:
    try:
        engine = open_engine(url, root=Path(root))
        outcomes = []
        for r in range(ROUNDS):
            now = T0 + timedelta(minutes=r)
            if synchronized:
                barrier.wait(timeout=60)
            res = claim(
                engine,
                **ENTRY,
                node=node,
                now=now,
                scheduled_for=now,
                max_parallel=1,
                confirmation_timeout=None,
                actor=f"runner@{node}",
            )
            if synchronized:
                barrier.wait(timeout=60)
            outcomes.append((r, res.verdict))
            if res.state == "eligible":
                with engine.begin() as conn:
                    transition(conn, res.run_id, "eligible", "running", reason=None, actor=node, now=now)
                    transition(conn, res.run_id, "running", "done", reason=None, actor=node, now=now)
        engine.dispose()
        queue.put(outcomes)
    except Exception as exc:  # reported to the parent, which fails the test
        queue.put(repr(exc))


def _run_race(db_url: str, om_root: Path, synchronized: bool) -> list[tuple[int, str]]:
    open_engine(db_url, root=om_root).dispose()
    ctx = multiprocessing.get_context("fork")
    barrier, queue = ctx.Barrier(CLAIMANTS), ctx.Queue()
    procs = [
        ctx.Process(target=_race, args=(db_url, str(om_root), f"n{i}", barrier, queue, synchronized))
        for i in range(CLAIMANTS)
    ]
    for p in procs:
        p.start()
    results = [queue.get(timeout=600) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    errors = [r for r in results if isinstance(r, str)]
    assert not errors, errors
    return [o for r in results for o in r]


def _check_exactly_once(db_url: str, om_root: Path) -> list:
    engine = open_engine(db_url, root=om_root)
    try:
        with engine.connect() as conn:
            rows = conn.execute(select(runs.c.slot_key, runs.c.scheduled_for, runs.c.state)).all()
            dupes = conn.execute(
                select(runs.c.slot_key)
                .where(runs.c.state.not_in(("skipped", "cancelled")))
                .group_by(runs.c.slot_key)
                .having(func.count() > 1)
            ).all()
            marker = read_marker(conn, **ENTRY).last_attempt_at
    finally:
        engine.dispose()
    assert dupes == []
    assert len({r.scheduled_for for r in rows}) == len(rows)
    assert {r.state for r in rows} == {"done"}
    assert marker == max(r.scheduled_for for r in rows).replace(tzinfo=UTC)
    return rows


def test_every_slot_is_claimed_exactly_once(db_url: str, om_root: Path) -> None:
    outcomes = _run_race(db_url, om_root, synchronized=True)
    per_round = Counter(r for r, verdict in outcomes if verdict == "due")
    assert per_round == dict.fromkeys(range(ROUNDS), 1)
    assert Counter(v for _, v in outcomes) == {"due": ROUNDS, "claimed_elsewhere": ROUNDS * (CLAIMANTS - 1)}
    rows = _check_exactly_once(db_url, om_root)
    assert sorted(r.scheduled_for for r in rows) == [
        (T0 + timedelta(minutes=r)).replace(tzinfo=None) for r in range(ROUNDS)
    ]


def test_unsynchronized_claimants_never_share_a_slot(db_url: str, om_root: Path) -> None:
    outcomes = _run_race(db_url, om_root, synchronized=False)
    assert {v for _, v in outcomes} <= {"due", "claimed_elsewhere"}
    rows = _check_exactly_once(db_url, om_root)
    assert len(rows) == Counter(v for _, v in outcomes)["due"]
