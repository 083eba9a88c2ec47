"""Node loss, the placement commands' messages, freeze and the cluster zone (SPEC 2, 6.2, 8.6; docs/cluster.md).

Nodes n1 and n2 share one OM_ROOT and its SQLite database (`node.conf` sets
`runner.node_dead_after = 2m`).  Real `om runner tick` processes throughout.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta

from omtasks.runner.procinfo import is_alive
from omtest import (
    db_rows,
    kill_worker,
    make_root,
    om,
    runner_log_text,
    tick,
    utc_text,
    wait_until,
    write_service,
)

T0 = datetime(2026, 11, 27, 10, 0, 0)  # UTC
NODE_CONF = "[runner]\nnode_dead_after = 2m\n"


def at(minute: int, seconds: int = 0) -> str:
    return (T0 + timedelta(minutes=minute, seconds=seconds)).strftime("%Y-%m-%d %H:%M:%S")


def setup_root(tmp_path, name: str, text_: str):
    root = make_root(tmp_path)
    (root / "etc" / "node.conf").write_text(NODE_CONF)
    write_service(root, name, text_)
    return root


def run_om(root, node: str, *args: str, now: str | None = None):
    return om(root, *args, node=node, env={"OM_NOW": now} if now else None)


def runs_of(root, service: str) -> list[dict]:
    return db_rows(root, "SELECT * FROM runs WHERE service = :s ORDER BY id", s=service)


def test_dead_node_runs_are_reaped_and_the_slot_is_not_run_twice(tmp_path):
    root = setup_root(tmp_path, "pgdb", """
        [DEFAULT]
        nodes = n1 n2
        topology = failover

        [task#0]
        command = /bin/true
        command@n1 = sleep 60
        schedule = @1m
        run_requires = instance(up)

        [task#restore]
        command = /bin/true
        schedule = @1h
        confirmation = true
        confirmation_timeout = 2h
        run_requires = instance(up)
    """)
    proc = run_om(root, "n1", "pgdb", "start", now=at(0))
    assert proc.returncode == 0, proc.stderr
    tick(root, at(0), node="n2")
    tick(root, at(1), node="n1", wait=False)  # claims both tasks; launches the long one
    tick(root, at(1), node="n2")
    run = wait_until(lambda: [r for r in runs_of(root, "pgdb") if r["rid"] == "task#0" and r["state"] == "running"],
                     timeout=30, what="the long run to start")[0]
    assert run["node"] == "n1" and run["command"] == "sleep 60" and run["slot_key"] == "pgdb|run|task#0||never"
    [pending] = [r for r in runs_of(root, "pgdb") if r["rid"] == "task#restore"]
    assert pending["state"] == "awaiting_confirmation" and pending["node"] == "n1"
    [conf] = db_rows(root, "SELECT * FROM confirmations WHERE run_id = :i", i=pending["id"])
    assert conf["state"] == "pending"

    # n1 stops ticking and its worker dies with it
    assert is_alive(run["pid"], run["proc_start"], run["boot_id"])
    kill_worker(run["pid"])
    wait_until(lambda: not is_alive(run["pid"], run["proc_start"], run["boot_id"]), timeout=10,
               what="the worker to die")

    # +1 min: n1 was seen 1 min ago, not dead yet (dead after 2m): nothing is reaped
    tick(root, at(2), node="n2")
    states = {r["id"]: r["state"] for r in runs_of(root, "pgdb")}
    assert states[run["id"]] == "running" and states[pending["id"]] == "awaiting_confirmation"
    # +3 min: last_seen_at and the run's heartbeat_at are both older than 2 min: n2 reaps without process check
    [n1] = db_rows(root, "SELECT * FROM nodes WHERE name = 'n1'")
    assert utc_text(n1["last_seen_at"]) == at(1)
    assert utc_text(db_rows(root, "SELECT heartbeat_at FROM runs WHERE id = :i", i=run["id"])[0]["heartbeat_at"]) < at(2)
    tick(root, at(4), node="n2")
    after = {r["id"]: r for r in runs_of(root, "pgdb")}
    assert (after[run["id"]]["state"], after[run["id"]]["reason"]) == ("failed", "lost")
    ev = db_rows(root, "SELECT * FROM run_events WHERE run_id = :i ORDER BY id", i=run["id"])[-1]
    assert (ev["from_state"], ev["to_state"], ev["reason"], ev["actor"]) == ("running", "failed", "lost", "reaper@n2")
    assert (after[pending["id"]]["state"], after[pending["id"]]["reason"]) == ("skipped", "node dead")
    [conf] = db_rows(root, "SELECT * FROM confirmations WHERE run_id = :i", i=pending["id"])
    assert conf["state"] == "cancelled"
    # the marker moved when the run started, and a failed attempt keeps it
    [marker] = db_rows(root, "SELECT * FROM last_runs WHERE service = 'pgdb' AND rid = 'task#0'")
    assert utc_text(marker["last_attempt_at"]) == at(1) and marker["last_success_at"] is None

    # the placement does not move by itself; once switched, n2 starts although n1's recorded instance is up
    # (n1 is dead), and continues the cadence from the shared marker
    proc = run_om(root, "n2", "pgdb", "switch", "--to", "n2", now=at(4, 30))
    assert proc.returncode == 0, proc.stderr
    tick(root, at(5), node="n2")
    tick(root, at(6), node="n2")
    runs = runs_of(root, "pgdb")
    [start] = [r for r in runs if r["action"] == "start" and r["trigger"] == "converge"]
    assert (start["node"], start["state"], utc_text(start["scheduled_for"])) == ("n2", "done", at(5))
    tasks = [r for r in runs if r["rid"] == "task#0"]
    assert [(r["node"], r["state"], r["slot_key"]) for r in tasks] == [
        ("n1", "failed", "pgdb|run|task#0||never"),
        ("n2", "done", "pgdb|run|task#0||2026-11-27T10:01:00Z"),
    ]
    assert utc_text(tasks[1]["scheduled_for"]) == at(6)  # one catch-up run at the first tick where the gate holds
    kept = [r["slot_key"] for r in runs if r["state"] not in ("skipped", "cancelled") and r["slot_key"]]
    assert not [k for k, n in Counter(kept).items() if n > 1], kept
    # the restore slot is claimed again on n2 with its own pending confirmation (SPEC 15.4)
    restores = [r for r in runs if r["rid"] == "task#restore"]
    assert [(r["node"], r["state"]) for r in restores] == [("n1", "skipped"), ("n2", "awaiting_confirmation")]
    assert db_rows(root, "SELECT state FROM confirmations ORDER BY id") == [{"state": "cancelled"},
                                                                            {"state": "pending"}]


def test_placement_messages(tmp_path):
    root = setup_root(tmp_path, "pgdb", """
        [DEFAULT]
        nodes = n1 n2
        topology = failover
    """)
    assert run_om(root, "n1", "pgdb", "start", now=at(0)).returncode == 0
    proc = run_om(root, "n2", "pgdb", "start", now=at(0, 10))
    assert (proc.returncode, proc.stderr.strip()) == (1, "om: pgdb is active on n1: use 'om pgdb switch --to n2'")
    proc = run_om(root, "n2", "pgdb", "switch", "--to", "n9")
    assert (proc.returncode, proc.stderr.strip()) == (1, "om: n9 is not a node of pgdb (nodes: n1 n2, drpnodes: -)")
    proc = run_om(root, "n2", "pgdb", "switch", "--to", "n1")
    assert (proc.returncode, proc.stdout.strip()) == (0, "pgdb is already active on n1")
    proc = run_om(root, "n2", "pgdb", "stop", now=at(0, 20))
    assert (proc.returncode, proc.stdout.strip()) == (0, "pgdb is active on n1: local instance stopped")
    [p] = db_rows(root, "SELECT * FROM placements WHERE service = 'pgdb'")
    assert (p["active_node"], p["epoch"]) == ("n1", 1)
    # on the active node, start again is accepted; stop clears the placement
    assert run_om(root, "n1", "pgdb", "start", now=at(0, 30)).returncode == 0
    proc = run_om(root, "n1", "pgdb", "stop", now=at(0, 40))
    assert proc.returncode == 0 and proc.stdout.strip() == ""
    [p] = db_rows(root, "SELECT * FROM placements WHERE service = 'pgdb'")
    assert (p["active_node"], p["epoch"]) == (None, 2)


def test_switch_of_a_frozen_instance_converges_after_thaw(tmp_path):
    flags = tmp_path / "flags"
    flags.mkdir()
    root = setup_root(tmp_path, "pgdb", f"""
        [DEFAULT]
        nodes = n1 n2
        topology = failover

        [app#0]
        start = /usr/bin/touch {flags}/{{nodename}}.up
        stop = /bin/rm -f {flags}/{{nodename}}.up
        check = /usr/bin/test -f {flags}/{{nodename}}.up
    """)
    assert run_om(root, "n1", "pgdb", "start", now=at(0)).returncode == 0
    assert run_om(root, "n1", "pgdb", "freeze", now=at(0, 10)).returncode == 0
    proc = run_om(root, "n2", "pgdb", "switch", "--to", "n2", now=at(0, 20))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == ("pgdb: placement n1 -> n2 (epoch 2); instances converge on the next runner ticks"
                                   " (frozen: converges after thaw)")

    def converge_runs():
        return [(r["action"], r["node"], r["state"]) for r in runs_of(root, "pgdb") if r["trigger"] == "converge"]

    for m in (1, 2, 3):
        tick(root, at(m), node="n1")
        tick(root, at(m), node="n2")
    assert converge_runs() == []  # n1 frozen: never stopped; n2 waits while n1 is up
    assert (flags / "n1.up").exists() and not (flags / "n2.up").exists()
    assert run_om(root, "n1", "pgdb", "thaw", now=at(3, 30)).returncode == 0
    tick(root, at(4), node="n1")
    tick(root, at(4), node="n2")
    tick(root, at(5), node="n1")
    tick(root, at(5), node="n2")
    assert converge_runs() == [("stop", "n1", "done"), ("start", "n2", "done")]
    assert not (flags / "n1.up").exists() and (flags / "n2.up").exists()
    states = {r["node"]: (r["state"], bool(r["frozen"])) for r in db_rows(
        root, "SELECT node, state, frozen FROM instances WHERE service = 'pgdb'")}
    assert states == {"n1": ("down", False), "n2": ("up", False)}


def test_a_node_in_another_time_zone_runs_no_cluster_scoped_entry(tmp_path):
    root = setup_root(tmp_path, "pgdb", """
        [DEFAULT]
        nodes = n1 n2
        topology = failover

        [task#0]
        command = /bin/true
        schedule = @1m
        run_requires = instance(up)

        [task#local]
        command = /bin/true
        schedule = @1m
    """)
    paris = {"TZ": "Europe/Paris"}  # UTC+1 in November: n2 writes the same instants in its local time

    def local(minute: int) -> str:
        return (T0 + timedelta(minutes=minute, hours=1)).strftime("%Y-%m-%d %H:%M:%S")

    tick(root, at(0), node="n1")  # the first node records its zone
    assert db_rows(root, "SELECT tz FROM cluster") == [{"tz": "UTC"}]
    # n2, in another zone, is the active node and its instance is up: still, no cluster-scoped run there
    proc = om(root, "pgdb", "start", node="n2", env={**paris, "OM_NOW": local(0)})
    assert proc.returncode == 0, proc.stderr
    for m in (1, 2, 3):
        tick(root, local(m), node="n2", env=paris)
        tick(root, at(m), node="n1")
    assert "time zone Europe/Paris differs from the cluster's UTC" in runner_log_text(root)
    entries = {(r["node"], r["rid"]): r for r in db_rows(
        root, "SELECT * FROM schedule_entries WHERE service = 'pgdb' AND action = 'run'")}
    zone = entries[("n2", "task#0")]
    assert zone["scope"] == "" and zone["verdict"] == "config_invalid"
    assert zone["reason"] == "time zone Europe/Paris differs from the cluster's UTC"
    assert entries[("n1", "task#0")]["verdict"] == "requires_unmet"  # n1 is in the zone, but not active
    assert entries[("n2", "task#local")]["scope"] == "n2"
    assert entries[("n2", "task#local")]["verdict"] != "config_invalid"
    runs = [(r["rid"], r["node"]) for r in runs_of(root, "pgdb") if r["action"] == "run"]
    # node-scoped entries still run on n2 (and on n1); the cluster-scoped one runs nowhere
    assert sorted(runs) == [("task#local", "n1")] * 4 + [("task#local", "n2")] * 3  # n1 also ticked at 0
    assert db_rows(root, "SELECT tz FROM cluster") == [{"tz": "UTC"}]  # the first node's zone stays
