"""Compliance end to end (SPEC 9): real module executables, the real `om` binary, a real collector.

Modules are `$OM_ROOT/compliance/modules/<name>`, called with `check` or `fix`;
exit 0 ok, 1 nok, 2 n/a.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from omtest import db_rows, make_root, om, tick, write_module, write_node_conf, write_service
from test_collector import add_node, call, running_collector

DAY = "2026-12-01"


def modules(root: Path, tmp_path: Path) -> None:
    write_module(root, "okmod", 'echo "okmod $1 for $OM_SERVICE"\nexit 0\n')
    write_module(root, "namod", 'echo "namod: not applicable"\nexit 2\n')
    # nok until fixed: `fix` creates the flag file
    write_module(root, "fixable", f"""
        flag={tmp_path}/fixed
        if [ "$1" = fix ]; then touch "$flag"; echo fixed; exit 0; fi
        [ -e "$flag" ] && {{ echo compliant; exit 0; }}
        echo "not compliant: $flag missing"; exit 1
    """)


def compliance(root: Path, *args: str, now: str) -> tuple[int, list[list[str]], str]:
    proc = om(root, "svc", "compliance", *args, env={"OM_NOW": now})
    lines = proc.stdout.splitlines()
    rows = [ln.split() for ln in lines]
    if rows:
        assert rows[0] == ["MODULE", "STATUS"], proc.stdout
        rows = rows[1:]
    return proc.returncode, rows, proc.stderr


def results(root: Path) -> list[dict[str, Any]]:
    return db_rows(root, "SELECT service, node, module, action, status, output_tail, at FROM compliance_results "
                         "ORDER BY id")


def test_compliance_check_and_fix_exit_codes_results_status_and_pushes(tmp_path: Path) -> None:
    croot = tmp_path / "collector"
    token = add_node(croot, "n1")
    root = make_root(tmp_path)
    modules(root, tmp_path)
    write_service(root, "svc", """
        [DEFAULT]
        nodes = n1
        comp_modules = okmod namod fixable
        comp_schedule = @0
    """)
    t = f"{DAY} 10:00"
    # any nok: 1
    code, rows, err = compliance(root, "check", now=t)
    assert (code, rows) == (1, [["okmod", "ok"], ["namod", "n/a"], ["fixable", "nok"]]), err
    # ok and n/a: 0; all n/a: 2; nok alone: 1
    assert compliance(root, "check", "--module", "okmod", now=t)[:2] == (0, [["okmod", "ok"]])
    assert compliance(root, "check", "--module", "namod", now=t)[:2] == (2, [["namod", "n/a"]])
    # fix, then every module is ok or n/a
    assert compliance(root, "fix", "--module", "fixable", now=f"{DAY} 10:01")[:2] == (0, [["fixable", "ok"]])
    code, rows, err = compliance(root, "check", now=f"{DAY} 10:02")
    assert (code, rows) == (0, [["okmod", "ok"], ["namod", "n/a"], ["fixable", "ok"]]), err
    # a module outside comp_modules is refused
    code, rows, err = compliance(root, "check", "--module", "other", now=t)
    assert code == 1 and rows == [] and "module 'other' is not in svc's comp_modules" in err

    stored = results(root)
    assert [(r["module"], r["action"], r["status"]) for r in stored] == [
        ("okmod", "check", "ok"), ("namod", "check", "n/a"), ("fixable", "check", "nok"),
        ("okmod", "check", "ok"), ("namod", "check", "n/a"),
        ("fixable", "fix", "ok"),
        ("okmod", "check", "ok"), ("namod", "check", "n/a"), ("fixable", "check", "ok"),
    ]
    assert all((r["service"], r["node"]) == ("svc", "n1") for r in stored)
    assert str(stored[0]["at"]).startswith(f"{DAY} 10:00:00") and str(stored[-1]["at"]).startswith(f"{DAY} 10:02:00")
    assert "okmod check for svc" in stored[0]["output_tail"]
    assert "not compliant" in stored[2]["output_tail"] and "fixed" in stored[5]["output_tail"]

    # print status: the latest result per module and action
    doc = json.loads(om(root, "svc", "print", "status", "--format", "json").stdout)
    assert [(c["module"], c["action"], c["status"], c["at"]) for c in doc["compliance"]] == [
        ("fixable", "check", "ok", f"{DAY}T10:02:00+00:00"),
        ("fixable", "fix", "ok", f"{DAY}T10:01:00+00:00"),
        ("namod", "check", "n/a", f"{DAY}T10:02:00+00:00"),
        ("okmod", "check", "ok", f"{DAY}T10:02:00+00:00"),
    ]
    text = om(root, "svc", "print", "status").stdout
    assert f"compliance: fixable check ok at {DAY}T10:02:00+00:00" in text
    assert f"compliance: namod check n/a at {DAY}T10:02:00+00:00" in text

    # the runs were queued without a collector configured: nothing to push; with one, later runs are pushed
    assert db_rows(root, "SELECT count(*) AS n FROM outbox WHERE kind = 'compliance'") == [{"n": 0}]
    with running_collector(croot) as c:
        write_node_conf(root, url=c.url, token=token)
        assert compliance(root, "check", "--module", "namod", now=f"{DAY} 10:03")[0] == 2
        assert compliance(root, "check", now=f"{DAY} 10:04")[0] == 0
        tick(root, f"{DAY} 10:05")  # delivers the outbox
        status, pushed = call(c, "GET", "/v1/pushes?service=svc&kind=compliance", token=token)
    assert status == 200
    assert [p["payload"] for p in pushed] == [
        {"results": [{"module": "namod", "action": "check", "status": "n/a", "at": f"{DAY}T10:03:00+00:00"}]},
        {"results": [{"module": m, "action": "check", "status": s, "at": f"{DAY}T10:04:00+00:00"}
                     for m, s in (("okmod", "ok"), ("namod", "n/a"), ("fixable", "ok"))]},
    ]
    assert [p["node"] for p in pushed] == ["n1", "n1"]
    assert [p["created_at"] for p in pushed] == [f"{DAY}T10:03:00+00:00", f"{DAY}T10:04:00+00:00"]


def test_compliance_without_modules_or_with_a_missing_one(tmp_path: Path) -> None:
    root = make_root(tmp_path)
    write_service(root, "svc", "[DEFAULT]\nnodes = n1\n")
    code, rows, err = compliance(root, "check", now=f"{DAY} 10:00")
    assert code == 1 and rows == [] and "no compliance modules for svc" in err
    write_service(root, "svc", "[DEFAULT]\nnodes = n1\ncomp_modules = ghost\n")
    code, rows, err = compliance(root, "check", now=f"{DAY} 10:00")
    assert (code, rows) == (1, [["ghost", "nok"]])
    assert "compliance module ghost: not found or not executable" in err
    assert [(r["module"], r["status"]) for r in results(root)] == [("ghost", "nok")]


def test_compliance_auto_runs_once_in_its_window_stores_and_pushes(tmp_path: Path) -> None:
    croot = tmp_path / "collector"
    token = add_node(croot, "n1")
    root = make_root(tmp_path)
    modules(root, tmp_path)
    write_service(root, "svc", """
        [DEFAULT]
        nodes = n1
        comp_modules = okmod fixable
    """)
    with running_collector(croot) as c:
        write_node_conf(root, url=c.url, token=token)
        proc = om(root, "svc", "print", "schedule", "--format", "json", "--rid", "compliance_auto",
                  env={"OM_NOW": f"{DAY} 00:00"})
        [row] = json.loads(proc.stdout)
        assert (row["config_parameter"], row["schedule_definition"], row["verdict"]) == (
            "DEFAULT.comp_schedule", "~00:00-06:00", "not_due")
        hs = datetime.fromisoformat(row["next_run"])  # the stable offset in the window
        assert datetime.fromisoformat(f"{DAY}T00:00:00+00:00") <= hs < datetime.fromisoformat(f"{DAY}T06:00:00+00:00")

        def at(delta: timedelta) -> str:
            return (hs + delta).strftime("%Y-%m-%d %H:%M:%S")

        tick(root, at(timedelta(seconds=-30)))  # before the offset: not due
        assert results(root) == []
        tick(root, at(timedelta(0)))  # the worker runs the modules
        tick(root, at(timedelta(seconds=30)))  # not due again; delivers what the worker queued
        tick(root, at(timedelta(minutes=20)))  # still in the window: not again
        status, pushed = call(c, "GET", "/v1/pushes?service=svc&kind=compliance", token=token)
    runs = db_rows(root, "SELECT state, trigger, scheduled_for, output_tail FROM runs "
                         "WHERE action = 'compliance_auto'")
    assert [(r["state"], r["trigger"], str(r["scheduled_for"])[:19]) for r in runs] == [
        ("done", "schedule", at(timedelta(0)))]
    assert runs[0]["output_tail"] == "okmod:ok fixable:nok"
    stored = results(root)
    assert [(r["module"], r["action"], r["status"], str(r["at"])[:19]) for r in stored] == [
        ("okmod", "check", "ok", at(timedelta(0))), ("fixable", "check", "nok", at(timedelta(0)))]
    assert status == 200
    when = hs.isoformat()
    assert [p["payload"] for p in pushed] == [{"results": [
        {"module": "okmod", "action": "check", "status": "ok", "at": when},
        {"module": "fixable", "action": "check", "status": "nok", "at": when}]}]
    doc = json.loads(om(root, "svc", "print", "status", "--format", "json").stdout)
    assert [(x["module"], x["status"]) for x in doc["compliance"]] == [("fixable", "nok"), ("okmod", "ok")]
    # the next run is in the next day's window
    proc = om(root, "svc", "print", "schedule", "--format", "json", "--rid", "compliance_auto",
              env={"OM_NOW": at(timedelta(minutes=21))})
    [row] = json.loads(proc.stdout)
    assert row["verdict"] == "not_due" and row["next_run"] >= "2026-12-02T00:00:00"
    assert row["last_run"] == when
