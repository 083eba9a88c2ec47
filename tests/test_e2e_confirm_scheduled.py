"""End to end: confirmation of scheduled runs (SPEC 8.7, 7, 10, 12, 15.2 scheduled variant).

`task#restore` has `confirmation = true`, `schedule = 06:00 mon` and
`confirmation_timeout = 2h`; Monday 2026-11-30. Real `om runner tick`
processes, `om pgdb confirm` and `om confirmations list`; TZ=UTC, node n1.
The command touches a file, so "it ran" is observable outside the database.
"""

from __future__ import annotations

import getpass
import json

from omtest import db_rows, make_root, om, tick, utc_text, wait_until, write_service

MONDAY = "2026-11-30 06:00:02"


def setup_service(tmp_path, extra: str = ""):
    root = make_root(tmp_path)
    flag = tmp_path / "ran"
    write_service(root, "pgdb", f"""
        [DEFAULT]
        nodes = n1

        [task#restore]
        command = touch {flag}
        confirmation = true
        schedule = 06:00 mon
        confirmation_timeout = 2h
    """ + extra)
    return root, flag


def runs(root, rid="task#restore"):
    return db_rows(root, "SELECT * FROM runs WHERE service = 'pgdb' AND action = 'run' AND rid = :r ORDER BY id",
                   r=rid)


def confirmations(root):
    return db_rows(root, "SELECT * FROM confirmations ORDER BY id")


def marker(root, rid="task#restore"):
    rows = db_rows(root, "SELECT * FROM last_runs WHERE service = 'pgdb' AND rid = :r", r=rid)
    return (utc_text(rows[0]["last_attempt_at"]), utc_text(rows[0]["last_success_at"])) if rows else (None, None)


def confirm(root, *args, now):
    return om(root, "pgdb", "confirm", *args, env={"OM_NOW": now})


def test_tick_requests_confirmation_and_yes_runs_it(tmp_path):
    root, flag = setup_service(tmp_path)
    tick(root, MONDAY)
    [run] = runs(root)
    rid_ = run["id"]
    assert run["state"] == "awaiting_confirmation" and run["trigger"] == "schedule"
    assert utc_text(run["scheduled_for"]) == "2026-11-30 06:00:00"
    assert run["reason"].startswith("confirmation requested until 2026-11-30T08:00:02")
    [c] = confirmations(root)
    assert c["run_id"] == rid_ and c["state"] == "pending" and c["service"] == "pgdb"
    assert c["rid"] == "task#restore" and c["node"] == "n1"
    assert utc_text(c["requested_at"]) == "2026-11-30 06:00:02"
    assert utc_text(c["expires_at"]) == "2026-11-30 08:00:02"
    assert c["decided_at"] is None and c["decided_by"] is None
    log = (root / "var" / "log" / "pgdb.log").read_text()
    want = (f"run={rid_} task#restore WARNING run {rid_} awaits confirmation until 2026-11-30 08:00:02: "
            f"om pgdb confirm --run {rid_} --yes")
    assert want in log, log
    assert marker(root) == (None, None)  # nothing started yet

    # om confirmations list: SPEC 10 columns, text and JSON
    proc = om(root, "confirmations", "list", env={"OM_NOW": "2026-11-30 06:10:00"})
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].split() == ["ID", "RUN", "SERVICE", "RID", "NODE", "REQUESTED", "EXPIRES", "STATE"]
    assert lines[1].split() == [str(c["id"]), str(rid_), "pgdb", "task#restore", "n1",
                                "2026-11-30", "06:00:02", "2026-11-30", "08:00:02", "pending"]
    doc = json.loads(om(root, "confirmations", "list", "--format", "json").stdout)
    assert doc == [{"id": c["id"], "run_id": rid_, "service": "pgdb", "rid": "task#restore", "node": "n1",
                    "requested_at": "2026-11-30T06:00:02+00:00", "expires_at": "2026-11-30T08:00:02+00:00",
                    "state": "pending", "decided_at": None, "decided_by": None}]
    pending = db_rows(root, "SELECT * FROM v_pending_confirmations")
    assert [p["run_id"] for p in pending] == [rid_]

    # later ticks while pending: no second request, nothing runs
    for now in ("2026-11-30 06:01:00", "2026-11-30 07:00:00"):
        tick(root, now)
    assert len(runs(root)) == 1 and len(confirmations(root)) == 1
    assert runs(root)[0]["state"] == "awaiting_confirmation"
    e = db_rows(root, "SELECT * FROM schedule_entries WHERE rid = 'task#restore'")[0]
    assert e["verdict"] == "awaiting_confirmation"
    assert e["reason"] == f"awaiting confirmation (run {rid_}, until 08:00:02)"
    assert not flag.exists()

    proc = confirm(root, "--yes", now="2026-11-30 07:10:00")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"run {rid_} of pgdb task#restore confirmed"
    # the command launches the worker itself on the run's node
    wait_until(lambda: runs(root)[0]["state"] == "done", timeout=30, what="the confirmed run to finish")
    assert flag.exists()
    [c] = confirmations(root)
    assert c["state"] == "confirmed"
    assert c["decided_by"] == f"{getpass.getuser()}@n1"
    assert utc_text(c["decided_at"]) == "2026-11-30 07:10:00"
    events = db_rows(root, "SELECT from_state, to_state, reason FROM run_events WHERE run_id = :r ORDER BY id",
                     r=rid_)
    assert [(e["from_state"], e["to_state"]) for e in events] == [
        (None, "scheduled"), ("scheduled", "awaiting_confirmation"), ("awaiting_confirmation", "eligible"),
        ("eligible", "running"), ("running", "done")]
    assert events[2]["reason"] == f"confirmed by {getpass.getuser()}@n1"
    assert marker(root) == ("2026-11-30 06:00:00", "2026-11-30 06:00:00")
    assert om(root, "confirmations", "list").stdout.splitlines()[1:] == []
    # a decided run can no longer be confirmed (SPEC 12)
    proc = confirm(root, "--run", str(rid_), "--yes", now="2026-11-30 07:20:00")
    assert proc.returncode == 1
    assert proc.stderr.strip() == f"om: run {rid_} is not awaiting confirmation (state: done)"
    tick(root, "2026-11-30 07:30:00")
    assert len(runs(root)) == 1


