"""Crash safety of the runner (SPEC 8.6, 7, 12): SIGKILLed workers and ticks, and late workers.

Real `om runner tick` processes and real workers on a real SQLite file. After
the next tick: no run of the node is left `running` without its worker (reaped
as `failed`, reason `lost`), no `eligible` run is left without a live worker
(except one waiting for a launch slot), markers never move backwards, and the
attempt marker equals the `scheduled_for` of the latest scheduled run that
started (or failed). The random kill points come from a seeded generator; the
seed is printed and can be forced with OM_CRASH_SEED.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time
from collections import Counter
from datetime import UTC, datetime, timedelta

from omtasks.runner.procinfo import is_alive
from omtest import (
    db_path,
    db_rows,
    kill_worker,
    make_root,
    om_cmd,
    om_env,
    tick,
    utc_text,
    wait_until,
    write_service,
)

LIVE = ("scheduled", "eligible", "awaiting_confirmation", "running")


def task_runs(root, service):
    return db_rows(root, "SELECT * FROM runs WHERE service = :s AND action = 'run' ORDER BY id", s=service)


def markers(root, service):
    rows = db_rows(root, "SELECT * FROM last_runs WHERE service = :s AND action = 'run'", s=service)
    return {r["rid"]: (utc_text(r["last_attempt_at"]), utc_text(r["last_success_at"])) for r in rows}


def check_after_tick(root, service):
    """SPEC 8.6: after a tick, no pending or running run lacks a live process (launch-slot waits aside)."""
    for r in task_runs(root, service):
        if r["state"] not in LIVE:
            continue
        assert r["state"] != "scheduled", r
        if r["state"] == "eligible" and r["pid"] is None:
            continue  # waiting for a launch slot
        if r["state"] == "awaiting_confirmation":
            continue
        if not is_alive(r["pid"], r["proc_start"], r["boot_id"]):
            # it may have finished between the two reads: then it is terminal now
            again = db_rows(root, "SELECT state FROM runs WHERE id = :i", i=r["id"])[0]["state"]
            assert again not in LIVE, f"run {r['id']} is {again} without a live worker: {r}"


def check_markers(root, service, previous, *, settled=True):
    """Markers never move backwards; once settled, they equal the latest moving run's scheduled_for."""
    rows = task_runs(root, service)
    now = markers(root, service)
    for rid, (attempt, success) in previous.items():
        assert now[rid][0] is not None and (attempt is None or now[rid][0] >= attempt), (rid, previous, now)
        if success is not None:
            assert now[rid][1] is not None and now[rid][1] >= success, (rid, previous, now)
    kept = [r["slot_key"] for r in rows if r["state"] not in ("skipped", "cancelled")]
    assert not [k for k, n in Counter(kept).items() if n > 1], kept
    if settled:
        for rid, (attempt, success) in now.items():
            moved = [utc_text(r["scheduled_for"]) for r in rows if r["rid"] == rid and r["trigger"] == "schedule"
                     and r["state"] in ("running", "done", "failed")]
            assert attempt == (max(moved) if moved else None), (rid, attempt, moved)
            done = [utc_text(r["scheduled_for"]) for r in rows if r["rid"] == rid and r["state"] == "done"]
            assert success == (max(done) if done else None), (rid, success, done)
    return now


def test_killed_worker_is_reaped_as_lost(tmp_path):
    root = make_root(tmp_path)
    write_service(root, "crash", """
        [DEFAULT]
        nodes = n1

        [task#long]
        command = sleep 30
        schedule = @10m
    """)
    tick(root, "2026-11-27 10:00:00", wait=False)
    run = wait_until(lambda: [r for r in task_runs(root, "crash") if r["state"] == "running"],
                     timeout=30, what="the run to start")[0]
    assert markers(root, "crash") == {"task#long": ("2026-11-27 10:00:00", None)}  # moved at start
    pid = run["pid"]
    assert is_alive(pid, run["proc_start"], run["boot_id"])
    kill_worker(pid)
    wait_until(lambda: not is_alive(pid, run["proc_start"], run["boot_id"]), timeout=10, what="the worker to die")
    tick(root, "2026-11-27 10:01:00")
    [run] = task_runs(root, "crash")
    assert run["state"] == "failed" and run["reason"] == "lost" and run["ended_at"] is not None
    ev = db_rows(root, "SELECT * FROM run_events WHERE run_id = :i ORDER BY id", i=run["id"])[-1]
    assert (ev["from_state"], ev["to_state"], ev["reason"]) == ("running", "failed", "lost")
    assert ev["actor"] == "reaper@n1"
    # markers keep the cadence: no rerun before 10:10
    assert markers(root, "crash") == {"task#long": ("2026-11-27 10:00:00", None)}
    tick(root, "2026-11-27 10:05:00")
    assert len(task_runs(root, "crash")) == 1
    check_after_tick(root, "crash")


