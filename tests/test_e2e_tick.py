"""End to end: scheduled runs through real `om runner tick --now T --wait` processes (SPEC 8.2, 8.3, 10, 11, 12).

Every test drives the installed `om` binary on its own OM_ROOT and SQLite file,
with TZ=UTC and node n1; ticks launch real `om runner exec` workers. A tick
without `-v` must be silent and exit 0 (checked by `omtest.tick` on every call).
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta

from omtasks.schedule.jitter import offset
from omtest import db_rows, make_root, om, runner_log_text, tick, utc_text, wait_until, write_service


def runs_of(root, service, rid=None):
    """The task runs of a service (built-in actions such as `status` left out)."""
    sql = "SELECT * FROM runs WHERE service = :s AND action = 'run'"
    params = {"s": service}
    if rid is not None:
        sql += " AND rid = :r"
        params["r"] = rid
    return db_rows(root, sql + " ORDER BY id", **params)


def sched(rows):
    return [utc_text(r["scheduled_for"]) for r in rows]


def parse_table(text):
    """A SPEC 10 table as dicts, cut at the header's column starts."""
    lines = text.splitlines()
    header = lines[0]
    names = header.split()
    starts = [header.index(n) for n in names]
    ends = starts[1:] + [None]
    return [{n: line[a:b].strip() for n, a, b in zip(names, starts, ends, strict=True)} for line in lines[1:]]


def marker(root, service, rid):
    rows = db_rows(root, "SELECT * FROM last_runs WHERE service = :s AND rid = :r", s=service, r=rid)
    assert len(rows) == 1, rows
    return utc_text(rows[0]["last_attempt_at"]), utc_text(rows[0]["last_success_at"])


def entry(root, service, rid):
    rows = db_rows(root, "SELECT * FROM schedule_entries WHERE service = :s AND rid = :r AND node = 'n1'",
                   s=service, r=rid)
    assert len(rows) == 1, rows
    return rows[0]


def test_networker_interval_cadence_grace_and_catch_up(tmp_path):
    root = make_root(tmp_path)
    write_service(root, "web", """
        [DEFAULT]
        nodes = n1

        [task#a]
        command = /bin/true
        schedule = @10m
    """)
    plan = [
        ("2026-11-27 10:00:00", ["2026-11-27 10:00:00"]),
        ("2026-11-27 10:09:59", []),
        ("2026-11-27 10:10:30", ["2026-11-27 10:10:00"]),  # 30 s late: within grace, keeps the cadence
        # downtime: 13:00 is one catch-up run, scheduled for now, never one per missed slot
        ("2026-11-27 13:00:00", ["2026-11-27 13:00:00"]),
        ("2026-11-27 13:05:00", []),
        ("2026-11-27 13:10:00", ["2026-11-27 13:10:00"]),
    ]
    expected: list[str] = []
    for now, new in plan:
        tick(root, now)
        expected += new
        rows = runs_of(root, "web")
        assert sched(rows) == expected, f"after the tick at {now}"
        assert all(r["state"] == "done" for r in rows), rows
        if new:
            assert marker(root, "web", "task#a") == (new[-1], new[-1])
    rows = runs_of(root, "web")
    assert {r["trigger"] for r in rows} == {"schedule"}
    assert {r["node"] for r in rows} == {"n1"}
    assert {r["exit_code"] for r in rows} == {0}
    keys = [r["slot_key"] for r in rows]
    assert keys[0] == "web|run|task#a|n1|never"
    assert keys[1] == "web|run|task#a|n1|2026-11-27T10:00:00Z"
    assert len(set(keys)) == len(keys)
    lr = db_rows(root, "SELECT * FROM last_runs WHERE service = 'web' AND action = 'run'")
    assert len(lr) == 1 and lr[0]["scope"] == "n1" and lr[0]["last_run_id"] == rows[-1]["id"]
    # the worker got the tick's clock (SPEC 8.3): the service log names each run
    log = (root / "var" / "log" / "web.log").read_text()
    for r in rows:
        assert f" n1 run={r['id']} task#a      INFO    /bin/true" in log


