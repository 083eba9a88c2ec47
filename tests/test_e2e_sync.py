"""`[sync#N]` end to end (SPEC 9, 8.1): real rsync between two node directories, real runners.

Each node is an OM_ROOT sharing one database; its "file system" is a directory
`<tmp>/<node>fs`, and node.conf's `[nodes] <other> = local:<tmp>/<other>fs`
makes rsync copy into the other node's directory.
"""

from __future__ import annotations

import json
from pathlib import Path

from omtest import Cluster, db_rows, log_lines, make_root, om, tick, write_node_conf, write_service

DAY = "2026-12-01"
SVC = """
[DEFAULT]
nodes = n1 n2

[sync#0]
src = {tmp}/{{nodename}}fs/data/
dst = /data/
target = nodes
schedule = @10m
"""
REFUSAL = "sync runs from the active instance only (active: {})"


def at(minutes: int) -> str:
    return f"{DAY} {minutes // 60:02d}:{minutes % 60:02d}"


def fs(tmp_path: Path, node: str) -> Path:
    return tmp_path / f"{node}fs" / "data"


def setup(tmp_path: Path) -> Cluster:
    cl = Cluster(tmp_path)
    for node, root in cl.roots.items():
        other = "n2" if node == "n1" else "n1"
        write_node_conf(root, transports={other: f"local:{tmp_path}/{other}fs"})
        fs(tmp_path, node).mkdir(parents=True)
    (fs(tmp_path, "n1") / "from-n1.txt").write_text("written on n1\n")
    cl.write_service("svc", SVC.format(tmp=tmp_path))
    proc = cl.om("n1", "svc", "start", now=at(0))
    assert proc.returncode == 0, proc.stderr
    return cl


def sync_runs(cl: Cluster) -> list[tuple[str, str, str, str]]:
    return [(r["node"], r["trigger"], r["state"], str(r["scheduled_for"])[:16]) for r in cl.rows(
        "SELECT node, trigger, state, scheduled_for FROM runs WHERE action = 'sync_update' ORDER BY id")]


def schedule_row(cl: Cluster, node: str, now: str) -> dict:
    proc = cl.om(node, "svc", "print", "schedule", "--format", "json", "--rid", "sync#0", now=now)
    assert proc.returncode == 0, proc.stderr
    [row] = json.loads(proc.stdout)
    return row


def test_sync_copies_from_the_active_node_and_follows_a_switch(tmp_path: Path) -> None:
    cl = setup(tmp_path)
    cl.tick(at(0))
    # n1 is active: its tick copied its files into n2's directory; n2's tick never ran the sync
    assert (fs(tmp_path, "n2") / "from-n1.txt").read_text() == "written on n1\n"
    assert sync_runs(cl) == [("n1", "schedule", "done", at(0))]
    [entry] = cl.rows("SELECT verdict, reason, scope FROM schedule_entries WHERE node = 'n2' AND action = 'sync_update'")
    assert entry == {"verdict": "requires_unmet", "reason": REFUSAL.format("n1"), "scope": ""}
    row = schedule_row(cl, "n2", at(5))
    assert (row["verdict"], row["note"], row["scope"], row["next_run"]) == (
        "requires_unmet", REFUSAL.format("n1"), "cluster", None)
    assert row["config_parameter"] == "sync#0.schedule" and row["schedule_definition"] == "@10m"
    # the transfer statistics are kept on the run
    [tail] = [r["output_tail"] for r in cl.rows("SELECT output_tail FROM runs WHERE action = 'sync_update'")]
    assert tail.startswith("n2: ") and "Number of files" in tail and "Total transferred file size" in tail

    # by hand: refused on the passive node, done on the active one
    proc = cl.om("n2", "svc", "sync", now=at(3))
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1] == f"om: {REFUSAL.format('n1')}"
    (fs(tmp_path, "n1") / "later.txt").write_text("later\n")
    proc = cl.om("n1", "svc", "sync", "--rid", "sync#0", now=at(4))
    assert proc.returncode == 0, proc.stderr
    assert f"rsync -a --stats {fs(tmp_path, 'n1')}/ {fs(tmp_path, 'n2')}/" in proc.stderr
    assert (fs(tmp_path, "n2") / "later.txt").read_text() == "later\n"
    assert sync_runs(cl)[1:] == [("n1", "manual", "done", at(4))]
    [manual] = cl.rows("SELECT output_tail, exit_code FROM runs WHERE action = 'sync_update' AND trigger = 'manual'")
    assert manual["exit_code"] == 0 and "Number of regular files transferred: 1" in manual["output_tail"]
    # a manual sync does not move the schedule: the next slot is still 00:10
    assert schedule_row(cl, "n1", at(5))["next_run"].startswith(f"{DAY}T00:10:00")

    # switch to n2: after convergence n2 syncs into n1's directory, n1 no longer syncs
    proc = cl.om("n1", "svc", "switch", "--to", "n2", now=at(5))
    assert proc.returncode == 0, proc.stderr
    (fs(tmp_path, "n2") / "from-n2.txt").write_text("written on n2\n")
    cl.tick(at(6))
    cl.tick(at(7))
    states = {r["node"]: r["state"] for r in cl.rows("SELECT node, state FROM instances WHERE service = 'svc'")}
    assert states == {"n1": "down", "n2": "up"}
    cl.tick(at(10))
    assert (fs(tmp_path, "n1") / "from-n2.txt").read_text() == "written on n2\n"
    assert sync_runs(cl)[2:] == [("n2", "schedule", "done", at(10))]
    [entry] = cl.rows("SELECT verdict, reason FROM schedule_entries WHERE node = 'n1' AND action = 'sync_update'")
    assert entry == {"verdict": "requires_unmet", "reason": REFUSAL.format("n2")}
    proc = cl.om("n1", "svc", "sync", now=at(11))
    assert proc.returncode == 1 and f"om: {REFUSAL.format('n2')}" in proc.stderr
    # the cluster-scoped marker followed the switch: the slot after n2's 00:10 run is 00:20
    assert schedule_row(cl, "n2", at(11))["next_run"].startswith(f"{DAY}T00:20:00")
    [placed] = cl.rows("SELECT placement_epoch FROM runs WHERE action = 'sync_update' AND node = 'n2'")
    assert placed["placement_epoch"] == 2