def test_no_refuses_and_moves_the_marker(tmp_path):
    root, flag = setup_service(tmp_path)
    tick(root, MONDAY)
    [run] = runs(root)
    proc = confirm(root, "--rid", "task#restore", "--no", now="2026-11-30 06:30:00")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"run {run['id']} of pgdb task#restore refused"
    [run] = runs(root)
    assert run["state"] == "failed" and run["reason"] == "confirmation refused" and run["started_at"] is None
    [c] = confirmations(root)
    assert c["state"] == "refused" and c["decided_by"] == f"{getpass.getuser()}@n1"
    assert utc_text(c["decided_at"]) == "2026-11-30 06:30:00"
    assert marker(root) == ("2026-11-30 06:00:00", None)
    tick(root, "2026-11-30 06:31:00")
    assert len(runs(root)) == 1 and not flag.exists()


def test_expiry_by_a_tick_and_next_request_a_week_later(tmp_path):
    root, flag = setup_service(tmp_path)
    tick(root, MONDAY)
    [run] = runs(root)
    tick(root, "2026-11-30 08:01:00")
    [run] = runs(root)
    assert run["state"] == "failed" and run["reason"] == "confirmation expired" and run["started_at"] is None
    [c] = confirmations(root)
    assert c["state"] == "expired" and c["decided_by"] is None
    assert marker(root) == ("2026-11-30 06:00:00", None)
    doc = json.loads(om(root, "pgdb", "print", "schedule", "--format", "json",
                        env={"OM_NOW": "2026-11-30 08:02:00"}).stdout)
    row = next(d for d in doc if d["rid"] == "task#restore")
    assert row["next_run"] == "2026-12-07T06:00:00+00:00" and row["last_run"] == "2026-11-30T06:00:00+00:00"
    tick(root, "2026-12-01 06:00:02")  # not a Monday
    assert len(runs(root)) == 1
    tick(root, "2026-12-07 06:00:02")
    rows = runs(root)
    assert len(rows) == 2 and rows[1]["state"] == "awaiting_confirmation"
    assert utc_text(rows[1]["scheduled_for"]) == "2026-12-07 06:00:00"
    assert [c["state"] for c in confirmations(root)] == ["expired", "pending"]
    assert not flag.exists()