def test_single_time_grace_and_closed_window_not_replayed(tmp_path):
    root = make_root(tmp_path)
    write_service(root, "ops", """
        [DEFAULT]
        nodes = n1

        [task#six]
        command = /bin/true
        schedule = 06:00

        [task#seven]
        command = /bin/true
        schedule = 07:00
    """)
    tick(root, "2026-11-27 06:00:02")
    assert sched(runs_of(root, "ops", "task#six")) == ["2026-11-27 06:00:00"]
    assert runs_of(root, "ops", "task#six")[0]["state"] == "done"
    # 07:00 closed 90 s ago, more than the 60 s grace: not replayed
    tick(root, "2026-11-27 07:01:30")
    assert runs_of(root, "ops", "task#seven") == []
    e = entry(root, "ops", "task#seven")
    assert e["verdict"] == "not_due"
    assert utc_text(e["next_run_at"]) == "2026-11-28 07:00:00"
    assert sched(runs_of(root, "ops", "task#six")) == ["2026-11-27 06:00:00"]
    # the next day's window runs on time
    tick(root, "2026-11-28 07:00:05")
    assert sched(runs_of(root, "ops", "task#seven")) == ["2026-11-28 07:00:00"]
    assert len(runs_of(root, "ops", "task#six")) == 1


def test_cron_slots_and_missed_slot_recorded_once(tmp_path):
    root = make_root(tmp_path)
    write_service(root, "cr", """
        [DEFAULT]
        nodes = n1

        [task#c]
        command = /bin/true
        schedule = */5 * * * *
    """)
    tick(root, "2026-11-27 10:00:00")
    tick(root, "2026-11-27 10:05:20")
    assert sched(runs_of(root, "cr")) == ["2026-11-27 10:00:00", "2026-11-27 10:05:00"]
    before = marker(root, "cr", "task#c")
    assert before == ("2026-11-27 10:05:00", "2026-11-27 10:05:00")
    # a task first evaluated at 10:11:30: its 10:10 slot is older than the entry, never due nor missed
    write_service(root, "cr2", """
        [DEFAULT]
        nodes = n1

        [task#new]
        command = /bin/true
        schedule = */5 * * * *
    """)
    # the 10:10 slot is 90 s late: missed, not run, recorded once, markers unchanged
    tick(root, "2026-11-27 10:11:30")
    assert entry(root, "cr2", "task#new")["verdict"] == "not_due"
    tick(root, "2026-11-27 10:12:00")
    assert len(runs_of(root, "cr")) == 2
    assert marker(root, "cr", "task#c") == before
    missed = db_rows(root, "SELECT * FROM schedule_decisions WHERE service = 'cr' AND verdict = 'missed'")
    assert len(missed) == 1, missed
    assert utc_text(missed[0]["slot"]) == "2026-11-27 10:10:00"
    assert missed[0]["rid"] == "task#c" and missed[0]["node"] == "n1" and missed[0]["run_id"] is None
    assert missed[0]["reason"] == "missed slot 2026-11-27 10:10:00 (late by 90 s, grace 60 s)"
    e = entry(root, "cr", "task#c")
    assert e["verdict"] == "missed"
    assert utc_text(e["next_run_at"]) == "2026-11-27 10:15:00"
    tick(root, "2026-11-27 10:15:10")
    assert sched(runs_of(root, "cr")) == ["2026-11-27 10:00:00", "2026-11-27 10:05:00", "2026-11-27 10:15:00"]
    assert {r["state"] for r in runs_of(root, "cr")} == {"done"}
    assert len(db_rows(root, "SELECT id FROM schedule_decisions WHERE verdict = 'missed'")) == 1
    assert sched(runs_of(root, "cr2")) == ["2026-11-27 10:15:00"]


def test_anacron_runs_once_per_day(tmp_path):
    root = make_root(tmp_path)
    write_service(root, "ana", """
        [DEFAULT]
        nodes = n1

        [task#daily]
        command = /bin/true
        schedule = anacron 1
    """)
    env = {"OM_BOOT_TIME": "2026-11-27T09:59:30+00:00"}
    # never ran: due today at max(00:00, boot) = 09:59:30, 30 s ago (within grace)
    tick(root, "2026-11-27 10:00:00", env=env)
    assert sched(runs_of(root, "ana")) == ["2026-11-27 09:59:30"]
    tick(root, "2026-11-27 23:59:00", env=env)
    assert len(runs_of(root, "ana")) == 1
    assert utc_text(entry(root, "ana", "task#daily")["next_run_at"]) == "2026-11-28 00:00:00"
    tick(root, "2026-11-28 00:00:30", env=env)
    rows = runs_of(root, "ana")
    assert sched(rows) == ["2026-11-27 09:59:30", "2026-11-28 00:00:00"]
    assert {r["state"] for r in rows} == {"done"}
    # after days of downtime: one run, scheduled for now
    tick(root, "2026-12-02 08:00:00", env=env)
    tick(root, "2026-12-02 09:00:00", env=env)
    assert sched(runs_of(root, "ana"))[2:] == ["2026-12-02 08:00:00"]