def test_random_sigkill_of_ticks_and_workers(tmp_path):
    seed = int(os.environ.get("OM_CRASH_SEED", time.time_ns() % 100000))
    print(f"OM_CRASH_SEED={seed}")
    rng = random.Random(seed)
    root = make_root(tmp_path)
    write_service(root, "crash", """
        [DEFAULT]
        nodes = n1

        [task#a]
        command = sleep 1
        schedule = @1m

        [task#b]
        command = /bin/true
        schedule = @1m

        [task#c]
        command = sleep 1.5
        schedule = * * * * *
    """)
    start = datetime(2026, 11, 27, 10, 0, 0)
    previous: dict = {}
    killed: list[int] = []
    rounds = 5
    for i in range(rounds):
        now = start + timedelta(minutes=i)
        # a tick killed at a random point (the first one also creates the database)
        victim = subprocess.Popen(om_cmd("runner", "tick", "--now", now.strftime("%Y-%m-%d %H:%M:%S")),
                                  env=om_env(root), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                  start_new_session=True)
        time.sleep(rng.uniform(0.0, 1.5))
        os.killpg(victim.pid, signal.SIGKILL)
        victim.wait()
        # the next tick reaps and launches what is due; afterwards no run lacks its process
        tick(root, (now + timedelta(seconds=30)).strftime("%Y-%m-%d %H:%M:%S"), wait=False)
        check_after_tick(root, "crash")
        previous = check_markers(root, "crash", previous, settled=False)
        # then a worker dies at a random point of its life
        time.sleep(rng.uniform(0.0, 1.2))
        live = [r for r in task_runs(root, "crash") if r["state"] in ("eligible", "running") and r["pid"]]
        if live:
            victim_run = rng.choice(live)
            kill_worker(victim_run["pid"])
            killed.append(victim_run["id"])
    # let every worker end, then one more tick: nothing is left pending or running
    pids = {r["pid"] for r in task_runs(root, "crash") if r["pid"]}
    wait_until(lambda: not any(is_alive(p, None, None) for p in pids), timeout=30, what="the workers to exit")
    tick(root, (start + timedelta(minutes=rounds - 1, seconds=45)).strftime("%Y-%m-%d %H:%M:%S"))
    check_after_tick(root, "crash")
    check_markers(root, "crash", previous)
    rows = task_runs(root, "crash")
    print(Counter((r["state"], r["reason"]) for r in rows), "killed:", killed)
    assert not [r for r in rows if r["state"] in LIVE], rows
    by_id = {r["id"]: r for r in rows}
    for run_id in killed:
        r = by_id[run_id]
        # a killed worker's run was reaped (lost), or had already finished when the kill came
        assert r["state"] == "done" or (r["state"], r["reason"]) == ("failed", "lost"), r
    for r in rows:
        assert r["state"] == "done" or r["id"] in killed, r
    # one run per task per minute at most, and every minute got its runs (nothing lost)
    for rid in ("task#a", "task#b", "task#c"):
        mine = [utc_text(r["scheduled_for"]) for r in rows if r["rid"] == rid]
        assert len(mine) == len(set(mine)) <= rounds, (rid, mine)


def test_worker_finishing_after_being_reaped_adds_a_note(tmp_path):
    from omtasks.db.connect import make_engine
    from omtasks.db.runs import transition

    root = make_root(tmp_path)
    write_service(root, "late", """
        [DEFAULT]
        nodes = n1

        [task#slow]
        command = sleep 2
        schedule = @10m
    """)
    tick(root, "2026-11-27 10:00:00", wait=False)
    run = wait_until(lambda: [r for r in task_runs(root, "late") if r["state"] == "running"],
                     timeout=30, what="the run to start")[0]
    engine = make_engine(f"sqlite:///{db_path(root)}")
    try:
        with engine.begin() as conn:
            transition(conn, run["id"], "running", "failed", reason="lost", actor="test@n1",
                       now=datetime(2026, 11, 27, 10, 0, 30, tzinfo=UTC))
    finally:
        engine.dispose()
    pid = run["pid"]
    wait_until(lambda: not is_alive(pid, run["proc_start"], run["boot_id"]), timeout=20, what="the worker to exit")
    [after] = task_runs(root, "late")
    assert after["state"] == "failed" and after["reason"] == "lost"
    events = db_rows(root, "SELECT * FROM run_events WHERE run_id = :i ORDER BY id", i=run["id"])
    note = events[-1]
    assert (note["from_state"], note["to_state"]) == ("failed", "failed")
    assert note["reason"] == "finished after being reaped: exit code 0"
    assert [(e["from_state"], e["to_state"]) for e in events[:-1]] == [
        (None, "scheduled"), ("scheduled", "eligible"), ("eligible", "running"), ("running", "failed")]
    # markers did not move on: the attempt is the run's slot, never a success
    assert markers(root, "late") == {"task#slow": ("2026-11-27 10:00:00", None)}
    log = (root / "var" / "log" / "late.log").read_text()
    assert f"WARNING run {run['id']} finished after being reaped: exit code 0" in log
    tick(root, "2026-11-27 10:01:00")
    [after] = task_runs(root, "late")
    assert after["state"] == "failed"
