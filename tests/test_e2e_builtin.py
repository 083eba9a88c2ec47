"""Built-in actions end to end (SPEC 9, 8.5, 8.3 step 8): real runners, a real collector, real sockets.

Two nodes n1 and n2 are two OM_ROOTs (each with its own node.conf, token and
compliance modules) sharing one SQLite database through OM_DB_URL.  Time is
simulated with `om runner tick --now T --wait`.
"""

from __future__ import annotations

import json
import socket
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from omtest import (
    Cluster,
    make_root,
    om,
    runner_log_text,
    shared_db_rows,
    tick,
    write_module,
    write_node_conf,
    write_service,
)
from test_collector import Collector, add_node, call, free_port, running_collector

DAY = "2026-12-01"
SVC = """
[DEFAULT]
nodes = n1 n2
comp_modules = m1
comp_schedule = ~00:00-00:50
push_schedule = @20m

[app#0]
check = test -e {tmp}/{{nodename}}.up

[task#0]
command = echo task ran
schedule = @10m
run_requires = instance(up)

[sync#0]
src = {tmp}/src/
dst = /data/
target = nodes
schedule = @60m
"""


def collected(c: Collector, token: str, **filters: str) -> list[dict[str, Any]]:
    query = "&".join(f"{k}={v}" for k, v in filters.items())
    status, answer = call(c, "GET", f"/v1/pushes?{query}", token=token)
    assert status == 200, answer
    return answer


def hhmm(minutes: int) -> str:
    return f"{DAY} {minutes // 60:02d}:{minutes % 60:02d}"


def setup_cluster(tmp_path: Path, url: str, tokens: dict[str, str]) -> Cluster:
    cl = Cluster(tmp_path)
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "file.txt").write_text("payload\n")
    (tmp_path / "n1.up").touch()  # app#0 is up on n1 only
    for node in ("n1", "n2"):
        (tmp_path / f"{node}data").mkdir()  # rsync creates dst, not its parents
    for node, root in cl.roots.items():
        other = "n2" if node == "n1" else "n1"
        write_node_conf(root, url=url, token=tokens[node], transports={other: f"local:{tmp_path}/{other}data"})
        write_module(root, "m1", 'echo "m1 $1 on $OM_NODENAME"\nexit 0\n')
    cl.write_service("svc", SVC.format(tmp=tmp_path))
    proc = cl.om("n1", "svc", "start", now=hhmm(0))
    assert proc.returncode == 0, proc.stderr
    return cl