def test_confirm_error_messages(tmp_path):
    root, flag = setup_service(tmp_path, """
        [task#other]
        command = /bin/true
        confirmation = true
        schedule = 06:00 mon
    """)
    proc = confirm(root, "--yes", now="2026-11-30 05:00:00")
    assert proc.returncode == 1 and proc.stderr.strip() == "om: no pending confirmation for pgdb"
    tick(root, MONDAY)
    ids = [r["id"] for r in db_rows(root, "SELECT id FROM runs WHERE action = 'run' ORDER BY id")]
    assert len(ids) == 2
    proc = confirm(root, "--yes", now="2026-11-30 06:10:00")
    assert proc.returncode == 2
    assert proc.stderr.strip() == (f"om: 2 pending confirmations for pgdb: choose one with --run "
                                   f"({ids[0]}, {ids[1]})")
    # --run of a run that does not exist
    proc = confirm(root, "--run", "99", "--yes", now="2026-11-30 06:10:00")
    assert proc.returncode == 1
    assert proc.stderr.strip() == "om: run 99 is not awaiting confirmation (state: none)"
    # expired at confirm time: confirm expires it as a tick would
    restore = runs(root)[0]["id"]
    proc = confirm(root, "--run", str(restore), "--yes", now="2026-11-30 08:00:30")
    assert proc.returncode == 1
    assert proc.stderr.strip() == f"om: run {restore}: confirmation expired at 2026-11-30 08:00:02"
    assert runs(root)[0]["state"] == "failed" and runs(root)[0]["reason"] == "confirmation expired"
    assert {c["run_id"]: c["state"] for c in confirmations(root)}[restore] == "expired"
    proc = confirm(root, "--run", str(restore), "--no", now="2026-11-30 08:00:40")
    assert proc.returncode == 1
    assert proc.stderr.strip() == f"om: run {restore} is not awaiting confirmation (state: failed)"
    # task#other has the default 1h timeout: expired at 07:00:02 already
    proc = confirm(root, "--rid", "task#other", "--yes", now="2026-11-30 08:00:40")
    assert proc.returncode == 1
    other = runs(root, "task#other")[0]["id"]
    assert proc.stderr.strip() == f"om: run {other}: confirmation expired at 2026-11-30 07:00:02"
    assert {c["run_id"]: c["state"] for c in confirmations(root)} == {restore: "expired", other: "expired"}
    assert not flag.exists()


def test_no_path_runs_a_confirmed_task_without_a_yes(tmp_path):
    root, flag = setup_service(tmp_path)
    # --cron outside any window: claims a slot, which waits for a confirmation too
    env = {"OM_NOW": "2026-11-29 12:00:00"}
    proc = om(root, "pgdb", "run", "--rid", "task#restore", "--cron", env=env)
    assert proc.returncode == 0, proc.stderr
    [run] = runs(root)
    assert run["state"] == "awaiting_confirmation" and run["trigger"] == "cron"
    assert proc.stdout.strip() == (f"task#restore: run {run['id']} awaiting confirmation until 2026-11-29 14:00:00; "
                                   f"confirm with: om pgdb confirm --run {run['id']} --yes")
    # a second --cron: the slot is taken by the pending run
    proc = om(root, "pgdb", "run", "--rid", "task#restore", "--cron", env={"OM_NOW": "2026-11-29 12:05:00"})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"task#restore: slot already claimed by run {run['id']} (awaiting_confirmation)"
    # ticks (in the window too) never start it nor request another confirmation
    for now in ("2026-11-29 12:06:00", "2026-11-29 14:00:30"):
        tick(root, now)
    rows = runs(root)
    assert len(rows) == 1 and rows[0]["state"] == "failed" and rows[0]["reason"] == "confirmation expired"
    tick(root, MONDAY)
    tick(root, "2026-11-30 06:00:40")
    rows = runs(root)
    assert len(rows) == 2 and rows[1]["state"] == "awaiting_confirmation" and rows[1]["trigger"] == "schedule"
    assert [c["state"] for c in confirmations(root)] == ["expired", "pending"]
    # no run ever started, nothing executed
    assert db_rows(root, "SELECT id FROM runs WHERE action = 'run' AND started_at IS NOT NULL") == []
    assert db_rows(root, "SELECT e.id FROM run_events e JOIN runs r ON r.id = e.run_id "
                         "WHERE r.action = 'run' AND e.to_state IN ('eligible', 'running')") == []
    assert not flag.exists()


def test_pending_confirmation_survives_a_broken_file_and_still_expires(tmp_path):
    # SPEC 12: an INI syntax error makes the whole service invalid, but pending confirmations are kept
    # (and still expire)
    root, flag = setup_service(tmp_path)
    tick(root, MONDAY)
    [run] = runs(root)
    conf = root / "etc" / "pgdb.conf"
    good = conf.read_text()
    conf.write_text(good + "[task#broken\n")
    tick(root, "2026-11-30 06:30:00")
    assert runs(root)[0]["state"] == "awaiting_confirmation"
    assert [c["state"] for c in confirmations(root)] == ["pending"]
    e = db_rows(root, "SELECT verdict FROM schedule_entries WHERE rid = 'task#restore'")
    assert [r["verdict"] for r in e] == ["config_invalid"]
    tick(root, "2026-11-30 08:00:02")
    [run] = runs(root)
    assert run["state"] == "failed" and run["reason"] == "confirmation expired"
    assert [c["state"] for c in confirmations(root)] == ["expired"]
    assert not flag.exists()
