"""node.max_running: claimed runs beyond the cap wait as `node_cap` and start at a later tick (SPEC 3.7, 8.2)."""

import json

from omtest import db_rows, make_root, om, tick, write_service


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
    tick(root, "2026-11-27 10:00:05")
    states = {r["rid"]: (r["state"], r["pid"]) for r in db_rows(root, "SELECT rid, state, pid FROM runs")}
    assert states["task#1"] == ("eligible", None)  # claimed, not launched: task#0 holds the only slot
    shown = json.loads(om(root, "svc", "print", "schedule", "--format", "json", "--rid", "task#1",
                          env={"OM_NOW": "2026-11-27 10:00:10"}).stdout)
    assert shown[0]["verdict"] == "node_cap"
    assert shown[0]["note"] == "waiting for a launch slot (1/1 running)"
    assert shown[0]["next_run"] == "2026-11-27T10:00:00+00:00"  # the pending run's scheduled_for
    stored = db_rows(root, "SELECT verdict FROM schedule_entries WHERE rid = 'task#1'")
    assert stored == [{"verdict": "node_cap"}]
    # once task#0 is done, the next tick launches task#1 with its original scheduled_for
    tick(root, "2026-11-27 10:01:00", wait=True)
    tick(root, "2026-11-27 10:02:00", wait=True)
    runs = db_rows(root, "SELECT rid, state, scheduled_for FROM runs ORDER BY rid")
    assert [(r["rid"], r["state"]) for r in runs] == [("task#0", "done"), ("task#1", "done")]
    assert runs[1]["scheduled_for"].startswith("2026-11-27 10:00:00")