def test_pushes_are_delivered_exactly_once_through_an_outage_and_a_config_change(tmp_path: Path) -> None:
    croot = tmp_path / "collector"
    tokens = {n: add_node(croot, n) for n in ("n1", "n2")}
    port = free_port()
    cl = setup_cluster(tmp_path, f"http://127.0.0.1:{port}", tokens)
    with running_collector(croot, port=port):
        for m in (0, 10):
            cl.tick(hhmm(m))
    # the collector is down from 00:15 to 00:35: pushes wait in the outbox, the runners go on
    for m in (20, 30):
        cl.tick(hhmm(m))
    for node in ("n1", "n2"):
        proc = cl.om(node, "svc", "print", "status", "--format", "json")
        assert proc.returncode == 0, proc.stderr
        outbox = json.loads(proc.stdout)["outbox"]
        assert outbox["pending"] > 0 and outbox["last_error"] == "connection refused", outbox
        text = cl.om(node, "svc", "print", "status").stdout
        assert f"outbox:    {outbox['pending']} pending, last error: connection refused" in text
        assert "connection refused" in runner_log_text(cl.roots[node])
    # the config changes at 00:35 (both copies): one more config push per node
    proc = cl.om("n1", "svc", "set", "--kw", "task#0.command=echo task ran again", now=hhmm(35))
    assert proc.returncode == 0, proc.stderr
    (cl.roots["n2"] / "etc" / "svc.conf").write_text((cl.roots["n1"] / "etc" / "svc.conf").read_text())
    with running_collector(croot, port=port) as c:
        for m in (40, 50, 60):
            cl.tick(hhmm(m))
        cl.tick(hhmm(65))  # delivers what the 01:00 workers queued after that tick's own delivery
        got = {n: collected(c, tokens["n1"], service="svc", node=n) for n in ("n1", "n2")}
        status, services = call(c, "GET", "/v1/services", token=tokens["n2"])
        assert status == 200
    latest = {(e["node"], e["kind"]): e["payload"] for e in services if e["service"] == "svc"}

    # nothing is lost, nothing is duplicated: the collector holds each outbox row exactly once
    outbox = cl.rows("SELECT uuid, node, kind, sent_at FROM outbox")
    assert all(r["sent_at"] is not None for r in outbox), [r for r in outbox if r["sent_at"] is None]
    for node in ("n1", "n2"):
        uuids = [p["uuid"] for p in got[node]]
        assert len(uuids) == len(set(uuids))
        assert sorted(uuids) == sorted(r["uuid"] for r in outbox if r["node"] == node)
    # per node and kind: status every 10 min, resinfo every 60 min, config once then once more after the
    # change (push_config runs every 20 min but pushes only a new checksum), compliance once in its window
    expected = {"status": 7, "resinfo": 2, "config": 2, "compliance": 1}
    for node in ("n1", "n2"):
        assert Counter(p["kind"] for p in got[node]) == expected, node
    runs = cl.rows("SELECT action, node, state, count(*) AS n FROM runs WHERE action NOT IN ('run', 'start') "
                   "GROUP BY action, node, state")
    counts = {(r["action"], r["node"], r["state"]): r["n"] for r in runs}
    for node in ("n1", "n2"):
        assert counts.pop(("status", node, "done")) == 7
        assert counts.pop(("push_resinfo", node, "done")) == 2
        assert counts.pop(("push_config", node, "done")) == 4
        assert counts.pop(("compliance_auto", node, "done")) == 1
    # the sync runs from the active node only, hourly
    assert counts == {("sync_update", "n1", "done"): 2}
    assert (tmp_path / "n2data" / "data" / "file.txt").read_text() == "payload\n"
    # payloads
    assert latest[("n1", "status")] == {"instance": "up", "frozen": False,
                                        "resources": [{"rid": "app#0", "status": "up"}]}
    assert latest[("n2", "status")]["instance"] == "down"
    text_now = (cl.roots["n1"] / "etc" / "svc.conf").read_text()
    for node in ("n1", "n2"):
        config = [p["payload"] for p in got[node] if p["kind"] == "config"]
        assert config[-1]["text"] == text_now and "echo task ran again" in text_now
        assert "echo task ran again" not in config[0]["text"] and config[0]["checksum"] != config[1]["checksum"]
        assert latest[(node, "config")] == config[-1]
    resinfo = latest[("n1", "resinfo")]["resources"]
    assert {r["rid"] for r in resinfo} == {"task#0", "app#0"}
    [task] = [r for r in resinfo if r["rid"] == "task#0"]
    assert task["command"] == "echo task ran again" and task["schedule"] == "@10m"
    for node in ("n1", "n2"):
        [compliance] = [p["payload"] for p in got[node] if p["kind"] == "compliance"]
        assert [(r["module"], r["action"], r["status"]) for r in compliance["results"]] == [("m1", "check", "ok")]
    # the task ran every 10 minutes, on the active node only, through the outage
    task_runs = cl.rows("SELECT node, state, scheduled_for FROM runs WHERE action = 'run' ORDER BY id")
    assert [(r["node"], r["state"], str(r["scheduled_for"])[:16]) for r in task_runs] == [
        ("n1", "done", hhmm(m)) for m in range(0, 70, 10)]