def test_probabilistic_window_runs_at_its_stable_offset(tmp_path):
    root = make_root(tmp_path)
    write_service(root, "bk", """
        [DEFAULT]
        nodes = n1

        [task#p]
        command = /bin/true
        schedule = ~00:00-04:00
    """)
    ws = datetime(2026, 11, 28, 0, 0, 0)
    off = offset("n1", "bk", "task#p", ws, 4 * 3600)
    hs = ws + timedelta(seconds=off)
    fmt = "%Y-%m-%d %H:%M:%S"
    # previews show the real start (SPEC 4.4)
    doc = json.loads(om(root, "bk", "print", "schedule", "--format", "json",
                        env={"OM_NOW": "2026-11-27 18:00:00"}).stdout)
    assert doc[0]["next_run"] == hs.strftime("%Y-%m-%dT%H:%M:%S+00:00")
    assert doc[0]["verdict"] == "not_due" and doc[0]["note"] is None
    for before in (hs - timedelta(seconds=60), hs - timedelta(seconds=1)):
        if before >= ws:
            tick(root, before.strftime(fmt))
    assert runs_of(root, "bk") == []
    assert utc_text(entry(root, "bk", "task#p")["next_run_at"]) == hs.strftime(fmt)
    first = hs if hs.second == 0 else hs + timedelta(seconds=60 - hs.second)  # the first cron tick at or after hs
    tick(root, first.strftime(fmt))
    rows = runs_of(root, "bk")
    assert sched(rows) == [first.strftime(fmt)]
    assert rows[0]["state"] == "done"


def test_disabled_invalid_and_broken_services_do_not_stop_others(tmp_path):
    root = make_root(tmp_path)
    write_service(root, "mix", """
        [DEFAULT]
        nodes = n1

        [task#off]
        command = /bin/true
        schedule = @1m
        disable = true

        [task#bad]
        command = /bin/true
        schedule = 25:00

        [task#ok]
        command = /bin/true
        schedule = @1m
    """)
    write_service(root, "dis", """
        [DEFAULT]
        nodes = n1
        disable = true

        [task#a]
        command = /bin/true
        schedule = @1m
    """)
    write_service(root, "other", """
        [DEFAULT]
        nodes = n1

        [task#x]
        command = /bin/true
        schedule = @1m
    """)
    broken = write_service(root, "broken", """
        [DEFAULT]
        nodes = n1
        [task#a
        command = /bin/true
    """)
    tick(root, "2026-11-27 10:00:00")
    tick(root, "2026-11-27 10:01:00")
    assert [r["rid"] for r in runs_of(root, "mix")] == ["task#ok"] * 2
    assert len(runs_of(root, "other")) == 2
    assert runs_of(root, "dis") == [] and runs_of(root, "broken") == []
    assert entry(root, "mix", "task#off")["verdict"] == "disabled"
    assert entry(root, "dis", "task#a")["verdict"] == "service_disabled"
    bad = entry(root, "mix", "task#bad")
    assert bad["verdict"] == "config_invalid"
    assert bad["reason"].startswith("config invalid: ") and "25:00" in bad["reason"]
    assert entry(root, "mix", "task#ok")["verdict"] == "due"
    # the broken file is logged once (per checksum), not at every tick
    log = runner_log_text(root)
    lines = [line for line in log.splitlines() if " broken: error: " in line]
    assert lines and any("broken.conf:3" in line for line in lines), log
    tick(root, "2026-11-27 10:02:00")
    again = [line for line in runner_log_text(root).splitlines() if " broken: error: " in line]
    assert again == lines
    # a service that breaks keeps its entries, as config_invalid, and the others go on
    broken_other = root / "etc" / "other.conf"
    broken_other.write_text(broken_other.read_text() + "[task#y\n")
    tick(root, "2026-11-27 10:03:00")
    assert entry(root, "other", "task#x")["verdict"] == "config_invalid"
    assert len(runs_of(root, "other")) == 3
    assert len(runs_of(root, "mix")) == 4
    assert broken.exists()


