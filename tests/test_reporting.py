"""Every ```sql block of docs/reporting.md runs on a migrated SQLite database and returns what it says."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, insert

from omtasks.db import open_engine
from omtasks.db.runs import claim, create_run, record_missed, transition
from omtasks.db.schema import schedule_entries
from omtasks.timeutil import utcnow

DOC = Path(__file__).resolve().parents[1] / "docs" / "reporting.md"
NOW = utcnow().replace(microsecond=0)
MISSED = "missed slot (late by 900 s, grace 60 s)"
AWAITING = "awaiting confirmation (run 4, until 08:00:02)"


def _queries() -> dict[str, str]:
    blocks = re.findall(r"```sql\n(.*?)```", DOC.read_text(), flags=re.DOTALL)
    return {b.splitlines()[0].removeprefix("--").strip(): b for b in blocks}


def _s(dt: datetime) -> str:
    return f"{dt:%Y-%m-%d %H:%M:%S}.000000"


def _scheduled(
    eng: Engine,
    service: str,
    action: str,
    rid: str | None,
    scope: str,
    sched: datetime,
    start: datetime,
    end: datetime,
    final: str,
    reason: str | None = None,
) -> int:
    r = claim(
        eng,
        service=service,
        action=action,
        rid=rid,
        scope=scope,
        node="n1",
        now=sched,
        scheduled_for=sched,
        max_parallel=1,
        confirmation_timeout=None,
        actor="runner@n1",
    )
    with eng.begin() as c:
        transition(c, r.run_id, "eligible", "running", reason=None, actor="w", now=sched, started_at=start)
        transition(c, r.run_id, "running", final, reason=reason, actor="w", now=sched, ended_at=end)
    return r.run_id


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    root = tmp_path_factory.mktemp("reporting")
    eng = open_engine(f"sqlite:///{root}/var/om.db", root=root)  # explicit: OM_DB_URL is not yet cleared here
    h = timedelta(hours=1)
    _scheduled(
        eng,
        "pgdb",
        "run",
        "task#0",
        "",
        NOW - 2 * h - timedelta(seconds=120),
        NOW - 2 * h,
        NOW - 2 * h + timedelta(seconds=30),
        "done",
    )
    _scheduled(
        eng,
        "pgdb",
        "run",
        "task#0",
        "",
        NOW - h,
        NOW - h,
        NOW - h + timedelta(seconds=10),
        "failed",
        "exit code 3",
    )
    with eng.begin() as c:
        manual = create_run(
            c,
            service="pgdb",
            action="run",
            rid="task#1",
            node="n1",
            trigger="manual",
            scheduled_for=NOW - 48 * h,
            now=NOW - 48 * h,
            reason="manual by alice@n1",
            actor="alice@n1",
        )
        transition(c, manual, "scheduled", "eligible", reason=None, actor="alice@n1", now=NOW)
        transition(c, manual, "eligible", "running", reason=None, actor="w", now=NOW, started_at=NOW - 48 * h)
        transition(
            c,
            manual,
            "running",
            "failed",
            reason="exit code 1",
            actor="w",
            now=NOW,
            ended_at=NOW - 48 * h + timedelta(seconds=5),
        )
    claim(
        eng,
        service="pgdb",
        action="run",
        rid="task#2",
        scope="",
        node="n1",
        now=NOW,
        scheduled_for=NOW,
        max_parallel=1,
        confirmation_timeout=3600,
        actor="runner@n1",
    )
    ten = timedelta(minutes=10)
    _scheduled(
        eng,
        "web",
        "status",
        None,
        "n1",
        NOW - ten,
        NOW - ten + timedelta(seconds=200),
        NOW - ten + timedelta(seconds=201),
        "done",
    )
    with eng.begin() as c:
        for service, action, rid, verdict, reason in [
            ("pgdb", "run", "task#0", "not_due", None),
            ("pgdb", "run", "task#1", "missed", MISSED),
            ("pgdb", "run", "task#2", "awaiting_confirmation", AWAITING),
            ("web", "status", "", "due", "run 5 claimed"),
        ]:
            c.execute(
                insert(schedule_entries).values(
                    service=service,
                    node="n1",
                    action=action,
                    rid=rid,
                    verdict=verdict,
                    reason=reason,
                    scope="",
                )
            )
        record_missed(
            c,
            service="pgdb",
            node="n1",
            action="run",
            rid="task#1",
            scope="",
            slot=NOW - 3 * h,
            reason=MISSED,
            now=NOW,
        )
    yield eng
    eng.dispose()


def test_doc_has_the_documented_queries() -> None:
    assert set(_queries()) == {
        "failed runs in the last day",
        "current verdicts that are not due",
        "pending confirmations",
        "task statistics",
        "late starts in the last week",
        "missed cron slots",
        "last run of every entry",
        "history of the latest failed run",
    }


def _rows(engine: Engine, name: str) -> list[tuple]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.exec_driver_sql(_queries()[name]).all()]


def test_failed_runs_in_the_last_day(engine: Engine) -> None:
    h = timedelta(hours=1)
    assert _rows(engine, "failed runs in the last day") == [
        ("pgdb", "task#0", "n1", "exit code 3", _s(NOW - h))
    ]


def test_current_verdicts_that_are_not_due(engine: Engine) -> None:
    assert _rows(engine, "current verdicts that are not due") == [
        ("pgdb", "run", "task#1", "n1", "missed", MISSED),
        ("pgdb", "run", "task#2", "n1", "awaiting_confirmation", AWAITING),
    ]


def test_pending_confirmations(engine: Engine) -> None:
    [(run_id, service, rid, node, expires_at, seconds_left)] = _rows(engine, "pending confirmations")
    assert (run_id, service, rid, node, expires_at) == (
        4,
        "pgdb",
        "task#2",
        "n1",
        _s(NOW + timedelta(hours=1)),
    )
    # seconds_left counts down on the real clock from NOW (set when this module was imported)
    elapsed = (utcnow() - NOW).total_seconds()
    assert 3600 - elapsed - 5 <= seconds_left <= 3600


def test_task_statistics(engine: Engine) -> None:
    end_of_done = NOW - timedelta(hours=2) + timedelta(seconds=30)
    assert _rows(engine, "task statistics") == [
        ("pgdb", "task#0", 2, 1, 1, 0, 20.0, 30.0, _s(end_of_done)),
        ("pgdb", "task#1", 1, 0, 1, 0, 5.0, 5.0, None),
        ("pgdb", "task#2", 1, 0, 0, 0, None, None, None),
    ]


def test_late_starts_in_the_last_week(engine: Engine) -> None:
    two, ten = timedelta(hours=2), timedelta(minutes=10)
    assert _rows(engine, "late starts in the last week") == [
        (5, "web", None, "n1", _s(NOW - ten), _s(NOW - ten + timedelta(seconds=200)), 200.0),
        (1, "pgdb", "task#0", "n1", _s(NOW - two - timedelta(seconds=120)), _s(NOW - two), 120.0),
    ]


def test_missed_cron_slots(engine: Engine) -> None:
    assert _rows(engine, "missed cron slots") == [
        ("pgdb", "run", "task#1", "", _s(NOW - timedelta(hours=3)), MISSED)
    ]


def test_last_run_of_every_entry(engine: Engine) -> None:
    assert _rows(engine, "last run of every entry") == [
        ("pgdb", "run", "task#0", "n1", "failed", "exit code 3"),
        ("pgdb", "run", "task#1", "n1", "failed", "exit code 1"),
        ("web", "status", None, "n1", "done", "claimed by n1"),
    ]


def test_history_of_the_latest_failed_run(engine: Engine) -> None:
    assert _rows(engine, "history of the latest failed run") == [
        (None, "scheduled", "manual by alice@n1", "alice@n1"),
        ("scheduled", "eligible", None, "alice@n1"),
        ("eligible", "running", None, "w"),
        ("running", "failed", "exit code 1", "w"),
    ]