def test_a_wrong_token_is_refused_with_401_and_logged(tmp_path: Path) -> None:
    croot = tmp_path / "collector"
    token = add_node(croot, "n1")
    root = make_root(tmp_path)
    write_service(root, "svc", "[DEFAULT]\nnodes = n1\n")
    with running_collector(croot) as c:
        write_node_conf(root, url=c.url, token="not-the-token")
        tick(root, hhmm(0))
        rows = shared_db_rows(root / "var" / "om.db", "SELECT uuid, kind, attempts, last_error, sent_at FROM outbox")
        assert {r["kind"] for r in rows} == {"status", "resinfo"}
        assert all(r["attempts"] == 1 and r["last_error"] == "HTTP 401: bad token" and r["sent_at"] is None
                   for r in rows)
        log = runner_log_text(root)
        for r in rows:
            assert f"outbox: push {r['uuid']} ({r['kind']} svc) refused: HTTP 401: bad token" in log
        status = json.loads(om(root, "svc", "print", "status", "--format", "json").stdout)
        assert status["outbox"] == {"pending": 2, "last_error": "HTTP 401: bad token"}
        assert collected(c, token, service="svc") == []
        # the refused rows are kept and retried: with the right token they arrive, once each
        write_node_conf(root, url=c.url, token=token)
        tick(root, hhmm(1))
        assert sorted(p["uuid"] for p in collected(c, token, service="svc")) == sorted(r["uuid"] for r in rows)
    assert "push refused (401) from 127.0.0.1, node ?: bad token" in c.log()


# -- a collector that misbehaves never holds back the tasks ------------------------------------------


@contextmanager
def misbehaving_server(mode: str) -> Iterator[str]:
    """A node.conf collector url: `not a url`, a socket that never answers, or one answering garbage."""
    if mode == "bad url":
        yield "not a url"
        return
    srv = socket.create_server(("127.0.0.1", 0))
    srv.settimeout(0.2)
    stop = threading.Event()
    accepted: list[socket.socket] = []

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except TimeoutError:
                continue
            accepted.append(conn)
            if mode == "garbage":
                conn.settimeout(2)
                try:
                    conn.recv(65536)
                    conn.sendall(b"this is not HTTP\r\n\r\n")
                except OSError:
                    pass
                conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{srv.getsockname()[1]}"
    finally:
        stop.set()
        thread.join()
        for s in accepted:
            s.close()
        srv.close()


@pytest.mark.parametrize("mode", ["bad url", "hanging", "garbage"])
def test_a_broken_collector_never_blocks_the_tasks(tmp_path: Path, mode: str) -> None:
    root = make_root(tmp_path)
    write_service(root, "svc", """
        [DEFAULT]
        nodes = n1

        [task#0]
        command = echo tick task
        schedule = @30s
    """)
    ticks = (f"{DAY} 00:00:00", f"{DAY} 00:00:30")  # the second one comes before the pushes' retry (1 min)
    with misbehaving_server(mode) as url:
        write_node_conf(root, url=url, token="tok")
        for now in ticks:
            tick(root, now, timeout=60)  # returns: a hanging collector costs one read timeout at most
    runs = shared_db_rows(root / "var" / "om.db", "SELECT state, scheduled_for FROM runs WHERE action = 'run' "
                          "ORDER BY id")
    assert [(r["state"], str(r["scheduled_for"])[:19]) for r in runs] == [("done", t) for t in ticks]
    log = runner_log_text(root)
    pushes = shared_db_rows(root / "var" / "om.db", "SELECT kind, attempts, last_error, sent_at FROM outbox")
    if mode == "bad url":
        # a bad url is a bad node.conf value: logged, the default (no collector) used, no push scheduled
        assert "not an http:// or https:// URL" in log
        assert pushes == []
        sched = om(root, "svc", "print", "schedule", "--format", "json", env={"OM_NOW": ticks[1]})
        notes = {r["action"]: (r["verdict"], r["note"]) for r in json.loads(sched.stdout)}
        assert notes["push_resinfo"] == notes["push_config"] == ("not_configured", "no collector configured")
        return
    assert {p["kind"] for p in pushes} == {"status", "resinfo"}
    assert all(p["sent_at"] is None and p["attempts"] == 1 for p in pushes), pushes
    reason = "read timed out" if mode == "hanging" else "malformed response: illegal status line"
    assert all(p["last_error"].startswith(reason) for p in pushes), pushes
    assert reason in log
    status = json.loads(om(root, "svc", "print", "status", "--format", "json").stdout)
    assert status["outbox"]["pending"] == 2 and status["outbox"]["last_error"].startswith(reason)


