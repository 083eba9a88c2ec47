"""A failover service relocated around a three-node cluster (SPEC 2, 6.2, 8.4, 15.4; docs/cluster.md).

Three nodes n1, n2, n3 share one database: SQLite (the nodes share one
OM_ROOT and its `var/om.db`) or PostgreSQL (each node has its own OM_ROOT and
config copy, `OM_DB_URL` names a fresh database per test).  The service's app
touches, removes and tests a per-node flag file; its task runs `/bin/true`
every minute with `run_requires = instance(up)` (cluster-scoped).

`om pgdb start` on n1, then every simulated minute the three nodes' ticks are
started together (`OM_TICK_LOCK=0`, the same `--now`, `--wait`), and the
placement is switched n1 -> n2 -> n3 -> n1 at fixed minutes (half a minute
before that minute's ticks).  Before each minute the test records the active
node, the epoch and every node's instance state; afterwards it checks the
history against them (see `check_history`).

Two variants per database (SPEC 14):

- `test_relocation_real_ticks`: real `om runner tick` processes; 12 simulated
  minutes (switches at 3, 6, 9), 60 with `OM_LONG_TESTS=1`.
- `test_relocation_simulated`: the same scenario over 60 simulated minutes
  (switches at 15, 30, 45), 6 hours with `OM_LONG_TESTS=1` (a switch every 15
  minutes); each node's tick is the `om runner tick` command called in a
  process forked from the test (`omtest.forked_ticks`), so interpreter start
  and imports do not dominate; the ticks and their workers are still
  concurrent processes racing on the same database.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from omtest import concurrent_ticks, forked_ticks, make_root, om, runner_log_text, url_rows, write_service

LONG = os.environ.get("OM_LONG_TESTS") == "1"
NODES = ("n1", "n2", "n3")
SERVICE = "pgdb"
T0 = datetime(2026, 11, 27, 10, 0, 0)  # UTC (the nodes run with TZ=UTC)
CYCLE = ("n2", "n3", "n1")  # switch targets, in turn
KEPT = ("done", "failed", "scheduled", "eligible", "awaiting_confirmation", "running")


def service_text(flags: Path) -> str:
    return f"""
        [DEFAULT]
        nodes = n1 n2 n3
        topology = failover

        [app#0]
        start = /usr/bin/touch {flags}/{{nodename}}.up
        stop = /bin/rm -f {flags}/{{nodename}}.up
        check = /usr/bin/test -f {flags}/{{nodename}}.up

        [task#0]
        command = /bin/true
        schedule = @1m
        run_requires = instance(up)
    """


def at(minute: int, seconds: int = 0) -> str:
    return (T0 + timedelta(minutes=minute, seconds=seconds)).strftime("%Y-%m-%d %H:%M:%S")


def minute_of(value) -> float:
    if isinstance(value, str):
        value = datetime.fromisoformat(value.replace("T", " ")[:19])
    return (value.replace(tzinfo=None, microsecond=0) - T0).total_seconds() / 60


@dataclass
class Cluster:
    """Three nodes on one database: node -> OM_ROOT, the URL and the environment every `om` gets."""

    roots: dict[str, Path]
    url: str
    env: dict[str, str]
    flags: Path
    # minute -> (active node, epoch, {node: instance state}) recorded before that minute's ticks
    before: dict[int, tuple[str, int, dict[str, str]]] = field(default_factory=dict)
    switches: dict[int, tuple[str, str, int]] = field(default_factory=dict)  # minute -> (from, to, epoch)

    def om(self, node: str, *args: str, now: str | None = None):
        env = dict(self.env)
        if now is not None:
            env["OM_NOW"] = now
        return om(self.roots[node], *args, env=env, node=node)

    def rows(self, sql: str, **params):
        return url_rows(self.url, sql, **params)

    def instance_states(self) -> dict[str, str]:
        found = {r["node"]: r["state"] for r in self.rows(
            "SELECT node, state FROM instances WHERE service = :s", s=SERVICE)}
        return {n: found.get(n, "-") for n in NODES}


@pytest.fixture
def cluster(tmp_path: Path, db_url: str) -> Cluster:
    flags = tmp_path / "flags"
    flags.mkdir()
    if db_url.startswith("sqlite"):
        root = make_root(tmp_path)
        write_service(root, SERVICE, service_text(flags))
        roots = dict.fromkeys(NODES, root)
        return Cluster(roots, f"sqlite:///{root}/var/om.db", {}, flags)
    roots = {}
    for node in NODES:
        root = make_root(tmp_path / node)
        write_service(root, SERVICE, service_text(flags))
        roots[node] = root
    return Cluster(roots, db_url, {"OM_DB_URL": db_url}, flags)


def switch_plan(minutes: int, period: int) -> dict[int, str]:
    return {m: CYCLE[i % len(CYCLE)] for i, m in enumerate(range(period, minutes, period))}


def simulate(cl: Cluster, minutes: int, period: int, ticks) -> None:
    proc = cl.om("n1", SERVICE, "start", now=at(0))
    assert proc.returncode == 0, proc.stderr
    assert (cl.flags / "n1.up").exists()
    active, epoch = "n1", 1
    plan = switch_plan(minutes, period)
    for m in range(1, minutes + 1):
        if m in plan:
            target = plan[m]
            proc = cl.om(target, SERVICE, "switch", "--to", target, now=at(m - 1, 30))
            assert proc.returncode == 0, proc.stderr
            assert proc.stdout.strip() == (f"{SERVICE}: placement {active} -> {target} (epoch {epoch + 1}); "
                                           "instances converge on the next runner ticks")
            cl.switches[m] = (active, target, epoch + 1)
            active, epoch = target, epoch + 1
        cl.before[m] = (active, epoch, cl.instance_states())
        ticks(cl.roots, at(m), env=cl.env)
    cl.before[minutes + 1] = (active, epoch, cl.instance_states())


def check_history(cl: Cluster, minutes: int) -> None:
    """The guarantees of SPEC 8.4 and docs/cluster.md, against the placement history the test drove."""
    runs = cl.rows("SELECT * FROM runs WHERE service = :s ORDER BY id", s=SERVICE)
    tasks = [r for r in runs if r["action"] == "run"]

    # failover: never two instances up at once, as seen between ticks
    for m, (_, _, states) in cl.before.items():
        assert sum(s == "up" for s in states.values()) <= 1, (m, states)

    # exactly once: no shared slot_key nor scheduled_for among runs that are not skipped/cancelled
    kept = [r for r in tasks if r["state"] in KEPT]
    dup_keys = [k for k, n in Counter(r["slot_key"] for r in kept).items() if n > 1]
    assert not dup_keys, dup_keys
    dup_times = [k for k, n in Counter(str(r["scheduled_for"]) for r in kept).items() if n > 1]
    assert not dup_times, dup_times
    assert all(r["state"] == "done" and r["trigger"] == "schedule" for r in tasks), tasks

    # on the active node, with its instance up, under the epoch of the claim
    claimed: dict[int, dict] = {}
    for r in tasks:
        m = minute_of(r["scheduled_for"])
        assert m == int(m) and 1 <= m <= minutes, r  # @1m with ticks on the minute: scheduled_for = the tick
        active, epoch, states = cl.before[int(m)]
        assert r["node"] == active, (m, r, cl.before[int(m)])
        assert r["placement_epoch"] == epoch, (m, r, cl.before[int(m)])
        assert states[r["node"]] == "up", (m, r, states)
        assert r["scope"] == "" and r["slot_key"].startswith(f"{SERVICE}|run|task#0||"), r
        claimed[int(m)] = r

    # never lost: a run in every minute where the active instance was up, and in no other
    up_minutes = {m for m, (active, _, states) in cl.before.items() if m <= minutes and states[active] == "up"}
    assert set(claimed) == up_minutes, (sorted(set(claimed) ^ up_minutes), cl.before)
    assert len(tasks) == len(up_minutes)

    # each slot follows the marker left by the previous run: one catch-up run after a switch, none lost
    previous = None
    for m in sorted(claimed):
        expected = "never" if previous is None else at(previous).replace(" ", "T") + "Z"
        assert claimed[m]["slot_key"].endswith(f"|{expected}"), (m, claimed[m]["slot_key"], expected)
        previous = m
    marker = cl.rows("SELECT * FROM last_runs WHERE service = :s AND action = 'run'", s=SERVICE)
    assert [minute_of(r["last_attempt_at"]) for r in marker] == [max(claimed)], marker

    # convergence: per switch A -> B, one `stop` on A at the switch minute, one `start` on B once A is down
    conv = [r for r in runs if r["action"] in ("start", "stop")]
    manual = [r for r in conv if r["trigger"] == "manual"]
    assert [(r["action"], r["node"], r["state"], r["placement_epoch"]) for r in manual] == [
        ("start", "n1", "done", 1)]
    auto = [r for r in conv if r["trigger"] == "converge"]
    assert all(r["state"] == "done" and r["reason"] == f"converge: {r['action']}" for r in auto), auto
    expected = []
    for s, (frm, to, epoch) in sorted(cl.switches.items()):
        stops = [r for r in auto if r["action"] == "stop" and r["placement_epoch"] == epoch]
        starts = [r for r in auto if r["action"] == "start" and r["placement_epoch"] == epoch]
        assert [(r["node"], minute_of(r["scheduled_for"])) for r in stops] == [(frm, s)], (s, stops)
        assert len(starts) == 1 and starts[0]["node"] == to, (s, starts)
        # the new node starts at the switch minute only if the old one was already down by then
        assert minute_of(starts[0]["scheduled_for"]) in (s, s + 1), (s, starts)
        up_at = minute_of(starts[0]["scheduled_for"]) + 1
        if up_at <= minutes:
            assert cl.before[int(up_at)][2][to] == "up", (s, cl.before[int(up_at)])
        expected += [stops[0]["id"], starts[0]["id"]]
    assert sorted(r["id"] for r in auto) == sorted(expected), auto
    # at most two ticks without an up instance after a switch
    for s in cl.switches:
        if s + 2 <= minutes:
            assert s + 2 in up_minutes, (s, cl.before[s + 2])

    assert "Traceback" not in "".join(runner_log_text(r) for r in set(cl.roots.values()))


def check_reports(cl: Cluster, minutes: int, *, text: bool) -> None:
    """`om pgdb print runs` and `print status` show the history and every node's instance and resources.

    JSON `print status` on every node, JSON `print runs` on one; with `text`, the tables too.
    """
    active, epoch, states = cl.before[minutes + 1]
    runs = cl.rows("SELECT id, action, node, state FROM runs WHERE service = :s", s=SERVICE)
    proc = cl.om("n3", SERVICE, "print", "runs", "--format", "json", "--limit", "100000")
    assert proc.returncode == 0, proc.stderr
    shown = json.loads(proc.stdout)
    assert sorted((r["id"], r["action"], r["node"], r["state"]) for r in shown) == sorted(
        (r["id"], r["action"], r["node"], r["state"]) for r in runs)
    assert [r["id"] for r in shown] == sorted((r["id"] for r in shown), reverse=True)  # newest first
    assert {r["node"] for r in shown if r["action"] == "run"} == set(NODES)
    assert {n: "up" if n == active else "down" for n in NODES} == {n: states[n] for n in NODES}
    for node in NODES:
        proc = cl.om(node, SERVICE, "print", "status", "--format", "json")
        assert proc.returncode == 0, proc.stderr
        status = json.loads(proc.stdout)
        assert status["node"] == node and status["topology"] == "failover"
        assert status["placement"] == {"active_node": active, "epoch": epoch}
        assert {i["node"]: i["state"] for i in status["instances"]} == {n: states[n] for n in NODES}
        resources = {(r["node"], r["rid"]): r for r in status["resources"]}
        assert set(resources) == {(n, rid) for n in NODES for rid in ("app#0", "task#0")}, resources
        for n in NODES:
            assert resources[(n, "app#0")]["status"] == states[n]
            last = resources[(n, "task#0")]["last_run"]
            ran = [r for r in runs if r["action"] == "run" and r["node"] == n]
            assert (last["id"] if last else None) == (max(r["id"] for r in ran) if ran else None)
    if not text:
        return
    proc = cl.om("n2", SERVICE, "print", "status")
    assert proc.returncode == 0, proc.stderr
    assert f"placement: {active} (epoch {epoch})" in proc.stdout
    for n in NODES:
        assert f"node {n}: instance {states[n]}" in proc.stdout
    proc = cl.om("n2", SERVICE, "print", "runs", "--limit", "5")
    assert proc.returncode == 0 and proc.stdout.splitlines()[0].split() == [
        "ID", "STATE", "ACTION", "RID", "NODE", "TRIGGER", "SCHEDULED", "STARTED", "DURATION", "EXIT", "REASON"]
    assert len(proc.stdout.splitlines()) == 6


def test_relocation_real_ticks(cluster: Cluster):
    minutes, period = (60, 15) if LONG else (12, 3)
    simulate(cluster, minutes, period, concurrent_ticks)
    assert len(cluster.switches) == 3
    check_history(cluster, minutes)
    check_reports(cluster, minutes, text=True)


def test_relocation_simulated(cluster: Cluster):
    minutes, period = (360, 15) if LONG else (60, 15)
    simulate(cluster, minutes, period, forked_ticks)
    assert [to for _, to, _ in cluster.switches.values()][:3] == ["n2", "n3", "n1"]
    check_history(cluster, minutes)
    check_reports(cluster, minutes, text=False)


def test_concurrent_starts_make_one_node_active(cluster: Cluster, monkeypatch: pytest.MonkeyPatch):
    """`om pgdb start` on two nodes at once, with no active node: exactly one becomes active and starts.

    White-box: both commands run in threads of this process and meet at a
    barrier just before moving the placement.  Unless the placement was read
    under a lock, both pass it having seen no active node, and both start
    (two active instances; on PostgreSQL the very first placement instead
    fails on its primary key).  With the lock the second waits for the first,
    the barrier times out, and it then sees the first node active.
    """
    import threading

    from omtasks.cli.errors import OmError
    from omtasks.runner import instance
    from omtasks.runner.context import Context
    from omtasks.runner.manual import load_for_run

    for name, value in {**cl_env(cluster), "OM_NOW": at(0)}.items():
        monkeypatch.setenv(name, value)
    barrier = threading.Barrier(2, timeout=2)
    real = instance.set_placement

    def meeting(*args, **kwargs):
        try:
            barrier.wait()
        except threading.BrokenBarrierError:
            pass
        return real(*args, **kwargs)

    monkeypatch.setattr(instance, "set_placement", meeting)
    outcome: dict[str, object] = {}

    def start(node: str) -> None:
        ctx = Context.create()
        ctx.node, ctx.root = node, cluster.roots[node]
        try:
            outcome[node] = instance.start(ctx, load_for_run(ctx, SERVICE), lambda *a: None)
        except OmError as exc:
            outcome[node] = exc.message
        except Exception as exc:  # noqa: BLE001 - reported by the assertion below
            outcome[node] = repr(exc)
        finally:
            ctx.close()

    for rounds in range(2):  # no placement row yet; then a placement cleared by `stop`
        outcome.clear()
        threads = [threading.Thread(target=start, args=(n,)) for n in ("n1", "n2")]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        [p] = cluster.rows("SELECT * FROM placements WHERE service = :s", s=SERVICE)
        winner, loser = p["active_node"], ({"n1", "n2"} - {p["active_node"]}).pop()
        assert outcome == {winner: 0, loser: f"{SERVICE} is active on {winner}: use 'om {SERVICE} switch --to {loser}'"}
        assert p["epoch"] == 1 + 2 * rounds
        assert sorted(f.name for f in cluster.flags.iterdir()) == [f"{winner}.up"]
        assert cluster.om(winner, SERVICE, "stop", now=at(0, 1)).returncode == 0
        barrier.reset()


def cl_env(cl: Cluster) -> dict[str, str]:
    """The environment for in-process commands of this cluster (n1's OM_ROOT; each test sets ctx.root)."""
    return {"OM_ROOT": str(cl.roots["n1"]), "TZ": "UTC", **cl.env}


def test_concurrent_ticks_of_one_node_queue_one_convergence_run(cluster: Cluster):
    """SPEC 6.2: at most one start/stop run per instance at a time, even when a node's ticks race (OM_TICK_LOCK=0)."""
    assert cluster.om("n1", SERVICE, "start", now=at(0)).returncode == 0
    assert cluster.om("n1", SERVICE, "switch", "--to", "n2", now=at(0, 30)).returncode == 0
    forked_ticks({"n1": cluster.roots["n1"]}, at(1), env=cluster.env, copies=4)
    forked_ticks({"n2": cluster.roots["n2"]}, at(2), env=cluster.env, copies=4)
    conv = cluster.rows("SELECT action, node, state FROM runs WHERE service = :s AND \"trigger\" = 'converge' "
                        "ORDER BY id", s=SERVICE)
    assert conv == [{"action": "stop", "node": "n1", "state": "done"},
                    {"action": "start", "node": "n2", "state": "done"}]
    assert sorted(f.name for f in cluster.flags.iterdir()) == ["n2.up"]