def test_removed_service_cancels_claimed_not_started_runs(tmp_path):
    root = make_root(tmp_path)
    (root / "etc" / "node.conf").write_text("[node]\nmax_running = 1\n")
    path = write_service(root, "gone", """
        [DEFAULT]
        nodes = n1

        [task#a]
        command = sleep 3
        schedule = @1m

        [task#b]
        command = /bin/true
        schedule = @1m
    """)
    tick(root, "2026-11-27 10:00:00", wait=False)
    rows = {r["rid"]: r for r in runs_of(root, "gone")}
    assert rows["task#b"]["state"] == "eligible" and rows["task#b"]["pid"] is None
    nc = entry(root, "gone", "task#b")
    assert nc["verdict"] == "node_cap" and nc["reason"] == "waiting for a launch slot (1/1 running)"
    # a started run is not "claimed-not-started": wait for task#a to run before removing the file
    wait_until(lambda: runs_of(root, "gone", "task#a")[0]["state"] == "running", timeout=20, what="task#a running")
    path.unlink()
    tick(root, "2026-11-27 10:00:20")
    rows = {r["rid"]: r for r in runs_of(root, "gone")}
    assert rows["task#b"]["state"] == "cancelled" and rows["task#b"]["reason"] == "service deleted"
    assert rows["task#a"]["state"] == "running"
    assert db_rows(root, "SELECT * FROM schedule_entries WHERE service = 'gone'") == []
    # the running one finishes and is recorded
    wait_until(lambda: runs_of(root, "gone", "task#a")[0]["state"] == "done", timeout=20, what="task#a done")
    assert marker(root, "gone", "task#b") == (None, None)