# -- the schedule table of the built-ins ----------------------------------------------------------


def schedule(root: Path, name: str | None = None, now: str = hhmm(5)) -> dict[str, dict[str, Any]]:
    args = ("node", "print", "schedule") if name is None else (name, "print", "schedule")
    proc = om(root, *args, "--format", "json", env={"OM_NOW": now})
    assert proc.returncode == 0, proc.stderr
    return {f"{r['service']}:{r['action']}" if name is None else r["action"]: r for r in json.loads(proc.stdout)}


def test_print_schedule_rows_of_the_builtins(tmp_path: Path) -> None:
    root = make_root(tmp_path)
    write_service(root, "svc", "[DEFAULT]\nnodes = n1\n\n[task#0]\ncommand = /bin/true\nschedule = @1h\n")
    rows = schedule(root, "svc")
    assert {a: (r["config_parameter"], r["schedule_definition"], r["scope"]) for a, r in rows.items()} == {
        "run": ("task#0.schedule", "@1h", "node"),
        "status": ("DEFAULT.status_schedule", "@10m", "node"),
        "push_resinfo": ("DEFAULT.resinfo_schedule", "@60m", "node"),
        "push_config": ("DEFAULT.push_schedule", "~00:00-06:00", "node"),
        "compliance_auto": ("DEFAULT.comp_schedule", "~00:00-06:00", "node"),
    }
    assert (rows["push_resinfo"]["verdict"], rows["push_resinfo"]["note"]) == ("not_configured",
                                                                              "no collector configured")
    assert rows["push_config"]["note"] == "no collector configured"
    assert (rows["compliance_auto"]["verdict"], rows["compliance_auto"]["note"]) == ("not_configured",
                                                                                    "no compliance modules")
    assert rows["status"]["verdict"] == "due"
    text = om(root, "svc", "print", "schedule", env={"OM_NOW": hhmm(5)}).stdout.splitlines()
    assert text[0].split() == ["ACTION", "LAST_RUN", "NEXT_RUN", "CONFIG_PARAMETER", "SCHEDULE", "NOTE"]
    line = {ln.split()[0]: ln for ln in text[1:]}
    assert "DEFAULT.resinfo_schedule  @60m" in line["push_resinfo"] and line["push_resinfo"].endswith(
        "no collector configured")
    assert line["compliance_auto"].endswith("no compliance modules")

    # with a collector and modules the pushes and compliance are scheduled (the window offset is stable)
    write_node_conf(root, url="http://127.0.0.1:9", token="tok")
    write_service(root, "svc", "[DEFAULT]\nnodes = n1\ncomp_modules = m1\n")
    rows = schedule(root, "svc")
    for action in ("push_resinfo", "push_config", "compliance_auto"):
        assert rows[action]["verdict"] in ("due", "not_due"), rows[action]
    assert rows["push_config"]["next_run"] == schedule(root, "svc")["push_config"]["next_run"]
    assert rows["push_config"]["next_run"] > f"{DAY}T00:05"

    # after a tick: LAST_RUN of the built-ins that ran
    tick(root, hhmm(0))
    rows = schedule(root, "svc")
    assert rows["status"]["last_run"].startswith(f"{DAY}T00:00:00")
    assert rows["status"]["next_run"].startswith(f"{DAY}T00:10:00")
    assert rows["push_resinfo"]["next_run"].startswith(f"{DAY}T01:00:00")


