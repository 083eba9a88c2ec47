"""node.max_running caps concurrency, not throughput (SPEC 3.7, 8.2; issue 13).

Claimed runs beyond the cap wait as `node_cap`; the supervisor starts the next
one as soon as a slot frees, without waiting for a tick.
"""

import json

from omtest import db_rows, make_root, om, tick, wait_rows, write_service


def test_runs_beyond_max_running_wait_for_a_launch_slot(tmp_path):
    root = make_root(tmp_path)
    (root / "etc" / "node.conf").write_text("[node]\nmax_running = 1\n")
    write_service(root, "svc", """
        [DEFAULT]
        nodes = n1
        topology = flex
        status_schedule = @0

        [task#0]
        command = sleep 3
        schedule = 10:00

        [task#1]
        command = /bin/true
        schedule = 10:00
    """)
    tick(root, "2026-11-27 10:00:05", wait=False)
    states = {r["rid"]: (r["state"], r["pid"]) for r in db_rows(root, "SELECT rid, state, pid FROM runs")}
    assert states["task#1"] == ("eligible", None)  # claimed, not launched: task#0 holds the only slot
    shown = json.loads(om(root, "svc", "print", "schedule", "--format", "json", "--rid", "task#1",
                          env={"OM_NOW": "2026-11-27 10:00:10"}).stdout)
    assert shown[0]["verdict"] == "node_cap"
    assert shown[0]["note"] == "waiting for a launch slot (1/1 running)"
    assert shown[0]["next_run"] == "2026-11-27T10:00:00+00:00"  # the pending run's scheduled_for
    stored = db_rows(root, "SELECT verdict FROM schedule_entries WHERE rid = 'task#1'")
    assert stored == [{"verdict": "node_cap"}]
    # once task#0 is done, the supervisor starts task#1 at once (no tick in between),
    # with its original scheduled_for, and never both together
    assert wait_rows(root, "SELECT id FROM runs WHERE rid = 'task#1' AND state = 'done'", timeout=30)
    runs = db_rows(root, "SELECT rid, state, scheduled_for, started_at, ended_at FROM runs ORDER BY rid")
    assert [(r["rid"], r["state"]) for r in runs] == [("task#0", "done"), ("task#1", "done")]
    assert runs[1]["scheduled_for"].startswith("2026-11-27 10:00:00")
    events = db_rows(root, "SELECT e.run_id, e.to_state, e.at FROM run_events e ORDER BY e.id")
    order = [(e["run_id"], e["to_state"]) for e in events if e["to_state"] in ("running", "done")]
    ids = {r["rid"]: r["id"] for r in db_rows(root, "SELECT id, rid FROM runs")}
    assert order == [(ids["task#0"], "running"), (ids["task#0"], "done"),
                     (ids["task#1"], "running"), (ids["task#1"], "done")]