def test_no_sync_target(tmp_path: Path) -> None:
    root = make_root(tmp_path)
    write_service(root, "svc", f"""
        [DEFAULT]
        nodes = n1

        [sync#0]
        src = {tmp_path}/src/
        dst = /data/
        schedule = @10m

        [sync#1]
        src = {tmp_path}/src/
        dst = /data/
        target = nodes
        schedule = @10m
    """)
    proc = om(root, "svc", "print", "schedule", "--format", "json", env={"OM_NOW": at(0)})
    assert proc.returncode == 0, proc.stderr
    rows = {r["rid"]: (r["verdict"], r["note"]) for r in json.loads(proc.stdout) if r["action"] == "sync_update"}
    # sync#0: the default target is drpnodes (none); sync#1: nodes, but n1 is the only one
    assert rows == {"sync#0": ("not_configured", "no sync target"), "sync#1": ("not_configured", "no sync target")}
    text = om(root, "svc", "print", "schedule", env={"OM_NOW": at(0)}).stdout
    assert [ln.split()[3] for ln in text.splitlines() if "sync#" in ln] == ["sync#0.schedule", "sync#1.schedule"]
    assert all(ln.endswith("no sync target") for ln in text.splitlines() if "sync#" in ln)
    # by hand: nothing to copy, nothing recorded
    assert om(root, "svc", "start", env={"OM_NOW": at(0)}).returncode == 0
    proc = om(root, "svc", "sync", env={"OM_NOW": at(1)})
    assert proc.returncode == 0, proc.stderr
    assert [(rid, level, msg) for rid, level, msg in log_lines(proc.stderr)] == [
        ("sync#0", "INFO", "no sync target"), ("sync#1", "INFO", "no sync target")]
    assert db_rows(root, "SELECT id FROM runs WHERE action = 'sync_update'") == []


def test_disabled_and_invalid_syncs_are_not_run(tmp_path: Path) -> None:
    root = make_root(tmp_path)
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "f").write_text("f\n")
    (tmp_path / "n3fs").mkdir()
    write_node_conf(root, transports={"n3": f"local:{tmp_path}/n3fs"})
    write_service(root, "svc", f"""
        [DEFAULT]
        nodes = n1
        drpnodes = n3

        [sync#0]
        src = {tmp_path}/src/
        dst = /d0/
        disable = true

        [sync#1]
        src = {tmp_path}/src/
        schedule = @10m
    """)
    assert om(root, "svc", "start", env={"OM_NOW": at(0)}).returncode == 0
    # sync#1 has no dst: not runnable (rsync would copy into the transport prefix itself)
    proc = om(root, "svc", "sync", env={"OM_NOW": at(1)})
    assert proc.returncode == 1
    assert "[sync#1] dst: required keyword missing" in proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == "om: the selected syncs have config errors: nothing run"
    proc = om(root, "svc", "sync", "--rid", "sync#0", env={"OM_NOW": at(1)})
    assert proc.returncode == 0, proc.stderr
    assert log_lines(proc.stderr) == [("sync#0", "INFO", "sync#0 disabled")]
    assert list((tmp_path / "n3fs").iterdir()) == []
    assert db_rows(root, "SELECT id FROM runs WHERE action = 'sync_update'") == []
    proc = om(root, "svc", "print", "schedule", "--format", "json", env={"OM_NOW": at(1)})
    verdicts = {r["rid"]: r["verdict"] for r in json.loads(proc.stdout) if r["action"] == "sync_update"}
    assert verdicts == {"sync#0": "disabled", "sync#1": "config_invalid"}
    tick(root, at(10))
    assert db_rows(root, "SELECT id FROM runs WHERE action = 'sync_update'") == []