def test_node_print_schedule_lists_every_entry_soonest_first_like_list_timers(tmp_path: Path) -> None:
    root = make_root(tmp_path)
    write_node_conf(root, url="http://127.0.0.1:9", token="tok")
    for name in ("alpha", "beta"):
        write_service(root, name, "[DEFAULT]\nnodes = n1\ncomp_modules = m1\n\n[task#0]\ncommand = /bin/true\n")
    tick(root, hhmm(0))
    proc = om(root, "node", "print", "schedule", env={"OM_NOW": hhmm(1)})
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].split() == ["NEXT", "LEFT", "LAST", "PASSED", "SERVICE", "ACTION", "RID", "SCHEDULE", "NOTE"]
    assert len(lines) == 11
    rows = json.loads(om(root, "node", "print", "schedule", "--format", "json", env={"OM_NOW": hhmm(1)}).stdout)
    assert len(rows) == 10 and all(r["node"] == "n1" for r in rows)
    nexts = [r["next_run"] for r in rows if r["next_run"] is not None]
    assert nexts == sorted(nexts) and rows[0]["next_run"] is not None  # soonest first, unscheduled last
    assert {r["service"] for r in rows} == {"alpha", "beta"}
    # the status entries ran at 00:00 and come back at 00:10: 9 minutes left, 1 minute passed
    status = [ln for ln in lines[1:] if " status " in ln]
    assert len(status) == 2 and all(" 9min " in ln and " 1min ago " in ln for ln in status), status
    first = next(r for r in rows if r["action"] == "status")
    assert (first["left_seconds"], first["passed_seconds"]) == (540.0, 60.0)


@pytest.mark.parametrize("change, verdict, note", [
    ("disable = true", "service_disabled", "disabled"),
    ("status_schedule = @0", "unscheduled", "unscheduled (manual runs only)"),
])
def test_builtins_obey_disable_and_unscheduled(tmp_path: Path, change: str, verdict: str, note: str) -> None:
    croot = tmp_path / "collector"
    token = add_node(croot, "n1")
    root = make_root(tmp_path)
    write_module(root, "m1", "exit 0\n")
    with running_collector(croot) as c:
        write_node_conf(root, url=c.url, token=token)
        write_service(root, "svc", f"""
            [DEFAULT]
            nodes = n1
            comp_modules = m1
            comp_schedule = @10m
            {change}
        """)
        rows = schedule(root, "svc")
        assert (rows["status"]["verdict"], rows["status"]["note"]) == (verdict, note)
        tick(root, hhmm(0))
        tick(root, hhmm(1))  # nothing due: delivers what the 00:00 worker queued after that tick's delivery
        pushes = collected(c, token, service="svc")
    runs = shared_db_rows(root / "var" / "om.db", "SELECT action, state FROM runs")
    if change.startswith("disable"):
        assert {a: (r["verdict"], r["note"]) for a, r in rows.items()} == {
            a: ("service_disabled", "disabled")
            for a in ("status", "push_resinfo", "push_config", "compliance_auto")}
        assert runs == [] and pushes == []
        text = om(root, "svc", "print", "schedule", env={"OM_NOW": hhmm(5)}).stdout
        assert all(ln.endswith("disabled") for ln in text.splitlines()[1:])
        return
    # status unscheduled: no status run or push; the other built-ins still run
    actions = Counter(r["action"] for r in runs)
    assert "status" not in actions
    assert actions["compliance_auto"] == 1 and actions["push_resinfo"] == 1
    assert Counter(p["kind"] for p in pushes) == {"resinfo": 1, "compliance": 1}
    after = schedule(root, "svc", now=hhmm(11))
    assert (after["status"]["verdict"], after["status"]["note"], after["status"]["next_run"]) == (
        "unscheduled", "unscheduled (manual runs only)", None)