def test_print_schedule_text_json_and_v_schedule(tmp_path):
    root = make_root(tmp_path)
    write_service(root, "pgdb", """
        [DEFAULT]
        nodes = n1

        [task#backup]
        command = /bin/true
        schedule = @10m

        [task#manual]
        command = /bin/true

        [task#active]
        command = /bin/true
        schedule = @10m
        run_requires = instance(up)
    """)
    tick(root, "2026-11-27 10:00:00")
    env = {"OM_NOW": "2026-11-27 10:03:00"}
    proc = om(root, "pgdb", "print", "schedule", env=env)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    table = parse_table(proc.stdout)
    assert list(table[0]) == ["ACTION", "LAST_RUN", "NEXT_RUN", "CONFIG_PARAMETER", "SCHEDULE", "NOTE"]
    body = {r["CONFIG_PARAMETER"]: r for r in table if r["ACTION"] == "run"}
    assert set(body) == {"task#backup.schedule", "task#manual.schedule", "task#active.schedule"}
    assert body["task#backup.schedule"] == {
        "ACTION": "run", "LAST_RUN": "2026-11-27 10:00:00", "NEXT_RUN": "2026-11-27 10:10:00",
        "CONFIG_PARAMETER": "task#backup.schedule", "SCHEDULE": "@10m", "NOTE": "-"}
    assert body["task#manual.schedule"] == {
        "ACTION": "run", "LAST_RUN": "-", "NEXT_RUN": "-", "CONFIG_PARAMETER": "task#manual.schedule",
        "SCHEDULE": "-", "NOTE": "unscheduled (manual runs only)"}
    assert body["task#active.schedule"] == {
        "ACTION": "run", "LAST_RUN": "-", "NEXT_RUN": "-", "CONFIG_PARAMETER": "task#active.schedule",
        "SCHEDULE": "@10m", "NOTE": "requires instance(up): not the active instance (active: none)"}
    # columns are separated by (at least) two blanks
    start = lines[0].index("NEXT_RUN")
    assert all(line[start - 2:start] == "  " for line in lines)

    doc = json.loads(om(root, "pgdb", "print", "schedule", "--format", "json", env=env).stdout)
    rows = {d["rid"]: d for d in doc if d["action"] == "run"}
    assert set(rows) == {"task#backup", "task#manual", "task#active"}
    keys = {"service", "node", "action", "rid", "config_parameter", "schedule_definition", "dialect", "scope",
            "last_run", "last_success", "next_run", "verdict", "note"}
    assert all(keys <= set(d) for d in doc)
    b = rows["task#backup"]
    assert b["service"] == "pgdb" and b["node"] == "n1" and b["action"] == "run"
    assert b["config_parameter"] == "task#backup.schedule" and b["schedule_definition"] == "@10m"
    assert b["dialect"] == "networker" and b["scope"] == "node"
    assert b["last_run"] == "2026-11-27T10:00:00+00:00" and b["last_success"] == "2026-11-27T10:00:00+00:00"
    assert b["next_run"] == "2026-11-27T10:10:00+00:00"
    assert b["verdict"] == "not_due" and b["note"] is None
    m = rows["task#manual"]
    assert m["verdict"] == "unscheduled" and m["note"] == "unscheduled (manual runs only)"
    assert m["next_run"] is None and m["dialect"] == "none"
    a = rows["task#active"]
    assert a["verdict"] == "requires_unmet" and a["next_run"] is None and a["scope"] == "cluster"
    assert a["note"] == "requires instance(up): not the active instance (active: none)"

    # v_schedule shows what the tick stored, with the markers
    vs = {r["rid"]: r for r in db_rows(
        root, "SELECT * FROM v_schedule WHERE service = 'pgdb' AND node = 'n1' AND action = 'run'")}
    assert set(vs) == {"task#backup", "task#manual", "task#active"}
    assert vs["task#backup"]["verdict"] == "due"
    assert utc_text(vs["task#backup"]["last_attempt_at"]) == "2026-11-27 10:00:00"
    assert utc_text(vs["task#backup"]["last_success_at"]) == "2026-11-27 10:00:00"
    assert vs["task#manual"]["verdict"] == "unscheduled" and vs["task#manual"]["last_attempt_at"] is None
    assert vs["task#active"]["verdict"] == "requires_unmet"
    assert vs["task#active"]["reason"] == "requires instance(up): not the active instance (active: none)"
    for col in ("config_parameter", "definition", "dialect", "scope", "next_run_at", "evaluated_at", "created_at"):
        assert col in vs["task#backup"]
    assert runs_of(root, "pgdb", "task#active") == []
    # the requirement's reason is a decision row, not a run (SPEC 8.4)
    dec = db_rows(root, "SELECT * FROM schedule_decisions WHERE rid = 'task#active'")
    assert [d["verdict"] for d in dec] == ["requires_unmet"]

    # a second tick stores not_due; -v prints the verdict change only
    proc = tick(root, "2026-11-27 10:05:00", verbose=True)
    assert "pgdb task#backup: not_due" in proc.stdout.splitlines(), proc.stdout
    assert not [line for line in proc.stdout.splitlines() if "task#manual" in line or "task#active" in line]
    proc = tick(root, "2026-11-27 10:06:00", verbose=True)
    assert "task#" not in proc.stdout
    vs = db_rows(root, "SELECT verdict, next_run_at FROM v_schedule WHERE rid = 'task#backup'")
    assert vs[0]["verdict"] == "not_due" and utc_text(vs[0]["next_run_at"]) == "2026-11-27 10:10:00"


def test_cron_slot_held_by_requires_unmet_is_dropped_not_missed(tmp_path):
    # SPEC 8.2: a slot that expires while the verdict is requires_unmet is dropped, never recorded as missed,
    # even when a later tick evaluates the entry again (task#fast keeps the service evaluated every tick)
    root = make_root(tmp_path)
    write_service(root, "hold", """
        [DEFAULT]
        nodes = n1
        topology = flex

        [task#c]
        command = /bin/true
        schedule = */5 * * * *
        run_requires = instance(up)

        [task#fast]
        command = /bin/true
        schedule = @1m
    """)
    tick(root, "2026-11-27 10:09:00")
    tick(root, "2026-11-27 10:10:00")
    assert entry(root, "hold", "task#c")["verdict"] == "requires_unmet"
    proc = om(root, "hold", "start", env={"OM_NOW": "2026-11-27 10:11:00"})
    assert proc.returncode == 0, proc.stderr
    for now in ("2026-11-27 10:11:30", "2026-11-27 10:12:00", "2026-11-27 10:13:00"):
        tick(root, now)
        assert entry(root, "hold", "task#c")["verdict"] == "not_due", now
    assert db_rows(root, "SELECT * FROM schedule_decisions WHERE verdict = 'missed'") == []
    assert runs_of(root, "hold", "task#c") == []
    tick(root, "2026-11-27 10:15:00")
    assert sched(runs_of(root, "hold", "task#c")) == ["2026-11-27 10:15:00"]
