"""Exactly once under concurrent ticks (SPEC 8.4, 14; the tasks-and-runner issue's acceptance test).

Each round starts 8 real `om runner tick` processes at once, with the per-node
tick lock disabled (`OM_TICK_LOCK=0`) and the same `--now`, so they race on the
claim itself; `--now` advances by one minute per round. After each round (all
ticks and the workers they launched have exited) every due slot has exactly
one run that is not skipped/cancelled, and none is lost.

Short variant (CI, the default): 20 rounds. Full count of the issue (200 rounds):

    OM_LONG_TESTS=1 /opt/om-ci/bin/pytest tests/test_e2e_race.py
"""

from __future__ import annotations

import os
import subprocess
from collections import Counter
from datetime import datetime, timedelta

from omtest import db_rows, make_root, om_cmd, om_env, utc_text, write_service

TICKS = 8
ROUNDS = 200 if os.environ.get("OM_LONG_TESTS") == "1" else 20
TASKS = ("task#1", "task#2", "task#3")
START = datetime(2026, 11, 27, 10, 0, 0)


def run_round(root, now: str) -> None:
    env = om_env(root, {"OM_TICK_LOCK": "0"})
    procs = [subprocess.Popen(om_cmd("runner", "tick", "--now", now, "--wait"), env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(TICKS)]
    for p in procs:
        out, err = p.communicate(timeout=180)
        assert p.returncode == 0, f"tick at {now}: exit {p.returncode}\n{out}\n{err}"
        assert out == "" and err == "", f"tick at {now} not silent:\n{out}\n{err}"


def check(root, rounds_done: int) -> None:
    rows = db_rows(root, "SELECT id, rid, state, reason, slot_key, scheduled_for, pid FROM runs "
                         "WHERE service = 'race' AND action = 'run' ORDER BY id")
    kept = [r for r in rows if r["state"] not in ("skipped", "cancelled")]
    # exactly once: no slot key twice, no scheduled_for twice per entry
    dup_keys = [k for k, n in Counter(r["slot_key"] for r in kept).items() if n > 1]
    assert not dup_keys, f"slot claimed twice: {dup_keys}\n{kept}"
    dup_times = [k for k, n in Counter((r["rid"], r["scheduled_for"]) for r in kept).items() if n > 1]
    assert not dup_times, f"two runs of one entry for the same instant: {dup_times}"
    # never lost: one run per task per round, for each round's minute, all finished
    expected = [(START + timedelta(minutes=i)).strftime("%Y-%m-%d %H:%M:%S") for i in range(rounds_done)]
    for rid in TASKS:
        mine = [r for r in kept if r["rid"] == rid]
        assert [utc_text(r["scheduled_for"]) for r in mine] == expected, f"{rid}: {mine}"
        assert {r["state"] for r in mine} == {"done"}, mine
    # the losers record nothing else: the skipped/cancelled rows (if any) never ran
    for r in rows:
        if r["state"] in ("skipped", "cancelled"):
            assert r["reason"], r
    lr = db_rows(root, "SELECT rid, last_attempt_at, last_success_at FROM last_runs "
                       "WHERE service = 'race' AND action = 'run'")
    assert {r["rid"]: (utc_text(r["last_attempt_at"]), utc_text(r["last_success_at"])) for r in lr} == {
        rid: (expected[-1], expected[-1]) for rid in TASKS}


def test_concurrent_ticks_claim_each_slot_exactly_once(tmp_path):
    root = make_root(tmp_path)
    write_service(root, "race", """
        [DEFAULT]
        nodes = n1

        [task#1]
        command = /bin/true
        schedule = @1m

        [task#2]
        command = /bin/true
        schedule = * * * * *

        [task#3]
        command = /bin/true
        schedule = @60s
    """)
    for i in range(ROUNDS):
        now = (START + timedelta(minutes=i)).strftime("%Y-%m-%d %H:%M:%S")
        run_round(root, now)
        check(root, i + 1)
    # no run left behind, and every tick of every round recorded the node
    assert db_rows(root, "SELECT id FROM runs WHERE state IN ('scheduled', 'eligible', 'running', "
                         "'awaiting_confirmation')") == []
