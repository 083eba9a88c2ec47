"""A flex service on two nodes (SPEC 5.5, 6.3, 8.1): every node runs its own instance and its own tasks.

n1 and n2 share one SQLite database (one OM_ROOT); both start their local
instance with `om web start`.  The task (`@1m`, `run_requires = instance(up)`)
is node-scoped: each node runs it once per slot under its own marker.  After
`om web stop` on n2, n2's runs stop (`requires_unmet`) while n1 goes on; no
convergence ever starts n2 again; `switch` is refused.  Real `om runner tick`
processes, started together each minute (`OM_TICK_LOCK=0`, same `--now`).
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta

from omtest import concurrent_ticks, db_rows, make_root, om, runner_log_text, write_service

NODES = ("n1", "n2")
T0 = datetime(2026, 11, 27, 10, 0, 0)  # UTC


def at(minute: int, seconds: int = 0) -> str:
    return (T0 + timedelta(minutes=minute, seconds=seconds)).strftime("%Y-%m-%d %H:%M:%S")


def stamp(minute: int) -> str:
    return at(minute).replace(" ", "T") + "Z"


def test_flex_nodes_run_their_own_slots(tmp_path):
    flags = tmp_path / "flags"
    flags.mkdir()
    root = make_root(tmp_path)
    write_service(root, "web", f"""
        [DEFAULT]
        nodes = n1 n2
        topology = flex

        [app#0]
        start = /usr/bin/touch {flags}/{{nodename}}.up
        stop = /bin/rm -f {flags}/{{nodename}}.up
        check = /usr/bin/test -f {flags}/{{nodename}}.up

        [task#0]
        command = /bin/true
        schedule = @1m
        run_requires = instance(up)
    """)
    roots = dict.fromkeys(NODES, root)
    for node in NODES:
        proc = om(root, "web", "start", node=node, env={"OM_NOW": at(0)})
        assert proc.returncode == 0, proc.stderr
        assert (flags / f"{node}.up").exists()
    proc = om(root, "web", "start", node="n3", env={"OM_NOW": at(0)})
    assert proc.returncode == 1
    assert proc.stderr.strip() == "om: this node 'n3' is not a node of service 'web' (nodes: n1 n2, drpnodes: -)"

    for m in range(1, 4):
        concurrent_ticks(roots, at(m))
    proc = om(root, "web", "stop", node="n2", env={"OM_NOW": at(3, 30)})
    assert proc.returncode == 0, proc.stderr
    assert "active on" not in proc.stdout + proc.stderr  # no placement on a flex service
    assert not (flags / "n2.up").exists() and (flags / "n1.up").exists()
    for m in range(4, 7):
        concurrent_ticks(roots, at(m))

    runs = db_rows(root, "SELECT * FROM runs WHERE service = 'web' ORDER BY id")
    tasks = [r for r in runs if r["action"] == "run"]
    assert all(r["state"] == "done" and r["trigger"] == "schedule" for r in tasks), tasks
    by_node = {n: sorted(r["scheduled_for"][:19] for r in tasks if r["node"] == n) for n in NODES}
    assert by_node == {"n1": [at(m) for m in range(1, 7)], "n2": [at(m) for m in range(1, 4)]}
    # node-scoped: the scope and the slot key name the node, and each follows that node's own marker
    for node in NODES:
        mine = sorted((r for r in tasks if r["node"] == node), key=lambda r: r["scheduled_for"])
        assert [r["scope"] for r in mine] == [node] * len(mine)
        follows = ["never"] + [stamp(m) for m in range(1, len(mine))]
        assert [r["slot_key"] for r in mine] == [f"web|run|task#0|{node}|{f}" for f in follows]
        assert all(r["placement_epoch"] is None for r in mine)
    assert not [k for k, n in Counter(r["slot_key"] for r in tasks).items() if n > 1]
    markers = {r["scope"]: r["last_attempt_at"][:19] for r in db_rows(
        root, "SELECT scope, last_attempt_at FROM last_runs WHERE service = 'web' AND action = 'run'")}
    assert markers == {"n1": at(6), "n2": at(3)}

    # n2's entry says why it does not run; n1's is fine
    entries = {r["node"]: r for r in db_rows(
        root, "SELECT * FROM schedule_entries WHERE service = 'web' AND action = 'run'")}
    assert entries["n2"]["verdict"] == "requires_unmet"
    assert entries["n2"]["reason"] == "requires instance(up): instance is down"
    assert entries["n2"]["scope"] == "n2" and entries["n1"]["scope"] == "n1"
    assert entries["n1"]["verdict"] in ("due", "not_due")

    # no placement and no convergence on a flex service: only the two manual starts and the manual stop
    assert db_rows(root, "SELECT * FROM placements WHERE service = 'web'") == []
    conv = [(r["action"], r["node"], r["trigger"]) for r in runs if r["action"] in ("start", "stop")]
    assert conv == [("start", "n1", "manual"), ("start", "n2", "manual"), ("stop", "n2", "manual")]
    states = {r["node"]: r["state"] for r in db_rows(root, "SELECT node, state FROM instances WHERE service = 'web'")}
    assert states == {"n1": "up", "n2": "down"}

    for node in NODES:
        proc = om(root, "web", "switch", "--to", "n1", node=node)
        assert proc.returncode == 1
        assert proc.stderr.strip() == "om: switch is only for failover services"
    assert "Traceback" not in runner_log_text(root)
