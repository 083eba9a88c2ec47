"""Retention pruning by the tick (SPEC 3.7 runner.retention)."""

from datetime import UTC, datetime, timedelta

from omtasks.db import open_engine
from omtasks.db.runs import create_run, transition
from omtest import db_rows, make_root, om, write_service

NOW = datetime(2027, 6, 1, 12, 0, tzinfo=UTC)


def _finished(engine, action: str, rid, at: datetime) -> int:
    with engine.begin() as conn:
        run_id = create_run(conn, service="svc", action=action, rid=rid, node="n1", trigger="schedule",
                            scheduled_for=at, now=at, reason="test", actor="test", scope="n1")
        transition(conn, run_id, "scheduled", "eligible", reason=None, actor="test", now=at)
        transition(conn, run_id, "eligible", "running", reason=None, actor="test", now=at)
        transition(conn, run_id, "running", "done", reason=None, actor="test", now=at, exit_code=0)
    return run_id


def test_tick_prunes_old_history_once_a_day(tmp_path):
    root = make_root(tmp_path)
    write_service(root, "svc", "[DEFAULT]\nnodes = n1\n\n[task#0]\ncommand = /bin/true\n")
    (root / "etc" / "node.conf").write_text("[runner]\nretention = 100d\n")
    engine = open_engine(root=root)
    old_task = _finished(engine, "run", "task#0", NOW - timedelta(days=101))
    kept_task = _finished(engine, "run", "task#0", NOW - timedelta(days=99))
    old_status = _finished(engine, "status", None, NOW - timedelta(days=31))
    kept_status = _finished(engine, "status", None, NOW - timedelta(days=29))
    engine.dispose()
    logs = root / "var" / "log" / "runs" / "svc"
    logs.mkdir(parents=True)
    for run_id in (old_task, kept_task):
        (logs / f"{run_id}.log").write_text("output\n")

    assert om(root, "runner", "tick", "--now", NOW.isoformat()).returncode == 0
    ids = {r["id"] for r in db_rows(root, "SELECT id FROM runs")}
    assert old_task not in ids and old_status not in ids
    # the per-run log files go with their runs, the kept runs keep theirs
    assert sorted(p.name for p in logs.iterdir()) == [f"{kept_task}.log"]
    assert {kept_task, kept_status} <= ids
    assert not db_rows(root, "SELECT * FROM run_events WHERE run_id IN (:a, :b)", a=old_task, b=old_status)
    # markers survive pruning: the cadence is not lost
    assert db_rows(root, "SELECT last_attempt_at FROM last_runs WHERE rid = 'task#0'")

    # a second tick the same day prunes nothing more, even what has since aged out
    engine = open_engine(root=root)
    aged = _finished(engine, "run", "task#0", NOW - timedelta(days=200))
    engine.dispose()
    assert om(root, "runner", "tick", "--now", (NOW + timedelta(hours=1)).isoformat()).returncode == 0
    assert aged in {r["id"] for r in db_rows(root, "SELECT id FROM runs")}
    assert om(root, "runner", "tick", "--now", (NOW + timedelta(days=1, hours=1)).isoformat()).returncode == 0
    assert aged not in {r["id"] for r in db_rows(root, "SELECT id FROM runs")}
